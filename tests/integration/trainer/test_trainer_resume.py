"""Kill the trainer mid-run and restart it: it resumes from the newest complete checkpoint.

Covers: a trainer process is SIGKILLed (no chance to clean up) right after a checkpoint's
COMPLETE marker appears in the object store; the restarted process resumes from the newest
complete checkpoint (never from 0): its log says so, progress.json and the manifest record
``resumedFromStep``, every metrics line after that step was written by the second process
and every earlier one survives from the first; the run ends at exactly the configured step
count and publishes one verifying adapter.
"""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path
from typing import Any

from kubetune.api import contract
from kubetune.trainer import manifest as mf

from .conftest import Assets, objects, read_termination, run_config, start_trainer

TOTAL_STEPS = 100
EVERY = 10


def complete_steps(s3: Any, bucket: str, key: str) -> list[int]:
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=key)
    return sorted(
        int(item["Key"][len(key) :].split("/")[0])
        for item in listing.get("Contents", [])
        if item["Key"].endswith("/" + contract.CHECKPOINT_COMPLETE_MARKER)
    )


def test_killed_trainer_resumes_from_its_checkpoint(
    assets: Assets, s3: Any, upload: Any, prefix: str, tmp_path: Path
) -> None:
    config = run_config(
        prefix=prefix,
        model_uri=upload(assets.model, f"s3://models/{prefix}/tiny/"),
        train_uri=upload(assets.train, f"s3://datasets/{prefix}/train.jsonl"),
        validationSplit=0.0,
        hyperparameters={"maxSteps": TOTAL_STEPS, "batchSize": 4},
        checkpointing={"everySteps": EVERY, "keep": 3},
    )
    checkpoints_key = f"{prefix}/support-g1/checkpoints/"
    first_dir = tmp_path / "first"
    first_dir.mkdir()
    first = start_trainer(first_dir, config)
    deadline = time.monotonic() + 240
    while not complete_steps(s3, "adapters", checkpoints_key):
        assert first.poll() is None, first.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL
    resumable = complete_steps(s3, "adapters", checkpoints_key)[-1]
    assert EVERY <= resumable < TOTAL_STEPS, resumable
    assert not objects(s3, f"s3://adapters/{prefix}/support-g1/adapter/")  # nothing published

    second_dir = tmp_path / "second"
    second_dir.mkdir()
    second = start_trainer(second_dir, config)
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output[-3000:]
    assert f"resuming from checkpoint step {resumable} of {TOTAL_STEPS}" in output
    steps_logged = [int(m) for m in re.findall(r"loop: step (\d+)/", output)]
    assert steps_logged[0] == resumable + 1 and steps_logged[-1] == TOTAL_STEPS

    run = objects(s3, f"s3://adapters/{prefix}/support-g1/")
    records = [json.loads(line) for line in run[contract.METRICS_FILE].splitlines()]
    history = [r for r in records if "loss" in r]  # step lines; evaluations have evalLoss
    assert [h["step"] for h in history] == list(range(1, TOTAL_STEPS + 1))
    assert {h["startedAtStep"] for h in history if h["step"] <= resumable} == {0}
    assert {h["startedAtStep"] for h in history if h["step"] > resumable} == {resumable}
    progress = json.loads(run[contract.PROGRESS_FILE])
    assert progress["resumedFromStep"] == resumable and progress["step"] == TOTAL_STEPS
    manifest = json.loads(run["adapter/manifest.json"])
    adapter = {k.removeprefix("adapter/"): v for k, v in run.items() if k.startswith("adapter/")}
    assert mf.verify(manifest, adapter) == []
    assert manifest["training"]["resumedFromStep"] == resumable
    assert manifest["training"]["steps"] == TOTAL_STEPS
    assert read_termination(second_dir)["status"] == "succeeded"
    print(f"killed after checkpoint {resumable}; resumed at step {steps_logged[0]}")
