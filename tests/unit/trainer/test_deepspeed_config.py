"""DeepSpeed ZeRO configurations generated from the run config (``deepspeed_config``).

Covers: the stage chosen per method (adapters ZeRO-2, full fine-tuning ZeRO-3); the batch
identity DeepSpeed enforces (train = micro x accumulation x world) across topologies;
stage-specific keys (stage 3 gathers 16-bit weights for saving); precision and optimizer
settings taken from the run config; no "auto" placeholders; unsupported stages refused; the
command line prints the config of a run-config file.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubetune.api.runconfig import SCHEMA_VERSION, RunConfig
from kubetune.trainer.deepspeed_config import deepspeed_config, main, zero_stage


def config(**overrides: Any) -> RunConfig:
    doc = {
        "schemaVersion": SCHEMA_VERSION,
        "jobNamespace": "ns",
        "jobName": "j",
        "run": "r",
        "generation": 1,
        "baseModelUri": "s3://m/",
        "trainUri": "s3://d/t.jsonl",
        "outputUri": "s3://a/",
        "gpus": 8,
    }
    doc.update(overrides)
    return RunConfig.from_dict(doc)


@pytest.mark.parametrize(("method", "stage"), [("lora", 2), ("qlora", 2), ("full", 3)])
def test_stage_per_method(method: str, stage: int) -> None:
    assert zero_stage(config(method=method)) == stage
    assert deepspeed_config(config(method=method))["zero_optimization"]["stage"] == stage


@pytest.mark.parametrize(
    ("batch", "accum", "nodes", "per_node", "train_batch"),
    [(8, 1, 1, 1, 8), (4, 2, 1, 8, 64), (2, 4, 4, 8, 256)],
)
def test_batch_identity(
    batch: int, accum: int, nodes: int, per_node: int, train_batch: int
) -> None:
    generated = deepspeed_config(
        config(
            hyperparameters={"batchSize": batch, "gradientAccumulationSteps": accum},
            distributed={"nodes": nodes, "processesPerNode": per_node},
        )
    )
    assert generated["train_micro_batch_size_per_gpu"] == batch
    assert generated["gradient_accumulation_steps"] == accum
    assert generated["train_batch_size"] == train_batch


def test_stage_specific_keys_precision_and_optimizer() -> None:
    three = deepspeed_config(config(method="full", hyperparameters={"learningRate": 1e-5}))
    assert three["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert "allgather_partitions" not in three["zero_optimization"]
    assert three["optimizer"]["params"]["lr"] == 1e-5
    assert three["bf16"] == {"enabled": True} and three["fp16"] == {"enabled": False}
    two = deepspeed_config(config(), bf16=False)
    assert two["zero_optimization"]["reduce_scatter"] is True
    assert two["bf16"] == {"enabled": False}
    assert '"auto"' not in json.dumps(two) + json.dumps(three)


def test_command_line_prints_the_config(tmp_path: Any, capsys: Any) -> None:
    path = tmp_path / "run-config.json"
    path.write_text(config(method="full").to_json())
    assert main(["--config", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["zero_optimization"]["stage"] == 3


def test_stage_override_and_refusal() -> None:
    assert deepspeed_config(config(), stage=3)["zero_optimization"]["stage"] == 3
    with pytest.raises(ValueError, match="ZeRO stage 1 is not generated"):
        deepspeed_config(config(), stage=1)
