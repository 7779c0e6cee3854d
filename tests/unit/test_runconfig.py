"""The run config codec: the operator/trainer contract.

Covers: round trip through JSON; defaults for omitted sections; unknown keys tolerated;
errors name the dotted field (type errors, missing required fields, cross-field rules, a
newer schema version).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubetune.api.runconfig import SCHEMA_VERSION, LoraConfig, RunConfig, RunConfigError


def minimal() -> dict[str, Any]:
    return {
        "schemaVersion": SCHEMA_VERSION,
        "jobNamespace": "acme-ml",
        "jobName": "support",
        "run": "support-g1",
        "generation": 1,
        "baseModelUri": "s3://models/tiny/",
        "trainUri": "s3://datasets/train.jsonl",
        "outputUri": "s3://adapters/support/",
    }


def test_round_trip_is_lossless() -> None:
    config = RunConfig.from_dict(
        {**minimal(), "lora": {"rank": 8, "targetModules": ["q_proj", "v_proj"]}}
    )
    assert config.lora == LoraConfig(rank=8, target_modules=("q_proj", "v_proj"))
    again = RunConfig.from_json(config.to_json())
    assert again == config
    assert json.loads(config.to_json())["hyperparameters"]["learningRate"] == 2e-4


def test_run_uri_joins_output_and_run() -> None:
    assert RunConfig.from_dict(minimal()).run_uri == "s3://adapters/support/support-g1/"


def test_unknown_keys_are_tolerated() -> None:
    config = RunConfig.from_dict({**minimal(), "futureField": 1, "lora": {"newKnob": True}})
    assert config.lora.rank == 16


@pytest.mark.parametrize(
    ("change", "field", "text"),
    [
        ({"schemaVersion": SCHEMA_VERSION + 1}, "schemaVersion", "upgrade the trainer"),
        ({"schemaVersion": None}, "schemaVersion", "missing"),
        ({"trainUri": None}, "trainUri", "is required"),
        ({"generation": "1"}, "generation", "must be a int"),
        ({"lora": {"rank": True}}, "lora.rank", "must be a int"),
        ({"lora": {"targetModules": "all-linear"}}, "lora.targetModules", "list of strings"),
        ({"hyperparameters": {"batchSize": 0}}, "hyperparameters.batchSize", ">= 1"),
        ({"hyperparameters": []}, "hyperparameters", "must be an object"),
        ({"method": "qlora"}, "method", "CUDA"),
        ({"trainUri": "https://example.com/t.jsonl"}, "trainUri", "must start with"),
        ({"run": "a/b"}, "run", "without '/'"),
        ({"validationSplit": 0.9}, "validationSplit", "between 0 and 0.5"),
    ],
)
def test_errors_name_the_field(change: dict[str, Any], field: str, text: str) -> None:
    doc = {**minimal(), **change}
    doc = {k: v for k, v in doc.items() if v is not None}
    with pytest.raises(RunConfigError) as err:
        RunConfig.from_dict(doc)
    assert err.value.field == field
    assert text in str(err.value)


def test_invalid_json_is_a_run_config_error() -> None:
    with pytest.raises(RunConfigError, match="not valid JSON"):
        RunConfig.from_json("{not json")
