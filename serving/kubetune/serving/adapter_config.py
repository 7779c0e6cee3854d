"""Reading a PEFT ``adapter_config.json``: the facts both the engine and the agent check
before an adapter is loaded (its kind and its LoRA rank).

Pure functions on parsed JSON; shared so that the agent refuses exactly what the engine would.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

ADAPTER_CONFIG_FILE: Final = "adapter_config.json"
ADAPTER_WEIGHTS_FILE: Final = "adapter_model.safetensors"


class AdapterConfigError(ValueError):
    """The adapter config is not a LoRA config we can serve; the message says why."""


def lora_rank(config: Mapping[str, Any]) -> int:
    """The largest LoRA rank the adapter uses (``r``, or a larger per-module ``rank_pattern``).

    An engine sizes its LoRA buffers by rank, so the largest one is what must fit.
    """
    peft_type = str(config.get("peft_type", "")).upper()
    if peft_type != "LORA":
        raise AdapterConfigError(
            f"{ADAPTER_CONFIG_FILE}: peft_type is {config.get('peft_type')!r}; only LoRA "
            "adapters can be loaded at runtime"
        )
    rank = config.get("r")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise AdapterConfigError(
            f"{ADAPTER_CONFIG_FILE}: r must be a positive integer, got {rank!r}"
        )
    pattern = config.get("rank_pattern") or {}
    if not isinstance(pattern, Mapping):
        raise AdapterConfigError(f"{ADAPTER_CONFIG_FILE}: rank_pattern must be an object")
    ranks = [rank]
    for module, value in pattern.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise AdapterConfigError(
                f"{ADAPTER_CONFIG_FILE}: rank_pattern[{module!r}] must be a positive integer, "
                f"got {value!r}"
            )
        ranks.append(value)
    return max(ranks)
