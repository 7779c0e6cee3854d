"""Clean validated examples: trim whitespace, drop empty records and exact duplicates, and
report conflicting duplicates (the same prompt with different answers).

Conflicts are reported, not resolved: two answers to one question may both be right, but a
reviewer should see them. Runs after ``formats.parse_lines`` and before ``split``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from kubetune.trainer.data.formats import Example, Message

PREVIEW_CHARS = 80
DEFAULT_REPORT_CAP = 50


@dataclass
class CleaningReport:
    trimmed_records: int = 0
    empty_dropped: list[int] = field(default_factory=list)
    duplicates_dropped: list[tuple[int, int]] = field(default_factory=list)
    """(line dropped, line of the first occurrence kept)."""
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    conflicts_total: int = 0

    def to_dict(self, *, cap: int = DEFAULT_REPORT_CAP) -> dict[str, Any]:
        return {
            "trimmedRecords": self.trimmed_records,
            "emptyDropped": len(self.empty_dropped),
            "emptyDroppedLines": self.empty_dropped[:cap],
            "duplicatesDropped": len(self.duplicates_dropped),
            "duplicatesDroppedLines": [
                {"line": line, "duplicateOf": first}
                for line, first in self.duplicates_dropped[:cap]
            ],
            "conflictingDuplicates": self.conflicts_total,
            "conflicts": self.conflicts[:cap],
        }


def clean(examples: list[Example]) -> tuple[list[Example], CleaningReport]:
    """Return the kept examples (in input order) and what was changed or found."""
    report = CleaningReport()
    kept: list[Example] = []
    first_line_of: dict[str, int] = {}
    answers_by_prompt: dict[str, dict[str, list[int]]] = {}
    for example in examples:
        trimmed = _trim(example)
        if trimmed != example:
            report.trimmed_records += 1
        if _is_empty(trimmed):
            report.empty_dropped.append(example.line)
            continue
        key = trimmed.canonical()
        if key in first_line_of:
            report.duplicates_dropped.append((example.line, first_line_of[key]))
            continue
        first_line_of[key] = example.line
        kept.append(trimmed)
        if trimmed.is_chat:
            prompt, answer = _prompt_and_answer(trimmed)
            answers_by_prompt.setdefault(prompt, {}).setdefault(answer, []).append(trimmed.line)

    for prompt, answers in answers_by_prompt.items():
        if len(answers) < 2:
            continue
        report.conflicts_total += 1
        if len(report.conflicts) < DEFAULT_REPORT_CAP:
            lines = sorted(line for group in answers.values() for line in group)
            report.conflicts.append({"lines": lines, "prompt": _preview(prompt)})
    report.conflicts.sort(key=lambda c: c["lines"][0])
    return kept, report


def _trim(example: Example) -> Example:
    if example.text is not None:
        return replace(example, text=example.text.strip())
    messages = tuple(Message(m.role, m.content.strip()) for m in example.messages)
    # An empty system prompt says nothing; dropping it keeps the rest of the record.
    messages = tuple(m for m in messages if m.role != "system" or m.content)
    return replace(example, messages=messages)


def _is_empty(example: Example) -> bool:
    if example.text is not None:
        return not example.text
    return any(not m.content for m in example.messages)


def _prompt_and_answer(example: Example) -> tuple[str, str]:
    *context, last = example.messages
    prompt = json.dumps([[m.role, m.content] for m in context], ensure_ascii=False)
    return prompt, last.content


def _preview(prompt_key: str) -> str:
    turns = json.loads(prompt_key)
    text = next((content for role, content in reversed(turns) if role == "user"), "")
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 3] + "..."
