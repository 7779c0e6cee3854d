"""The engine's model registry: one base model, the LoRA adapters loaded into it at runtime,
and the only thread that ever touches them.

Every forward pass, adapter load and adapter unload runs on a single worker thread, one job at
a time. A job selects its request's adapter and runs one decode step, so requests to different
adapters interleave token by token and each step sees exactly its own adapter: no lock can be
forgotten and no step can observe another request's adapter selection.

Adapters live in PEFT under internal slot names, not under their public names: an unload
removes the public name at once (new requests get 404, like vLLM) while requests already
decoding with it finish, and the slot's weights are deleted when the last one ends. A later
load under the same public name therefore never collides with weights still in use.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import torch
import transformers
from packaging.version import Version
from peft import PeftConfig, PeftModel, set_peft_model_state_dict
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache, PreTrainedTokenizerBase

from kubetune.serving.adapter_config import ADAPTER_WEIGHTS_FILE
from kubetune.serving.engine.adapters import AdapterFolder, AdapterRequestError
from kubetune.serving.engine.requests import SamplingParams
from kubetune.serving.engine.sampling import pick_token

log = logging.getLogger(__name__)

# We select the adapter per decode step ourselves; PEFT's notice that it picked another
# active adapter after a delete is noise here.
warnings.filterwarnings("ignore", message=r"Adapter .* was active which is now deleted")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# transformers 4.56 renamed from_pretrained's torch_dtype to dtype; older releases ignore dtype.
_DTYPE_KW = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


class UnknownModelError(LookupError):
    """No base model or adapter of that name is served."""


class AdapterGoneError(RuntimeError):
    """The adapter a request was decoding with has been deleted under it."""


@dataclass(frozen=True)
class LoadedAdapter:
    name: str
    path: str
    rank: int
    slot: str
    created: int


@dataclass
class Sequence:
    """One request's decode state. Its tensors are only touched on the model thread."""

    model_name: str
    slot: str | None  # None: the base model
    params: SamplingParams
    pending: list[int]  # tokens not yet fed to the model: the prompt, then the last pick
    generator: torch.Generator | None = None
    cache: Any = None
    released: bool = field(default=False, repr=False)


