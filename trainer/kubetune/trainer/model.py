"""Load the staged base model offline and attach the training method (LoRA, QLoRA or full).

Safetensors only: a folder with pickle weights alone is refused before anything is read.
``trust_remote_code`` is passed through only when the run config allows it, and every load is
``local_files_only`` so nothing ever reaches for a model hub.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from kubetune.api.runconfig import RunConfig
from kubetune.trainer import attention
from kubetune.trainer.errors import InvalidConfigError, InvalidModelError

log = logging.getLogger(__name__)

ALL_LINEAR = "all-linear"


def check_model_dir(path: Path) -> dict[str, Any]:
    """The model's config.json, after checking the folder holds safetensors weights."""
    config_path = path / "config.json"
    if not config_path.is_file():
        raise InvalidModelError(f"base model: no config.json in {path}")
    if not any(path.glob("*.safetensors")):
        pickles = sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth"))
        hint = f" (found {', '.join(pickles[:3])}: pickle formats are refused)" if pickles else ""
        raise InvalidModelError(f"base model: no *.safetensors weights in {path}{hint}")
    try:
        doc: dict[str, Any] = json.loads(config_path.read_text())
    except ValueError as err:
        raise InvalidModelError(f"base model: config.json is not valid JSON: {err}") from err
    return doc


def load_tokenizer(path: Path, *, trust_remote_code: bool) -> Any:
    from transformers import AutoTokenizer  # noqa: PLC0415 - heavy import, after env is set

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            str(path), local_files_only=True, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as err:
        raise InvalidModelError(f"base model: cannot load its tokenizer: {err}") from err
    if tokenizer.pad_token_id is None:
        # Padding only fills row tails whose labels are ignored; any id the model knows works.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(path: Path, *, config: RunConfig, device: torch.device, dtype: torch.dtype) -> Any:
    """The base causal LM on ``device``, ready for ``attach_method``."""
    from transformers import AutoModelForCausalLM  # noqa: PLC0415

    check_model_dir(path)
    kwargs: dict[str, Any] = {
        "local_files_only": True,
        "use_safetensors": True,
        "trust_remote_code": config.trust_remote_code,
        # Packed rows attend per example (see ``attention``); anything else falls back to SDPA.
        "attn_implementation": attention.NAME,
    }
    if config.method == "qlora":
        require_cuda_for_qlora(config)
        from transformers import BitsAndBytesConfig  # noqa: PLC0415

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True,
        )
        kwargs["device_map"] = {"": device.index or 0}
        kwargs["dtype"] = torch.bfloat16
    else:
        # Adapters train base weights frozen in the compute dtype; full fine-tuning keeps
        # fp32 master weights and runs the forward under autocast.
        kwargs["dtype"] = dtype if config.method == "lora" else torch.float32
    try:
        try:
            model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
        except ValueError as err:
            if attention.NAME not in str(err):
                raise
            # Remote-code models may not accept registered attention functions.
            log.warning("packed attention not supported by this model; using SDPA")
            model = AutoModelForCausalLM.from_pretrained(
                str(path), **{**kwargs, "attn_implementation": "sdpa"}
            )
    except (OSError, ValueError, KeyError) as err:
        raise InvalidModelError(f"base model: cannot load it: {err}") from err
    if config.method != "qlora":
        model.to(device)
    model.config.use_cache = False  # packed training needs it off; generation turns it on
    return model


def require_cuda_for_qlora(config: RunConfig) -> None:
    if config.method == "qlora" and not torch.cuda.is_available():
        raise InvalidConfigError(
            "qlora needs a CUDA device (4-bit bitsandbytes kernels): none is visible; "
            "use method lora on CPU or request resources.gpus"
        )


def lora_targets(target_modules: tuple[str, ...]) -> str | list[str]:
    """PEFT's spelling: the string ``all-linear`` or an explicit list of module names."""
    if ALL_LINEAR in target_modules:
        if len(target_modules) > 1:
            raise InvalidConfigError(
                "lora.targetModules: 'all-linear' cannot be combined with names"
            )
        return ALL_LINEAR
    if not target_modules:
        raise InvalidConfigError("lora.targetModules: name at least one module or 'all-linear'")
    return list(target_modules)


def attach_method(model: Any, *, config: RunConfig) -> Any:
    """Wrap the base model for its method; returns the model to train."""
    hp = config.hyperparameters
    if config.method in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training  # noqa: PLC0415

        if config.method == "qlora":
            model = prepare_model_for_kbit_training(
                model,
                use_gradient_checkpointing=hp.gradient_checkpointing,
                gradient_checkpointing_kwargs={"use_reentrant": False},
            )
        if config.lora.rank < 1:
            raise InvalidConfigError("lora.rank must be >= 1")
        if not 0 <= config.lora.dropout < 1:
            raise InvalidConfigError("lora.dropout must be in [0, 1)")
        lora = LoraConfig(
            r=config.lora.rank,
            lora_alpha=config.lora.alpha,
            lora_dropout=config.lora.dropout,
            target_modules=lora_targets(config.lora.target_modules),
            bias="none",
            task_type="CAUSAL_LM",
        )
        try:
            model = get_peft_model(model, lora)
        except ValueError as err:  # e.g. a target module name that does not exist
            raise InvalidConfigError(f"lora.targetModules: {err}") from err
    else:
        for parameter in model.parameters():
            parameter.requires_grad_(True)
    if hp.gradient_checkpointing and config.method != "qlora":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if config.method == "lora":
            # Frozen embeddings give the checkpointed blocks inputs without grad.
            model.enable_input_require_grads()
    return model


def packs_whole_batches(model: Any) -> bool:
    """Whether attention splits packed rows per example, so a micro-batch can be one row."""
    return bool(getattr(unwrap(model).config, "_attn_implementation", "") == attention.NAME)


def unwrap(model: Any) -> Any:
    """The underlying transformers model (without a PEFT or DDP wrapper)."""
    inner = getattr(model, "module", model)
    get_base = getattr(inner, "get_base_model", None)
    return get_base() if callable(get_base) else inner


def trainable_parameters(model: Any) -> dict[str, torch.Tensor]:
    """Name -> tensor of every parameter the optimizer updates, in a stable order."""
    inner = getattr(model, "module", model)
    return {name: p for name, p in inner.named_parameters() if p.requires_grad}


def parameter_counts(model: Any) -> dict[str, int]:
    inner = getattr(model, "module", model)
    total = sum(p.numel() for p in inner.parameters())
    trainable = sum(p.numel() for p in inner.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}
