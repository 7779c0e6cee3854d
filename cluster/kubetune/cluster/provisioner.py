"""Directories standing in for PersistentVolumes (local cluster node agent).

A default StorageClass ``kubetune-local`` names the provisioner ``kubetune.io/local-dir``; the
control plane's PV binder marks claims of that class for it, the agent creates a hostPath
PersistentVolume over ``<workdir>/pvcs/<namespace>/<claim>-<uid prefix>`` bound to the claim,
and the binder completes the binding (so the scheduler's volume checks pass exactly as in a
real cluster). Released volumes are deleted with their directory (reclaim policy Delete).
The selection of work is pure (``claims_needing_volumes``, ``released_volumes``).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kubetune.cluster.kubeapi import ApiError, KubeApi

log = logging.getLogger(__name__)

PROVISIONER = "kubetune.io/local-dir"
STORAGE_CLASS = "kubetune-local"
PROVISIONER_ANNOTATIONS = (
    "volume.kubernetes.io/storage-provisioner",
    "volume.beta.kubernetes.io/storage-provisioner",
)
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"


def storage_class() -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }


def claim_dir(root: Path, claim: Mapping[str, Any]) -> Path:
    meta = claim["metadata"]
    return root / str(meta["namespace"]) / f"{meta['name']}-{str(meta['uid'])[:8]}"


def claims_needing_volumes(
    claims: Iterable[Mapping[str, Any]], existing_pvs: set[str]
) -> list[Mapping[str, Any]]:
    out = []
    for claim in claims:
        meta = claim.get("metadata", {})
        annotations = meta.get("annotations") or {}
        ours = any(annotations.get(a) == PROVISIONER for a in PROVISIONER_ANNOTATIONS)
        if (
            ours
            and not claim.get("spec", {}).get("volumeName")
            and not meta.get("deletionTimestamp")
            and f"pvc-{meta.get('uid')}" not in existing_pvs
        ):
            out.append(claim)
    return out


def volume_for_claim(claim: Mapping[str, Any], *, root: Path) -> dict[str, Any]:
    meta, spec = claim["metadata"], claim.get("spec", {})
    size = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": f"pvc-{meta['uid']}",
            "annotations": {PROVISIONED_BY: PROVISIONER},
        },
        "spec": {
            "capacity": {"storage": size},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": spec.get("storageClassName") or STORAGE_CLASS,
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
            "hostPath": {"path": str(claim_dir(root, claim)), "type": "DirectoryOrCreate"},
        },
    }


def released_volumes(pvs: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [
        pv
        for pv in pvs
        if (pv.get("metadata", {}).get("annotations") or {}).get(PROVISIONED_BY) == PROVISIONER
        and pv.get("status", {}).get("phase") in ("Released", "Failed")
        and pv.get("spec", {}).get("persistentVolumeReclaimPolicy") == "Delete"
        and not pv.get("metadata", {}).get("deletionTimestamp")
    ]


class Provisioner:
    def __init__(self, *, api: KubeApi, root: Path) -> None:
        self.api = api
        self.root = root

    async def ensure_storage_class(self) -> None:
        await self.api.patch(
            f"/apis/storage.k8s.io/v1/storageclasses/{STORAGE_CLASS}",
            storage_class(),
            kind="apply",
            field_manager="kubetune-node-agent",
            force=True,
        )

    async def reconcile(self) -> None:
        pvs = (await self.api.get("/api/v1/persistentvolumes")).get("items", [])
        claims = (await self.api.get("/api/v1/persistentvolumeclaims")).get("items", [])
        names = {str(pv["metadata"]["name"]) for pv in pvs}
        for claim in claims_needing_volumes(claims, names):
            body = volume_for_claim(claim, root=self.root)
            _make_dir(body["spec"]["hostPath"]["path"])
            try:
                await self.api.create("/api/v1/persistentvolumes", body)
                log.info("provisioned %s for claim %s", body["metadata"]["name"], claim_ref(claim))
            except ApiError as err:
                if err.status != 409:
                    raise
        for pv in released_volumes(pvs):
            _remove_dir((pv.get("spec", {}).get("hostPath") or {}).get("path"), self.root)
            await self.api.delete(f"/api/v1/persistentvolumes/{pv['metadata']['name']}")

    async def run(self, period: float = 2.0) -> None:
        await self.ensure_storage_class()
        while True:
            try:
                await self.reconcile()
            except Exception as err:  # retried next period
                log.warning("provisioner: %s", err)
            await asyncio.sleep(period)


def claim_ref(claim: Mapping[str, Any]) -> str:
    meta = claim.get("metadata", {})
    return f"{meta.get('namespace')}/{meta.get('name')}"


def _make_dir(path: str) -> None:
    Path(path).mkdir(parents=True, exist_ok=True)


def _remove_dir(path: str | None, root: Path) -> None:
    """Only directories this provisioner made (under its root) are ever removed."""
    if path and Path(path).is_relative_to(root):
        shutil.rmtree(path, ignore_errors=True)
