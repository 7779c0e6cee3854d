"""Verifying an adapter version before it may be loaded: the manifest against the digest the
desired set pins, every file against the manifest's SHA-256 and size, and the adapter config
against what the engine can serve (LoRA, rank, base model).

Pure apart from reading local files. Every refusal is a ``VerificationError`` whose message
names the file or field and both values, because it ends up in the pod annotation and in the
AdapterDeployment status where a person has to act on it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final

from kubetune.api.contract import MANIFEST_FILE, MANIFEST_KIND, MANIFEST_SCHEMA_VERSION
from kubetune.serving.adapter_config import (
    ADAPTER_CONFIG_FILE,
    ADAPTER_WEIGHTS_FILE,
    AdapterConfigError,
    lora_rank,
)

_CHUNK: Final = 1 << 20


class VerificationError(Exception):
    """The version must not be loaded; the message says exactly what did not match."""


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    size: int | None


@dataclass(frozen=True)
class Manifest:
    files: Mapping[str, FileEntry]
    base_model_name: str | None
    raw: Mapping[str, Any]


@dataclass(frozen=True)
class AdapterLimits:
    """What the engine in this pod can serve."""

    max_lora_rank: int
    base_model_name: str | None = None  # None: not known, not checked


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_digest(data: bytes) -> str:
    """The adapter digest of the contract: ``sha256:`` + SHA-256 of the manifest bytes."""
    return "sha256:" + sha256_hex(data)


def check_manifest(data: bytes, *, expected_digest: str, source: str) -> Manifest:
    """Parse ``manifest.json`` after checking its bytes hash to the pinned digest."""
    actual = manifest_digest(data)
    if actual != expected_digest:
        raise VerificationError(
            f"digest mismatch: the desired set pins {expected_digest} but {source} "
            f"hashes to {actual}; refusing to load"
        )
    try:
        raw = json.loads(data)
    except ValueError as err:
        raise VerificationError(f"{source} is not JSON: {err}") from None
    if not isinstance(raw, dict):
        raise VerificationError(f"{source} must hold a JSON object")
    if raw.get("kind") != MANIFEST_KIND:
        raise VerificationError(f"{source}: kind is {raw.get('kind')!r}, not {MANIFEST_KIND!r}")
    if raw.get("schemaVersion") != MANIFEST_SCHEMA_VERSION:
        raise VerificationError(
            f"{source}: schemaVersion {raw.get('schemaVersion')!r} is not supported "
            f"(this agent reads {MANIFEST_SCHEMA_VERSION})"
        )
    files_raw = raw.get("files")
    if not isinstance(files_raw, dict) or not files_raw:
        raise VerificationError(f"{source}: files must map each file name to its sha256")
    files = {
        safe_relative_path(name, source=source): _entry(name, e, source=source)
        for name, e in files_raw.items()
    }
    for required in (ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE):
        if required not in files:
            raise VerificationError(f"{source}: files does not list {required}")
    base = raw.get("baseModel")
    base_name = base.get("name") if isinstance(base, dict) else None
    return Manifest(
        files=files,
        base_model_name=base_name if isinstance(base_name, str) and base_name else None,
        raw=raw,
    )


def safe_relative_path(name: Any, *, source: str) -> str:
    """A manifest file name that stays inside the adapter folder."""
    path = PurePosixPath(name) if isinstance(name, str) else None
    if (
        path is None
        or not name
        or path.is_absolute()
        or ".." in path.parts
        or "\\" in name
        or str(path) != name
        or name == MANIFEST_FILE
    ):
        raise VerificationError(f"{source}: file name {name!r} is not a plain relative path")
    return str(name)


def check_file(name: str, *, sha256: str, size: int, manifest: Manifest) -> None:
    """Compare one file's measured hash and size with the manifest."""
    entry = manifest.files[name]
    if entry.size is not None and entry.size != size:
        raise VerificationError(
            f"{name}: size {size} bytes does not match the manifest's {entry.size}; refusing "
            "to load (corrupted or replaced upload)"
        )
    if entry.sha256 != sha256:
        raise VerificationError(
            f"{name}: SHA-256 {sha256} does not match the manifest's {entry.sha256}; refusing "
            "to load (corrupted or replaced upload)"
        )


def hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def check_adapter_config(config: Any, *, manifest: Manifest, limits: AdapterLimits) -> int:
    """The adapter's rank, after checking it is a LoRA this engine serves on this base model."""
    if not isinstance(config, dict):
        raise VerificationError(f"{ADAPTER_CONFIG_FILE} must hold a JSON object")
    try:
        rank = lora_rank(config)
    except AdapterConfigError as err:
        raise VerificationError(str(err)) from None
    if rank > limits.max_lora_rank:
        raise VerificationError(
            f"LoRA rank {rank} is greater than the engine's max LoRA rank "
            f"{limits.max_lora_rank}; retrain with a smaller rank or raise --max-lora-rank"
        )
    if limits.base_model_name is not None:
        if manifest.base_model_name is None:
            raise VerificationError(
                f"the manifest names no base model, so it cannot be checked against the "
                f"engine's {limits.base_model_name!r}"
            )
        if manifest.base_model_name != limits.base_model_name:
            raise VerificationError(
                f"base model mismatch: the adapter was trained on "
                f"{manifest.base_model_name!r} but this engine serves "
                f"{limits.base_model_name!r}"
            )
    return rank


def verify_folder(folder: Path, *, expected_digest: str, limits: AdapterLimits) -> Manifest:
    """Re-verify a downloaded folder completely (before every load, also after restarts)."""
    source = str(folder / MANIFEST_FILE)
    try:
        data = (folder / MANIFEST_FILE).read_bytes()
    except FileNotFoundError:
        raise VerificationError(f"{source} is missing") from None
    manifest = check_manifest(data, expected_digest=expected_digest, source=source)
    for name in manifest.files:
        try:
            sha256, size = hash_file(folder / name)
        except FileNotFoundError:
            raise VerificationError(f"{name}: listed in the manifest but missing") from None
        check_file(name, sha256=sha256, size=size, manifest=manifest)
    config = _read_json(folder / ADAPTER_CONFIG_FILE)
    check_adapter_config(config, manifest=manifest, limits=limits)
    return manifest


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise VerificationError(f"{path.name} is not JSON: {err}") from None


def _entry(name: str, raw: Any, *, source: str) -> FileEntry:
    sha = raw.get("sha256") if isinstance(raw, dict) else None
    if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise VerificationError(f"{source}: files[{name!r}].sha256 must be 64 lowercase hex")
    size = raw.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise VerificationError(f"{source}: files[{name!r}].size must be a byte count")
    return FileEntry(sha256=sha, size=size)
