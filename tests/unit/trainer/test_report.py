"""Token statistics and the data report (``kubetune.trainer.data.stats`` and ``.report``).

Covers: percentile and length statistics with the truncation count; the one-line problem
summary used in the termination message (totals, first problems, pointer to the report);
the report's sections for a parsed and cleaned file.
"""

from __future__ import annotations

import json

from kubetune.trainer.data import report
from kubetune.trainer.data.cleaning import clean
from kubetune.trainer.data.formats import parse_lines
from kubetune.trainer.data.stats import length_stats, percentile


def test_percentiles_are_nearest_rank() -> None:
    values = list(range(1, 101))
    assert [percentile(values, q) for q in (50, 90, 99, 100)] == [50, 90, 99, 100]
    assert percentile([], 50) == 0


def test_length_stats_count_truncation() -> None:
    stats = length_stats([10, 300, 50, 700], max_length=256)
    assert stats == {
        "count": 4,
        "totalTokens": 1060,
        "min": 10,
        "max": 700,
        "mean": 265.0,
        "p50": 50,
        "p90": 700,
        "p99": 700,
        "truncated": 2,
        "maxSeqLength": 256,
    }
    assert length_stats([], max_length=8)["count"] == 0


def test_problem_summary_lists_lines_and_points_to_the_report() -> None:
    parsed = parse_lines(["{bad", json.dumps({"text": 1}), "[]"], fmt="completion")
    section = report.source_section(
        parsed, role="train", uri="s3://d/v3/train.jsonl", sha256="ab", cleaning=None
    )
    summary = report.problem_summary({"train": section}, shown=2)
    assert summary.startswith("3 problems in the dataset: train.jsonl line 1: not valid JSON")
    assert "train.jsonl line 2: 'text' must be a string" in summary
    assert summary.endswith("(+1 more in data-report.json)")


def test_source_section_carries_cleaning() -> None:
    lines = [json.dumps({"text": " a "}), json.dumps({"text": "a"})]
    parsed = parse_lines(lines)
    _, cleaning = clean(parsed.examples)
    section = report.source_section(
        parsed, role="train", uri="/data/train.jsonl", sha256="ab", cleaning=cleaning
    )
    assert section["validRecords"] == 2 and section["problems"] == []
    assert section["cleaning"]["duplicatesDropped"] == 1
    doc = report.assemble(ok=True, sources={"train": section}, split={"train": 1})
    assert doc["ok"] and doc["split"] == {"train": 1}
