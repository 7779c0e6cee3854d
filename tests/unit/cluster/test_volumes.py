"""Volume materialisation into host directories (``kubetune.cluster.volumes``), with fake
API sources.

Covers: refused volume types (hostPath and others) with a message naming the volume; emptyDir
(disk and Memory medium), configMap (all keys, items, binaryData, modes, missing key errors,
optional), secret (items and modes), downwardAPI, persistentVolumeClaim directories, and the
standard projected service-account volume (bound token request, ca.crt, namespace); refresh
rewrites changed keys, removes deleted ones and renews tokens near expiry; cleanup.
"""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path
from typing import Any

import pytest

from kubetune.cluster.volumes import (
    PodVolumes,
    VolumeError,
    decode_config_map,
    decode_secret,
    unsupported_volume,
)


class FakeSources:
    def __init__(self, tmp: Path) -> None:
        self.config_maps: dict[str, dict[str, bytes]] = {
            "app": {"a.conf": b"A", "b.conf": b"B"},
            "kube-root-ca.crt": {"ca.crt": b"-----BEGIN CERTIFICATE-----"},
        }
        self.secrets = {"db": {"password": b"pw", "user": b"u"}}
        self.tokens: list[dict[str, Any]] = []
        self.claims = tmp / "claims"
        self.lifetime = 3600.0

    async def config_map(self, namespace: str, name: str) -> dict[str, bytes] | None:
        return self.config_maps.get(name)

    async def secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        return self.secrets.get(name)

    async def token(self, **request: Any) -> tuple[str, float]:
        self.tokens.append(request)
        return f"header.payload{len(self.tokens)}.sig", time.time() + self.lifetime

    async def claim_dir(self, namespace: str, claim: str) -> Path:
        path = self.claims / namespace / claim
        path.mkdir(parents=True, exist_ok=True)
        return path


POD: dict[str, Any] = {
    "metadata": {"name": "p", "namespace": "ns", "uid": "uid-1", "labels": {"app": "x"}},
    "spec": {
        "serviceAccountName": "runner",
        "containers": [{"name": "c"}],
        "volumes": [
            {"name": "scratch", "emptyDir": {}},
            {"name": "fast", "emptyDir": {"medium": "Memory"}},
            {"name": "cfg", "configMap": {"name": "app", "defaultMode": 0o640}},
            {
                "name": "pick",
                "configMap": {
                    "name": "app",
                    "items": [{"key": "b.conf", "path": "sub/b"}],
                    "optional": True,
                },
            },
            {
                "name": "sec",
                "secret": {
                    "secretName": "db",
                    "items": [{"key": "password", "path": "pw", "mode": 0o400}],
                },
            },
            {"name": "maybe", "configMap": {"name": "absent", "optional": True}},
            {
                "name": "info",
                "downwardAPI": {
                    "items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]
                },
            },
            {"name": "data", "persistentVolumeClaim": {"claimName": "claim"}},
            {
                "name": "kube-api-access",
                "projected": {
                    "defaultMode": 0o644,
                    "sources": [
                        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                        {
                            "configMap": {
                                "name": "kube-root-ca.crt",
                                "items": [{"key": "ca.crt", "path": "ca.crt"}],
                            }
                        },
                        {
                            "downwardAPI": {
                                "items": [
                                    {
                                        "path": "namespace",
                                        "fieldRef": {"fieldPath": "metadata.namespace"},
                                    }
                                ]
                            }
                        },
                    ],
                },
            },
        ],
    },
}


