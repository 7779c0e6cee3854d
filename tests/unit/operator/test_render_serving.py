"""Rendering of what an AdapterDeployment puts around its inference Deployment.

Covers: the partial Deployment owns only the agent container, the two emptyDirs, the adapter
mount of each engine container, two pod-template labels and one annotation (no replicas,
selector or engine image); the agent's environment, ports, probes and restricted security
context follow spec.target and spec.storage (or the operator's defaults); the configuration
hash is stable and moves with the configuration; the desired set has stable bytes and is the
contract the agent parses (checked with the agent's own parser and config loader); the
ConfigMap, Role and RoleBinding are owned by every AdapterDeployment, and the Role reads only
the Deployment's ConfigMap.
"""

from __future__ import annotations

from typing import Any

import pytest

from kubetune.operator.observed_serving import DeploymentView
from kubetune.operator.render_serving import (
    AgentTarget,
    desired_document,
    desired_entry,
    owner_reference,
    render_agent_injection,
    render_agent_role,
    render_agent_role_binding,
    render_desired_config_map,
    version_of,
)
from kubetune.operator.settings import Settings

SETTINGS = Settings(
    serving_image="registry.local/kubetune/serving:0.1.0",
    s3_endpoint="http://object-store.storage:8333",
    s3_secret_name="kubetune-s3",
)
DIGEST = "sha256:" + "ab" * 32


def deployment(containers: tuple[str, ...] = ("engine", "log-shipper")) -> DeploymentView:
    return DeploymentView(
        namespace="ml",
        name="llm",
        uid="dep-uid",
        generation=4,
        replicas=3,
        service_account="llm-sa",
        containers=containers,
        agent_config="",
        agent_present=False,
        automount_token=True,
    )


def target(**overrides: Any) -> AgentTarget:
    spec: dict[str, Any] = {"target": {"deploymentName": "llm", "engine": "vllm", **overrides}}
    return AgentTarget.of(spec, SETTINGS)


def injection(**overrides: Any) -> dict[str, Any]:
    return render_agent_injection(
        deployment=deployment(), target=target(**overrides), settings=SETTINGS
    )


