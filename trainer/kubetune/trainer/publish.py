"""Export the trained adapter and publish it: files first, ``manifest.json`` last.

LoRA/QLoRA publish the PEFT format (``adapter_config.json``, ``adapter_model.safetensors``),
in bf16 by default to halve the size; full fine-tuning publishes the whole model in the same
dtype. The tokenizer and its chat template go beside the weights so a server formats prompts
exactly as in training. The manifest is written with a conditional put (``If-None-Match``),
so a published run is never overwritten: a second writer gets ``AlreadyPublishedError``.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from kubetune.api import contract
from kubetune.trainer import manifest as mf
from kubetune.trainer.storage import Store, join, sha256_file

log = logging.getLogger(__name__)

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
EXPORT_DTYPE = torch.bfloat16


class AlreadyPublishedError(Exception):
    """Another attempt published this run first; ``manifest_bytes`` is what it wrote."""

    def __init__(self, manifest_bytes: bytes) -> None:
        super().__init__("the run already has a manifest")
        self.manifest_bytes = manifest_bytes


def export(
    model: Any,
    tokenizer: Any,
    *,
    out: Path,
    method: str,
    base_model_uri: str,
    chat_template: str,
) -> dict[str, Any]:
    """Write the publishable files into ``out``; returns the manifest's ``adapter`` section."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if method in ("lora", "qlora"):
        config = model.peft_config["default"]
        # Record where the base came from, not the pod-local staging path.
        config.base_model_name_or_path = base_model_uri
        if not isinstance(config.target_modules, str):
            # PEFT expands "all-linear" to every module path; the short names select the
            # same modules and are what serving engines (vLLM) expect to see.
            config.target_modules = sorted(
                {name.rsplit(".", 1)[-1] for name in config.target_modules}
            )
        model.save_pretrained(str(out), safe_serialization=True)
        weights = out / ADAPTER_WEIGHTS
        tensors = load_file(str(weights))
        save_file(
            {k: v.to(EXPORT_DTYPE).contiguous() for k, v in tensors.items()},
            str(weights),
            metadata={"format": "pt"},
        )
        (out / "README.md").unlink(missing_ok=True)  # a generated model card, with local paths
        section = {
            "format": "peft",
            "rank": config.r,
            "alpha": float(config.lora_alpha),
            "targetModules": sorted(config.target_modules),
            "dtype": str(EXPORT_DTYPE).removeprefix("torch."),
        }
    else:
        model.to(EXPORT_DTYPE)
        model.config.use_cache = True
        model.save_pretrained(str(out), safe_serialization=True)
        section = {"format": "full", "dtype": str(EXPORT_DTYPE).removeprefix("torch.")}
    tokenizer.chat_template = tokenizer.chat_template or chat_template
    tokenizer.save_pretrained(str(out))
    return section


def publish(store: Store, *, adapter_uri: str, folder: Path, manifest: dict[str, Any]) -> bytes:
    """Upload every file of ``folder``, then the manifest; returns the manifest bytes."""
    manifest_uri = join(adapter_uri, contract.MANIFEST_FILE)
    existing = store.read_bytes_or_none(manifest_uri)
    if existing is not None:
        raise AlreadyPublishedError(existing)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        store.upload_file(path, join(adapter_uri, path.relative_to(folder).as_posix()))
    body = mf.serialize(manifest)
    if not store.write_bytes(manifest_uri, body, if_absent=True):
        raise AlreadyPublishedError(store.read_bytes(manifest_uri))
    log.info("published %s (%s)", adapter_uri, mf.digest(body))
    return body


def file_digests(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        path.relative_to(folder).as_posix(): (sha256_file(path), path.stat().st_size)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def read_adapter_config(folder: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((folder / ADAPTER_CONFIG).read_text())
    return doc
