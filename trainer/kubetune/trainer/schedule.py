"""Step arithmetic, data order and learning-rate schedule: pure functions of the run config.

The data order of every epoch is a permutation derived from (seed, epoch) and each process
takes a strided shard of it, so "where are we in the data" is fully described by the global
micro-batch counter. That is what makes resume exact without saving a data loader.
"""

from __future__ import annotations

import math
import random

SCHEDULERS = ("cosine", "linear", "constant")


def shard_size(examples: int, world_size: int) -> int:
    """Examples per process per epoch: the shards are padded by wrapping to equal length."""
    return math.ceil(examples / world_size)


def micro_batches_per_epoch(examples: int, *, batch_size: int, world_size: int) -> int:
    return max(1, math.ceil(shard_size(examples, world_size) / batch_size))


def total_steps(
    *,
    examples: int,
    epochs: float,
    max_steps: int,
    batch_size: int,
    accumulation: int,
    world_size: int,
) -> int:
    if max_steps > 0:
        return max_steps
    per_epoch = micro_batches_per_epoch(examples, batch_size=batch_size, world_size=world_size)
    return max(1, math.ceil(epochs * per_epoch / accumulation))


def epoch_order(examples: int, *, seed: int, epoch: int) -> list[int]:
    """A permutation of range(examples); a string seed makes it independent of hash seeds."""
    order = list(range(examples))
    random.Random(f"kubetune:{seed}:{epoch}").shuffle(order)  # noqa: S311 - not secrets
    return order


def shard(order: list[int], *, rank: int, world_size: int) -> list[int]:
    """Strided shard for ``rank``; the order is padded by wrapping so all shards are equal."""
    if not order:
        return []
    size = shard_size(len(order), world_size) * world_size
    padded = [order[i % len(order)] for i in range(size)]
    return padded[rank::world_size]


def micro_batch(
    index: int, *, examples: int, batch_size: int, seed: int, rank: int, world_size: int
) -> tuple[int, list[int]]:
    """(epoch, example indices) of this process's ``index``-th micro-batch since the start."""
    per_epoch = micro_batches_per_epoch(examples, batch_size=batch_size, world_size=world_size)
    epoch, position = divmod(index, per_epoch)
    mine = shard(epoch_order(examples, seed=seed, epoch=epoch), rank=rank, world_size=world_size)
    return epoch, mine[position * batch_size : (position + 1) * batch_size]


def warmup_steps(total: int, ratio: float) -> int:
    return math.ceil(total * ratio) if ratio > 0 else 0


def lr_multiplier(step: int, *, total: int, warmup: int, kind: str) -> float:
    """Factor applied to the peak learning rate for optimizer step ``step`` (0-based)."""
    if kind not in SCHEDULERS:
        raise ValueError(f"unknown lr scheduler {kind!r}; use one of {', '.join(SCHEDULERS)}")
    if step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))
