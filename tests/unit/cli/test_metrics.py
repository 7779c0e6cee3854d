"""Loss curves from metrics.jsonl and the PNG plot (``kubetune.cli.metrics``)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from kubetune.cli import metrics

pytestmark = pytest.mark.unit


def lines(*records: dict) -> bytes:
    return ("\n".join(json.dumps(r) for r in records) + "\n").encode()


DATA = (
    lines(
        {"step": 1, "loss": 7.0, "tokensPerSecond": 100.0},
        {"step": 2, "loss": 6.5, "tokensPerSecond": 120.0},
        {"step": 2, "evalLoss": 6.6, "perplexity": 735.1},
        {"step": 3, "loss": 6.0},
        {"step": 3, "evalLoss": 6.2},
    )
    + b'{"step": 4, "lo'
)  # a torn last line while the trainer rewrites the file


def test_parse_separates_steps_from_evaluations_and_skips_a_torn_line() -> None:
    curves = metrics.parse(DATA)
    assert curves.train == [(1, 7.0), (2, 6.5), (3, 6.0)]
    assert curves.eval == [(2, 6.6), (3, 6.2)]
    assert curves.tokens_per_second == 120.0
    assert metrics.summary(curves) == [
        ("train loss", "3", "7.0000 (step 1)", "6.0000 (step 3)", "6.0000 (step 3)"),
        ("eval loss", "2", "6.6000 (step 2)", "6.2000 (step 3)", "6.2000 (step 3)"),
    ]
    assert metrics.parse(b"").empty


def test_run_uri_follows_the_object_layout() -> None:
    spec = {"output": {"uri": "s3://adapters/support"}}
    assert metrics.run_uri(spec, "support-g2") == "s3://adapters/support/support-g2/"


def test_plot_writes_a_png(tmp_path: Path) -> None:
    out = tmp_path / "plots" / "loss.png"
    metrics.plot(metrics.parse(DATA), out, title="acme/support run support-g1")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert (width, height) == (960, 540)
