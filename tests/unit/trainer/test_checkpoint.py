"""Checkpoints (``kubetune.trainer.checkpoint``) on a local output folder.

Covers: optimizer state split into safetensors + JSON and back, identical after a real AdamW
step; RNG capture/restore reproduces the same random numbers; save then load restores
weights, optimizer, scheduler and the data position; a folder without the COMPLETE marker
(a killed upload) is ignored; only the newest ``keep`` complete checkpoints survive; a
corrupt newest checkpoint falls back to the previous one, and when none can be restored the
trainer refuses to restart from step 0.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from kubetune.api import contract
from kubetune.trainer.checkpoint import (
    Checkpointer,
    capture_rng,
    optimizer_from_files,
    optimizer_to_files,
    restore_rng,
)
from kubetune.trainer.errors import InfraError
from kubetune.trainer.runtime import Runtime
from kubetune.trainer.storage import Store

SINGLE = Runtime(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), backend=None)


def trained(
    seed: int = 0,
) -> tuple[torch.nn.Linear, torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    torch.manual_seed(seed)
    layer = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    for _ in range(2):
        layer(torch.randn(5, 4)).pow(2).sum().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return layer, optimizer, scheduler


def test_optimizer_state_round_trip() -> None:
    _, optimizer, _ = trained()
    tensors, meta = optimizer_to_files(optimizer.state_dict())
    restored = optimizer_from_files(tensors, json.loads(json.dumps(meta)))
    original = optimizer.state_dict()
    assert restored["param_groups"][0]["lr"] == original["param_groups"][0]["lr"]
    for index, entry in original["state"].items():
        for key, value in entry.items():
            torch.testing.assert_close(restored["state"][index][key], value)


def test_rng_round_trip() -> None:
    tensors, meta = capture_rng()
    expected = (torch.rand(3), random.random())
    restore_rng(tensors, json.loads(json.dumps(meta)))
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]


def checkpointer(tmp_path: Path, keep: int = 2) -> Checkpointer:
    return Checkpointer(
        store=Store(),
        run_uri=f"{tmp_path}/out/run/",
        work_dir=tmp_path / "work",
        runtime=SINGLE,
        keep=keep,
    )


def save(ckpt: Checkpointer, step: int, layer: torch.nn.Module, optimizer, scheduler) -> None:
    ckpt.save(
        step,
        trainable=dict(layer.named_parameters()),
        optimizer=optimizer,
        scheduler=scheduler,
        state={"step": step, "trainSha256": "abc"},
    )


def test_save_and_resume_restore_everything(tmp_path: Path) -> None:
    layer, optimizer, scheduler = trained(seed=0)
    ckpt = checkpointer(tmp_path)
    save(ckpt, 7, layer, optimizer, scheduler)
    fresh, fresh_optimizer, fresh_scheduler = trained(seed=1)
    state = ckpt.load_latest(
        trainable=dict(fresh.named_parameters()),
        optimizer=fresh_optimizer,
        scheduler=fresh_scheduler,
    )
    assert state is not None and state["step"] == 7 and state["trainSha256"] == "abc"
    torch.testing.assert_close(fresh.weight, layer.weight)
    assert fresh_scheduler.last_epoch == scheduler.last_epoch == 2
    assert fresh_scheduler.get_last_lr() == scheduler.get_last_lr()
    marker = json.loads((tmp_path / "out/run/checkpoints/7/COMPLETE").read_text())
    assert set(marker["files"]) >= {
        "trainable.safetensors",
        "optimizer.safetensors",
        "rng-0.safetensors",
    }


def test_incomplete_checkpoints_are_ignored_and_old_ones_pruned(tmp_path: Path) -> None:
    layer, optimizer, scheduler = trained()
    ckpt = checkpointer(tmp_path, keep=2)
    for step in (5, 10, 15):
        save(ckpt, step, layer, optimizer, scheduler)
    # A later checkpoint whose upload was cut short: files but no marker.
    partial = tmp_path / "out/run/checkpoints/20"
    partial.mkdir()
    (partial / "trainable.safetensors").write_bytes(b"half")
    assert ckpt.complete_steps() == [10, 15]
    state = ckpt.load_latest(
        trainable=dict(layer.named_parameters()), optimizer=optimizer, scheduler=scheduler
    )
    assert state is not None and state["step"] == 15
    assert sorted(p.name for p in (tmp_path / "out/run/checkpoints").iterdir()) == [
        "10",
        "15",
        "20",
    ]


def test_corrupt_newest_falls_back_then_refuses_step_zero(tmp_path: Path) -> None:
    layer, optimizer, scheduler = trained()
    ckpt = checkpointer(tmp_path)
    save(ckpt, 5, layer, optimizer, scheduler)
    save(ckpt, 10, layer, optimizer, scheduler)
    (tmp_path / "out/run/checkpoints/10/trainable.safetensors").write_bytes(b"garbage")
    state = ckpt.load_latest(
        trainable=dict(layer.named_parameters()), optimizer=optimizer, scheduler=scheduler
    )
    assert state is not None and state["step"] == 5
    (tmp_path / "out/run/checkpoints/5/optimizer.json").write_text("{}")
    with pytest.raises(InfraError, match="refusing to restart from step 0"):
        ckpt.load_latest(
            trainable=dict(layer.named_parameters()), optimizer=optimizer, scheduler=scheduler
        )


def test_no_checkpoint_means_a_fresh_start(tmp_path: Path) -> None:
    layer, optimizer, scheduler = trained()
    assert (
        checkpointer(tmp_path).load_latest(
            trainable=dict(layer.named_parameters()), optimizer=optimizer, scheduler=scheduler
        )
        is None
    )
    assert contract.CHECKPOINT_COMPLETE_MARKER == "COMPLETE"
