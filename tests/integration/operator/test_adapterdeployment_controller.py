"""The AdapterDeployment controller as a real process against a real control plane.

The controller-manager's Deployment controller creates ReplicaSets and pods for real; the test
plays the kubelet (pod Ready status) and the adapter agent (the ``kubetune.io/adapter-state``
annotation, exactly per ``kubetune.api.contract``), and publishes adapter manifests to the
real object store. Covers: following a FineTuneJob run to its adapter; the agent sidecar,
shared volume, engine mount and labels injected by server-side apply under the operator's
own field manager, coexisting with a GitOps manager re-applying the Deployment, and not
re-applied (same resourceVersion) by later reconciles; the desired-set ConfigMap; the agent's
Role/RoleBinding (and what they allow); Progressing -> Ready with `kubectl wait`; gates and
requireImprovement block with the gate and values named while the active version keeps
serving; a canary on one pod held for a second, then promoted; rollback by setting
spec.source.digest to status.previousVersion.digest; a pod reporting Failed rolls back
with Degraded; deleting the AdapterDeployment takes the agent away again; admission refuses
equal engine and serving ports.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any

import pytest

from kubetune.cluster.kubectl import Kubectl
from tests.integration.operator.conftest import Kubelet, OperatorProcess, Trainer, eventually

pytestmark = pytest.mark.usefixtures("operator")

FIELD_MANAGER = "kubetune-operator/adapterdeployment"
ADAPTER = "support-assistant"


# ---------------------------------------------------------------- objects


def deployment_manifest(name: str = "llm", replicas: int = 3) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            # All new pods at once: the test (as kubelet) readies them in one pass.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "100%", "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "engine",
                            "image": "registry.local/kubetune/serving:test",
                            "args": ["--port", "8000"],
                            "ports": [{"containerPort": 8000}],
                        }
                    ]
                },
            },
        },
    }


def adep_manifest(name: str, source: dict[str, Any], **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "AdapterDeployment",
        "metadata": {"name": name},
        "spec": {
            "adapterName": ADAPTER,
            "source": source,
            "target": {"deploymentName": "llm", "engine": "kubetune"},
        },
    }
    body["spec"].update(spec)
    return body


def publish(trainer: Trainer, prefix: str, run: str, **metrics: float) -> tuple[str, str]:
    """Upload a manifest as the trainer does; (folder uri, digest)."""
    manifest = json.dumps(
        {
            "schemaVersion": 1,
            "kind": "kubetune.io/adapter-manifest",
            "run": run,
            "createdAt": "2026-11-28T12:01:00Z",
            "metrics": metrics,
            "files": {},
        },
        sort_keys=True,
    ).encode()
    key = f"{prefix}/{run}/adapter/manifest.json"
    trainer.s3.put_object(Bucket="adapters", Key=key, Body=manifest)
    return f"s3://adapters/{prefix}/{run}/adapter/", "sha256:" + hashlib.sha256(
        manifest
    ).hexdigest()


# ---------------------------------------------------------------- kubelet and agent doubles


def live_pods(k: Kubectl, deployment: str = "llm") -> list[dict[str, Any]]:
    """Pods of the Deployment that carry the injected agent."""
    out = k.run("get", "pods", "-l", f"kubetune.io/deployment={deployment}", "-o", "json").stdout
    return [
        p
        for p in json.loads(out)["items"]
        if not p["metadata"].get("deletionTimestamp")
        and p["status"].get("phase") in (None, "Pending", "Running")
    ]


def kubelet_ready(k: Kubectl, pod: dict[str, Any]) -> None:
    if any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", [])
    ):
        return
    containers = [c["name"] for c in pod["spec"]["containers"]]
    status = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [
            {
                "name": name,
                "ready": True,
                "restartCount": 0,
                "image": "image",
                "imageID": "",
                "state": {"running": {"startedAt": "2026-11-28T12:00:00Z"}},
            }
            for name in containers
        ],
    }
    k.run(
        "patch",
        "pod",
        pod["metadata"]["name"],
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def roll_out(k: Kubectl, replicas: int = 3) -> list[str]:
    """Play the kubelet until the Deployment's injected template runs on every replica."""

    def probe() -> list[str] | None:
        pods = live_pods(k)
        for pod in pods:
            kubelet_ready(k, pod)
        status = k.get("deployment", "llm").get("status", {})
        done = (
            len(pods) == replicas
            and status.get("updatedReplicas") == replicas
            and status.get("readyReplicas") == replicas
            and status.get("replicas") == replicas
        )
        return sorted(p["metadata"]["name"] for p in pods) if done else None

    return eventually(probe, timeout=90, what="the injected pods to roll out")