def volumes(tmp_path: Path, sources: FakeSources, pod: dict[str, Any] = POD) -> PodVolumes:
    return PodVolumes(
        pod=pod,
        pod_dir=tmp_path / "pod",
        sources=sources,
        pod_ip="127.1.0.2",
        host_ip="127.0.0.1",
        node_allocatable={},
        memory_dir=tmp_path / "shm",
    )


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_setup_refresh_and_cleanup(tmp_path: Path) -> None:
    sources = FakeSources(tmp_path)
    vols = volumes(tmp_path, sources)
    dirs = asyncio.run(vols.setup())
    assert dirs["scratch"] == tmp_path / "pod" / "volumes" / "scratch"
    assert dirs["fast"] == tmp_path / "shm" / "uid-1" / "fast"
    assert (dirs["cfg"] / "a.conf").read_bytes() == b"A" and mode(dirs["cfg"] / "a.conf") == 0o640
    assert sorted(p.name for p in dirs["pick"].rglob("*") if p.is_file()) == ["b"]
    assert (dirs["sec"] / "pw").read_bytes() == b"pw" and mode(dirs["sec"] / "pw") == 0o400
    assert not (dirs["sec"] / "user").exists()
    assert list(dirs["maybe"].iterdir()) == []
    assert (dirs["info"] / "labels").read_text() == 'app="x"'
    assert dirs["data"] == tmp_path / "claims" / "ns" / "claim"
    sa = dirs["kube-api-access"]
    assert (sa / "token").read_text() == "header.payload1.sig"
    assert (sa / "ca.crt").read_bytes().startswith(b"-----BEGIN")
    assert (sa / "namespace").read_text() == "ns"
    assert sources.tokens == [
        {
            "namespace": "ns",
            "service_account": "runner",
            "pod_name": "p",
            "pod_uid": "uid-1",
            "audience": None,
            "expiration_seconds": 3607,
        }
    ]

    sources.config_maps["app"] = {"a.conf": b"A2"}
    asyncio.run(vols.refresh())
    assert (dirs["cfg"] / "a.conf").read_bytes() == b"A2"
    assert not (dirs["cfg"] / "b.conf").exists()
    assert not (dirs["pick"] / "sub" / "b").exists()  # optional item gone with its key
    assert len(sources.tokens) == 1  # far from expiry: no new token
    vols.tokens[0].issued -= 3000  # now past 80 % of its lifetime
    vols.tokens[0].expires -= 3000
    asyncio.run(vols.refresh())
    assert (sa / "token").read_text() == "header.payload2.sig"
    assert (sa / "ca.crt").exists()  # the token refresh keeps the other projected files

    vols.cleanup()
    assert not (tmp_path / "pod" / "volumes").exists()
    assert not (tmp_path / "shm" / "uid-1").exists()
    assert dirs["data"].exists()  # claims outlive pods


@pytest.mark.parametrize(
    ("volume", "message"),
    [
        ({"name": "cfg", "configMap": {"name": "missing"}}, 'configmap "missing" not found'),
        ({"name": "s", "secret": {"secretName": "nope"}}, 'secret "nope" not found'),
        (
            {"name": "cfg", "configMap": {"name": "app", "items": [{"key": "z", "path": "z"}]}},
            'configmap "app" has no key "z"',
        ),
    ],
)
def test_missing_sources_fail_the_mount(
    tmp_path: Path, volume: dict[str, Any], message: str
) -> None:
    pod = {**POD, "spec": {**POD["spec"], "volumes": [volume]}}
    with pytest.raises(VolumeError, match=message):
        asyncio.run(volumes(tmp_path, FakeSources(tmp_path), pod).setup())


@pytest.mark.parametrize(
    ("volume", "refused"),
    [
        ({"name": "h", "hostPath": {"path": "/etc"}}, "hostPath"),
        ({"name": "n", "nfs": {"server": "x", "path": "/"}}, "nfs"),
        ({"name": "e", "emptyDir": {}}, None),
        ({"name": "p", "persistentVolumeClaim": {"claimName": "c"}}, None),
    ],
)
def test_unsupported_volumes(volume: dict[str, Any], refused: str | None) -> None:
    message = unsupported_volume({"spec": {"volumes": [volume]}})
    if refused is None:
        assert message is None
    else:
        assert message is not None
        assert f'volume "{volume["name"]}" of type {refused}' in message


def test_decoding() -> None:
    cm = {"data": {"a": "x"}, "binaryData": {"b": base64.b64encode(b"\x00\x01").decode()}}
    assert decode_config_map(cm) == {"a": b"x", "b": b"\x00\x01"}
    assert decode_secret({"data": {"k": base64.b64encode(b"v").decode()}}) == {"k": b"v"}
