"""Parse and validate JSONL golden examples: the first step after staging.

Three formats are accepted and auto-detected from the keys of the records:

* ``chat``:        ``{"messages": [{"role": "user", "content": "..."}, ...]}``
* ``instruction``: ``{"prompt": "...", "completion": "..."}`` or
                   ``{"instruction": "...", "input": "...", "output": "..."}`` (``input`` optional)
* ``completion``:  ``{"text": "..."}``

Instruction records become a user/assistant conversation so that one tokenisation path (the
chat template) serves both. Validation does not stop at the first problem: it collects every
problem with its 1-based line number, keeping the first ``cap`` and counting the rest.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

FORMATS = ("chat", "instruction", "completion")
ROLES = ("system", "user", "assistant")
DEFAULT_PROBLEM_CAP = 50

Report = Callable[[int, str], None]
"""``report(line, message)``: records one problem."""


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class Example:
    """One training record. Chat and instruction records carry ``messages``; completion
    records carry ``text`` and train on all of it."""

    line: int
    messages: tuple[Message, ...] = ()
    text: str | None = None

    @property
    def is_chat(self) -> bool:
        return self.text is None

    def canonical(self) -> str:
        """A stable string identity of the content (not the line): used for de-duplication
        and for the split, so both ignore record order."""
        if self.text is not None:
            return json.dumps({"text": self.text}, ensure_ascii=False)
        pairs = [[m.role, m.content] for m in self.messages]
        return json.dumps({"messages": pairs}, ensure_ascii=False)


@dataclass(frozen=True)
class Problem:
    line: int
    message: str

    def render(self, source: str) -> str:
        return f"{source} line {self.line}: {self.message}"


@dataclass
class ParseResult:
    format: str
    examples: list[Example]
    problems: list[Problem] = field(default_factory=list)
    problems_total: int = 0
    lines_total: int = 0
    blank_lines: int = 0

    def describe_problems(self, source: str) -> list[str]:
        rendered = [p.render(source) for p in self.problems]
        hidden = self.problems_total - len(self.problems)
        if hidden > 0:
            rendered.append(f"... and {hidden} more problems")
        return rendered


def detect_record_format(record: dict[str, Any]) -> str | None:
    """The format a single decoded record looks like, from its keys alone."""
    if "messages" in record:
        return "chat"
    if ("prompt" in record and "completion" in record) or (
        "instruction" in record and "output" in record
    ):
        return "instruction"
    if "text" in record:
        return "completion"
    return None


def parse_lines(
    lines: Iterable[str | bytes],
    *,
    fmt: str = "auto",
    cap: int = DEFAULT_PROBLEM_CAP,
) -> ParseResult:
    """Decode, detect the format and validate every line; never raises on bad data."""
    problems: list[Problem] = []

    def report(line: int, message: str) -> None:
        problems.append(Problem(line, message))

    decoded, blank, count = _decode_lines(lines, report)
    chosen = fmt if fmt != "auto" else _majority_format(decoded)
    examples: list[Example] = []
    recognised = chosen is not None
    if chosen is None:
        chosen = "chat"
        if decoded:
            report(
                decoded[0][0],
                "no record matches a known format: expected 'messages' (chat), "
                "'prompt'+'completion' or 'instruction'+'output' (instruction), "
                "or 'text' (completion)",
            )
    for number, record in decoded if recognised else ():
        example = _validate(record, line=number, fmt=chosen, report=report)
        if example is not None:
            examples.append(example)
    if not decoded and not problems:
        report(max(count, 1), "the file has no records")
    # Stable sort: several problems of one line keep the order they were found in.
    problems.sort(key=lambda p: p.line)
    return ParseResult(
        format=chosen,
        examples=examples,
        problems=problems[:cap],
        problems_total=len(problems),
        lines_total=count,
        blank_lines=blank,
    )


def _decode_lines(
    lines: Iterable[str | bytes], report: Report
) -> tuple[list[tuple[int, dict[str, Any]]], int, int]:
    """(line number, JSON object) of every decodable line, blank lines, total lines."""
    decoded: list[tuple[int, dict[str, Any]]] = []
    blank = count = 0
    for number, raw in enumerate(lines, start=1):
        count = number
        text = _decode(raw, number=number, report=report)
        if text is None:
            continue
        if number == 1:
            text = text.lstrip("\ufeff")  # a UTF-8 byte order mark is not a problem
        if not text.strip():
            blank += 1
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            report(number, f"not valid JSON ({err.msg} at column {err.colno})")
            continue
        if not isinstance(value, dict):
            report(number, f"expected a JSON object, got {_kind(value)}")
            continue
        decoded.append((number, value))
    return decoded, blank, count


# ---------------------------------------------------------------- helpers


def _decode(raw: str | bytes, *, number: int, report: Report) -> str | None:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        report(number, f"not valid UTF-8 (byte {err.start + 1})")
        return None


def _kind(value: Any) -> str:
    names = {
        bool: "a boolean",
        list: "an array",
        dict: "an object",
        str: "a string",
        int: "a number",
        float: "a number",
    }
    if value is None:
        return "null"
    return names.get(type(value), type(value).__name__)


def _majority_format(decoded: list[tuple[int, dict[str, Any]]]) -> str | None:
    votes = Counter(detect_record_format(record) for _, record in decoded)
    votes.pop(None, None)
    if not votes:
        return None
    # Ties go to the richer format, in FORMATS order.
    return max(FORMATS, key=lambda f: (votes.get(f, 0), -FORMATS.index(f)))


def _validate(record: dict[str, Any], *, line: int, fmt: str, report: Report) -> Example | None:
    found = detect_record_format(record)
    if found != fmt:
        keys = ", ".join(sorted(record)) or "none"
        report(line, f"expected a {fmt} record ({_expected_keys(fmt)}), found keys: {keys}")
        return None
    if fmt == "chat":
        return _validate_chat(record, line=line, report=report)
    if fmt == "instruction":
        return _validate_instruction(record, line=line, report=report)
    text = record["text"]
    if not isinstance(text, str):
        report(line, f"'text' must be a string, got {_kind(text)}")
        return None
    return Example(line=line, text=text)


def _expected_keys(fmt: str) -> str:
    return {
        "chat": "'messages'",
        "instruction": "'prompt'+'completion' or 'instruction'+'output'",
        "completion": "'text'",
    }[fmt]


def _validate_chat(record: dict[str, Any], *, line: int, report: Report) -> Example | None:
    messages = record["messages"]
    if not isinstance(messages, list) or not messages:
        report(line, "'messages' must be a non-empty array")
        return None
    ok = True
    parsed: list[Message] = []
    for index, item in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(item, dict):
            report(line, f"{where} must be an object with 'role' and 'content'")
            ok = False
            continue
        role, content = item.get("role"), item.get("content")
        if role not in ROLES:
            report(line, f"{where}.role: {role!r} is not one of {', '.join(ROLES)}")
            ok = False
        if not isinstance(content, str):
            report(line, f"{where}.content must be a string, got {_kind(content)}")
            ok = False
        if role == "system" and index != 0:
            report(line, f"{where}: a system message may only come first")
            ok = False
        if ok:
            parsed.append(Message(str(role), str(content)))
    if not ok:
        return None
    turns = [m for m in parsed if m.role != "system"]
    if not turns or turns[0].role != "user":
        report(line, "the first message after an optional system message must be from the user")
        return None
    if parsed[-1].role != "assistant":
        report(line, "the last message must be from the assistant (it is what the model learns)")
        return None
    return Example(line=line, messages=tuple(parsed))


def _validate_instruction(record: dict[str, Any], *, line: int, report: Report) -> Example | None:
    if "prompt" in record:
        prompt_key, answer_key = "prompt", "completion"
        prompt = record.get("prompt")
        extra: Any = None
    else:
        prompt_key, answer_key = "instruction", "output"
        prompt = record.get("instruction")
        extra = record.get("input")
    answer = record.get(answer_key)
    system = record.get("system")
    ok = True
    for key, value in ((prompt_key, prompt), (answer_key, answer)):
        if not isinstance(value, str):
            report(line, f"'{key}' must be a string, got {_kind(value)}")
            ok = False
    if extra is not None and not isinstance(extra, str):
        report(line, f"'input' must be a string, got {_kind(extra)}")
        ok = False
    if system is not None and not isinstance(system, str):
        report(line, f"'system' must be a string, got {_kind(system)}")
        ok = False
    if not ok:
        return None
    user = str(prompt) if not extra else f"{prompt}\n\n{extra}"
    messages = [Message("user", user), Message("assistant", str(answer))]
    if system:
        messages.insert(0, Message("system", str(system)))
    return Example(line=line, messages=tuple(messages))
