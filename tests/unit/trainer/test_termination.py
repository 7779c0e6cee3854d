"""Termination messages and the multi-process outcome (``termination`` and ``launch``).

Covers: one compact JSON line; a huge (multi-byte) message is shortened to fit 4096 bytes
while status, reason and structured fields survive; writing to the path in
KUBETUNE_TERMINATION_LOG; the launcher's combination of worker outcomes into one exit code
(a user error anywhere wins; success needs rank 0's success and torchrun's exit 0).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubetune.api import contract
from kubetune.trainer import launch, termination


def test_short_documents_are_one_compact_line() -> None:
    line = termination.render(termination.failed("InvalidDataset", "line 7: bad"))
    assert "\n" not in line
    assert json.loads(line) == {
        "status": "failed",
        "reason": "InvalidDataset",
        "message": "line 7: bad",
    }


@pytest.mark.parametrize("char", ["x", "é", "\u2603", "\n"])
def test_long_messages_are_shortened_to_fit(char: str) -> None:
    doc = termination.succeeded(
        adapter_uri="s3://adapters/a/r/adapter/",
        digest="sha256:" + "a" * 64,
        metrics={"evalLoss": 1.2},
        message=char * 20000,
    )
    line = termination.render(doc)
    assert len(line.encode()) <= contract.TERMINATION_MESSAGE_MAX_BYTES
    decoded = json.loads(line)
    assert decoded["digest"] == doc["digest"] and decoded["metrics"] == {"evalLoss": 1.2}
    assert decoded["message"].endswith(" ...") and len(decoded["message"]) > 100


def test_write_uses_the_environment_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "dev" / "termination-log"
    monkeypatch.setenv("KUBETUNE_TERMINATION_LOG", str(target))
    termination.write(termination.failed("InvalidConfig", "run config run: bad"))
    assert json.loads(target.read_text())["reason"] == "InvalidConfig"


OK = termination.succeeded(adapter_uri="s3://a/", digest="sha256:1", metrics={})
USER = termination.failed(contract.REASON_INVALID_DATASET, "train.jsonl line 3: bad")
INFRA = termination.failed(contract.REASON_INFRA_ERROR, "RuntimeError: gloo timeout")


@pytest.mark.parametrize(
    ("outcomes", "returncode", "code", "doc"),
    [
        ({0: OK, 1: OK}, 0, 0, OK),
        ({0: INFRA, 1: USER}, 1, 42, USER),
        ({0: INFRA}, 1, 1, INFRA),
        ({0: OK}, 1, 1, None),  # torchrun failed although rank 0 finished
        ({}, 1, 1, None),
    ],
)
def test_launcher_combines_worker_outcomes(
    outcomes: dict, returncode: int, code: int, doc: dict | None
) -> None:
    got_code, got_doc = launch.combine(outcomes, returncode=returncode)
    assert got_code == code
    if doc is not None:
        assert got_doc == doc
    else:
        assert got_doc["reason"] == contract.REASON_INFRA_ERROR
