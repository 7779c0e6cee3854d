"""Kubernetes Events for pods, as the kubelet would record them (node agent I/O).

``kubectl describe pod`` and ``kubectl get events`` are the first things anyone looks at when a
pod misbehaves; the agent records Started, Killing, BackOff, Unhealthy, Failed and FailedMount
there. Recording is best effort: a failed POST is logged and forgotten.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from kubetune.cluster.kubeapi import KubeApi

log = logging.getLogger(__name__)
COMPONENT = "kubetune-node-agent"


class EventRecorder:
    def __init__(self, api: KubeApi) -> None:
        self._api = api
        self._pending: set[asyncio.Task[None]] = set()

    def pod_event(
        self,
        pod: Mapping[str, Any],
        *,
        reason: str,
        message: str,
        warning: bool = False,
        container: str = "",
    ) -> None:
        meta = pod.get("metadata", {})
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        namespace = str(meta.get("namespace", "default"))
        ref: dict[str, Any] = {
            "kind": "Pod",
            "apiVersion": "v1",
            "namespace": namespace,
            "name": meta.get("name"),
            "uid": meta.get("uid"),
        }
        if container:
            ref["fieldPath"] = f"spec.containers{{{container}}}"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name')}.", "namespace": namespace},
            "involvedObject": ref,
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": COMPONENT, "host": pod.get("spec", {}).get("nodeName", "")},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        task = asyncio.create_task(self._post(namespace, body))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _post(self, namespace: str, body: Mapping[str, Any]) -> None:
        try:
            await self._api.create(f"/api/v1/namespaces/{namespace}/events", body)
        except Exception as err:  # best effort by design: events must never break a pod
            log.debug("event not recorded: %s", err)
