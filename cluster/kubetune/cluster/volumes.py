"""Pod volumes as host directories (local cluster node agent).

Each volume becomes a directory under the pod's directory (``<pod dir>/volumes/<name>``):
emptyDir (``medium: Memory`` lives under /dev/shm), configMap and secret (keys or ``items``,
modes), downwardAPI, projected (service-account token from the TokenRequest API bound to the
pod, ``kube-root-ca.crt`` and the namespace: the standard ``kube-api-access-*`` volume), and
persistentVolumeClaim (the claim's directory under the cluster workdir, see ``provisioner``).
hostPath and every other type are refused: the pod fails with reason ``UnsupportedVolume``.

``refresh`` rewrites changed ConfigMap/Secret/downward files and renews tokens at 80 % of
their lifetime, as the kubelet does. Processes see the directories through the path map
(``pathmap``); nothing is mounted.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kubetune.cluster.downward import FieldRefError, field_value, resource_value

log = logging.getLogger(__name__)

SUPPORTED = ("emptyDir", "configMap", "secret", "projected", "downwardAPI", "persistentVolumeClaim")
DEFAULT_MODE = 0o644
DEFAULT_TOKEN_SECONDS = 3600


class VolumeError(RuntimeError):
    """A volume cannot be set up yet (FailedMount); retried."""


class VolumeSources(Protocol):
    async def config_map(self, namespace: str, name: str) -> dict[str, bytes] | None: ...

    async def secret(self, namespace: str, name: str) -> dict[str, bytes] | None: ...

    async def token(
        self,
        *,
        namespace: str,
        service_account: str,
        pod_name: str,
        pod_uid: str,
        audience: str | None,
        expiration_seconds: int,
    ) -> tuple[str, float]:
        """A bound token and its expiry (epoch seconds)."""
        ...

    async def claim_dir(self, namespace: str, claim: str) -> Path: ...


def unsupported_volume(pod: Mapping[str, Any]) -> str | None:
    """A message naming the first volume the local cluster refuses, else None."""
    for volume in pod.get("spec", {}).get("volumes") or []:
        kinds = [k for k in volume if k != "name"]
        kind = kinds[0] if kinds else "emptyDir"
        if kind not in SUPPORTED:
            return (
                f'volume "{volume.get("name")}" of type {kind} is not supported by the local '
                f"cluster (supported: {', '.join(SUPPORTED)}); hostPath is refused on purpose: "
                f"pod processes share the host filesystem"
            )
    return None


def decode_config_map(obj: Mapping[str, Any]) -> dict[str, bytes]:
    data = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data


def decode_secret(obj: Mapping[str, Any]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}


def write_atomic(path: Path, data: bytes, mode: int) -> bool:
    """Write if changed (temp file + rename); True when the content changed."""
    with contextlib.suppress(FileNotFoundError):
        if path.read_bytes() == data and (path.stat().st_mode & 0o777) == mode:
            return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    tmp.replace(path)
    return True


@dataclass
class _Token:
    path: Path
    mode: int
    audience: str | None
    expiration: int
    issued: float = 0.0
    expires: float = 0.0


@dataclass
class PodVolumes:
    """The volumes of one pod: ``await setup()`` once, ``refresh()`` periodically."""

    pod: Mapping[str, Any]
    pod_dir: Path
    sources: VolumeSources
    pod_ip: str
    host_ip: str
    node_allocatable: Mapping[str, str]
    memory_dir: Path | None = None
    host_dirs: dict[str, Path] = field(default_factory=dict)
    tokens: list[_Token] = field(default_factory=list)
    _written: dict[str, set[Path]] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return str(self.pod["metadata"]["namespace"])

    async def setup(self) -> dict[str, Path]:
        for volume in self.pod.get("spec", {}).get("volumes") or []:
            name = volume["name"]
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                self.host_dirs[name] = await self.sources.claim_dir(self.namespace, claim)
                continue
            medium = (volume.get("emptyDir") or {}).get("medium")
            if "emptyDir" in volume and medium == "Memory" and self.memory_dir is not None:
                target = self.memory_dir / str(self.pod["metadata"]["uid"]) / name
                target.mkdir(parents=True, exist_ok=True)
                self.host_dirs[name] = target
                continue
            target = self.pod_dir / "volumes" / name
            target.mkdir(parents=True, exist_ok=True)
            self.host_dirs[name] = target
        await self.refresh(force_tokens=True)
        return dict(self.host_dirs)

    async def refresh(self, *, force_tokens: bool = False) -> None:
        """(Re)write file-backed volumes; renew tokens at 80 % of their lifetime."""
        first = not self.tokens and force_tokens
        for volume in self.pod.get("spec", {}).get("volumes") or []:
            name = volume["name"]
            target = self.host_dirs.get(name)
            if target is None:
                continue
            files: dict[str, tuple[bytes, int]] = {}
            if "configMap" in volume:
                await self._config_map(volume["configMap"], files, default=DEFAULT_MODE)
            elif "secret" in volume:
                spec = dict(volume["secret"])
                spec["name"] = spec.pop("secretName", "")
                await self._secret(spec, files, default=DEFAULT_MODE)
            elif "downwardAPI" in volume:
                self._downward(volume["downwardAPI"], files, default=DEFAULT_MODE)
            elif "projected" in volume:
                await self._projected(volume["projected"], target, files, first=first)
            else:
                continue
            self._sync(name, target, files)
        now = time.time()
        for token in self.tokens:
            due = token.issued + 0.8 * (token.expires - token.issued)
            if force_tokens or now >= due:
                await self._issue(token)

    def cleanup(self) -> None:
        shutil.rmtree(self.pod_dir / "volumes", ignore_errors=True)
        if self.memory_dir is not None:
            shutil.rmtree(self.memory_dir / str(self.pod["metadata"]["uid"]), ignore_errors=True)

    # ------------------------------------------------------------------ sources

    def _sync(self, name: str, target: Path, files: Mapping[str, tuple[bytes, int]]) -> None:
        wanted = set()
        for rel, (data, mode) in files.items():
            path = target / rel
            write_atomic(path, data, mode)
            wanted.add(path)
        for stale in self._written.get(name, set()) - wanted:
            if any(stale == t.path for t in self.tokens):
                continue
            stale.unlink(missing_ok=True)
        self._written[name] = wanted | {
            t.path for t in self.tokens if t.path.is_relative_to(target)
        }

    def _project_items(
        self,
        data: Mapping[str, bytes],
        spec: Mapping[str, Any],
        files: dict[str, tuple[bytes, int]],
        *,
        kind: str,
        default: int,
    ) -> None:
        mode = int(spec.get("defaultMode", default))
        items = spec.get("items")
        if not items:
            for key, value in data.items():
                files[key] = (value, mode)
            return
        for item in items:
            key = item["key"]
            if key not in data:
                if spec.get("optional"):
                    continue
                raise VolumeError(
                    f'{kind} "{spec.get("name")}" has no key "{key}" (volume item {item["path"]})'
                )
            files[item["path"]] = (data[key], int(item.get("mode", mode)))

    async def _config_map(
        self, spec: Mapping[str, Any], files: dict[str, tuple[bytes, int]], *, default: int
    ) -> None:
        data = await self.sources.config_map(self.namespace, spec.get("name", ""))
        if data is None:
            if spec.get("optional"):
                return
            raise VolumeError(f'configmap "{spec.get("name")}" not found')
        self._project_items(data, spec, files, kind="configmap", default=default)

    async def _secret(
        self, spec: Mapping[str, Any], files: dict[str, tuple[bytes, int]], *, default: int
    ) -> None:
        data = await self.sources.secret(self.namespace, spec.get("name", ""))
        if data is None:
            if spec.get("optional"):
                return
            raise VolumeError(f'secret "{spec.get("name")}" not found')
        self._project_items(data, spec, files, kind="secret", default=default)

    def _downward(
        self, spec: Mapping[str, Any], files: dict[str, tuple[bytes, int]], *, default: int
    ) -> None:
        mode = int(spec.get("defaultMode", default))
        containers = self.pod.get("spec", {}).get("containers") or [{}]
        for item in spec.get("items") or []:
            try:
                if "fieldRef" in item:
                    value = field_value(
                        self.pod,
                        item["fieldRef"]["fieldPath"],
                        pod_ip=self.pod_ip,
                        host_ip=self.host_ip,
                        whole_maps=True,
                    )
                else:
                    value = resource_value(
                        self.pod,
                        item.get("resourceFieldRef") or {},
                        container_name=str(containers[0].get("name", "")),
                        node_allocatable=self.node_allocatable,
                    )
            except FieldRefError as err:
                raise VolumeError(f"downwardAPI item {item.get('path')}: {err}") from err
            files[item["path"]] = (value.encode(), int(item.get("mode", mode)))

    async def _projected(
        self,
        spec: Mapping[str, Any],
        target: Path,
        files: dict[str, tuple[bytes, int]],
        *,
        first: bool,
    ) -> None:
        mode = int(spec.get("defaultMode", DEFAULT_MODE))
        for source in spec.get("sources") or []:
            if "configMap" in source:
                await self._config_map(source["configMap"], files, default=mode)
            elif "secret" in source:
                await self._secret(source["secret"], files, default=mode)
            elif "downwardAPI" in source:
                self._downward({**source["downwardAPI"], "defaultMode": mode}, files, default=mode)
            elif "serviceAccountToken" in source and first:
                token = source["serviceAccountToken"]
                self.tokens.append(
                    _Token(
                        path=target / token.get("path", "token"),
                        mode=mode,
                        audience=token.get("audience") or None,
                        expiration=int(token.get("expirationSeconds") or DEFAULT_TOKEN_SECONDS),
                    )
                )
            elif "clusterTrustBundle" in source:
                log.warning("clusterTrustBundle projections are not supported; skipped")

    async def _issue(self, token: _Token) -> None:
        meta = self.pod["metadata"]
        value, expires = await self.sources.token(
            namespace=self.namespace,
            service_account=str(self.pod.get("spec", {}).get("serviceAccountName") or "default"),
            pod_name=str(meta["name"]),
            pod_uid=str(meta["uid"]),
            audience=token.audience,
            expiration_seconds=token.expiration,
        )
        token.issued = time.time()
        token.expires = max(expires, token.issued + 60)
        write_atomic(token.path, value.encode(), token.mode)


def ensure_private(path: Path) -> None:
    """Pod directories hold secrets: owner-only access."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
