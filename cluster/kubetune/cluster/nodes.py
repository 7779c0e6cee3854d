"""Register Node objects on a control plane that has no kubelet.

The local cluster's node agent and the integration tests use this to make the scheduler see
schedulable nodes: the Node is created, its status set Ready with the given capacity, and the
``not-ready`` taint that admission puts on every new Node is removed (no node-lifecycle
controller runs to remove it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from kubetune.cluster.kubectl import Kubectl

GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


def register_node(
    kubectl: Kubectl,
    name: str,
    *,
    capacity: Mapping[str, str],
    labels: Mapping[str, str] | None = None,
    taints: Sequence[Mapping[str, str]] = (),
) -> None:
    node: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {"taints": [dict(t) for t in taints]},
    }
    kubectl.apply(node, field_manager="kubetune-node-agent")
    status = {
        "status": {
            "capacity": dict(capacity),
            "allocatable": dict(capacity),
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubetuneNodeAgentReady",
                    "message": "local process node (test and demo infrastructure)",
                }
            ],
        }
    }
    kubectl.run(
        "patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(status)
    )
    kubectl.run("taint", "node", name, "node.kubernetes.io/not-ready:NoSchedule-", check=False)