def agent_reports(
    k: Kubectl, pod: str, digest: str, state: str = "Ready", message: str = ""
) -> None:
    """Write the agent's state annotation on ``pod`` (kubetune.api.contract)."""
    doc = {
        "configResourceVersion": k.get("configmap", "kubetune-adapters-llm")["metadata"][
            "resourceVersion"
        ],
        "adapters": {
            ADAPTER: {"version": digest[7:19], "digest": digest, "state": state, "message": message}
        },
        "updatedAt": "2026-11-28T12:02:00Z",
    }
    patch = {"metadata": {"annotations": {"kubetune.io/adapter-state": json.dumps(doc)}}}
    k.run("patch", "pod", pod, "--type=merge", "-p", json.dumps(patch))


def all_report(k: Kubectl, pods: list[str], digest: str) -> None:
    for pod in pods:
        agent_reports(k, pod, digest)


# ---------------------------------------------------------------- reading


def status(k: Kubectl, name: str) -> dict[str, Any]:
    return dict(k.get("adep", name).get("status") or {})


def condition(st: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in st.get("conditions", []) if c["type"] == type_)


def desired(k: Kubectl) -> dict[str, Any]:
    cm = k.get("configmap", "kubetune-adapters-llm")
    return dict(json.loads(cm["data"]["desired.json"]))


def entry(k: Kubectl) -> dict[str, Any]:
    return next(a for a in desired(k)["adapters"] if a["name"] == ADAPTER)


def event_reasons(k: Kubectl, name: str) -> list[str]:
    out = k.run(
        "get",
        "events",
        "--field-selector",
        f"involvedObject.name={name},involvedObject.kind=AdapterDeployment",
        "-o",
        "json",
    ).stdout
    return [e["reason"] for e in json.loads(out)["items"]]


def phase_is(k: Kubectl, name: str, phase: str) -> Any:
    return lambda: (st := status(k, name)).get("phase") == phase and st


def serve_first_version(
    k: Kubectl, name: str, source: dict[str, Any], digest: str, **spec: Any
) -> list[str]:
    """Apply the Deployment and the AdapterDeployment; roll out and report ``digest`` Ready."""
    k.apply(deployment_manifest())
    k.apply(adep_manifest(name, source, **spec))
    eventually(lambda: status(k, name).get("activeVersion", {}).get("digest") == digest)
    pods = roll_out(k)
    all_report(k, pods, digest)
    k.run("wait", "--for=condition=Ready", f"adep/{name}", "--timeout=60s")
    return pods


@pytest.fixture
def prefix() -> str:
    return f"adep-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------- tests


def applies(operator: OperatorProcess) -> float:
    """Server-side applies the operator has made so far (its metrics)."""
    for line in operator.metrics().splitlines():
        if line.startswith('kubetune_api_requests_total{kind="apply"}'):
            return float(line.split()[-1])
    return 0.0


