"""Build the FineTuneJob ``kubetune submit`` applies: a manifest file, flags on top (pure).

Dataset fields may name local files; ``local_datasets`` finds them so the command can check
and upload them, and ``dataset_uri`` names the upload after the content's SHA-256, so the same
bytes keep the same URI (re-submitting changes nothing) and new bytes get a new one (a new
run, as a GitOps-driven change would).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubetune.api.constants import API_VERSION
from kubetune.cli.errors import CliError

KIND = "FineTuneJob"
REMOTE = ("s3://", "pvc://")
DATASET_FIELDS = {
    "train": ("dataset", "train"),
    "validation": ("dataset", "validation"),
    "test": ("evaluation", "testSet"),
}


@dataclass(frozen=True)
class Flags:
    """Flags of ``kubetune submit``; None means: keep the manifest's value (or the default)."""

    base_model: str | None = None
    train: str | None = None
    validation: str | None = None
    test: str | None = None
    validation_split: float | None = None
    method: str | None = None
    rank: int | None = None
    alpha: float | None = None
    epochs: float | None = None
    learning_rate: float | None = None
    batch_size: int | None = None
    max_seq_length: int | None = None
    gpus: int | None = None
    cpu: str | None = None
    memory: str | None = None
    output: str | None = None


def _set(spec: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    if value is None:
        return
    node = spec
    for key in path[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise CliError(f"spec.{'.'.join(path[:-1])} must be a mapping in the manifest")
    node[path[-1]] = value


def _get(spec: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at ``path``, None when absent; a non-mapping on the way is the manifest's
    mistake and is named."""
    node: Any = spec
    for depth, key in enumerate(path):
        if not isinstance(node, Mapping):
            raise CliError(f"spec.{'.'.join(path[:depth])} must be a mapping in the manifest")
        if key not in node:
            return None
        node = node[key]
    return node


def build(
    *,
    name: str | None,
    namespace: str,
    manifest: Mapping[str, Any] | None,
    flags: Flags,
) -> dict[str, Any]:
    """The FineTuneJob to apply, or a ``CliError`` naming the field that is wrong or missing."""
    doc: dict[str, Any] = copy.deepcopy(dict(manifest)) if manifest else {}
    if doc:
        if doc.get("kind") != KIND:
            raise CliError(
                f"the manifest is a {doc.get('kind') or 'document without kind'}, not a {KIND}"
            )
        if doc.get("apiVersion") not in (None, API_VERSION):
            raise CliError(f"apiVersion {doc['apiVersion']} is not {API_VERSION}")
    meta = doc.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise CliError("metadata must be a mapping in the manifest")
    manifest_ns = meta.get("namespace")
    if manifest_ns and manifest_ns != namespace:
        raise CliError(
            f"the manifest's metadata.namespace is {manifest_ns} but the namespace is "
            f"{namespace}: pass -n {manifest_ns} or remove it from the manifest"
        )
    final_name = name or meta.get("name")
    if not final_name:
        raise CliError("no name: pass NAME or set metadata.name in the manifest")
    meta.update({"name": final_name, "namespace": namespace})
    doc["apiVersion"], doc["kind"] = API_VERSION, KIND
    spec = doc.setdefault("spec", {})
    if not isinstance(spec, dict):
        raise CliError("spec must be a mapping in the manifest")

    _set(spec, ("baseModel", "uri"), flags.base_model)
    _set(spec, ("dataset", "train"), flags.train)
    _set(spec, ("dataset", "validation"), flags.validation)
    _set(spec, ("dataset", "validationSplit"), flags.validation_split)
    _set(spec, ("evaluation", "testSet"), flags.test)
    _set(spec, ("method",), flags.method)
    _set(spec, ("lora", "rank"), flags.rank)
    _set(spec, ("lora", "alpha"), flags.alpha)
    _set(spec, ("hyperparameters", "epochs"), flags.epochs)
    _set(spec, ("hyperparameters", "learningRate"), flags.learning_rate)
    _set(spec, ("hyperparameters", "batchSize"), flags.batch_size)
    _set(spec, ("hyperparameters", "maxSeqLength"), flags.max_seq_length)
    _set(spec, ("resources", "gpus"), flags.gpus)
    _set(spec, ("resources", "cpu"), flags.cpu)
    _set(spec, ("resources", "memory"), flags.memory)
    if flags.output is not None:
        _set(spec, ("output", "uri"), flags.output.rstrip("/") + "/")

    for path, flag in (
        (("baseModel", "uri"), "--base-model"),
        (("dataset", "train"), "--train"),
        (("output", "uri"), "--output"),
    ):
        if not _get(spec, path):
            raise CliError(
                f"spec.{'.'.join(path)} is missing: pass {flag} or set it in the manifest"
            )
    return doc


def local_datasets(doc: Mapping[str, Any]) -> dict[str, str]:
    """Dataset roles whose value is a local path (not s3:// or pvc://)."""
    spec = doc.get("spec") or {}
    found = {}
    for role, path in DATASET_FIELDS.items():
        value = _get(spec, path)
        if isinstance(value, str) and value and not value.startswith(REMOTE):
            found[role] = value
    return found


def field_name(role: str) -> str:
    return "spec." + ".".join(DATASET_FIELDS[role])


def dataset_uri(prefix: str, *, role: str, sha256: str) -> str:
    return f"{prefix.rstrip('/')}/{sha256[:16]}/{role}.jsonl"


def set_dataset(doc: dict[str, Any], role: str, uri: str) -> None:
    _set(doc["spec"], DATASET_FIELDS[role], uri)
