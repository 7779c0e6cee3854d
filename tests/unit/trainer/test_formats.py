"""Parsing and validating JSONL golden examples (``kubetune.trainer.data.formats``).

Covers: each accepted format with one example, and auto-detection by majority; instruction
records becoming a user/assistant conversation; a deliberately broken file reporting every
problem with its 1-based line number (not only the first); the problem cap with a count of
the rest; blank lines, a byte order mark and invalid UTF-8; an explicitly configured format
refusing records of another format; an empty file.
"""

from __future__ import annotations

import json

import pytest

from kubetune.trainer.data.formats import Message, parse_lines


def lines(*records: object) -> list[str]:
    return [r if isinstance(r, str) else json.dumps(r) for r in records]


CHAT = {
    "messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]
}
PROMPT = {"prompt": "Hi?", "completion": "Hello."}
ALPACA = {"instruction": "Translate", "input": "chat", "output": "cat"}
TEXT = {"text": "Lumen routers have a reset button."}


@pytest.mark.parametrize(
    ("record", "fmt"),
    [(CHAT, "chat"), (PROMPT, "instruction"), (ALPACA, "instruction"), (TEXT, "completion")],
)
def test_each_format_is_detected(record: dict, fmt: str) -> None:
    result = parse_lines(lines(record))
    assert result.format == fmt
    assert result.problems == []
    assert len(result.examples) == 1


def test_instruction_records_become_conversations() -> None:
    prompt, alpaca = parse_lines(lines(PROMPT, ALPACA)).examples
    assert prompt.messages == (Message("user", "Hi?"), Message("assistant", "Hello."))
    assert alpaca.messages == (Message("user", "Translate\n\nchat"), Message("assistant", "cat"))
    result = parse_lines(lines({**PROMPT, "system": "Be brief."}))
    assert result.examples[0].messages[0] == Message("system", "Be brief.")


def test_completion_records_keep_text() -> None:
    (example,) = parse_lines(lines(TEXT)).examples
    assert example.text == TEXT["text"] and not example.is_chat


def test_majority_format_wins_and_outliers_are_reported() -> None:
    result = parse_lines(lines(CHAT, CHAT, TEXT))
    assert result.format == "chat"
    assert [p.line for p in result.problems] == [3]
    assert "expected a chat record" in result.problems[0].message
    assert "found keys: text" in result.problems[0].message


BROKEN_FILE = "\n".join(
    [
        json.dumps(CHAT),  # 1 fine
        '{"messages": [{"role": "user", "content": "Hi"}',  # 2 truncated JSON
        json.dumps(
            {"messages": [{"role": "bot", "content": "x"}, {"role": "assistant", "content": 3}]}
        ),  # 3
        "[1, 2]",  # 4 not an object
        "",  # 5 blank: fine
        json.dumps({"messages": [{"role": "user", "content": "Q"}]}),  # 6 no answer
        json.dumps({"messages": [{"role": "assistant", "content": "A"}]}),  # 7 answer first
        json.dumps({"messages": []}),  # 8 empty
        json.dumps(CHAT),  # 9 fine
        json.dumps({"prompt": "Q", "completion": "A"}),  # 10 another format
    ]
)


def test_broken_file_reports_every_problem_with_its_line() -> None:
    result = parse_lines(BROKEN_FILE.splitlines())
    rendered = [p.render("train.jsonl") for p in result.problems]
    assert rendered == [
        "train.jsonl line 2: not valid JSON (Expecting ',' delimiter at column 48)",
        "train.jsonl line 3: messages[0].role: 'bot' is not one of system, user, assistant",
        "train.jsonl line 3: messages[1].content must be a string, got a number",
        "train.jsonl line 4: expected a JSON object, got an array",
        "train.jsonl line 6: the last message must be from the assistant (it is what the "
        "model learns)",
        "train.jsonl line 7: the first message after an optional system message must be from "
        "the user",
        "train.jsonl line 8: 'messages' must be a non-empty array",
        "train.jsonl line 10: expected a chat record ('messages'), found keys: completion, prompt",
    ]
    assert result.problems_total == 8
    assert [e.line for e in result.examples] == [1, 9]
    assert result.blank_lines == 1 and result.lines_total == 10


def test_problems_are_capped_with_a_count_of_the_rest() -> None:
    bad = ["{not json"] * 120
    result = parse_lines([json.dumps(CHAT), *bad], cap=50)
    assert len(result.problems) == 50 and result.problems_total == 120
    assert result.problems[0].line == 2
    assert result.describe_problems("t.jsonl")[-1] == "... and 70 more problems"


def test_bom_blank_lines_and_invalid_utf8() -> None:
    raw = [("\ufeff" + json.dumps(TEXT)).encode(), b"", b"   ", b'{"text": "\xff"}']
    result = parse_lines(raw)
    assert [p.render("c.jsonl") for p in result.problems] == [
        "c.jsonl line 4: not valid UTF-8 (byte 11)"
    ]
    assert len(result.examples) == 1 and result.blank_lines == 2


def test_configured_format_refuses_other_records() -> None:
    result = parse_lines(lines(CHAT, TEXT), fmt="completion")
    assert result.format == "completion"
    assert [p.line for p in result.problems] == [1]


@pytest.mark.parametrize("content", [[], [""], ["", "  "]])
def test_a_file_without_records_is_a_problem(content: list[str]) -> None:
    result = parse_lines(content)
    assert result.problems_total == 1
    assert "no records" in result.problems[0].message


def test_unrecognised_records_get_one_clear_problem() -> None:
    result = parse_lines(lines({"question": "a", "answer": "b"}, {"question": "c"}))
    assert result.problems_total == 1
    assert "no record matches a known format" in result.problems[0].message


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"prompt": 1, "completion": "A"}, "'prompt' must be a string, got a number"),
        ({"instruction": "I", "output": None}, "'output' must be a string, got null"),
        ({"instruction": "I", "input": ["x"], "output": "O"}, "'input' must be a string"),
        ({"prompt": "P", "completion": "C", "system": 5}, "'system' must be a string"),
        ({"text": {"a": 1}}, "'text' must be a string, got an object"),
        ({"messages": [{"role": "user", "content": "Q"}, "A"]}, "messages[1] must be an object"),
        (
            {
                "messages": [
                    CHAT["messages"][0],
                    {"role": "system", "content": "S"},
                    CHAT["messages"][1],
                ]
            },
            "a system message may only come first",
        ),
    ],
)
def test_field_problems_name_the_field(record: dict, message: str) -> None:
    result = parse_lines(lines(record))
    assert any(message in p.message for p in result.problems), result.problems
    assert result.examples == []