def test_follows_a_finetunejob_injects_the_agent_and_becomes_ready(
    operator: OperatorProcess,
    k: Kubectl,
    kubelet: Kubelet,
    trainer: Trainer,
    prefix: str,
    namespace: str,
) -> None:
    k.apply(
        {
            "apiVersion": "kubetune.io/v1alpha1",
            "kind": "FineTuneJob",
            "metadata": {"name": "support"},
            "spec": {
                "baseModel": {"uri": "s3://models/tiny/"},
                "dataset": {"train": "s3://datasets/support/train.jsonl"},
                "resources": {"gpus": 0, "cpu": "1", "memory": "1Gi"},
                "output": {"uri": f"s3://adapters/{prefix}/"},
            },
        }
    )
    k.apply(deployment_manifest())
    k.apply(adep_manifest("follow", {"fineTuneJobRef": {"name": "support"}}))
    waiting = eventually(phase_is(k, "follow", "Pending"), what="Pending before any adapter")
    assert condition(waiting, "PromotionBlocked")["reason"] == "SourceNotReady"

    pod = kubelet.live_pod("support-g1")
    digest = trainer.publish(prefix, "support-g1", eval_loss=1.25)
    kubelet.terminated(pod, exit_code=0)
    st = eventually(phase_is(k, "follow", "Progressing"), what="the adapter promoted")
    assert st["activeVersion"]["digest"] == digest
    assert st["activeVersion"]["run"] == "support-g1"
    assert st["activeVersion"]["uri"] == f"s3://adapters/{prefix}/support-g1/adapter/"

    # The sidecar, volume, mount and labels, owned by the operator's field manager.
    out = k.run("get", "deployment", "llm", "-o", "json", "--show-managed-fields").stdout
    dep = json.loads(out)
    template = dep["spec"]["template"]
    containers = {c["name"]: c for c in template["spec"]["containers"]}
    agent = containers["kubetune-agent"]
    env = {e["name"]: e.get("value") for e in agent["env"]}
    assert env["KUBETUNE_DEPLOYMENT"] == "llm" and env["KUBETUNE_LISTEN"] == "0.0.0.0:8080"
    assert env["KUBETUNE_ENGINE_URL"] == "http://127.0.0.1:8000"
    assert agent["readinessProbe"]["httpGet"]["path"] == "/kubetune/ready"
    assert agent["securityContext"]["runAsNonRoot"] is True
    assert {"name": "kubetune-adapters", "emptyDir": {}} in template["spec"]["volumes"]
    assert containers["engine"]["volumeMounts"][0]["mountPath"] == "/var/lib/kubetune/adapters"
    assert containers["engine"]["image"] == "registry.local/kubetune/serving:test"
    assert template["metadata"]["labels"]["kubetune.io/serving-agent"] == "true"
    managers = {m["manager"]: m for m in dep["metadata"]["managedFields"]}
    assert managers[FIELD_MANAGER]["operation"] == "Apply"
    owned = json.dumps(managers[FIELD_MANAGER]["fieldsV1"])
    assert 'k:{\\"name\\":\\"kubetune-agent\\"}' in owned and "f:replicas" not in owned

    # The desired set and the agent's API access.
    assert entry(k) == {
        "name": ADAPTER,
        "active": {"version": digest[7:19], "uri": st["activeVersion"]["uri"], "digest": digest},
        "canary": None,
    }
    cm = k.get("configmap", "kubetune-adapters-llm")
    assert cm["metadata"]["ownerReferences"][0]["name"] == "follow"
    role = k.get("role", "kubetune-agent-llm")
    assert role["rules"][0]["resourceNames"] == ["kubetune-adapters-llm"]
    binding = k.get("rolebinding", "kubetune-agent-llm")
    assert binding["subjects"][0]["name"] == "default"
    agent_sa = f"--as=system:serviceaccount:{namespace}:default"

    def can(*args: str) -> bool:
        return k.run("auth", "can-i", agent_sa, *args, check=False).stdout.strip() == "yes"

    assert can("watch", "configmaps/kubetune-adapters-llm") and can("patch", "pods")
    assert not can("get", "configmaps/other") and not can("delete", "pods")

    pods = roll_out(k)
    all_report(k, pods[:2], digest)
    st = eventually(lambda: (s := status(k, "follow")).get("replicas", {}).get("ready") == 2 and s)
    assert st["phase"] == "Progressing"
    assert condition(st, "Progressing")["reason"] == "RollingOut"
    agent_reports(k, pods[2], digest)
    k.run("wait", "--for=condition=Ready", "adep/follow", "--timeout=60s")
    st = status(k, "follow")
    assert st["phase"] == "Ready"
    assert st["replicas"] == {"desired": 3, "ready": 3, "updated": 3}
    assert [(p["name"], p["version"], p["state"]) for p in st["pods"]] == [
        (name, digest[7:19], "Ready") for name in pods
    ]
    assert st["observedGeneration"] == 1

    # A GitOps manager re-applying its Deployment keeps the agent; later reconciles (the
    # timer ticks every second) apply nothing: same resourceVersion.
    k.apply(deployment_manifest())
    before = k.get("deployment", "llm")["metadata"]
    cm_before = k.get("configmap", "kubetune-adapters-llm")["metadata"]["resourceVersion"]
    applied = applies(operator)
    assert applied >= 4  # desired set, Deployment, Role, RoleBinding
    time.sleep(3)
    assert applies(operator) == applied  # not even a no-op apply
    after = k.get("deployment", "llm")
    assert after["metadata"]["resourceVersion"] == before["resourceVersion"]
    assert after["metadata"]["generation"] == before["generation"]
    assert "kubetune-agent" in [c["name"] for c in after["spec"]["template"]["spec"]["containers"]]
    assert k.get("configmap", "kubetune-adapters-llm")["metadata"]["resourceVersion"] == cm_before
    reasons = event_reasons(k, "follow")
    assert {"AgentInjected", "Promoted", "RolloutComplete"} <= set(reasons)
    assert reasons.count("AgentInjected") == 1


