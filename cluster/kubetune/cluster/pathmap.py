"""Container paths -> host paths: how the local cluster honours ``volumeMounts`` without mounts.

Pod processes run on the host filesystem, so the node agent cannot mount a volume at
``mountPath``. Instead every container gets a path map ``{mountPath: hostDir}`` (plus
``terminationMessagePath -> hostFile``), exported as ``KUBETUNE_PATH_MAP`` (JSON), and the
agent rewrites the pod spec's own paths before the process starts: every env value and every
argument that names a path under a mountPath is replaced by the host path (also the right-hand
side of ``--flag=/path`` and ``NAME=/path``, and each element of ``/a:/b`` lists).

Code that builds container paths itself (constants such as ``/etc/kubetune``) resolves them with
the longest-prefix rule implemented by ``map_path``; ``docs/local-cluster.md`` states the
contract. Everything here is pure.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping

PATH_MAP_ENV = "KUBETUNE_PATH_MAP"


def normalise(path: str) -> str:
    """``/etc/kubetune/`` -> ``/etc/kubetune``; relative paths are left to the caller."""
    return posixpath.normpath(path) if path.startswith("/") else path


def map_path(path: str, path_map: Mapping[str, str]) -> str | None:
    """The host path for a container path, by longest matching mountPath; None when unmapped."""
    if not path.startswith("/"):
        return None
    path = posixpath.normpath(path)
    best = ""
    for mount in path_map:
        if (path == mount or path.startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
            best = mount
    if not best:
        return None
    rest = path[len(best) :].lstrip("/")
    host = path_map[best]
    return posixpath.join(host, rest) if rest else host


def rewrite_value(value: str, path_map: Mapping[str, str]) -> str:
    """Rewrite a path-valued string (env value or argument) that points into a mount."""
    if not path_map or "/" not in value:
        return value
    direct = map_path(value, path_map)
    if direct is not None:
        return direct
    if ":" in value and "://" not in value:
        parts = value.split(":")
        if all(p.startswith("/") for p in parts if p):
            return ":".join(map_path(p, path_map) or p for p in parts)
    head, sep, tail = value.partition("=")
    if sep and tail.startswith("/") and "/" not in head:
        mapped = map_path(tail, path_map)
        if mapped is not None:
            return f"{head}={mapped}"
    return value


def build_path_map(
    *,
    mounts: list[tuple[str, str]],
    termination_path: str,
    termination_file: str,
) -> dict[str, str]:
    """``{mountPath: hostPath}`` for one container, termination file included."""
    path_map = {normalise(mount): host for mount, host in mounts}
    if termination_path:
        path_map[normalise(termination_path)] = termination_file
    return path_map


def encode(path_map: Mapping[str, str]) -> str:
    return json.dumps(dict(sorted(path_map.items())), separators=(",", ":"))


def decode(text: str) -> dict[str, str]:
    data = json.loads(text) if text else {}
    if not isinstance(data, dict):
        raise ValueError(f"{PATH_MAP_ENV} must be a JSON object")
    return {str(k): str(v) for k, v in data.items()}
