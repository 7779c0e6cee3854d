"""Checkpoints under ``<run>/checkpoints/<step>/`` and resume from the newest complete one.

A checkpoint holds the trainable weights, the optimizer and scheduler state, each process's
RNG state and the data position (the global step fully determines it, see ``schedule``).
Everything is safetensors or JSON, never pickle. Every process uploads its own files; after a
barrier rank 0 writes ``COMPLETE`` last, listing each file with its SHA-256, so a checkpoint
cut short by a kill is simply ignored. Older checkpoints beyond ``keep`` are deleted after a
newer one is complete.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from kubetune.api import contract
from kubetune.trainer import runtime as rt
from kubetune.trainer.errors import InfraError
from kubetune.trainer.progress import now_rfc3339
from kubetune.trainer.storage import NotFoundError, Store, join, sha256_file

log = logging.getLogger(__name__)

TRAINABLE_FILE = "trainable.safetensors"
OPTIMIZER_TENSORS_FILE = "optimizer.safetensors"
OPTIMIZER_META_FILE = "optimizer.json"
SCHEDULER_FILE = "scheduler.json"
STATE_FILE = "state.json"


# ---------------------------------------------------------------- pure codecs


def optimizer_to_files(
    state_dict: dict[str, Any],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (safetensors) and JSON metadata."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state_dict["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    meta = {
        "param_groups": state_dict["param_groups"],
        "scalars": scalars,
        "indices": [int(i) for i in state_dict["state"]],
    }
    return tensors, meta


def optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(i): {} for i in meta["indices"]}
    for name, value in tensors.items():
        _, index, key = name.split(".", 2)
        state[int(index)][key] = value
    for index, values in meta["scalars"].items():
        state[int(index)].update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{index}"] = state
    version, internal, gauss = random.getstate()
    return tensors, {"python": [version, list(internal), gauss]}


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda _: None))


# ---------------------------------------------------------------- the store side


class Checkpointer:
    def __init__(
        self, *, store: Store, run_uri: str, work_dir: Path, runtime: rt.Runtime, keep: int
    ) -> None:
        self._store = store
        self._root = join(run_uri, contract.CHECKPOINTS_DIR) + "/"
        self._work = work_dir / "checkpoints" / f"rank{runtime.rank}"
        self._runtime = runtime
        self._keep = max(1, keep)

    def uri(self, step: int) -> str:
        return join(self._root, f"{step}") + "/"

    def complete_steps(self) -> list[int]:
        """Steps of every checkpoint whose completeness marker exists, ascending."""
        steps = set()
        for info in self._store.list(self._root):
            folder, _, name = info.relative.partition("/")
            if name == contract.CHECKPOINT_COMPLETE_MARKER and folder.isdigit():
                steps.add(int(folder))
        return sorted(steps)

    # ------------------------------------------------------------------ save

    def save(
        self,
        step: int,
        *,
        trainable: dict[str, torch.Tensor],
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        state: dict[str, Any],
    ) -> None:
        """Collective: every process calls it at the same step."""
        local = self._work / str(step)
        shutil.rmtree(local, ignore_errors=True)
        local.mkdir(parents=True)
        rank = self._runtime.rank
        rng_tensors, rng_meta = capture_rng()
        save_file(rng_tensors, str(local / f"rng-{rank}.safetensors"))
        (local / f"rng-{rank}.json").write_text(json.dumps(rng_meta))
        if self._runtime.is_main:
            save_file(
                {name: p.detach().cpu().contiguous() for name, p in trainable.items()},
                str(local / TRAINABLE_FILE),
                metadata={"step": str(step)},
            )
            tensors, meta = optimizer_to_files(optimizer.state_dict())
            save_file(tensors, str(local / OPTIMIZER_TENSORS_FILE))
            (local / OPTIMIZER_META_FILE).write_text(json.dumps(_json_safe(meta)))
            (local / SCHEDULER_FILE).write_text(json.dumps(_json_safe(scheduler.state_dict())))
            (local / STATE_FILE).write_text(json.dumps({**state, "createdAt": now_rfc3339()}))
        files = {}
        for path in sorted(local.iterdir()):
            self._store.upload_file(path, self.uri(step) + path.name)
            files[path.name] = {"sha256": sha256_file(path), "size": path.stat().st_size}
        gathered = rt.all_gather_object(self._runtime, files)
        if self._runtime.is_main:
            listing = {name: info for part in gathered for name, info in part.items()}
            marker = {"step": step, "files": listing, "worldSize": self._runtime.world_size}
            self._store.write_bytes(
                self.uri(step) + contract.CHECKPOINT_COMPLETE_MARKER,
                json.dumps(marker, sort_keys=True).encode(),
            )
            self._prune(newest=step)
        shutil.rmtree(local, ignore_errors=True)
        rt.barrier(self._runtime)
        log.info("checkpoint %d complete at %s", step, self.uri(step))

    def _prune(self, *, newest: int) -> None:
        complete = [s for s in self.complete_steps() if s <= newest]
        keep = set(complete[-self._keep :])
        folders = {
            int(info.relative.split("/", 1)[0])
            for info in self._store.list(self._root)
            if info.relative.split("/", 1)[0].isdigit()
        }
        for step in sorted(folders):
            # Incomplete folders older than the newest complete one are leftovers of a killed
            # attempt; newer ones may be another rank's upload in progress, so leave them.
            if step not in keep and step < newest:
                self._store.delete_prefix(self.uri(step))

    # ------------------------------------------------------------------ load

    def load_latest(
        self,
        *,
        trainable: dict[str, torch.Tensor],
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
    ) -> dict[str, Any] | None:
        """Restore the newest complete checkpoint; None only when there is none at all.

        A checkpoint that fails verification is skipped for the next older one (loudly);
        if every one fails, the run stops with an infrastructure error rather than silently
        starting from step 0.
        """
        steps = rt.broadcast_object(self._runtime, self.complete_steps())
        if not steps:
            return None
        failures = []
        for step in reversed(steps):
            try:
                local = self._download(step)
                ok = True
            except (InfraError, NotFoundError, ValueError) as err:
                failures.append(f"{step}: {err}")
                ok = False
            if all(rt.all_gather_object(self._runtime, ok)):
                break
            log.error("checkpoint %d is unusable (%s); trying an older one", step, failures[-1:])
        else:
            raise InfraError(
                "complete checkpoints exist but none can be restored (refusing to restart "
                f"from step 0): {'; '.join(failures)[:1000]}"
            )
        state = self._restore(local, trainable=trainable, optimizer=optimizer, scheduler=scheduler)
        shutil.rmtree(local, ignore_errors=True)
        return state

    def _download(self, step: int) -> Path:
        marker = json.loads(
            self._store.read_bytes(self.uri(step) + contract.CHECKPOINT_COMPLETE_MARKER)
        )
        local = self._work / f"restore-{step}"
        shutil.rmtree(local, ignore_errors=True)
        rank = self._runtime.rank
        wanted = [
            TRAINABLE_FILE,
            OPTIMIZER_TENSORS_FILE,
            OPTIMIZER_META_FILE,
            SCHEDULER_FILE,
            STATE_FILE,
            f"rng-{rank}.safetensors",
            f"rng-{rank}.json",
        ]
        for name in wanted:
            if name not in marker["files"]:
                if name.startswith("rng-"):
                    continue  # more processes than when it was written: fresh RNG is fine
                raise ValueError(f"{name} missing from the checkpoint listing")
            path = local / name
            self._store.download_file(self.uri(step) + name, path)
            if sha256_file(path) != marker["files"][name]["sha256"]:
                raise ValueError(f"{name} does not match its SHA-256")
        return local

    def _restore(
        self,
        local: Path,
        *,
        trainable: dict[str, torch.Tensor],
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
    ) -> dict[str, Any]:
        weights = load_file(str(local / TRAINABLE_FILE))
        if set(weights) != set(trainable):
            raise InfraError(
                "checkpoint does not match the model being trained (different trainable "
                f"parameters: {len(weights)} saved, {len(trainable)} now)"
            )
        with torch.no_grad():
            for name, parameter in trainable.items():
                parameter.copy_(weights[name].to(parameter.device, parameter.dtype))
        tensors = load_file(str(local / OPTIMIZER_TENSORS_FILE))
        meta = json.loads((local / OPTIMIZER_META_FILE).read_text())
        optimizer.load_state_dict(optimizer_from_files(tensors, meta))
        scheduler.load_state_dict(json.loads((local / SCHEDULER_FILE).read_text()))
        rank = self._runtime.rank
        if (local / f"rng-{rank}.safetensors").is_file():
            restore_rng(
                load_file(str(local / f"rng-{rank}.safetensors")),
                json.loads((local / f"rng-{rank}.json").read_text()),
            )
        state: dict[str, Any] = json.loads((local / STATE_FILE).read_text())
        return state
