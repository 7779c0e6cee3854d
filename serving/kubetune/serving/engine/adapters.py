"""Checks the reference engine makes on a load request before touching the model: the body,
the folder, the adapter config and the rank. Pure apart from reading the folder.

The answers mirror vLLM's runtime LoRA API: a missing field or a duplicate name is a 400
``InvalidUserInput``; a ``lora_path`` that is not a local folder is a 404 ``NotFoundError``
("No adapter found"), because vLLM never fetches ``s3://`` paths; an adapter vLLM could not
serve (rank above ``--max-lora-rank``, not LoRA) is a 400 ``BadRequestError``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

from kubetune.serving.adapter_config import (
    ADAPTER_CONFIG_FILE,
    ADAPTER_WEIGHTS_FILE,
    AdapterConfigError,
    lora_rank,
)


class AdapterRequestError(Exception):
    """A load or unload request the engine refuses, with the HTTP answer vLLM would give."""

    def __init__(
        self,
        message: str,
        *,
        status: HTTPStatus = HTTPStatus.BAD_REQUEST,
        err_type: str = "BadRequestError",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.err_type = err_type


@dataclass(frozen=True)
class AdapterFolder:
    """A LoRA folder that passed every check and may be handed to PEFT."""

    path: Path
    rank: int


def parse_load_request(body: Any) -> tuple[str, str]:
    """``(lora_name, lora_path)`` from a ``/v1/load_lora_adapter`` body."""
    name = body.get("lora_name") if isinstance(body, dict) else None
    path = body.get("lora_path") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name or not isinstance(path, str) or not path:
        raise AdapterRequestError(
            "Both 'lora_name' and 'lora_path' must be provided.", err_type="InvalidUserInput"
        )
    return name, path


def parse_unload_request(body: Any) -> str:
    """``lora_name`` from a ``/v1/unload_lora_adapter`` body."""
    name = body.get("lora_name") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name:
        raise AdapterRequestError("'lora_name' must be provided.", err_type="InvalidUserInput")
    return name


def inspect_adapter_folder(lora_path: str, *, max_lora_rank: int) -> AdapterFolder:
    """Check that ``lora_path`` is a local LoRA folder this engine can serve."""
    path = Path(lora_path)
    if "://" in lora_path or not path.is_dir():
        raise AdapterRequestError(
            f"No adapter found for {lora_path}: lora_path must be a local directory "
            "(download the adapter first; remote URIs are not fetched)",
            status=HTTPStatus.NOT_FOUND,
            err_type="NotFoundError",
        )
    config_path = path / ADAPTER_CONFIG_FILE
    try:
        config = json.loads(config_path.read_text())
    except FileNotFoundError:
        raise AdapterRequestError(f"{lora_path}: {ADAPTER_CONFIG_FILE} is missing") from None
    except ValueError as err:
        raise AdapterRequestError(
            f"{lora_path}: {ADAPTER_CONFIG_FILE} is not JSON: {err}"
        ) from None
    if not isinstance(config, dict):
        raise AdapterRequestError(f"{lora_path}: {ADAPTER_CONFIG_FILE} must hold an object")
    try:
        rank = lora_rank(config)
    except AdapterConfigError as err:
        raise AdapterRequestError(f"{lora_path}: {err}") from None
    if rank > max_lora_rank:
        raise AdapterRequestError(
            f"LoRA rank {rank} is greater than max_lora_rank {max_lora_rank}."
        )
    # Only safetensors: a pickled adapter_model.bin from user storage could run code on load.
    if not (path / ADAPTER_WEIGHTS_FILE).is_file():
        raise AdapterRequestError(
            f"{lora_path}: {ADAPTER_WEIGHTS_FILE} is missing (pickle formats such as "
            "adapter_model.bin are not loaded)"
        )
    return AdapterFolder(path=path, rank=rank)
