"""The desired adapter set of one inference Deployment, as the operator writes it into the
ConfigMap ``kubetune-adapters-<deployment>`` key ``desired.json`` (``kubetune.api.contract``).

Pure parsing: a malformed document is refused as a whole (``DesiredSetError``); a malformed
adapter entry is set aside with a message naming its field, so one bad entry never stops the
others from being served, and the agent reports it as Failed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from kubetune.api.contract import VERSIONED_NAME_SEPARATOR

SCHEMA_VERSION: Final = 1
_VERSION = re.compile(r"^[0-9a-f]{12}$")
_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
# A stable name that itself looks versioned would be ambiguous in the engine's name space.
_VERSIONED = re.compile(
    rf"^(?P<name>.+){re.escape(VERSIONED_NAME_SEPARATOR)}(?P<version>[0-9a-f]{{12}})$"
)


class DesiredSetError(ValueError):
    """The whole desired.json is unusable; the message says why."""


@dataclass(frozen=True)
class VersionRef:
    """One published adapter version: where it is and what its manifest must hash to."""

    name: str
    version: str
    uri: str
    digest: str

    @property
    def engine_name(self) -> str:
        """The name the version is loaded under in the engine (never reused for other bytes)."""
        return f"{self.name}{VERSIONED_NAME_SEPARATOR}{self.version}"


@dataclass(frozen=True)
class DesiredAdapter:
    name: str
    active: VersionRef
    canary: VersionRef | None = None
    canary_pods: frozenset[str] = frozenset()

    def target_for(self, pod_name: str) -> VersionRef:
        """The version this pod should serve: the canary when the pod is listed for it."""
        if self.canary is not None and pod_name in self.canary_pods:
            return self.canary
        return self.active


@dataclass(frozen=True)
class DesiredSet:
    resource_version: str
    adapters: tuple[DesiredAdapter, ...] = ()
    invalid: Mapping[str, str] = field(default_factory=dict)  # entry name -> what is wrong


def split_engine_name(engine_name: str) -> tuple[str, str] | None:
    """``(name, version)`` of a versioned engine name, or None for any other name."""
    match = _VERSIONED.match(engine_name)
    return (match["name"], match["version"]) if match else None


def parse_desired(text: str | None, *, resource_version: str) -> DesiredSet:
    """The desired set from the ConfigMap's ``desired.json`` (None or empty: no adapters)."""
    if not text or not text.strip():
        return DesiredSet(resource_version=resource_version)
    try:
        document = json.loads(text)
    except ValueError as err:
        raise DesiredSetError(f"desired.json is not JSON: {err}") from None
    if not isinstance(document, dict):
        raise DesiredSetError("desired.json must hold a JSON object")
    if document.get("schemaVersion") != SCHEMA_VERSION:
        raise DesiredSetError(
            f"desired.json schemaVersion {document.get('schemaVersion')!r} is not supported "
            f"(this agent reads {SCHEMA_VERSION}); upgrade the agent image"
        )
    entries = document.get("adapters", [])
    if not isinstance(entries, list):
        raise DesiredSetError("desired.json adapters must be a list")
    adapters: list[DesiredAdapter] = []
    invalid: dict[str, str] = {}
    for index, entry in enumerate(entries):
        label = entry.get("name") if isinstance(entry, dict) else None
        key = label if isinstance(label, str) and label else f"adapters[{index}]"
        try:
            adapter = _adapter(entry, where=f"adapters[{index}]")
        except DesiredSetError as err:
            invalid[key] = str(err)
            continue
        if adapter.name in invalid or any(a.name == adapter.name for a in adapters):
            invalid[adapter.name] = f"adapters[{index}]: name {adapter.name!r} appears twice"
            adapters = [a for a in adapters if a.name != adapter.name]
            continue
        adapters.append(adapter)
    return DesiredSet(resource_version=resource_version, adapters=tuple(adapters), invalid=invalid)


def _adapter(entry: Any, *, where: str) -> DesiredAdapter:
    if not isinstance(entry, dict):
        raise DesiredSetError(f"{where} must be an object")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise DesiredSetError(f"{where}.name must be a non-empty string without spaces around it")
    if split_engine_name(name) is not None:
        raise DesiredSetError(
            f"{where}.name {name!r} looks like a versioned name "
            f"(<name>{VERSIONED_NAME_SEPARATOR}<12 hex>); choose another adapter name"
        )
    active = _version(name, entry.get("active"), where=f"{where}.active")
    canary_raw = entry.get("canary")
    if canary_raw is None:
        return DesiredAdapter(name=name, active=active)
    canary = _version(name, canary_raw, where=f"{where}.canary")
    pods = canary_raw.get("pods", [])
    if not isinstance(pods, list) or not all(isinstance(p, str) for p in pods):
        raise DesiredSetError(f"{where}.canary.pods must be a list of pod names")
    return DesiredAdapter(name=name, active=active, canary=canary, canary_pods=frozenset(pods))


def _version(name: str, raw: Any, *, where: str) -> VersionRef:
    if not isinstance(raw, Mapping):
        raise DesiredSetError(f"{where} must be an object with version, uri and digest")
    version, uri, digest = raw.get("version"), raw.get("uri"), raw.get("digest")
    digest_match = _DIGEST.match(digest) if isinstance(digest, str) else None
    if digest_match is None or not isinstance(digest, str):
        raise DesiredSetError(f"{where}.digest must be 'sha256:' and 64 lowercase hex digits")
    if not isinstance(version, str) or not _VERSION.match(version):
        raise DesiredSetError(f"{where}.version must be 12 lowercase hex digits")
    if version != digest_match[1][:12]:
        raise DesiredSetError(
            f"{where}.version {version} is not the first 12 hex digits of its digest"
        )
    if not isinstance(uri, str) or not re.match(r"^s3://[^/]+/", uri):
        raise DesiredSetError(f"{where}.uri must be s3://<bucket>/<prefix>/, got {uri!r}")
    return VersionRef(name=name, version=version, uri=uri, digest=digest)
