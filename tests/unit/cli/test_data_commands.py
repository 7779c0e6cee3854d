"""``kubetune data check|clean|split`` on local files: the trainer's own validation, cleaning
and split, problem tables with line numbers, statistics, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubetune.trainer.data.formats import parse_lines
from kubetune.trainer.data.split import split
from tests.cli_runner import Run

pytestmark = pytest.mark.unit

GOOD = '{"messages":[{"role":"user","content":"Hours?"},{"role":"assistant","content":"7-23."}]}'
BROKEN = (
    "\n".join(
        [
            GOOD,
            '{"messages":[{"role":"user","content":"Refund?"}',
            '{"messages":[{"role":"customer","content":"x"},{"role":"assistant","content":"y"}]}',
            GOOD,
            '{"messages":[{"role":"user","content":"Hours?"},{"role":"assistant","content":"8-22."}]}',
            '{"messages":[{"role":"user","content":"  Wifi?  "},'
            '{"role":"assistant","content":"Yes."}]}',
        ]
    )
    + "\n"
)


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    path = tmp_path / "broken.jsonl"
    path.write_text(BROKEN)
    return path


@pytest.fixture
def clean_file(tmp_path: Path) -> Path:
    records = [{"prompt": f"Question {i}?", "completion": f"Answer {i}."} for i in range(40)]
    path = tmp_path / "good.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_check_lists_problems_with_line_numbers_and_fails(kubetune: Run, broken: Path) -> None:
    result = kubetune("data", "check", str(broken))
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert "broken.jsonl: 2 problems" in out
    assert "│    2 │ not valid JSON (Expecting ',' delimiter" in out
    assert "│    3 │ messages[0].role: 'customer' is not one of system, user, assistant" in out
    assert "1 exact duplicates (dropped)" in out and "│    4 │                 1 │" in out
    assert "1 prompts with different answers" in out and "1, 5" in out
    assert "usable records             │            3" in out
    assert "✗" in out and "2 problems" in out.splitlines()[-1]


def test_check_json_is_the_trainers_data_report_section(kubetune: Run, broken: Path) -> None:
    result = kubetune("data", "check", str(broken), "--json")
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    assert doc["problemsTotal"] == 2
    assert doc["problems"][0].startswith("train.jsonl line 2: not valid JSON") or doc["problems"][
        0
    ].startswith("broken.jsonl line 2: not valid JSON")
    assert doc["cleaning"]["duplicatesDropped"] == 1
    assert doc["cleaning"]["conflictingDuplicates"] == 1
    assert doc["cleaning"]["trimmedRecords"] == 1
    assert doc["usableRecords"] == 3


def test_a_good_file_passes_and_strict_fails_on_conflicts(
    kubetune: Run, clean_file: Path, tmp_path: Path
) -> None:
    ok = kubetune("data", "check", str(clean_file))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "instruction" in ok.stdout
    assert "40 records ready to train" in ok.stdout

    conflicted = tmp_path / "conflicted.jsonl"
    conflicted.write_text(
        clean_file.read_text()
        + json.dumps({"prompt": "Question 1?", "completion": "Other."})
        + "\n"
    )
    assert kubetune("data", "check", str(conflicted)).returncode == 0
    strict = kubetune("data", "check", str(conflicted), "--strict")
    assert strict.returncode == 1
    assert "--strict" in strict.stdout


def test_format_mismatch_and_missing_file_are_one_line_errors(
    kubetune: Run, clean_file: Path, tmp_path: Path
) -> None:
    forced = kubetune("data", "check", str(clean_file), "--format", "chat")
    assert forced.returncode == 1
    assert "expected a chat record ('messages'), found keys: completion, prompt" in forced.stdout

    missing = kubetune("data", "check", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2
    assert missing.stderr == f"error: {tmp_path / 'nope.jsonl'}: no such file\n"
    assert "Traceback" not in missing.stderr

    usage = kubetune("data", "check")
    assert usage.returncode == 2
    assert usage.stderr == ("error: Missing argument 'FILE'. (see `kubetune data check --help`)\n")

    bad_tokenizer = kubetune("data", "check", str(clean_file), "--tokenizer", str(tmp_path))
    assert bad_tokenizer.returncode == 2
    assert bad_tokenizer.stderr.startswith(
        f"error: --tokenizer {tmp_path}: cannot load a tokenizer"
    )
    assert len(bad_tokenizer.stderr.splitlines()) == 1


def test_clean_writes_what_the_trainer_trains_on(
    kubetune: Run, broken: Path, tmp_path: Path
) -> None:
    out = tmp_path / "clean.jsonl"
    refused = kubetune("data", "clean", str(broken), "-o", str(out))
    assert refused.returncode == 1
    assert "nothing was written" in refused.stderr and not out.exists()

    fixed = tmp_path / "fixed.jsonl"
    lines = BROKEN.splitlines()
    fixed.write_text("\n".join([lines[0], lines[3], lines[4], lines[5]]) + "\n")
    result = kubetune("data", "clean", str(fixed), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "wrote 3 records" in result.stdout and "1 duplicates" in result.stdout
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["messages"][0]["content"] for r in records] == ["Hours?", "Hours?", "Wifi?"]
    # Cleaning again changes nothing; overwriting needs --force.
    again = tmp_path / "again.jsonl"
    assert kubetune("data", "clean", str(out), "-o", str(again)).returncode == 0
    assert again.read_text() == out.read_text()
    exists = kubetune("data", "clean", str(out), "-o", str(again))
    assert exists.returncode == 2 and "pass --force" in exists.stderr


def test_split_matches_the_trainers_split(kubetune: Run, clean_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "split"
    result = kubetune(
        "data", "split", str(clean_file), "--validation", "0.25", "--seed", "7", "-o", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert "30 records" in result.stdout and "10 ->" in result.stdout
    train = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    validation = [json.loads(x) for x in (out / "validation.jsonl").read_text().splitlines()]
    assert len(train) == 30 and len(validation) == 10

    expected_train, expected_val = split(
        parse_lines(clean_file.read_bytes().splitlines()).examples, fraction=0.25, seed=7
    )
    assert [r["messages"][0]["content"] for r in validation] == [
        e.messages[0].content for e in expected_val
    ]
    assert len(expected_train) == 30
    bad = kubetune("data", "split", str(clean_file), "--validation", "0.9", "-o", str(out))
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: Invalid value for '--validation': 0.9 is not in the range")
    assert len(bad.stderr.splitlines()) == 1


def test_text_from_the_data_is_printed_as_it_is(kubetune: Run, tmp_path: Path) -> None:
    """Brackets in a dataset are data, not terminal markup."""
    path = tmp_path / "brackets.jsonl"
    records = [
        {"messages": [{"role": "[/bold]", "content": "x"}, {"role": "assistant", "content": "y"}]},
        {
            "messages": [
                {"role": "user", "content": "Price [red]?"},
                {"role": "assistant", "content": "1"},
            ]
        },
        {
            "messages": [
                {"role": "user", "content": "Price [red]?"},
                {"role": "assistant", "content": "2"},
            ]
        },
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = kubetune("data", "check", str(path))
    assert result.returncode == 1, result.stderr
    assert "messages[0].role: '[/bold]' is not one of system, user, assistant" in result.stdout
    assert "Price [red]?" in result.stdout
