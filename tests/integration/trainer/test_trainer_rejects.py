"""User errors end a run at once with exit code 42 and say exactly what to fix.

Covers: a deliberately broken training file: exit 42, reason InvalidDataset, the termination
message lists the problems with their file name and line numbers and fits the 4096-byte
limit, the full report is saved as data-report.json, and nothing is published (no adapter,
no manifest, no checkpoint); a missing training object; a run config the trainer cannot
accept (exit 42, reason InvalidConfig, naming the field) before any training starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubetune.api import contract

from .conftest import Assets, objects, run_config

GOOD = {
    "messages": [{"role": "user", "content": "Hours?"}, {"role": "assistant", "content": "7-23."}]
}
BROKEN_LINES = [
    json.dumps(GOOD),
    '{"messages": [{"role": "user", "content": "Is there a data cap?"}',
    json.dumps(
        {
            "messages": [
                {"role": "customer", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
            ]
        }
    ),
    json.dumps(GOOD).replace("Hours?", "Opening hours?"),
    json.dumps({"messages": [{"role": "user", "content": "Refund?"}]}),
    json.dumps({"prompt": "Cancel?", "completion": "Any time."}),
    json.dumps(
        {"messages": [{"role": "user", "content": "Price?"}, {"role": "assistant", "content": 35}]}
    ),
]


def test_broken_dataset_exits_42_with_line_numbers_and_publishes_nothing(
    assets: Assets, s3: Any, upload: Any, prefix: str, run_trainer: Any, tmp_path: Path
) -> None:
    broken = tmp_path / "train.jsonl"
    broken.write_text("\n".join(BROKEN_LINES) + "\n")
    config = run_config(
        prefix=prefix,
        model_uri=upload(assets.model, f"s3://models/{prefix}/tiny/"),
        train_uri=upload(broken, f"s3://datasets/{prefix}/train.jsonl"),
    )
    result = run_trainer(config)
    assert result.returncode == contract.EXIT_USER_ERROR, result.output[-3000:]
    doc = result.termination
    assert doc["status"] == "failed" and doc["reason"] == contract.REASON_INVALID_DATASET
    message = doc["message"]
    assert message.startswith("5 problems in the dataset: train.jsonl line 2: not valid JSON")
    for fragment in (
        "train.jsonl line 3: messages[0].role: 'customer' is not one of system, user, assistant",
        "train.jsonl line 5: the last message must be from the assistant",
        "train.jsonl line 6: expected a chat record",
        "train.jsonl line 7: messages[1].content must be a string, got a number",
    ):
        assert fragment in message
    line = (tmp_path / "a" / "termination-log").read_bytes()
    assert len(line) <= contract.TERMINATION_MESSAGE_MAX_BYTES and line.count(b"\n") == 1

    run = objects(s3, f"s3://adapters/{prefix}/support-g1/")
    assert set(run) == {contract.DATA_REPORT_FILE}  # the report, and nothing published
    report = json.loads(run[contract.DATA_REPORT_FILE])
    assert report["ok"] is False
    assert report["sources"]["train"]["problemsTotal"] == 5
    assert report["sources"]["train"]["validRecords"] == 2


def test_missing_training_data_is_a_user_error(
    assets: Assets, upload: Any, prefix: str, run_trainer: Any
) -> None:
    config = run_config(
        prefix=prefix,
        model_uri=f"s3://models/{prefix}/none/",
        train_uri=f"s3://datasets/{prefix}/absent.jsonl",
    )
    result = run_trainer(config)
    assert result.returncode == contract.EXIT_USER_ERROR, result.output[-3000:]
    assert result.termination["reason"] == contract.REASON_INVALID_DATASET
    assert (
        f"train data s3://datasets/{prefix}/absent.jsonl does not exist"
        in result.termination["message"]
    )


def test_invalid_run_config_exits_42_naming_the_field(prefix: str, run_trainer: Any) -> None:
    config = run_config(prefix=prefix, model_uri="s3://m/", train_uri="s3://d/t.jsonl")
    config["hyperparameters"]["batchSize"] = 0
    result = run_trainer(config)
    assert result.returncode == contract.EXIT_USER_ERROR
    assert result.termination == {
        "status": "failed",
        "reason": contract.REASON_INVALID_CONFIG,
        "message": "run config hyperparameters.batchSize: must be >= 1",
    }
