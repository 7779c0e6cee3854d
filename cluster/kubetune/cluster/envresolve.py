"""A container's environment, resolved the way the kubelet does it (pure).

The node agent fetches the ConfigMaps and Secrets a container references
(``referenced_objects``), then ``resolve_container_env`` applies Kubernetes semantics:
``envFrom`` first (in order, with prefixes, invalid names skipped), then ``env`` in order,
where ``$(VAR)`` expands to a variable defined earlier, ``$$(VAR)`` is a literal ``$(VAR)``
and an undefined reference stays as written. ``expand`` is the same rule the agent applies
to ``command``/``args``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubetune.cluster.downward import FieldRefError, field_value, resource_value


class EnvError(ValueError):
    """The environment cannot be built (CreateContainerConfigError); the message says why."""


@dataclass(frozen=True)
class EnvSources:
    """Fetched objects: name -> string data (Secrets already decoded); None when missing."""

    config_maps: Mapping[str, Mapping[str, str] | None] = field(default_factory=dict)
    secrets: Mapping[str, Mapping[str, str] | None] = field(default_factory=dict)


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if text.startswith("$(", i):
            end = text.find(")", i + 2)
            if end != -1:
                name = text[i + 2 : end]
                if name in env:
                    out.append(env[name])
                else:
                    out.append(text[i : end + 1])
                i = end + 1
                continue
        out.append(text[i])
        i += 1
    return "".join(out)


def referenced_objects(container: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """ConfigMap and Secret names a container's env/envFrom reads."""
    config_maps: set[str] = set()
    secrets: set[str] = set()
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            config_maps.add(source["configMapRef"]["name"])
        if "secretRef" in source:
            secrets.add(source["secretRef"]["name"])
    for var in container.get("env") or []:
        ref = var.get("valueFrom") or {}
        if "configMapKeyRef" in ref:
            config_maps.add(ref["configMapKeyRef"]["name"])
        if "secretKeyRef" in ref:
            secrets.add(ref["secretKeyRef"]["name"])
    return config_maps, secrets


def _valid_name(name: str) -> bool:
    return bool(name) and "=" not in name and name.isprintable()


def _lookup(
    kind: str, objects: Mapping[str, Mapping[str, str] | None], ref: Mapping[str, Any]
) -> str | None:
    name, key, optional = ref.get("name", ""), ref.get("key", ""), bool(ref.get("optional"))
    data = objects.get(name)
    if data is None:
        if optional:
            return None
        raise EnvError(f'{kind} "{name}" not found')
    if key not in data:
        if optional:
            return None
        raise EnvError(f'couldn\'t find key {key} in {kind} "{name}"')
    return data[key]


def _env_from(container: Mapping[str, Any], sources: EnvSources, env: dict[str, str]) -> None:
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            kind, ref, objects = "configmap", source["configMapRef"], sources.config_maps
        elif "secretRef" in source:
            kind, ref, objects = "secret", source["secretRef"], sources.secrets
        else:
            continue
        data = objects.get(ref.get("name", ""))
        if data is None:
            if ref.get("optional"):
                continue
            raise EnvError(f'{kind} "{ref.get("name", "")}" not found')
        for key, value in data.items():
            if _valid_name(prefix + key):
                env[prefix + key] = value


def _value_from(
    ref: Mapping[str, Any],
    *,
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    sources: EnvSources,
    pod_ip: str,
    host_ip: str,
    node_allocatable: Mapping[str, str],
) -> str | None:
    if "fieldRef" in ref:
        return field_value(pod, ref["fieldRef"]["fieldPath"], pod_ip=pod_ip, host_ip=host_ip)
    if "resourceFieldRef" in ref:
        return resource_value(
            pod,
            ref["resourceFieldRef"],
            container_name=container["name"],
            node_allocatable=node_allocatable,
        )
    if "configMapKeyRef" in ref:
        return _lookup("configmap", sources.config_maps, ref["configMapKeyRef"])
    if "secretKeyRef" in ref:
        return _lookup("secret", sources.secrets, ref["secretKeyRef"])
    raise EnvError(f"unsupported valueFrom {sorted(ref)}")


def resolve_container_env(
    *,
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    sources: EnvSources,
    pod_ip: str,
    host_ip: str,
    node_allocatable: Mapping[str, str],
) -> dict[str, str]:
    """envFrom then env, with expansion; later definitions win (insertion order kept)."""
    env: dict[str, str] = {}
    _env_from(container, sources, env)
    for var in container.get("env") or []:
        name = var["name"]
        if "value" in var or "valueFrom" not in var:
            env[name] = expand(str(var.get("value", "")), env)
            continue
        try:
            value = _value_from(
                var["valueFrom"],
                pod=pod,
                container=container,
                sources=sources,
                pod_ip=pod_ip,
                host_ip=host_ip,
                node_allocatable=node_allocatable,
            )
        except (FieldRefError, EnvError) as err:
            raise EnvError(f"env {name}: {err}") from err
        if value is not None:
            env[name] = value
    return env
