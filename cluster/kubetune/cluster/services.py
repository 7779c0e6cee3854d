"""Reaching a Service of the local cluster from the host (tests, e2e, demo).

There is no kube-proxy and no cluster DNS: ClusterIPs route nowhere and ``*.svc`` names do not
resolve. EndpointSlices do not help either: the API refuses loopback endpoint addresses, so the
endpointslice controller cannot publish the pods' 127.x addresses (it logs
``FailedToUpdateEndpointSlices``; expected here). ``service_urls`` therefore does the
endpoint computation itself, from the Service's selector and ports and the Ready pods it
selects: ``http://<podIP>:<targetPort>``, what ``kubectl port-forward`` would reach.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from kubetune.cluster.kubectl import Kubectl


def _target_port(pod: Mapping[str, Any], target: int | str) -> int | None:
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    for container in pod.get("spec", {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target:
                return int(port["containerPort"])
    return None


def _ready(pod: Mapping[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return ready and not pod.get("metadata", {}).get("deletionTimestamp")


def ready_endpoints(
    service: Mapping[str, Any], pods: Iterable[Mapping[str, Any]], port: int | str
) -> list[tuple[str, int]]:
    """(podIP, targetPort) of the Ready pods behind ``port`` (a Service port name or number)."""
    ports = service.get("spec", {}).get("ports") or []
    chosen = next(
        (p for p in ports if p.get("name") == port or str(p.get("port")) == str(port)),
        ports[0] if len(ports) == 1 else None,
    )
    if chosen is None:
        raise ValueError(f"service has no port {port!r}: {[p.get('name') for p in ports]}")
    target = chosen.get("targetPort", chosen["port"])
    out = []
    for pod in pods:
        number = _target_port(pod, target)
        ip = pod.get("status", {}).get("podIP")
        if ip and number and _ready(pod):
            out.append((str(ip), number))
    return sorted(set(out))


def service_urls(
    kubectl: Kubectl, *, namespace: str, service: str, port: int | str, scheme: str = "http"
) -> list[str]:
    """URLs of the Ready pods behind a Service (empty when none is ready yet)."""
    svc = json.loads(
        kubectl.run("get", "service", service, f"--namespace={namespace}", "-o", "json").stdout
    )
    selector = svc.get("spec", {}).get("selector") or {}
    if not selector:
        return []
    label = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    pods = json.loads(
        kubectl.run("get", "pods", f"--namespace={namespace}", "-l", label, "-o", "json").stdout
    )
    return [f"{scheme}://{a}:{p}" for a, p in ready_endpoints(svc, pods.get("items", []), port)]
