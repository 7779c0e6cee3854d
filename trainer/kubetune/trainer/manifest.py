"""The adapter manifest (``adapter/manifest.json``): build it, serialise it, verify files.

Format: ``kubetune.api.contract`` (schema version 1). The manifest is the proof of an
adapter: SHA-256 and size of every file beside it, where the base model and the data came
from, the resolved hyperparameters, metrics, evaluation details and software versions. Its
own digest ("sha256:" + SHA-256 of the exact bytes) identifies the adapter version. Pure.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from kubetune.api import contract


def build(
    *,
    run: str,
    job_namespace: str,
    job_name: str,
    generation: int,
    created_at: str,
    method: str,
    base_model: dict[str, Any],
    adapter: dict[str, Any],
    files: Mapping[str, bytes | tuple[str, int]],
    datasets: dict[str, Any],
    hyperparameters: dict[str, Any],
    metrics: dict[str, Any],
    evaluation: dict[str, Any],
    training: dict[str, Any],
    versions: dict[str, str],
) -> dict[str, Any]:
    """``files`` maps a file name to its bytes or to an already computed (sha256, size)."""
    if contract.MANIFEST_FILE in files:
        raise ValueError("the manifest cannot list itself")
    listing = {}
    for name in sorted(files):
        value = files[name]
        if isinstance(value, bytes):
            listing[name] = {"sha256": hashlib.sha256(value).hexdigest(), "size": len(value)}
        else:
            listing[name] = {"sha256": value[0], "size": value[1]}
    return {
        "schemaVersion": contract.MANIFEST_SCHEMA_VERSION,
        "kind": contract.MANIFEST_KIND,
        "run": run,
        "job": {"namespace": job_namespace, "name": job_name, "generation": generation},
        "createdAt": created_at,
        "method": method,
        "baseModel": base_model,
        "adapter": adapter,
        "files": listing,
        "datasets": datasets,
        "hyperparameters": hyperparameters,
        "metrics": {k: v for k, v in metrics.items() if v is not None},
        "evaluation": evaluation,
        "training": training,
        "versions": versions,
    }


def serialize(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


def digest(manifest_bytes: bytes) -> str:
    return "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()


def verify(manifest: dict[str, Any], files: Mapping[str, bytes]) -> list[str]:
    """Problems found comparing ``files`` (name -> bytes) with the manifest; empty if none."""
    problems = []
    if manifest.get("schemaVersion") != contract.MANIFEST_SCHEMA_VERSION:
        problems.append(f"unsupported schemaVersion {manifest.get('schemaVersion')!r}")
    if manifest.get("kind") != contract.MANIFEST_KIND:
        problems.append(f"kind is {manifest.get('kind')!r}, not {contract.MANIFEST_KIND}")
    listed = manifest.get("files", {})
    for name, expected in sorted(listed.items()):
        if name not in files:
            problems.append(f"{name}: listed but missing")
            continue
        data = files[name]
        if len(data) != expected.get("size"):
            problems.append(f"{name}: size {len(data)} != {expected.get('size')}")
        elif hashlib.sha256(data).hexdigest() != expected.get("sha256"):
            problems.append(f"{name}: SHA-256 mismatch")
    for name in sorted(set(files) - set(listed) - {contract.MANIFEST_FILE}):
        problems.append(f"{name}: present but not listed")
    return problems
