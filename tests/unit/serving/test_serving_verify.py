"""Verification before loading (``kubetune.serving.agent.verify``) and the S3 URI split.

Covers: the manifest must hash to the pinned digest (message shows both); manifest shape
errors (kind, schemaVersion, files, required files, unsafe file names such as ``../x``); a
file whose SHA-256 or size differs is refused naming the file; adapter config checks (not
LoRA, rank above the limit, base model mismatch or unknown when the engine's is known); a
downloaded folder re-verified end to end, and refused after one byte changes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from kubetune.serving.agent.download import split_s3_uri
from kubetune.serving.agent.verify import (
    AdapterLimits,
    VerificationError,
    check_adapter_config,
    check_file,
    check_manifest,
    manifest_digest,
    safe_relative_path,
    verify_folder,
)

CONFIG = {"peft_type": "LORA", "r": 16, "lora_alpha": 32, "target_modules": ["q_proj"]}


def manifest(files: dict[str, bytes], **extra: object) -> bytes:
    body = {
        "schemaVersion": 1,
        "kind": "kubetune.io/adapter-manifest",
        "baseModel": {"name": "tiny"},
        "files": {
            n: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for n, b in files.items()
        },
        **extra,
    }
    return json.dumps(body).encode()


FILES = {
    "adapter_config.json": json.dumps(CONFIG).encode(),
    "adapter_model.safetensors": b"weights",
}


def test_manifest_must_hash_to_the_pinned_digest() -> None:
    data = manifest(FILES)
    assert (
        check_manifest(data, expected_digest=manifest_digest(data), source="m").base_model_name
        == "tiny"
    )
    other = "sha256:" + "0" * 64
    with pytest.raises(VerificationError) as err:
        check_manifest(data, expected_digest=other, source="s3://a/m.json")
    assert str(err.value) == (
        f"digest mismatch: the desired set pins {other} but s3://a/m.json hashes to "
        f"{manifest_digest(data)}; refusing to load"
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[", "is not JSON"),
        (manifest(FILES, kind="other"), "kind is 'other'"),
        (manifest(FILES, schemaVersion=9), "schemaVersion 9 is not supported"),
        (manifest({"adapter_config.json": b"{}"}), "does not list adapter_model.safetensors"),
        (manifest({**FILES, "../escape": b"x"}), "'../escape' is not a plain relative path"),
        (manifest({**FILES, "/etc/passwd": b"x"}), "is not a plain relative path"),
        (
            json.dumps(
                {
                    "schemaVersion": 1,
                    "kind": "kubetune.io/adapter-manifest",
                    "files": {"adapter_config.json": {"sha256": "xyz"}},
                }
            ).encode(),
            "sha256 must be 64 lowercase hex",
        ),
    ],
)
def test_manifest_shape_errors(data: bytes, message: str) -> None:
    with pytest.raises(VerificationError, match=message.replace("(", r"\(")):
        check_manifest(data, expected_digest=manifest_digest(data), source="m")


@pytest.mark.parametrize("name", ["a/../b", "manifest.json", "", "a\\b", "./a"])
def test_unsafe_names(name: str) -> None:
    with pytest.raises(VerificationError):
        safe_relative_path(name, source="m")


def test_file_checks_name_the_file() -> None:
    data = manifest(FILES)
    parsed = check_manifest(data, expected_digest=manifest_digest(data), source="m")
    good = hashlib.sha256(b"weights").hexdigest()
    check_file("adapter_model.safetensors", sha256=good, size=7, manifest=parsed)
    with pytest.raises(
        VerificationError, match=r"adapter_model\.safetensors: SHA-256 .* does not match"
    ):
        check_file("adapter_model.safetensors", sha256="0" * 64, size=7, manifest=parsed)
    with pytest.raises(VerificationError, match=r"adapter_model\.safetensors: size 8 bytes"):
        check_file("adapter_model.safetensors", sha256=good, size=8, manifest=parsed)


@pytest.mark.parametrize(
    ("config", "limits", "base", "message"),
    [
        (CONFIG, AdapterLimits(max_lora_rank=16), None, None),
        (
            CONFIG,
            AdapterLimits(max_lora_rank=8),
            None,
            "LoRA rank 16 is greater than the engine's max LoRA rank 8",
        ),
        (
            {**CONFIG, "rank_pattern": {"v_proj": 64}},
            AdapterLimits(max_lora_rank=32),
            None,
            "LoRA rank 64",
        ),
        (
            {**CONFIG, "peft_type": "IA3"},
            AdapterLimits(max_lora_rank=64),
            None,
            "only LoRA adapters",
        ),
        ({**CONFIG, "r": 0}, AdapterLimits(max_lora_rank=64), None, "r must be a positive integer"),
        (CONFIG, AdapterLimits(max_lora_rank=64, base_model_name="tiny"), "tiny", None),
        (
            CONFIG,
            AdapterLimits(max_lora_rank=64, base_model_name="llama"),
            "tiny",
            "base model mismatch",
        ),
        (
            CONFIG,
            AdapterLimits(max_lora_rank=64, base_model_name="llama"),
            None,
            "names no base model",
        ),
    ],
)
def test_adapter_config_checks(
    config: dict, limits: AdapterLimits, base: str | None, message: str | None
) -> None:
    body = {"baseModel": {"name": base}} if base else {"baseModel": {}}
    data = manifest(FILES, **body)
    parsed = check_manifest(data, expected_digest=manifest_digest(data), source="m")
    if message is None:
        assert check_adapter_config(config, manifest=parsed, limits=limits) >= 1
    else:
        with pytest.raises(VerificationError, match=message):
            check_adapter_config(config, manifest=parsed, limits=limits)


def test_verify_folder_end_to_end(tmp_path: Path) -> None:
    data = manifest(FILES)
    for name, content in FILES.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "manifest.json").write_bytes(data)
    limits = AdapterLimits(max_lora_rank=64)
    verify_folder(tmp_path, expected_digest=manifest_digest(data), limits=limits)
    (tmp_path / "adapter_model.safetensors").write_bytes(b"weighTs")
    with pytest.raises(VerificationError, match=r"adapter_model\.safetensors: SHA-256"):
        verify_folder(tmp_path, expected_digest=manifest_digest(data), limits=limits)
    (tmp_path / "adapter_model.safetensors").unlink()
    with pytest.raises(VerificationError, match="listed in the manifest but missing"):
        verify_folder(tmp_path, expected_digest=manifest_digest(data), limits=limits)


@pytest.mark.parametrize(
    ("uri", "split"),
    [
        ("s3://adapters/support/run-3/adapter/", ("adapters", "support/run-3/adapter/")),
        ("s3://adapters/support/run-3/adapter", ("adapters", "support/run-3/adapter/")),
        ("s3://adapters/", ("adapters", "")),
    ],
)
def test_split_s3_uri(uri: str, split: tuple[str, str]) -> None:
    assert split_s3_uri(uri) == split
