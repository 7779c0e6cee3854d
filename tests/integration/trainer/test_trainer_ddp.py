"""Two CPU processes with the gloo backend: the same trainer code, data-parallel.

Covers: a run config asking for two processes makes ``python -m kubetune.trainer`` launch two
torchrun workers (gloo on CPU) and report for both; each rank trained on its own, disjoint
shard of the data; gradients were averaged (both replicas end with identical adapter
weights); the batch sizes resolve for two processes; every rank's RNG state is in each
checkpoint; exactly one adapter with a verifying manifest is published.
"""

from __future__ import annotations

import json
from typing import Any

from kubetune.api import contract
from kubetune.trainer import manifest as mf

from .conftest import Assets, objects, run_config


def test_two_gloo_processes_train_one_adapter(
    assets: Assets, s3: Any, upload: Any, prefix: str, run_trainer: Any
) -> None:
    config = run_config(
        prefix=prefix,
        model_uri=upload(assets.model, f"s3://models/{prefix}/tiny/"),
        train_uri=upload(assets.train, f"s3://datasets/{prefix}/train.jsonl"),
        hyperparameters={"maxSteps": 12, "batchSize": 4},
        checkpointing={"everySteps": 6, "keep": 2},
        distributed={"nodes": 1, "processesPerNode": 2},
    )
    result = run_trainer(config, timeout=400)
    assert result.returncode == 0, result.output[-4000:]
    assert "[rank 1]" in result.output and "[rank 0]" in result.output
    assert result.termination["status"] == "succeeded"

    run = objects(s3, f"s3://adapters/{prefix}/support-g1/")
    adapter = {k.removeprefix("adapter/"): v for k, v in run.items() if k.startswith("adapter/")}
    manifest = json.loads(adapter[contract.MANIFEST_FILE])
    assert mf.verify(manifest, adapter) == []
    assert result.termination["digest"] == mf.digest(adapter[contract.MANIFEST_FILE])

    training = manifest["training"]
    assert training["worldSize"] == 2 and training["replicasInSync"] is True
    shards = sorted(training["shards"], key=lambda s: s["rank"])
    assert [s["rank"] for s in shards] == [0, 1]
    assert shards[0]["sha256"] != shards[1]["sha256"]
    assert not set(shards[0]["sampleLines"]) & set(shards[1]["sampleLines"])
    assert sum(s["examples"] for s in shards) >= manifest["datasets"]["train"]["records"]
    assert manifest["hyperparameters"]["effectiveBatchSize"] == 8

    for step in ("6", "12"):
        marker = json.loads(run[f"checkpoints/{step}/{contract.CHECKPOINT_COMPLETE_MARKER}"])
        assert marker["worldSize"] == 2
        assert {"rng-0.safetensors", "rng-1.safetensors"} <= set(marker["files"])
    records = [json.loads(line) for line in run[contract.METRICS_FILE].splitlines()]
    history = [r for r in records if "loss" in r]  # step lines; evaluations have evalLoss
    assert [h["step"] for h in history] == list(range(1, 13))  # one writer: rank 0
