"""Compact, typed views of what the AdapterDeployment controller observes: target Deployments,
their inference pods with the agents' per-adapter reports, and the desired-set ConfigMaps.

Built from raw API objects by the glue (``from_object``, inside Kopf indexes), consumed by the
pure planner. Only the fields a decision needs are kept, so watching every Deployment of a
cluster stays cheap in memory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubetune.api import constants as c
from kubetune.api import contract

AGENT_CONTAINER = "kubetune-agent"
"""Name of the agent sidecar container the operator injects."""
ADAPTER_VOLUME = "kubetune-adapters"
"""The emptyDir shared by the agent (writes verified adapters) and the engine (loads them)."""
AGENT_CONFIG_ANNOTATION = "kubetune.io/agent-config"
"""Deployment annotation: hash of the injected agent configuration (skips no-op applies)."""

STATE_UNKNOWN = "Unknown"


@dataclass(frozen=True)
class DeploymentView:
    namespace: str
    name: str
    uid: str
    generation: int
    replicas: int
    service_account: str
    containers: tuple[str, ...]
    """Names of the pod template's containers, in template order."""
    agent_config: str
    """Value of AGENT_CONFIG_ANNOTATION ("" when the operator never injected the agent)."""
    agent_present: bool
    """The template has the agent container, the shared volume and the serving-agent label."""
    automount_token: bool

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> DeploymentView:
        meta = obj.get("metadata", {}) or {}
        spec = obj.get("spec", {}) or {}
        template = spec.get("template", {}) or {}
        pod_spec = template.get("spec", {}) or {}
        labels = (template.get("metadata", {}) or {}).get("labels", {}) or {}
        containers = tuple(str(x.get("name", "")) for x in pod_spec.get("containers", []) or [])
        volumes = {str(v.get("name", "")) for v in pod_spec.get("volumes", []) or []}
        replicas = spec.get("replicas")
        return cls(
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            generation=int(meta.get("generation", 0) or 0),
            # The API server defaults replicas to 1; None only appears in hand-built objects.
            replicas=1 if replicas is None else int(replicas),
            service_account=str(pod_spec.get("serviceAccountName") or "default"),
            containers=containers,
            agent_config=str((meta.get("annotations") or {}).get(AGENT_CONFIG_ANNOTATION, "")),
            agent_present=(
                AGENT_CONTAINER in containers
                and ADAPTER_VOLUME in volumes
                and labels.get(c.LABEL_SERVING_AGENT) == "true"
            ),
            automount_token=pod_spec.get("automountServiceAccountToken") is not False,
        )


@dataclass(frozen=True)
class AdapterReport:
    """One adapter's entry in a pod's ``kubetune.io/adapter-state`` annotation."""

    version: str
    digest: str
    state: str
    message: str


@dataclass(frozen=True)
class ServingPodView:
    name: str
    deployment: str
    phase: str
    ready: bool
    """The pod's Ready condition (kubelet: every container, the agent included, is ready)."""
    deleting: bool
    reports: Mapping[str, AdapterReport] = field(default_factory=dict)
    report_error: str = ""
    """Why the annotation could not be read ("" when absent or fine)."""

    @property
    def live(self) -> bool:
        return not self.deleting and self.phase in ("Pending", "Running")

    @classmethod
    def from_object(cls, pod: Mapping[str, Any]) -> ServingPodView:
        meta = pod.get("metadata", {}) or {}
        status = pod.get("status", {}) or {}
        ready = any(
            cond.get("type") == "Ready" and cond.get("status") == "True"
            for cond in status.get("conditions", []) or []
        )
        raw = (meta.get("annotations") or {}).get(contract.ADAPTER_STATE_ANNOTATION)
        reports, error = parse_adapter_state(raw)
        return cls(
            name=str(meta.get("name", "")),
            deployment=str((meta.get("labels") or {}).get(contract.DEPLOYMENT_LABEL, "")),
            phase=str(status.get("phase") or "Pending"),
            ready=ready,
            deleting=bool(meta.get("deletionTimestamp")),
            reports=reports,
            report_error=error,
        )


def parse_adapter_state(raw: str | None) -> tuple[dict[str, AdapterReport], str]:
    """The agent's annotation as reports by adapter name, and a parse error ("" if none).

    Tolerant: unknown keys are ignored and a malformed entry is skipped, so one agent bug
    never stops the operator from reading the others.
    """
    if not raw:
        return {}, ""
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as err:
        return {}, f"{contract.ADAPTER_STATE_ANNOTATION} is not JSON: {err}"
    adapters = doc.get("adapters") if isinstance(doc, dict) else None
    if not isinstance(adapters, dict):
        return {}, f"{contract.ADAPTER_STATE_ANNOTATION} has no adapters object"
    reports: dict[str, AdapterReport] = {}
    for name, entry in adapters.items():
        if not isinstance(entry, dict):
            continue
        reports[str(name)] = AdapterReport(
            version=str(entry.get("version") or ""),
            digest=str(entry.get("digest") or ""),
            state=str(entry.get("state") or STATE_UNKNOWN),
            message=str(entry.get("message") or ""),
        )
    return reports, ""


@dataclass(frozen=True)
class ConfigMapView:
    """A desired-set ConfigMap as the operator last wrote it."""

    name: str
    deployment: str
    desired: str
    """The ``desired.json`` text."""
    owners: tuple[str, ...]
    """UIDs of its owner references, sorted."""

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> ConfigMapView:
        meta = obj.get("metadata", {}) or {}
        return cls(
            name=str(meta.get("name", "")),
            deployment=str((meta.get("labels") or {}).get(contract.DEPLOYMENT_LABEL, "")),
            desired=str((obj.get("data") or {}).get(contract.DESIRED_ADAPTERS_KEY, "")),
            owners=tuple(sorted(str(o.get("uid", "")) for o in meta.get("ownerReferences") or [])),
        )
