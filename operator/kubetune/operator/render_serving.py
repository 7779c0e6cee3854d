"""Render what an AdapterDeployment needs around its target inference Deployment: the partial
Deployment that injects the adapter agent (applied server-side under the operator's own
field manager), the desired-set ConfigMap agents follow, and the agent's Role/RoleBinding.

Pure functions from (views, specs, settings) to manifests. The injected container passes Pod
Security "restricted": non-root, no privilege escalation, all capabilities dropped,
RuntimeDefault seccomp, read-only root filesystem with a writable emptyDir for /tmp.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubetune.api import constants as c
from kubetune.api import contract
from kubetune.operator.observed_serving import (
    ADAPTER_VOLUME,
    AGENT_CONFIG_ANNOTATION,
    AGENT_CONTAINER,
    DeploymentView,
)
from kubetune.operator.render_trainer import storage_endpoint, storage_secret
from kubetune.operator.settings import Settings

Manifest = dict[str, Any]

FIELD_MANAGER = "kubetune-operator/adapterdeployment"
"""Field manager of everything the AdapterDeployment controller applies."""
ADAPTER_DIR = "/var/lib/kubetune/adapters"
AGENT_TMP_VOLUME = "kubetune-agent-tmp"
AGENT_PORT_NAME = "kubetune"
DEFAULT_ENGINE_PORT = 8000
DEFAULT_SERVING_PORT = 8080
UID = 65532
DESIRED_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class AgentTarget:
    """How one AdapterDeployment wants the agent of its target Deployment configured."""

    deployment: str
    engine: str
    engine_port: int
    serving_port: int
    engine_containers: tuple[str, ...]
    """Containers to mount the adapter volume into; empty: every non-agent container."""
    max_lora_rank: int | None
    base_model_name: str
    endpoint: str
    region: str
    secret: str

    @classmethod
    def of(cls, spec: Mapping[str, Any], settings: Settings) -> AgentTarget:
        target = spec.get("target", {}) or {}
        storage = spec.get("storage", {}) or {}
        rank = target.get("maxLoraRank")
        return cls(
            deployment=str(target.get("deploymentName", "")),
            engine=str(target.get("engine") or "kubetune"),
            engine_port=int(target.get("enginePort") or DEFAULT_ENGINE_PORT),
            serving_port=int(target.get("servingPort") or DEFAULT_SERVING_PORT),
            engine_containers=tuple(str(n) for n in target.get("engineContainers") or ()),
            max_lora_rank=int(rank) if rank else None,
            base_model_name=str(target.get("baseModelName") or ""),
            endpoint=storage_endpoint(spec, settings),
            region=str(storage.get("region") or settings.s3_region),
            secret=storage_secret(spec, settings),
        )

    def differences(self, other: AgentTarget) -> list[str]:
        """The spec fields in which ``other`` configures the agent differently."""
        fields = {
            "target.engine": (self.engine, other.engine),
            "target.enginePort": (self.engine_port, other.engine_port),
            "target.servingPort": (self.serving_port, other.serving_port),
            "target.engineContainers": (self.engine_containers, other.engine_containers),
            "target.maxLoraRank": (self.max_lora_rank, other.max_lora_rank),
            "target.baseModelName": (self.base_model_name, other.base_model_name),
            "storage.endpoint": (self.endpoint, other.endpoint),
            "storage.region": (self.region, other.region),
            "storage.secretRef": (self.secret, other.secret),
        }
        return [name for name, (mine, theirs) in fields.items() if mine != theirs]


# ---------------------------------------------------------------- names


def desired_config_map_name(deployment: str) -> str:
    return f"{contract.DESIRED_ADAPTERS_CONFIGMAP_PREFIX}{deployment}"


def agent_rbac_name(deployment: str) -> str:
    return f"kubetune-agent-{deployment}"


def version_of(digest: str) -> str:
    """The contract's version: the first 12 hex digits of a ``sha256:<hex>`` digest."""
    return digest.partition(":")[2][:12] if ":" in digest else digest[:12]


