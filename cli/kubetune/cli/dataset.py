"""A local JSONL file through the trainer's own data code: parse and validate
(``kubetune.trainer.data.formats``), clean (``cleaning``), optionally tokenise with the base
model's tokenizer (``kubetune.trainer.tokenization``), and the tables that show the result.

What ``kubetune data check`` accepts, the trainer accepts: both run exactly this code.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from kubetune.cli.errors import CliError
from kubetune.cli.views import bold, number
from kubetune.trainer.data import report as data_report
from kubetune.trainer.data.cleaning import CleaningReport, clean
from kubetune.trainer.data.formats import Example, ParseResult, parse_lines
from kubetune.trainer.data.stats import length_stats, percentile

SHOWN = 50


@dataclass
class Analysis:
    path: Path
    sha256: str
    parsed: ParseResult
    kept: list[Example]
    cleaning: CleaningReport
    tokens: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.parsed.problems_total == 0 and bool(self.kept)

    def section(self) -> dict[str, Any]:
        """The same section the trainer writes into ``data-report.json``."""
        doc = data_report.source_section(
            self.parsed,
            role="train",
            uri=str(self.path),
            sha256=self.sha256,
            cleaning=self.cleaning,
        )
        doc["usableRecords"] = len(self.kept)
        if self.tokens is not None:
            doc["tokens"] = self.tokens
        return doc


def analyse(path: Path, *, fmt: str = "auto", field: str = "") -> Analysis:
    where = f"{field}: " if field else ""
    if not path.is_file():
        raise CliError(f"{where}{path}: no such file")
    raw = path.read_bytes()
    parsed = parse_lines(raw.splitlines(), fmt=fmt)
    kept, cleaning = clean(parsed.examples)
    return Analysis(
        path=path,
        sha256=hashlib.sha256(raw).hexdigest(),
        parsed=parsed,
        kept=kept,
        cleaning=cleaning,
    )


def token_lengths(analysis: Analysis, tokenizer_dir: Path, *, max_length: int) -> None:
    """Token counts as the trainer computes them (chat template included)."""
    if not tokenizer_dir.is_dir():
        raise CliError(f"--tokenizer {tokenizer_dir}: not a directory with a tokenizer")
    try:
        from transformers import AutoTokenizer  # noqa: PLC0415 - only with --tokenizer

        from kubetune.trainer.errors import UserError  # noqa: PLC0415
        from kubetune.trainer.tokenization import tokenize_examples  # noqa: PLC0415
    except ImportError as err:
        raise CliError(
            f"--tokenizer needs transformers: pip install 'kubetune[cli]' ({err})"
        ) from err
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            str(tokenizer_dir), local_files_only=True, trust_remote_code=False
        )
    except (OSError, ValueError) as err:
        raise CliError(f"--tokenizer {tokenizer_dir}: cannot load a tokenizer: {err}") from err
    try:
        _, report = tokenize_examples(analysis.kept, tokenizer, max_length=max_length)
    except UserError as err:
        raise CliError(f"--tokenizer {tokenizer_dir}: {err.message}") from err
    analysis.tokens = {
        **length_stats(report.lengths, max_length=max_length),
        "droppedNoTargetAfterTruncation": len(report.dropped_no_target),
        "droppedLines": report.dropped_no_target[:SHOWN],
    }


def render(console: Console, analysis: Analysis, *, title: str | None = None) -> None:
    """Problems (with line numbers), what cleaning found, and the statistics."""
    parsed, cleaning = analysis.parsed, analysis.cleaning
    name = title or analysis.path.name
    if parsed.problems:
        console.print(bold(f"{name}: {parsed.problems_total} problems"))
        table = Table()
        table.add_column("line", justify="right", style="bold")
        table.add_column("problem")
        for problem in parsed.problems[:SHOWN]:
            table.add_row(str(problem.line), problem.message)
        hidden = parsed.problems_total - min(len(parsed.problems), SHOWN)
        if hidden > 0:
            table.add_row("…", f"and {hidden} more")
        console.print(table)
    if cleaning.duplicates_dropped:
        console.print(
            bold(f"{name}: {len(cleaning.duplicates_dropped)} exact duplicates (dropped)")
        )
        table = Table()
        table.add_column("line", justify="right")
        table.add_column("duplicate of line", justify="right")
        for line, first in cleaning.duplicates_dropped[:SHOWN]:
            table.add_row(str(line), str(first))
        console.print(table)
    if cleaning.conflicts:
        console.print(
            bold(
                f"{name}: {cleaning.conflicts_total} prompts with different answers "
                "(kept; review them)"
            )
        )
        table = Table()
        table.add_column("lines")
        table.add_column("prompt")
        for conflict in cleaning.conflicts[:SHOWN]:
            table.add_row(", ".join(str(n) for n in conflict["lines"]), conflict["prompt"])
        console.print(table)
    console.print(bold(f"{name}: statistics"))
    console.print(stats_table(analysis))


def stats_table(analysis: Analysis) -> Table:
    parsed, cleaning = analysis.parsed, analysis.cleaning
    table = Table(show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    rows = [
        ("format", parsed.format),
        ("lines", number(parsed.lines_total)),
        ("blank lines", number(parsed.blank_lines)),
        ("valid records", number(len(parsed.examples))),
        ("problems", number(parsed.problems_total)),
        ("whitespace trimmed", number(cleaning.trimmed_records)),
        ("empty (dropped)", number(len(cleaning.empty_dropped))),
        ("exact duplicates (dropped)", number(len(cleaning.duplicates_dropped))),
        ("conflicting prompts", number(cleaning.conflicts_total)),
        ("usable records", number(len(analysis.kept))),
    ]
    chars = sorted(_characters(e) for e in analysis.kept)
    if chars:
        rows.append(
            (
                "characters p50 / p90 / max",
                f"{percentile(chars, 50):,} / {percentile(chars, 90):,} / {chars[-1]:,}",
            )
        )
    tokens = analysis.tokens
    if tokens and tokens.get("count"):
        rows += [
            (
                "tokens p50 / p90 / p99 / max",
                f"{tokens['p50']:,} / {tokens['p90']:,} / {tokens['p99']:,} / {tokens['max']:,}",
            ),
            ("tokens total", number(tokens["totalTokens"])),
            (
                f"longer than maxSeqLength {tokens['maxSeqLength']}",
                f"{tokens['truncated']} (truncated)",
            ),
        ]
        if tokens["droppedNoTargetAfterTruncation"]:
            rows.append(
                (
                    "answer cut away by truncation (dropped)",
                    f"{tokens['droppedNoTargetAfterTruncation']} (lines "
                    f"{', '.join(map(str, tokens['droppedLines'][:10]))})",
                )
            )
    for label, value in rows:
        table.add_row(label, value)
    return table


def _characters(example: Example) -> int:
    if example.text is not None:
        return len(example.text)
    return sum(len(m.content) for m in example.messages)


def to_jsonl(examples: list[Example]) -> str:
    """Examples as the trainer reads them back: chat records (instruction records become the
    user/assistant conversation they are trained as) or completion records."""
    lines = []
    for example in examples:
        if example.text is not None:
            record: dict[str, Any] = {"text": example.text}
        else:
            record = {
                "messages": [{"role": m.role, "content": m.content} for m in example.messages]
            }
        lines.append(json.dumps(record, ensure_ascii=False))
    return "\n".join(lines) + ("\n" if lines else "")
