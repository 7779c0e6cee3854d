"""Cleaning validated examples (``kubetune.trainer.data.cleaning``).

Covers: whitespace trimmed everywhere; records whose answer or question is empty dropped with
their lines, while an empty system prompt is only removed; exact duplicates dropped with a
pointer to the first occurrence (also after trimming); conflicting duplicates (same prompt,
different answers) reported with all their lines and kept; cleaning twice changes nothing.
"""

from __future__ import annotations

from kubetune.trainer.data.cleaning import clean
from kubetune.trainer.data.formats import Example, Message


def chat(line: int, question: str, answer: str, system: str | None = None) -> Example:
    messages = [Message("user", question), Message("assistant", answer)]
    if system is not None:
        messages.insert(0, Message("system", system))
    return Example(line=line, messages=tuple(messages))


def test_whitespace_is_trimmed() -> None:
    kept, report = clean([chat(1, "  Hi?\n", "\tHello.  ")])
    assert kept == [chat(1, "Hi?", "Hello.")]
    assert report.trimmed_records == 1


def test_empty_records_are_dropped_but_empty_system_prompts_only_removed() -> None:
    kept, report = clean(
        [
            chat(1, "Q", "   "),
            chat(2, "", "A"),
            Example(line=3, text=" \n "),
            chat(4, "Q", "A", system="  "),
        ]
    )
    assert kept == [chat(4, "Q", "A")]
    assert report.empty_dropped == [1, 2, 3]


def test_exact_duplicates_are_dropped_after_trimming() -> None:
    kept, report = clean(
        [
            chat(1, "Q", "A"),
            chat(2, "Q ", " A"),
            Example(line=3, text="t"),
            Example(line=4, text="t"),
        ]
    )
    assert [e.line for e in kept] == [1, 3]
    assert report.duplicates_dropped == [(2, 1), (4, 3)]
    assert report.to_dict()["duplicatesDroppedLines"] == [
        {"line": 2, "duplicateOf": 1},
        {"line": 4, "duplicateOf": 3},
    ]


def test_conflicting_duplicates_are_reported_and_kept() -> None:
    kept, report = clean(
        [
            chat(3, "What is the price?", "$35"),
            chat(5, "Other?", "x"),
            chat(8, "What is the price?", "$55"),
            chat(9, "What is the price?", "$35"),  # exact duplicate of line 3
            chat(12, "What is the price?", "$35", system="Be brief."),  # other context
        ]
    )
    assert [e.line for e in kept] == [3, 5, 8, 12]
    assert report.conflicts_total == 1
    assert report.conflicts == [{"lines": [3, 8], "prompt": "What is the price?"}]


def test_cleaning_is_idempotent() -> None:
    examples = [chat(1, " Q ", "A"), chat(2, "Q", "A"), chat(3, "R", "")]
    once, _ = clean(examples)
    twice, report = clean(once)
    assert twice == once
    assert report.to_dict()["trimmedRecords"] == 0 and report.duplicates_dropped == []
