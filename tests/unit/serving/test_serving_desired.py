"""Parsing the contract's ``desired.json`` (``kubetune.serving.agent.desired``).

Covers: an absent or empty document means no adapters; the contract example parses, with the
versioned engine name and the canary target per pod; whole-document errors (not JSON, wrong
schemaVersion, adapters not a list) are refused; a bad entry is set aside with a message that
names its field while the good entries are kept; duplicate names are refused; versioned-looking
names are split only when they end in 12 hex digits.
"""

from __future__ import annotations

import json

import pytest

from kubetune.serving.agent.desired import DesiredSetError, parse_desired, split_engine_name

DIGEST = "sha256:3f2a9c1d4e5b" + "0" * 52
ACTIVE = {
    "version": "3f2a9c1d4e5b",
    "uri": "s3://adapters/support/run-3/adapter/",
    "digest": DIGEST,
}
CANARY_DIGEST = "sha256:aaaaaaaaaaaa" + "1" * 52
CANARY = {
    "version": "aaaaaaaaaaaa",
    "uri": "s3://adapters/support/run-4/adapter/",
    "digest": CANARY_DIGEST,
    "pods": ["pod-a"],
}


def doc(*adapters: object, schema: object = 1) -> str:
    return json.dumps({"schemaVersion": schema, "adapters": list(adapters)})


def test_contract_example() -> None:
    parsed = parse_desired(
        doc({"name": "support-assistant", "active": ACTIVE, "canary": CANARY}),
        resource_version="42",
    )
    assert parsed.resource_version == "42" and not parsed.invalid
    (adapter,) = parsed.adapters
    assert adapter.active.engine_name == "support-assistant--3f2a9c1d4e5b"
    assert adapter.target_for("pod-a").version == "aaaaaaaaaaaa"
    assert adapter.target_for("pod-b").version == "3f2a9c1d4e5b"


@pytest.mark.parametrize("text", [None, "", "  "])
def test_absent_means_no_adapters(text: str | None) -> None:
    assert parse_desired(text, resource_version="1").adapters == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not JSON"),
        ("[]", "JSON object"),
        (doc(schema=2), "schemaVersion 2 is not supported"),
        (json.dumps({"schemaVersion": 1, "adapters": {}}), "must be a list"),
    ],
)
def test_whole_document_errors(text: str, message: str) -> None:
    with pytest.raises(DesiredSetError, match=message):
        parse_desired(text, resource_version="1")


@pytest.mark.parametrize(
    ("bad", "key", "message"),
    [
        ("nope", "adapters[0]", "adapters[0] must be an object"),
        ({"name": "", "active": ACTIVE}, "adapters[0]", "name must be a non-empty string"),
        (
            {"name": "x--0123456789ab", "active": ACTIVE},
            "x--0123456789ab",
            "looks like a versioned name",
        ),
        ({"name": "x", "active": None}, "x", "adapters[0].active must be an object"),
        (
            {"name": "x", "active": {**ACTIVE, "digest": "md5:1"}},
            "x",
            "active.digest must be 'sha256:'",
        ),
        (
            {"name": "x", "active": {**ACTIVE, "version": "3F2A9C1D4E5B"}},
            "x",
            "active.version must be",
        ),
        (
            {"name": "x", "active": {**ACTIVE, "version": "aaaaaaaaaaaa"}},
            "x",
            "not the first 12 hex",
        ),
        (
            {"name": "x", "active": {**ACTIVE, "uri": "pvc://claim/a"}},
            "x",
            "active.uri must be s3://",
        ),
        (
            {"name": "x", "active": ACTIVE, "canary": {**CANARY, "pods": "pod-a"}},
            "x",
            "canary.pods",
        ),
    ],
)
def test_bad_entries_are_set_aside_with_their_field(bad: object, key: str, message: str) -> None:
    parsed = parse_desired(doc(bad, {"name": "good", "active": ACTIVE}), resource_version="1")
    assert [a.name for a in parsed.adapters] == ["good"]
    assert message in parsed.invalid[key]


def test_duplicate_names_are_refused() -> None:
    parsed = parse_desired(
        doc({"name": "a", "active": ACTIVE}, {"name": "a", "active": ACTIVE}), resource_version="1"
    )
    assert parsed.adapters == ()
    assert "appears twice" in parsed.invalid["a"]


@pytest.mark.parametrize(
    ("name", "split"),
    [
        ("support--3f2a9c1d4e5b", ("support", "3f2a9c1d4e5b")),
        ("my--adapter--3f2a9c1d4e5b", ("my--adapter", "3f2a9c1d4e5b")),
        ("support", None),
        ("support--3f2a9c", None),
        ("tiny-llama", None),
    ],
)
def test_split_engine_name(name: str, split: tuple[str, str] | None) -> None:
    assert split_engine_name(name) == split