def agent(manifest: dict[str, Any]) -> dict[str, Any]:
    containers = manifest["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "kubetune-agent")


def env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_injection_owns_only_the_agent_fields() -> None:
    manifest = injection()
    assert set(manifest) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(manifest["metadata"]) == {"name", "namespace", "annotations"}
    assert set(manifest["spec"]) == {"template"}
    template = manifest["spec"]["template"]
    assert template["metadata"] == {
        "labels": {"kubetune.io/serving-agent": "true", "kubetune.io/deployment": "llm"}
    }
    assert template["spec"]["volumes"] == [
        {"name": "kubetune-adapters", "emptyDir": {}},
        {"name": "kubetune-agent-tmp", "emptyDir": {}},
    ]
    engines = [c for c in template["spec"]["containers"] if c["name"] != "kubetune-agent"]
    # Every non-agent container gets the read-only mount and nothing else (no image).
    assert engines == [
        {
            "name": name,
            "volumeMounts": [
                {
                    "name": "kubetune-adapters",
                    "mountPath": "/var/lib/kubetune/adapters",
                    "readOnly": True,
                }
            ],
        }
        for name in ("engine", "log-shipper")
    ]
    named = injection(engineContainers=["engine"])
    assert [c["name"] for c in named["spec"]["template"]["spec"]["containers"]] == [
        "engine",
        "kubetune-agent",
    ]


def test_agent_container_follows_target_and_storage() -> None:
    container = agent(injection(enginePort=8001, servingPort=9000, maxLoraRank=64))
    assert container["image"] == "registry.local/kubetune/serving:0.1.0"
    variables = env(container)
    assert variables["POD_NAME"] == {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}
    assert variables["POD_NAMESPACE"] == {
        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}
    }
    assert variables["KUBETUNE_DEPLOYMENT"] == "llm"
    assert variables["KUBETUNE_ENGINE"] == "vllm"
    assert variables["KUBETUNE_ENGINE_URL"] == "http://127.0.0.1:8001"
    assert variables["KUBETUNE_LISTEN"] == "0.0.0.0:9000"
    assert variables["KUBETUNE_ADAPTER_DIR"] == "/var/lib/kubetune/adapters"
    assert variables["KUBETUNE_MAX_LORA_RANK"] == "64"
    assert variables["AWS_ENDPOINT_URL"] == "http://object-store.storage:8333"
    assert variables["AWS_ACCESS_KEY_ID"] == {
        "secretKeyRef": {"name": "kubetune-s3", "key": "AWS_ACCESS_KEY_ID"}
    }
    assert container["ports"] == [{"name": "kubetune", "containerPort": 9000, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/kubetune/ready", "port": 9000}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    spec_storage = AgentTarget.of(
        {
            "target": {"deploymentName": "llm"},
            "storage": {"endpoint": "https://s3.example", "secretRef": {"name": "team-s3"}},
        },
        SETTINGS,
    )
    manifest = render_agent_injection(
        deployment=deployment(), target=spec_storage, settings=SETTINGS
    )
    variables = env(agent(manifest))
    assert variables["AWS_ENDPOINT_URL"] == "https://s3.example"
    assert variables["AWS_SECRET_ACCESS_KEY"]["secretKeyRef"]["name"] == "team-s3"
    assert variables["KUBETUNE_ENGINE"] == "kubetune"
    assert variables["KUBETUNE_ENGINE_URL"] == "http://127.0.0.1:8000"
    assert variables["KUBETUNE_LISTEN"] == "0.0.0.0:8080"


def test_configuration_hash_is_stable_and_moves_with_the_configuration() -> None:
    def config(**overrides: Any) -> str:
        return str(injection(**overrides)["metadata"]["annotations"]["kubetune.io/agent-config"])

    assert config() == config()
    assert config(servingPort=9000) != config()
    assert config(engine="kubetune") != config()


def test_rendered_environment_is_what_the_agent_reads() -> None:
    config_module = pytest.importorskip("kubetune.serving.agent.config")
    variables = env(agent(injection(enginePort=8001, servingPort=9000)))
    plain = {k: v for k, v in variables.items() if isinstance(v, str)}
    loaded = config_module.load_config({**plain, "POD_NAME": "llm-0", "POD_NAMESPACE": "ml"})
    assert loaded.deployment == "llm" and loaded.configmap_name == "kubetune-adapters-llm"
    assert (loaded.listen_host, loaded.listen_port) == ("0.0.0.0", 9000)
    assert loaded.engine_url == "http://127.0.0.1:8001" and loaded.engine == "vllm"


def status(canary_pods: list[str] | None = None) -> dict[str, Any]:
    st: dict[str, Any] = {
        "activeVersion": {"digest": DIGEST, "uri": "s3://adapters/s/g1/adapter/", "run": "g1"}
    }
    if canary_pods is not None:
        st["canary"] = {
            "digest": "sha256:" + "cd" * 32,
            "uri": "s3://adapters/s/g2/adapter/",
            "pods": canary_pods,
        }
    return st


def test_desired_set_is_the_contract_and_has_stable_bytes() -> None:
    assert desired_entry("support", {}) is None
    entries = [desired_entry("zeta", status()), desired_entry("support", status(["p-b", "p-a"]))]
    document = desired_document([e for e in entries if e is not None])
    assert document == desired_document([e for e in reversed(entries) if e is not None])
    desired = pytest.importorskip("kubetune.serving.agent.desired")
    parsed = desired.parse_desired(document, resource_version="7")
    assert parsed.invalid == {}
    support = next(a for a in parsed.adapters if a.name == "support")
    assert support.active.version == version_of(DIGEST) == "ab" * 6
    assert support.canary is not None and support.canary_pods == frozenset({"p-a", "p-b"})
    assert support.target_for("p-a") == support.canary
    assert support.target_for("p-c") == support.active
    # A canary without pods is not a canary.
    assert desired_entry("x", status([]))["canary"] is None  # type: ignore[index]


def test_desired_config_map_and_rbac_are_owned_by_every_adapterdeployment() -> None:
    owners = [owner_reference(name="a", uid="u1"), owner_reference(name="b", uid="u2")]
    config_map = render_desired_config_map(
        namespace="ml", deployment="llm", document="{}", owners=owners
    )
    assert config_map["metadata"]["name"] == "kubetune-adapters-llm"
    assert config_map["metadata"]["labels"]["kubetune.io/deployment"] == "llm"
    assert config_map["metadata"]["ownerReferences"] == owners
    assert all("controller" not in o for o in owners)

    role = render_agent_role(namespace="ml", deployment="llm", owners=owners)
    assert role["metadata"]["name"] == "kubetune-agent-llm"
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["kubetune-adapters-llm"],
            "verbs": ["get", "list", "watch"],
        },
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]},
    ]
    binding = render_agent_role_binding(
        namespace="ml", deployment="llm", service_account="llm-sa", owners=owners
    )
    assert binding["roleRef"]["name"] == "kubetune-agent-llm"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "llm-sa", "namespace": "ml"}]
