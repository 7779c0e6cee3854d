"""Step arithmetic, data order and the learning-rate schedule (``kubetune.trainer.schedule``).

Covers: total steps from epochs or maxSteps, with accumulation and several processes; epoch
orders are permutations, fixed by (seed, epoch); shards of one epoch are disjoint and cover
every example; a micro-batch is a pure function of its index (what makes resume exact);
warmup and the cosine/linear/constant decay at their landmarks; unknown schedulers refused.
"""

from __future__ import annotations

import pytest

from kubetune.trainer import schedule


@pytest.mark.parametrize(
    ("examples", "epochs", "max_steps", "batch", "accum", "world", "expected"),
    [
        (100, 1.0, 0, 10, 1, 1, 10),
        (100, 3.0, 0, 10, 1, 1, 30),
        (101, 1.0, 0, 10, 1, 1, 11),
        (100, 1.0, 0, 10, 2, 1, 5),
        (100, 1.0, 0, 10, 1, 2, 5),
        (100, 1.5, 0, 10, 1, 1, 15),
        (100, 3.0, 7, 10, 1, 1, 7),  # maxSteps wins
        (3, 1.0, 0, 8, 1, 1, 1),
    ],
)
def test_total_steps(
    examples: int, epochs: float, max_steps: int, batch: int, accum: int, world: int, expected: int
) -> None:
    got = schedule.total_steps(
        examples=examples,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch,
        accumulation=accum,
        world_size=world,
    )
    assert got == expected


def test_epoch_orders_are_seeded_permutations() -> None:
    first = schedule.epoch_order(50, seed=1, epoch=0)
    assert sorted(first) == list(range(50))
    assert first == schedule.epoch_order(50, seed=1, epoch=0)
    assert first != schedule.epoch_order(50, seed=1, epoch=1)
    assert first != schedule.epoch_order(50, seed=2, epoch=0)


@pytest.mark.parametrize(("examples", "world"), [(10, 2), (11, 2), (7, 3), (5, 1)])
def test_shards_are_disjoint_and_complete(examples: int, world: int) -> None:
    order = schedule.epoch_order(examples, seed=3, epoch=0)
    shards = [schedule.shard(order, rank=r, world_size=world) for r in range(world)]
    assert len({len(s) for s in shards}) == 1  # equal lengths keep collectives in step
    assert set().union(*shards) == set(range(examples))
    padding = len(shards[0]) * world - examples
    assert sum(len(s) for s in shards) - len(set().union(*shards)) == padding


def test_micro_batches_are_a_function_of_their_index() -> None:
    kwargs = {"examples": 24, "batch_size": 4, "seed": 9, "world_size": 2}
    per_epoch = schedule.micro_batches_per_epoch(24, batch_size=4, world_size=2)
    assert per_epoch == 3
    seen = [schedule.micro_batch(i, rank=0, **kwargs) for i in range(2 * per_epoch)]
    assert [epoch for epoch, _ in seen] == [0, 0, 0, 1, 1, 1]
    assert seen[4] == schedule.micro_batch(4, rank=0, **kwargs)  # resume lands here exactly
    rank1 = [schedule.micro_batch(i, rank=1, **kwargs)[1] for i in range(per_epoch)]
    assert not set().union(*(b for _, b in seen[:3])) & set().union(*rank1)


@pytest.mark.parametrize(
    ("kind", "step", "expected"),
    [
        ("cosine", 0, 0.5),  # warmup: (step + 1) / warmup
        ("cosine", 1, 1.0),
        ("cosine", 2, 1.0),
        ("cosine", 6, 0.5),
        ("cosine", 10, 0.0),
        ("linear", 6, 0.5),
        ("linear", 10, 0.0),
        ("constant", 9, 1.0),
    ],
)
def test_lr_multiplier(kind: str, step: int, expected: float) -> None:
    got = schedule.lr_multiplier(step, total=10, warmup=2, kind=kind)
    assert got == pytest.approx(expected)


def test_warmup_steps_and_unknown_schedulers() -> None:
    assert schedule.warmup_steps(100, 0.03) == 3
    assert schedule.warmup_steps(100, 0.0) == 0
    with pytest.raises(ValueError, match="unknown lr scheduler 'step'"):
        schedule.lr_multiplier(0, total=10, warmup=0, kind="step")