class ModelRegistry:
    """Load with ``ModelRegistry.load(...)``; close with ``close()``."""

    def __init__(
        self,
        *,
        model: Any,
        tokenizer: PreTrainedTokenizerBase,
        served_name: str,
        model_path: str,
        max_lora_rank: int,
        max_model_len: int,
    ) -> None:
        self.served_name = served_name
        self.model_path = model_path
        self.max_lora_rank = max_lora_rank
        self.max_model_len = max_model_len
        self.tokenizer = tokenizer
        self.created = int(time.time())
        self._base = model
        self._peft: PeftModel | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._adapters: dict[str, LoadedAdapter] = {}
        self._loading: set[str] = set()
        self._users: Counter[str] = Counter()
        self._retired: set[str] = set()
        self._slots = itertools.count(1)
        self._active_slot: str | None = None
        # transformers 5 renamed the cache argument; older releases only know the old name.
        params = inspect.signature(type(model).forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self.eos_token_ids = _eos_ids(model, tokenizer)

    @classmethod
    def load(
        cls,
        model_dir: Path,
        *,
        served_name: str,
        max_lora_rank: int,
        dtype: str = "float32",
        max_model_len: int | None = None,
    ) -> ModelRegistry:
        # Customer models load offline and never run code shipped with the weights.
        tokenizer = AutoTokenizer.from_pretrained(
            model_dir, local_files_only=True, trust_remote_code=False
        )
        model = AutoModelForCausalLM.from_pretrained(
            model_dir,
            local_files_only=True,
            trust_remote_code=False,
            **{_DTYPE_KW: DTYPES[dtype]},
        )
        model.train(False)  # inference: no dropout
        limit = max_model_len or int(getattr(model.config, "max_position_embeddings", 2048))
        return cls(
            model=model,
            tokenizer=tokenizer,
            served_name=served_name,
            model_path=str(model_dir),
            max_lora_rank=max_lora_rank,
            max_model_len=limit,
        )

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ names

    def adapters(self) -> list[LoadedAdapter]:
        return sorted(self._adapters.values(), key=lambda a: (a.created, a.name))

    def is_loaded(self, name: str) -> bool:
        return name in self._adapters or name in self._loading

    def model_cards(self) -> list[dict[str, Any]]:
        """``/v1/models`` entries: the base model, then each adapter with its parent."""
        cards = [
            {
                "id": self.served_name,
                "object": "model",
                "created": self.created,
                "owned_by": "kubetune",
                "root": self.model_path,
                "parent": None,
                "max_model_len": self.max_model_len,
                "permission": [],
            }
        ]
        cards += [
            {
                "id": a.name,
                "object": "model",
                "created": a.created,
                "owned_by": "kubetune",
                "root": a.path,
                "parent": self.served_name,
                "max_model_len": None,
                "permission": [],
            }
            for a in self.adapters()
        ]
        return cards

    # ------------------------------------------------------------------ adapters

    async def load_adapter(self, name: str, folder: AdapterFolder) -> None:
        if name in self._adapters or name in self._loading:
            raise AdapterRequestError(
                f"The lora adapter '{name}' has already been loaded.", err_type="InvalidUserInput"
            )
        if name == self.served_name:
            raise AdapterRequestError(
                f"'{name}' is the base model's name", err_type="InvalidUserInput"
            )
        self._loading.add(name)
        slot = f"slot{next(self._slots)}"
        try:
            await self._run(self._attach, slot, folder.path)
        finally:
            self._loading.discard(name)
        self._adapters[name] = LoadedAdapter(
            name=name, path=str(folder.path), rank=folder.rank, slot=slot, created=int(time.time())
        )
        log.info("loaded LoRA adapter %s (rank %d) from %s", name, folder.rank, folder.path)

    async def unload_adapter(self, name: str) -> None:
        adapter = self._adapters.pop(name, None)
        if adapter is None:
            raise AdapterRequestError(
                f"The lora adapter '{name}' cannot be found.",
                status=HTTPStatus.NOT_FOUND,
                err_type="NotFoundError",
            )
        log.info("unloaded LoRA adapter %s", name)
        if self._users[adapter.slot]:
            # Requests still decoding with it finish first; the last one deletes the slot.
            self._retired.add(adapter.slot)
        else:
            await self._run(self._detach, adapter.slot)

    # ------------------------------------------------------------------ decoding

    @contextlib.contextmanager
    def sequence(
        self, *, model_name: str, prompt_ids: list[int], params: SamplingParams
    ) -> Iterator[Sequence]:
        """A decode state for ``model_name`` that holds its adapter until the block ends."""
        if model_name == self.served_name:
            slot = None
        elif model_name in self._adapters:
            slot = self._adapters[model_name].slot
        else:
            raise UnknownModelError(model_name)
        generator = None
        if params.seed is not None and not params.greedy:
            generator = torch.Generator().manual_seed(params.seed)
        seq = Sequence(
            model_name=model_name,
            slot=slot,
            params=params,
            pending=list(prompt_ids),
            generator=generator,
        )
        if slot is not None:
            self._users[slot] += 1
        try:
            yield seq
        finally:
            self._release(seq)

    async def next_token(self, seq: Sequence) -> int:
        """Feed the pending tokens, pick the next one; the pick becomes the next pending."""
        token = int(await self._run(self._step, seq))
        seq.pending = [token]
        return token

    def _release(self, seq: Sequence) -> None:
        if seq.released or seq.slot is None:
            return
        seq.released = True
        self._users[seq.slot] -= 1
        if self._users[seq.slot] == 0 and seq.slot in self._retired:
            del self._users[seq.slot]
            # The worker runs jobs in order, so no later step can see the deleted slot.
            future = self._worker.submit(self._detach, seq.slot)
            future.add_done_callback(_log_failure)

    # ------------------------------------------------------------------ model thread

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    def _step(self, seq: Sequence) -> int:
        if seq.cache is None:
            seq.cache = DynamicCache()
        inputs = torch.tensor([seq.pending], dtype=torch.long)
        kwargs = {"input_ids": inputs, self._cache_kw: seq.cache, "use_cache": True}
        with torch.inference_mode():
            if seq.slot is None:
                if self._peft is None:
                    out = self._base(**kwargs)
                else:
                    with self._peft.disable_adapter():
                        out = self._peft(**kwargs)
            else:
                if self._peft is None or seq.slot not in self._peft.peft_config:
                    raise AdapterGoneError(f"adapter {seq.model_name} was deleted")
                if self._active_slot != seq.slot:
                    self._peft.set_adapter(seq.slot)
                    self._active_slot = seq.slot
                out = self._peft(**kwargs)
            logits = out.logits[0, -1]
            return pick_token(logits, params=seq.params, generator=seq.generator)

    def _attach(self, slot: str, path: Path) -> None:
        try:
            config = PeftConfig.from_pretrained(str(path))
            config.inference_mode = True
            if self._peft is None:
                self._peft = PeftModel(self._base, config, adapter_name=slot)
            else:
                self._peft.add_adapter(slot, config)
            weights = load_file(str(path / ADAPTER_WEIGHTS_FILE))
            result: Any = set_peft_model_state_dict(self._peft, weights, adapter_name=slot)
            unexpected = list(result.unexpected_keys)
            missing = [k for k in result.missing_keys if f".{slot}." in k and "lora_" in k]
            if unexpected or missing:
                raise ValueError(
                    f"adapter weights do not match the base model (unexpected: "
                    f"{unexpected[:3]}, missing: {missing[:3]})"
                )
        except Exception as err:
            self._detach(slot)
            raise AdapterRequestError(f"{path}: cannot load adapter: {_first_lines(err)}") from err
        self._peft.train(False)
        self._active_slot = None

    def _detach(self, slot: str) -> None:
        self._retired.discard(slot)
        if self._peft is None or slot not in self._peft.peft_config:
            return
        if list(self._peft.peft_config) == [slot]:
            # PEFT cannot hold zero adapters; removing the last one restores the plain model.
            self._base = self._peft.unload()
            self._peft = None
        else:
            self._peft.delete_adapter(slot)
        self._active_slot = None


def _eos_ids(model: Any, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    generation = getattr(model, "generation_config", None)
    configured = getattr(generation, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif isinstance(configured, list):
        ids.update(int(i) for i in configured)
    return frozenset(ids)


def _log_failure(future: Any) -> None:
    if future.exception() is not None:
        log.error("deleting a retired adapter failed", exc_info=future.exception())


def _first_lines(err: BaseException, lines: int = 3) -> str:
    """PyTorch lists every mismatched tensor; the first few say enough for an API answer."""
    text = str(err).strip().splitlines()
    more = f" ... ({len(text) - lines} more lines)" if len(text) > lines else ""
    return " ".join(line.strip() for line in text[:lines]) + more
