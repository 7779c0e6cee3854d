"""Reading a FineTuneJob object: identity, and the checks the CRD schema cannot express
(the training-relevant spec and its hash are in ``kubetune.api.training``).

The API server has already applied defaults and schema/CEL validation, so this module only
adds what needs the whole object (or the operator's settings) to decide. Pure functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ObjectRef:
    namespace: str
    name: str
    uid: str
    generation: int

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> ObjectRef:
        meta = body["metadata"]
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            generation=int(meta.get("generation", 1)),
        )


@dataclass(frozen=True)
class SpecProblem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"spec.{self.field}: {self.message}"


def validate(spec: Mapping[str, Any]) -> list[SpecProblem]:
    """Problems admission cannot catch (e.g. when the CRD was installed without CEL support)."""
    problems: list[SpecProblem] = []
    resources = spec.get("resources", {})
    if spec.get("method") == "qlora" and int(resources.get("gpus", 1)) < 1:
        problems.append(SpecProblem("method", "qlora needs resources.gpus >= 1"))
    output = spec.get("output", {}).get("uri", "")
    if not output.startswith("s3://"):
        problems.append(SpecProblem("output.uri", f"{output!r} must be an s3:// URI"))
    base = spec.get("baseModel", {}).get("uri", "")
    if not base.startswith(("s3://", "pvc://")):
        problems.append(SpecProblem("baseModel.uri", f"{base!r} must be s3:// or pvc://"))
    dataset = spec.get("dataset", {})
    for key in ("train", "validation"):
        uri = dataset.get(key)
        if uri is not None and not str(uri).startswith(("s3://", "pvc://")):
            problems.append(SpecProblem(f"dataset.{key}", f"{uri!r} must be s3:// or pvc://"))
    if spec.get("suspend") and spec.get("queueName"):
        problems.append(SpecProblem("suspend", "suspend is managed by Kueue when queueName is set"))
    return problems


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key/path`` -> (bucket, key/path)."""
    rest = uri.removeprefix("s3://")
    bucket, _, key = rest.partition("/")
    return bucket, key
