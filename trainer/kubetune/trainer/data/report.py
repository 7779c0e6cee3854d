"""Assemble ``data-report.json``: what the trainer found in, and did to, the dataset.

Saved under the run folder whether the data passed or not, so a rejected dataset comes with
the full list of problems (the termination message only has room for the first few).
"""

from __future__ import annotations

from typing import Any

from kubetune.trainer.data.cleaning import CleaningReport
from kubetune.trainer.data.formats import ParseResult

REPORT_VERSION = 1


def source_section(
    result: ParseResult, *, role: str, uri: str, sha256: str, cleaning: CleaningReport | None
) -> dict[str, Any]:
    section: dict[str, Any] = {
        "uri": uri,
        "sha256": sha256,
        "format": result.format,
        "lines": result.lines_total,
        "blankLines": result.blank_lines,
        "validRecords": len(result.examples),
        "problemsTotal": result.problems_total,
        "problems": result.describe_problems(role_file(role, uri)),
    }
    if cleaning is not None:
        section["cleaning"] = cleaning.to_dict()
    return section


def role_file(role: str, uri: str) -> str:
    """The name problems are reported against: the file's base name (``train.jsonl``)."""
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    return name or role


def problem_summary(sections: dict[str, dict[str, Any]], *, shown: int = 20) -> str:
    """One message for the termination log: totals, then the first problems with lines."""
    lines = []
    total = 0
    for section in sections.values():
        total += section["problemsTotal"]
        lines.extend(section["problems"])
    head = f"{total} problem{'s' if total != 1 else ''} in the dataset"
    listed = lines[:shown]
    more = total - len([line for line in listed if not line.startswith("...")])
    tail = f" (+{more} more in data-report.json)" if more > 0 else ""
    return f"{head}: " + "; ".join(line for line in listed if not line.startswith("...")) + tail


def assemble(
    *,
    ok: bool,
    sources: dict[str, dict[str, Any]],
    split: dict[str, Any] | None = None,
    tokens: dict[str, Any] | None = None,
) -> dict[str, Any]:
    report: dict[str, Any] = {"version": REPORT_VERSION, "ok": ok, "sources": sources}
    if split is not None:
        report["split"] = split
    if tokens is not None:
        report["tokens"] = tokens
    return report