def test_gates_and_require_improvement_block_while_the_active_version_serves(
    k: Kubectl, trainer: Trainer, prefix: str
) -> None:
    uri1, d1 = publish(trainer, prefix, "g1", evalLoss=1.2, exactMatch=0.9)
    pods = serve_first_version(
        k,
        "gated",
        {"uri": uri1},
        d1,
        promotion={"gates": {"evalLoss": {"max": 1.5}, "exactMatch": {"min": 0.8}}},
    )

    uri2, _ = publish(trainer, prefix, "g2", evalLoss=1.9, exactMatch=0.95)
    k.apply(
        adep_manifest(
            "gated",
            {"uri": uri2},
            promotion={"gates": {"evalLoss": {"max": 1.5}, "exactMatch": {"min": 0.8}}},
        )
    )
    st = eventually(phase_is(k, "gated", "Blocked"), what="the gate to block")
    blocked = condition(st, "PromotionBlocked")
    assert (blocked["status"], blocked["reason"]) == ("True", "GateFailed")
    assert "spec.promotion.gates.evalLoss" in blocked["message"]
    assert "evalLoss 1.9 > max 1.5" in blocked["message"]
    assert st["activeVersion"]["digest"] == d1 and entry(k)["active"]["digest"] == d1
    assert condition(st, "Ready")["status"] == "False"
    assert st["replicas"]["ready"] == len(pods)

    uri3, _ = publish(trainer, prefix, "g3", evalLoss=1.3, exactMatch=0.95)
    k.apply(
        adep_manifest(
            "gated",
            {"uri": uri3},
            promotion={"gates": {"evalLoss": {"max": 1.5}}, "requireImprovement": True},
        )
    )
    st = eventually(
        lambda: (
            (s := status(k, "gated"))
            and condition(s, "PromotionBlocked")["reason"] == "NoImprovement"
            and s
        ),
        what="requireImprovement to block",
    )
    assert "evalLoss 1.3 is not lower than active" in condition(st, "PromotionBlocked")["message"]
    assert entry(k)["active"]["digest"] == d1
    reasons = eventually(lambda: (r := event_reasons(k, "gated")) and "NoImprovement" in r and r)
    assert "GateFailed" in reasons


def test_canary_then_promotion_and_rollback_by_digest(
    k: Kubectl, trainer: Trainer, prefix: str
) -> None:
    uri1, d1 = publish(trainer, prefix, "g1", evalLoss=1.2)
    canary = {"canary": {"replicas": 1, "holdSeconds": 1}}
    pods = serve_first_version(k, "canary", {"uri": uri1}, d1, promotion=canary)

    uri2, d2 = publish(trainer, prefix, "g2", evalLoss=1.1)
    k.apply(adep_manifest("canary", {"uri": uri2}, promotion=canary))
    st = eventually(lambda: (s := status(k, "canary")).get("canary") and s, what="the canary")
    assert st["canary"]["pods"] == [pods[0]]  # the first ready pod by name
    assert st["phase"] == "Progressing" and condition(st, "Progressing")["reason"] == "Canary"
    assert entry(k)["canary"] == {
        "version": d2[7:19],
        "uri": uri2,
        "digest": d2,
        "pods": [pods[0]],
    }
    assert entry(k)["active"]["digest"] == d1

    agent_reports(k, pods[0], d2)
    st = eventually(
        lambda: (s := status(k, "canary")).get("activeVersion", {}).get("digest") == d2 and s,
        what="promotion after the hold",
    )
    assert st["previousVersion"]["digest"] == d1
    assert entry(k)["active"]["digest"] == d2 and entry(k)["canary"] is None
    all_report(k, pods, d2)
    k.run("wait", "--for=condition=Ready", "adep/canary", "--timeout=60s")
    assert {"CanaryStarted", "Promoted", "RolloutComplete"} <= set(event_reasons(k, "canary"))

    # Rollback is one field: spec.source.digest = status.previousVersion.digest.
    previous = status(k, "canary")["previousVersion"]["digest"]
    k.apply(adep_manifest("canary", {"uri": uri2, "digest": previous}, promotion=canary))
    st = eventually(
        lambda: (s := status(k, "canary")).get("activeVersion", {}).get("digest") == d1 and s,
        what="the rollback",
    )
    assert "canary" not in st  # a version that served before skips the canary
    assert entry(k)["active"] == {"version": d1[7:19], "uri": uri1, "digest": d1}
    all_report(k, pods, d1)
    k.run("wait", "--for=condition=Ready", "adep/canary", "--timeout=60s")


