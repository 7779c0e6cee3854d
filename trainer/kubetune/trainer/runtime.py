"""Process topology, device and precision: who am I in a multi-process run, and on what.

One process per GPU (or a few CPU processes in tests) is started by torchrun, directly or via
``launch``; ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` come from it. The collective helpers below
are no-ops in a single process, so the rest of the trainer never branches on world size.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from kubetune.api import contract
from kubetune.trainer.errors import InfraError, InvalidConfigError, UserError

T = TypeVar("T")

COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)
"""Generous: rank 0 may be publishing or evaluating while the others wait."""


@dataclass(frozen=True)
class Runtime:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_local_main(self) -> bool:
        return self.local_rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_runtime(*, want_gpu: bool) -> Runtime:
    """Read torchrun's environment, pick the device and join the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if want_gpu and not torch.cuda.is_available():
        # Training an 8B model on CPU by accident would "work" for days; a node without a
        # working driver or device plugin is an infrastructure fault the Job should retry.
        raise InfraError("the run asks for GPUs but no CUDA device is visible in this pod")
    use_cuda = want_gpu
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    backend = None
    if world > 1:
        backend = "nccl" if use_cuda else "gloo"
        if not dist.is_initialized():
            kwargs: dict[str, Any] = {"backend": backend, "timeout": COLLECTIVE_TIMEOUT}
            if use_cuda:
                kwargs["device_id"] = device
            dist.init_process_group(**kwargs)
    return Runtime(rank, world, local_rank, device, backend)


def shutdown(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(runtime: Runtime) -> None:
    if runtime.distributed:
        dist.barrier()


def all_reduce_sum(runtime: Runtime, values: torch.Tensor) -> torch.Tensor:
    """Sum across processes (in place) and return it; a copy-free no-op when alone."""
    if runtime.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_gather_object(runtime: Runtime, value: Any) -> list[Any]:
    if not runtime.distributed:
        return [value]
    out: list[Any] = [None] * runtime.world_size
    dist.all_gather_object(out, value)
    return out


def broadcast_object(runtime: Runtime, value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not runtime.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def compute_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype the forward pass runs in: bf16 on GPUs that have it, fp32 on CPU."""
    on_cuda = device.type == "cuda"
    if precision == "auto":
        if on_cuda:
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if precision == "fp16" and not on_cuda:
        raise InvalidConfigError(
            "hyperparameters.precision fp16 needs a CUDA device; use fp32 or bf16 on CPU"
        )
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def collective(
    runtime: Runtime,
    work: Callable[[], T],
    *,
    on: bool,
    then_all: Callable[[], T] | None = None,
) -> T:
    """Run ``work`` where ``on`` is true, then share success or the error with every process.

    ``then_all``, if given, runs on the other processes after the first ones succeeded (for
    example staging from the node-local cache the first process filled).
    """
    value: Any = None
    outcome: tuple[str, str, str] | None = None
    if on:
        try:
            value = work()
        except UserError as err:
            outcome = ("user", err.reason, err.message)
            failure: BaseException = err
        except Exception as err:
            outcome = ("infra", contract.REASON_INFRA_ERROR, f"{type(err).__name__}: {err}")
            failure = err
    outcomes = all_gather_object(runtime, outcome)
    if outcome is not None:
        raise failure
    for other in outcomes:
        if other is None:
            continue
        kind, reason, message = other
        if kind == "user":
            raise UserError(reason, message)
        raise InfraError(f"another process failed: {message}")
    if not on and then_all is not None:
        value = then_all()
    return value  # type: ignore[no-any-return]
