"""The local cluster's Node objects: registration, Ready heartbeats and node Leases.

The node agent registers one CPU node and one GPU node (``nvidia.com/gpu`` capacity and the
usual GPU taint) through ``nodes.register_node``, then keeps them alive the way a kubelet does:
it renews ``kube-node-lease/<node>`` and refreshes the Ready condition's heartbeat. Capacity is
nominal (there is no isolation) and generous by default so that realistic requests schedule.
``node_specs`` is pure; the rest talks to the API.
"""

from __future__ import annotations

import asyncio
import logging
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubetune.cluster.devices import GPU_RESOURCE
from kubetune.cluster.kubeapi import KubeApi
from kubetune.cluster.kubectl import Kubectl
from kubetune.cluster.nodes import GPU_TAINT, register_node

log = logging.getLogger(__name__)

LEASE_SECONDS = 40
AGENT_LABEL = "kubetune.io/local-node"


@dataclass(frozen=True)
class NodeSpec:
    name: str
    capacity: Mapping[str, str]
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: Sequence[Mapping[str, str]] = ()
    gpus: int = 0


def node_specs(
    *,
    prefix: str,
    gpus: int,
    cpu: str,
    memory: str,
    pods: str = "110",
    labels: Mapping[str, str] | None = None,
    taints: Sequence[Mapping[str, str]] = (),
) -> list[NodeSpec]:
    """``<prefix>-cpu`` always, ``<prefix>-gpu`` when ``gpus`` > 0."""
    base = {"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": "100Gi"}
    common = {AGENT_LABEL: "true", **(labels or {})}
    specs = [
        NodeSpec(
            name=f"{prefix}-cpu",
            capacity=base,
            labels={**common, "kubetune.io/node-kind": "cpu"},
            taints=list(taints),
        )
    ]
    if gpus > 0:
        specs.append(
            NodeSpec(
                name=f"{prefix}-gpu",
                capacity={**base, GPU_RESOURCE: str(gpus)},
                labels={
                    **common,
                    "kubetune.io/node-kind": "gpu",
                    "nvidia.com/gpu.present": "true",
                    "nvidia.com/gpu.count": str(gpus),
                },
                taints=[GPU_TAINT, *taints],
                gpus=gpus,
            )
        )
    return specs


def _now(micro: bool = False) -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


class NodeKeeper:
    def __init__(
        self,
        *,
        api: KubeApi,
        kubectl: Kubectl,
        specs: Sequence[NodeSpec],
        kubelet_port: int = 0,
    ) -> None:
        self.api = api
        self.kubectl = kubectl
        self.specs = list(specs)
        self.kubelet_port = kubelet_port
        """Where the kubelet API (container logs) listens; 0 when it is not served."""
        self._since = _now()
        self._version = "v0.0.0"

    async def register(self) -> None:
        self._version = str((await self.api.get("/version")).get("gitVersion", "v0.0.0"))
        for spec in self.specs:
            await asyncio.to_thread(
                register_node,
                self.kubectl,
                spec.name,
                capacity=spec.capacity,
                labels=spec.labels,
                taints=spec.taints,
            )
        await self.heartbeat()

    async def heartbeat(self) -> None:
        for spec in self.specs:
            await self._node_status(spec)
            await self._lease(spec)

    async def run(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                await self.heartbeat()
            except Exception as err:  # the next beat retries
                log.warning("node heartbeat failed: %s", err)

    async def delete_nodes(self) -> None:
        for spec in self.specs:
            await self.api.delete(f"/api/v1/nodes/{spec.name}")

    async def _node_status(self, spec: NodeSpec) -> None:
        now = _now()

        def condition(kind: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
            return {
                "type": kind,
                "status": "True" if ok else "False",
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": now,
                "lastTransitionTime": self._since,
            }

        status = {
            "capacity": dict(spec.capacity),
            "allocatable": dict(spec.capacity),
            "conditions": [
                condition(
                    "Ready",
                    True,
                    "KubetuneNodeAgentReady",
                    "local process node (test and demo infrastructure)",
                ),
                condition("MemoryPressure", False, "KubeletHasSufficientMemory", "no pressure"),
                condition("DiskPressure", False, "KubeletHasNoDiskPressure", "no pressure"),
                condition("PIDPressure", False, "KubeletHasSufficientPID", "no pressure"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": spec.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
            "nodeInfo": {
                "kubeletVersion": self._version,
                "containerRuntimeVersion": "kubetune-local-process://1",
                "operatingSystem": "linux",
                "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(
                    platform.machine(), platform.machine()
                ),
                "osImage": platform.platform(),
                "kernelVersion": platform.release(),
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kubeProxyVersion": "",
            },
        }
        await self.api.patch(
            f"/api/v1/nodes/{spec.name}/status", {"status": status}, kind="strategic"
        )

    async def _lease(self, spec: NodeSpec) -> None:
        node = await self.api.get_or_none(f"/api/v1/nodes/{spec.name}")
        owner = (
            [
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "name": spec.name,
                    "uid": node["metadata"]["uid"],
                }
            ]
            if node
            else []
        )
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": spec.name,
                "namespace": "kube-node-lease",
                "ownerReferences": owner,
            },
            "spec": {
                "holderIdentity": spec.name,
                "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": _now(micro=True),
            },
        }
        await self.api.patch(
            f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{spec.name}",
            lease,
            kind="apply",
            field_manager="kubetune-node-agent",
            force=True,
        )