def test_pod_failing_the_new_version_rolls_back_with_degraded(
    k: Kubectl, trainer: Trainer, prefix: str
) -> None:
    uri1, d1 = publish(trainer, prefix, "g1", evalLoss=1.2)
    pods = serve_first_version(k, "rollback", {"uri": uri1}, d1)

    uri2, d2 = publish(trainer, prefix, "g2", evalLoss=1.1)
    k.apply(adep_manifest("rollback", {"uri": uri2}))
    eventually(lambda: entry(k)["active"]["digest"] == d2, what="the new version desired")
    agent_reports(k, pods[0], d2)
    message = "digest mismatch: adapter_model.safetensors sha256 0f0f... != manifest 1a1a..."
    agent_reports(k, pods[1], d2, "Failed", message)
    st = eventually(phase_is(k, "rollback", "Degraded"), what="Degraded")
    degraded = condition(st, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "RolloutFailed")
    assert message in degraded["message"] and pods[1] in degraded["message"]
    assert st["activeVersion"]["digest"] == d1
    assert st["failedVersion"]["digest"] == d2
    eventually(lambda: entry(k)["active"]["digest"] == d1, what="the desired set reverted")
    assert "RolloutFailed" in eventually(lambda: event_reasons(k, "rollback"))

    # The failed digest is not retried while the source stays the same.
    all_report(k, pods, d1)
    time.sleep(2)
    st = status(k, "rollback")
    assert st["phase"] == "Degraded" and entry(k)["active"]["digest"] == d1
    assert st["replicas"]["ready"] == len(pods)


def test_deleting_the_adapterdeployment_removes_the_agent(
    k: Kubectl, trainer: Trainer, prefix: str
) -> None:
    uri1, d1 = publish(trainer, prefix, "g1", evalLoss=1.2)
    k.apply(deployment_manifest())
    k.apply(adep_manifest("gone", {"uri": uri1}))
    eventually(lambda: status(k, "gone").get("activeVersion", {}).get("digest") == d1)
    eventually(
        lambda: (
            "kubetune-agent"
            in [
                c["name"]
                for c in k.get("deployment", "llm")["spec"]["template"]["spec"]["containers"]
            ]
        ),
        what="the agent injected",
    )
    k.run("delete", "adep", "gone", "--wait=true")
    eventually(
        lambda: (
            [
                c["name"]
                for c in k.get("deployment", "llm")["spec"]["template"]["spec"]["containers"]
            ]
            == ["engine"]
        ),
        what="the agent removed",
    )
    template = k.get("deployment", "llm")["spec"]["template"]
    assert "kubetune.io/serving-agent" not in template["metadata"].get("labels", {})
    assert [v["name"] for v in template["spec"].get("volumes", [])] == []
    eventually(
        lambda: k.run("get", "configmap", "kubetune-adapters-llm", check=False).returncode != 0,
        what="the desired set deleted",
    )


def test_admission_refuses_equal_engine_and_serving_ports(k: Kubectl) -> None:
    body = adep_manifest(
        "ports",
        {"uri": "s3://adapters/x/g1/adapter/"},
        target={"deploymentName": "llm", "enginePort": 8080, "servingPort": 8080},
    )
    result = k.apply(body, check=False)
    assert result.returncode != 0
    assert "spec.target.servingPort" in result.stderr
    assert "must differ from target.enginePort" in result.stderr
