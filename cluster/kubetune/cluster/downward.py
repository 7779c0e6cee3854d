"""Downward API values: what ``fieldRef`` and ``resourceFieldRef`` resolve to (pure).

Shared by env resolution (``envresolve``) and downwardAPI/projected volumes (``volumes``) of
the local cluster's node agent. Quantities follow Kubernetes: CPU is rounded up to whole
divisor units, memory is bytes divided by the divisor, rounded up.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

_SUFFIX = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_QUANTITY = re.compile(r"^(?P<num>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?P<suffix>[a-zA-Z]*)$")
_INDEXED = re.compile(r"^metadata\.(?P<map>labels|annotations)\['(?P<key>[^']+)'\]$")


class FieldRefError(ValueError):
    """An unsupported or malformed field path; the message names it."""


def parse_quantity(text: str) -> Decimal:
    """``"500m"`` -> 0.5, ``"1Gi"`` -> 1073741824."""
    match = _QUANTITY.match(str(text).strip())
    if not match or match.group("suffix") not in _SUFFIX:
        raise FieldRefError(f"invalid quantity {text!r}")
    try:
        return Decimal(match.group("num")) * _SUFFIX[match.group("suffix")]
    except InvalidOperation as err:
        raise FieldRefError(f"invalid quantity {text!r}") from err


def format_map(values: Mapping[str, str]) -> str:
    """The downwardAPI volume format for labels/annotations: sorted ``key="value"`` lines."""
    lines = []
    for key in sorted(values):
        escaped = values[key].replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        lines.append(f'{key}="{escaped}"')
    return "\n".join(lines)


def field_value(
    pod: Mapping[str, Any], path: str, *, pod_ip: str, host_ip: str, whole_maps: bool = False
) -> str:
    """The value of a ``fieldRef.fieldPath``; ``whole_maps`` allows metadata.labels itself."""
    meta = pod.get("metadata", {})
    spec = pod.get("spec", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if path in simple:
        return str(simple[path])
    indexed = _INDEXED.match(path)
    if indexed:
        return str((meta.get(indexed.group("map")) or {}).get(indexed.group("key"), ""))
    if whole_maps and path in ("metadata.labels", "metadata.annotations"):
        return format_map(meta.get(path.split(".", 1)[1]) or {})
    raise FieldRefError(f"unsupported fieldRef.fieldPath {path!r}")


def resource_value(
    pod: Mapping[str, Any],
    ref: Mapping[str, Any],
    *,
    container_name: str,
    node_allocatable: Mapping[str, str],
) -> str:
    """The value of a ``resourceFieldRef``; unset limits fall back to node allocatable."""
    name = ref.get("containerName") or container_name
    container = next(
        (c for c in pod.get("spec", {}).get("containers", []) if c.get("name") == name), None
    )
    if container is None:
        raise FieldRefError(f"resourceFieldRef names unknown container {name!r}")
    resource = str(ref.get("resource", ""))
    kind, _, res = resource.partition(".")
    if kind not in ("limits", "requests") or res not in ("cpu", "memory", "ephemeral-storage"):
        raise FieldRefError(f"unsupported resourceFieldRef.resource {resource!r}")
    resources = container.get("resources", {}) or {}
    raw = (resources.get(kind) or {}).get(res)
    if raw is None and kind == "requests":
        raw = (resources.get("limits") or {}).get(res)
    if raw is None:
        raw = node_allocatable.get(res, "0") if kind == "limits" else "0"
    value = parse_quantity(str(raw))
    divisor = parse_quantity(str(ref.get("divisor") or "1"))
    if divisor <= 0:
        raise FieldRefError(f"resourceFieldRef divisor {ref.get('divisor')!r} must be positive")
    return str(math.ceil(value / divisor))
