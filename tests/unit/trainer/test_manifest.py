"""The adapter manifest (``kubetune.trainer.manifest``), format per ``kubetune.api.contract``.

Covers: the document's contract fields and the per-file SHA-256 and size; serialisation is
deterministic so the digest is stable; the digest is "sha256:" + SHA-256 of the bytes;
verification passes for the published files and names tampered, missing and unlisted files;
None metrics are left out; a manifest never lists itself.
"""

from __future__ import annotations

import hashlib

import pytest

from kubetune.api import contract
from kubetune.trainer import manifest as mf

FILES = {"adapter_config.json": b'{"r": 8}', "adapter_model.safetensors": b"\x00weights"}


def build(**overrides: object) -> dict:
    kwargs: dict = {
        "run": "support-g1",
        "job_namespace": "acme-ml",
        "job_name": "support",
        "generation": 1,
        "created_at": "2026-11-28T21:00:00Z",
        "method": "lora",
        "base_model": {"uri": "s3://models/tiny/", "name": "tiny"},
        "adapter": {"format": "peft", "rank": 8},
        "files": FILES,
        "datasets": {"train": {"uri": "s3://d/train.jsonl", "sha256": "ab", "records": 3}},
        "hyperparameters": {"epochs": 1.0},
        "metrics": {"trainLoss": 1.5, "evalLoss": None},
        "evaluation": {},
        "training": {"steps": 3},
        "versions": {"kubetune": "0.1.0"},
    }
    kwargs.update(overrides)
    return mf.build(**kwargs)


def test_contract_fields_and_file_digests() -> None:
    manifest = build()
    assert manifest["schemaVersion"] == contract.MANIFEST_SCHEMA_VERSION
    assert manifest["kind"] == contract.MANIFEST_KIND
    assert manifest["job"] == {"namespace": "acme-ml", "name": "support", "generation": 1}
    assert manifest["files"]["adapter_model.safetensors"] == {
        "sha256": hashlib.sha256(b"\x00weights").hexdigest(),
        "size": 8,
    }
    assert manifest["metrics"] == {"trainLoss": 1.5}


def test_precomputed_digests_are_taken_as_given() -> None:
    manifest = build(files={"a.bin": ("ff" * 32, 10)})
    assert manifest["files"] == {"a.bin": {"sha256": "ff" * 32, "size": 10}}


def test_serialisation_and_digest_are_stable() -> None:
    first, second = mf.serialize(build()), mf.serialize(build())
    assert first == second
    assert mf.digest(first) == "sha256:" + hashlib.sha256(first).hexdigest()
    assert first.endswith(b"\n") and b'"adapter"' in first


def test_verify_accepts_the_files_and_names_every_problem() -> None:
    manifest = build()
    assert mf.verify(manifest, {**FILES, contract.MANIFEST_FILE: b"{}"}) == []
    tampered = {"adapter_config.json": b'{"r": 9}', "extra.txt": b"x"}
    assert mf.verify(manifest, tampered) == [
        "adapter_config.json: SHA-256 mismatch",
        "adapter_model.safetensors: listed but missing",
        "extra.txt: present but not listed",
    ]
    assert mf.verify({**manifest, "schemaVersion": 9}, FILES) == ["unsupported schemaVersion 9"]


def test_a_manifest_never_lists_itself() -> None:
    with pytest.raises(ValueError, match="cannot list itself"):
        build(files={contract.MANIFEST_FILE: b"{}"})