def owner_reference(*, name: str, uid: str) -> dict[str, Any]:
    """A non-controller owner reference: several AdapterDeployments may own one object, and
    the garbage collector deletes it once the last of them is gone."""
    return {"apiVersion": c.API_VERSION, "kind": c.ADAPTERDEPLOYMENT_KIND, "name": name, "uid": uid}


def _labels(deployment: str) -> dict[str, str]:
    return {c.LABEL_MANAGED_BY: c.MANAGED_BY, contract.DEPLOYMENT_LABEL: deployment}


# ---------------------------------------------------------------- the agent sidecar


def _security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _agent_env(target: AgentTarget) -> list[dict[str, Any]]:
    def field_ref(path: str) -> dict[str, Any]:
        return {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}

    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": field_ref("metadata.name")},
        {"name": "POD_NAMESPACE", "valueFrom": field_ref("metadata.namespace")},
        {"name": "KUBETUNE_DEPLOYMENT", "value": target.deployment},
        {"name": "KUBETUNE_ENGINE", "value": target.engine},
        {"name": "KUBETUNE_ENGINE_URL", "value": f"http://127.0.0.1:{target.engine_port}"},
        {"name": "KUBETUNE_LISTEN", "value": f"0.0.0.0:{target.serving_port}"},
        {"name": "KUBETUNE_ADAPTER_DIR", "value": ADAPTER_DIR},
    ]
    if target.max_lora_rank is not None:
        env.append({"name": "KUBETUNE_MAX_LORA_RANK", "value": str(target.max_lora_rank)})
    if target.base_model_name:
        env.append({"name": "KUBETUNE_BASE_MODEL_NAME", "value": target.base_model_name})
    if target.endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": target.endpoint})
    env.append({"name": "AWS_DEFAULT_REGION", "value": target.region})
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.append(
            {"name": key, "valueFrom": {"secretKeyRef": {"name": target.secret, "key": key}}}
        )
    return env


def render_agent_container(*, target: AgentTarget, settings: Settings) -> dict[str, Any]:
    port = target.serving_port
    return {
        "name": AGENT_CONTAINER,
        "image": settings.serving_image,
        "imagePullPolicy": settings.image_pull_policy,
        "env": _agent_env(target),
        "ports": [{"name": AGENT_PORT_NAME, "containerPort": port, "protocol": "TCP"}],
        # Ready only when every desired adapter is loaded, so a new replica receives traffic
        # only once it serves what the others serve.
        "readinessProbe": {
            "httpGet": {"path": "/kubetune/ready", "port": port},
            "periodSeconds": 2,
            "timeoutSeconds": 2,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/kubetune/live", "port": port},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 6,
        },
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"memory": "1Gi"},
        },
        "securityContext": _security_context(),
        "volumeMounts": [
            {"name": ADAPTER_VOLUME, "mountPath": ADAPTER_DIR},
            {"name": AGENT_TMP_VOLUME, "mountPath": "/tmp"},  # noqa: S108 - pod-private emptyDir
        ],
    }


def engine_containers(*, deployment: DeploymentView, target: AgentTarget) -> list[str]:
    if target.engine_containers:
        return list(target.engine_containers)
    return [name for name in deployment.containers if name != AGENT_CONTAINER]


def render_agent_injection(
    *, deployment: DeploymentView, target: AgentTarget, settings: Settings
) -> Manifest:
    """The partial Deployment applied server-side: only the fields the operator owns.

    A GitOps tool (or a person) owning the rest of the Deployment keeps owning it; the
    operator's field manager owns the agent container, the two emptyDir volumes, the adapter
    volume mount of each engine container, two pod-template labels and one annotation.
    """
    mounts = [
        {
            "name": engine,
            "volumeMounts": [{"name": ADAPTER_VOLUME, "mountPath": ADAPTER_DIR, "readOnly": True}],
        }
        for engine in engine_containers(deployment=deployment, target=target)
    ]
    manifest: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": deployment.name, "namespace": deployment.namespace},
        "spec": {
            "template": {
                "metadata": {
                    "labels": {
                        c.LABEL_SERVING_AGENT: "true",
                        contract.DEPLOYMENT_LABEL: deployment.name,
                    }
                },
                "spec": {
                    "containers": [
                        *mounts,
                        render_agent_container(target=target, settings=settings),
                    ],
                    "volumes": [
                        {"name": ADAPTER_VOLUME, "emptyDir": {}},
                        {"name": AGENT_TMP_VOLUME, "emptyDir": {}},
                    ],
                },
            }
        },
    }
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]
    manifest["metadata"]["annotations"] = {AGENT_CONFIG_ANNOTATION: digest}
    return manifest


def render_agent_release(*, namespace: str, deployment: str) -> Manifest:
    """An empty apply: the operator's field manager gives up every field it owned, so the
    agent, its volumes, mounts and labels leave the Deployment (one more rollout)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": deployment, "namespace": namespace},
    }


# ---------------------------------------------------------------- the desired set


def desired_entry(adapter_name: str, status: Mapping[str, Any]) -> dict[str, Any] | None:
    """This AdapterDeployment's entry in the desired set, from its status; None: nothing to
    serve yet."""
    active = status.get("activeVersion") or {}
    if not active.get("digest"):
        return None

    def ref(version: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "version": version_of(str(version["digest"])),
            "uri": str(version.get("uri", "")),
            "digest": str(version["digest"]),
        }

    canary = status.get("canary") or {}
    canary_ref: dict[str, Any] | None = None
    if canary.get("digest") and canary.get("pods"):
        canary_ref = {**ref(canary), "pods": sorted(str(p) for p in canary["pods"])}
    return {"name": adapter_name, "active": ref(active), "canary": canary_ref}


def desired_document(entries: Sequence[Mapping[str, Any]]) -> str:
    """``desired.json``: stable bytes for the same entries (sorted by adapter name)."""
    ordered = sorted(entries, key=lambda e: str(e["name"]))
    doc = {"schemaVersion": DESIRED_SCHEMA_VERSION, "adapters": ordered}
    return json.dumps(doc, sort_keys=True, indent=2) + "\n"


def render_desired_config_map(
    *,
    namespace: str,
    deployment: str,
    document: str,
    owners: Sequence[Mapping[str, Any]],
) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": desired_config_map_name(deployment),
            "namespace": namespace,
            "labels": _labels(deployment),
            "ownerReferences": [dict(o) for o in owners],
        },
        "data": {contract.DESIRED_ADAPTERS_KEY: document},
    }


# ---------------------------------------------------------------- the agent's API access


def render_agent_role(
    *, namespace: str, deployment: str, owners: Sequence[Mapping[str, Any]]
) -> Manifest:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {
            "name": agent_rbac_name(deployment),
            "namespace": namespace,
            "labels": _labels(deployment),
            "ownerReferences": [dict(o) for o in owners],
        },
        "rules": [
            # The desired set of this Deployment and no other ConfigMap; list/watch are
            # authorized by name when the agent selects fieldSelector metadata.name.
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": [desired_config_map_name(deployment)],
                "verbs": ["get", "list", "watch"],
            },
            # The agent's own pod (its state annotation). RBAC cannot name pods a
            # ReplicaSet names, so this covers the namespace's pods: no create/delete/exec.
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]},
        ],
    }


def render_agent_role_binding(
    *,
    namespace: str,
    deployment: str,
    service_account: str,
    owners: Sequence[Mapping[str, Any]],
) -> Manifest:
    name = agent_rbac_name(deployment)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": _labels(deployment),
            "ownerReferences": [dict(o) for o in owners],
        },
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}],
    }
