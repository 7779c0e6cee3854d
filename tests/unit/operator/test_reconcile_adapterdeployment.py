"""The AdapterDeployment planner, as tables over (object, Deployment, pods with agent reports,
resolved source, other AdapterDeployments on the Deployment, now).

Covers: source resolution (FineTuneJob latestAdapter and run history, pinned URI manifest,
missing sources); the first version is promoted at once, Progressing until every replica
reports it Ready, then Ready with counts and per-pod states; replaying any reconcile changes
nothing and emits no events; a missing Deployment is Pending; gates (max, min, missing metric)
and requireImprovement block with the gate and values named while the active version keeps
serving; canary on the first ready pods by name, hold, then promotion; a canary pod reporting
Failed withdraws the canary, Degraded, and the digest is not retried until the source changes;
a pod failing a freshly promoted version rolls back, after rollout it only degrades; rollback
by pinning spec.source.digest to previousVersion skips canary and requireImprovement; unknown
digests; adapter-name and agent-setting conflicts between AdapterDeployments; the per-Deployment
plan (desired set assembled from every AdapterDeployment, ownership, injection, release).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from kubetune.operator.observed import AdapterView
from kubetune.operator.observed_serving import (
    ConfigMapView,
    DeploymentView,
    ServingPodView,
    parse_adapter_state,
)
from kubetune.operator.reconcile_adapterdeployment import (
    Member,
    Plan,
    SourceView,
    plan_target,
    reconcile,
    resolve_source,
)
from kubetune.operator.render_serving import AgentTarget, render_agent_injection
from kubetune.operator.settings import Settings

NOW = "2026-11-28T12:00:00Z"
LATER = "2026-11-28T12:00:30Z"
SETTINGS = Settings(serving_image="registry.local/kubetune/serving:0.1.0")
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64
V1, V2, V3 = "1" * 12, "2" * 12, "3" * 12


# ---------------------------------------------------------------- builders


def adapter(digest: str, run: str, **metrics: float) -> dict[str, Any]:
    return {
        "uri": f"s3://adapters/support/{run}/adapter/",
        "digest": digest,
        "run": run,
        "metrics": {"evalLoss": 1.2, **metrics},
    }


def ftj(latest: dict[str, Any] | None, *history: dict[str, Any]) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": "Succeeded" if latest else "Running"}
    if latest:
        status["latestAdapter"] = latest
    status["runs"] = [{"name": a["run"], "adapter": a} for a in (latest, *history) if a]
    return {"metadata": {"name": "support"}, "status": status}


def adep(
    status: dict[str, Any] | None = None,
    *,
    name: str = "support",
    uid: str = "uid-a",
    created: str = "2026-11-28T10:00:00Z",
    generation: int = 1,
    **spec: Any,
) -> dict[str, Any]:
    base: dict[str, Any] = {
        "adapterName": "support-assistant",
        "source": {"fineTuneJobRef": {"name": "support"}},
        "target": {
            "deploymentName": "llm",
            "engine": "kubetune",
            "enginePort": 8000,
            "servingPort": 8080,
        },
        "promotion": {"requireImprovement": False, "canary": {"replicas": 0, "holdSeconds": 60}},
    }
    base.update(spec)
    body: dict[str, Any] = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "AdapterDeployment",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "uid": uid,
            "generation": generation,
            "creationTimestamp": created,
        },
        "spec": base,
    }
    if status is not None:
        body["status"] = copy.deepcopy(status)
    return body


def canary(replicas: int = 1, hold: int = 20, **promotion: Any) -> dict[str, Any]:
    return {"canary": {"replicas": replicas, "holdSeconds": hold}, **promotion}


def deployment(replicas: int = 3, containers: tuple[str, ...] = ("engine",)) -> DeploymentView:
    return DeploymentView(
        namespace="ml",
        name="llm",
        uid="dep-uid",
        generation=1,
        replicas=replicas,
        service_account="llm-sa",
        containers=containers,
        agent_config="",
        agent_present=False,
        automount_token=True,
    )


def pod(
    name: str, digest: str = "", state: str = "Ready", *, ready: bool = True, message: str = ""
) -> ServingPodView:
    annotations = {}
    if digest:
        annotations["kubetune.io/adapter-state"] = json.dumps(
            {
                "configResourceVersion": "1",
                "adapters": {
                    "support-assistant": {
                        "version": digest[7:19],
                        "digest": digest,
                        "state": state,
                        "message": message,
                    }
                },
            }
        )
    return ServingPodView.from_object(
        {
            "metadata": {
                "name": name,
                "labels": {"kubetune.io/deployment": "llm"},
                "annotations": annotations,
            },
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            },
        }
    )


def source_of(job: dict[str, Any] | None, spec: dict[str, Any] | None = None) -> SourceView:
    return resolve_source(spec or adep()["spec"], finetunejob=job, manifest=None)


def plan_for(
    body: dict[str, Any],
    *,
    source: SourceView | None = None,
    pods: list[ServingPodView] = (),  # type: ignore[assignment]
    dep: DeploymentView | str | None = "default",
    siblings: list[Member] = (),  # type: ignore[assignment]
    now: str = NOW,
) -> Plan:
    return reconcile(
        body=body,
        deployment=deployment() if dep == "default" else dep,  # type: ignore[arg-type]
        pods=list(pods),
        source=source if source is not None else source_of(ftj(adapter(D1, "support-g1"))),
        siblings=list(siblings),
        settings=SETTINGS,
        now=now,
    )


def converge(body: dict[str, Any], **observed: Any) -> tuple[Plan, dict[str, Any]]:
    """Reconcile, apply the status, and check that replaying changes nothing."""
    plan = plan_for(body, **observed)
    applied = {**body, "status": plan.status}
    replay = plan_for(applied, **observed)
    assert replay.events == [], f"replay emitted {replay.events}"
    assert replay.status == plan.status
    return plan, applied


def cond(plan: Plan, type_: str) -> dict[str, Any]:
    return next(c for c in plan.status["conditions"] if c["type"] == type_)


def reasons(plan: Plan) -> list[str]:
    return [e.reason for e in plan.events]


def serving(digest: str, *, replicas: int = 3, name: str = "support-assistant") -> dict[str, Any]:
    """A status in which ``digest`` is active and Ready on ``replicas`` pods."""
    body = adep()
    source = source_of(ftj(adapter(digest, "run-" + digest[7])))
    pods = [pod(f"llm-{i}", digest) for i in range(replicas)]
    _, applied = converge(body, source=source, pods=pods)
    assert applied["status"]["phase"] == "Ready", applied["status"]
    return dict(applied["status"])


# ---------------------------------------------------------------- sources


def test_source_follows_finetunejob_latest_and_knows_its_history() -> None:
    source = source_of(ftj(adapter(D2, "support-g2"), adapter(D1, "support-g1")))
    assert source.latest is not None and source.latest.digest == D2
    assert [v.digest for v in source.known] == [D2, D2, D1]
    assert source.latest.run == "support-g2" and source.latest.metrics["evalLoss"] == 1.2


@pytest.mark.parametrize(
    ("job", "needle"),
    [
        (None, "FineTuneJob support does not exist"),
        (ftj(None), "has not published an adapter yet (phase Running)"),
    ],
)
def test_source_not_ready_says_why(job: dict[str, Any] | None, needle: str) -> None:
    source = source_of(job)
    assert source.latest is None and needle in source.problem


def test_pinned_uri_source_reads_the_manifest() -> None:
    spec = adep(source={"uri": "s3://adapters/support/support-g3/adapter/"})["spec"]
    view = AdapterView(
        uri="s3://adapters/support/support-g3/adapter/",
        digest=D3,
        metrics={"evalLoss": 0.9},
        published_at=NOW,
    )
    source = resolve_source(spec, finetunejob=None, manifest=view)
    assert source.latest is not None
    assert (source.latest.digest, source.latest.run) == (D3, "support-g3")
    missing = resolve_source(spec, finetunejob=None, manifest=None)
    assert missing.latest is None
    assert "s3://adapters/support/support-g3/adapter/manifest.json" in missing.problem


# ---------------------------------------------------------------- first version and rollout


def test_first_version_is_promoted_at_once_then_ready_when_pods_report_it() -> None:
    plan, body = converge(adep())
    assert plan.status["phase"] == "Progressing"
    assert plan.status["activeVersion"]["digest"] == D1
    assert plan.status["activeVersion"]["version"] == V1
    assert plan.status["activeVersion"]["promotedAt"] == NOW
    assert "previousVersion" not in plan.status
    assert reasons(plan) == ["Promoted"]
    assert cond(plan, "Ready")["status"] == "False"
    assert cond(plan, "Progressing")["reason"] == "RollingOut"
    assert plan.status["replicas"] == {"desired": 3, "ready": 0, "updated": 0}

    partly, body = converge(
        body, pods=[pod("llm-0", D1), pod("llm-1", D1, "Loading"), pod("llm-2")]
    )
    assert partly.status["phase"] == "Progressing"
    assert partly.status["replicas"] == {"desired": 3, "ready": 1, "updated": 1}
    assert partly.status["pods"] == [
        {"name": "llm-0", "version": V1, "state": "Ready", "message": ""},
        {"name": "llm-1", "version": V1, "state": "Loading", "message": ""},
        {
            "name": "llm-2",
            "version": "",
            "state": "Unknown",
            "message": "no report from the agent yet",
        },
    ]

    pods = [pod(f"llm-{i}", D1) for i in range(3)]
    ready, body = converge(body, pods=pods, now=LATER)
    assert ready.status["phase"] == "Ready"
    assert cond(ready, "Ready") | {"lastTransitionTime": ""} == {
        "type": "Ready",
        "status": "True",
        "reason": "RolloutComplete",
        "message": f"{V1} (run support-g1) Ready on 3/3 replicas",
        "observedGeneration": 1,
        "lastTransitionTime": "",
    }
    assert cond(ready, "Progressing")["status"] == "False"
    assert ready.status["activeVersion"]["rolledOutAt"] == LATER
    assert reasons(ready) == ["RolloutComplete"]
    assert all(cond(ready, t)["status"] == "False" for t in ("Degraded", "PromotionBlocked"))


def test_missing_deployment_is_pending_and_reported_once() -> None:
    plan, _ = converge(adep(), dep=None)
    assert plan.status["phase"] == "Pending"
    assert cond(plan, "Ready")["reason"] == "DeploymentNotFound"
    assert "Deployment llm not found in namespace ml" in cond(plan, "Ready")["message"]
    assert reasons(plan) == ["DeploymentNotFound"]
    assert "activeVersion" not in plan.status


def test_waiting_for_the_first_adapter_is_pending_not_blocked() -> None:
    plan, _ = converge(adep(), source=source_of(ftj(None)))
    assert plan.status["phase"] == "Pending"
    blocked = cond(plan, "PromotionBlocked")
    assert (blocked["status"], blocked["reason"]) == ("True", "SourceNotReady")
    assert reasons(plan) == ["SourceNotReady"]


# ---------------------------------------------------------------- gates


@pytest.mark.parametrize(
    ("gates", "metrics", "reason", "needles"),
    [
        ({"evalLoss": {"max": 1.5}}, {"evalLoss": 1.9}, "GateFailed", ["evalLoss 1.9 > max 1.5"]),
        (
            {"exactMatch": {"min": 0.8}},
            {"exactMatch": 0.5},
            "GateFailed",
            ["gates.exactMatch", "exactMatch 0.5 < min 0.8"],
        ),
        (
            {"exactMatch": {"min": 0.8}},
            {},
            "GateFailed",
            ["has no exactMatch metric", "it has: evalLoss"],
        ),
        ({"evalLoss": {"max": 1.5}, "exactMatch": {"min": 0.5}}, {"exactMatch": 0.9}, None, []),
    ],
)
def test_gates_block_promotion_and_the_active_version_keeps_serving(
    gates: dict[str, Any], metrics: dict[str, float], reason: str | None, needles: list[str]
) -> None:
    status = serving(D1)
    body = adep(status, promotion={"gates": gates})
    plan, _ = converge(body, source=source_of(ftj(adapter(D2, "support-g2", **metrics))))
    if reason is None:
        assert plan.status["activeVersion"]["digest"] == D2
        assert cond(plan, "PromotionBlocked")["status"] == "False"
        return
    assert plan.status["phase"] == "Blocked"
    assert plan.status["activeVersion"] == status["activeVersion"]
    blocked = cond(plan, "PromotionBlocked")
    assert (blocked["status"], blocked["reason"]) == ("True", reason)
    for needle in needles:
        assert needle in blocked["message"]
    assert f"{V1} (run run-1) keeps serving" in blocked["message"]
    assert cond(plan, "Ready")["status"] == "False"
    assert reasons(plan) == [reason]


@pytest.mark.parametrize(
    ("candidate_loss", "promoted", "needle"),
    [
        (1.0, True, ""),
        (1.2, False, "evalLoss 1.2 is not lower than active"),
        (1.5, False, "evalLoss 1.5 is not lower than active"),
    ],
)
def test_require_improvement_compares_eval_loss(
    candidate_loss: float, promoted: bool, needle: str
) -> None:
    body = adep(serving(D1), promotion={"requireImprovement": True})
    plan, _ = converge(
        body, source=source_of(ftj(adapter(D2, "support-g2", evalLoss=candidate_loss)))
    )
    assert (plan.status["activeVersion"]["digest"] == D2) is promoted
    if not promoted:
        assert cond(plan, "PromotionBlocked")["reason"] == "NoImprovement"
        assert needle in cond(plan, "PromotionBlocked")["message"]


# ---------------------------------------------------------------- canary


def test_canary_runs_on_the_first_ready_pods_holds_then_promotes() -> None:
    body = adep(serving(D1), promotion=canary(replicas=1, hold=20))
    source = source_of(ftj(adapter(D2, "support-g2"), adapter(D1, "run-1")))
    pods = [pod("llm-c", D1), pod("llm-a", D1, ready=False), pod("llm-b", D1)]
    started, body = converge(body, source=source, pods=pods)
    assert started.status["canary"]["pods"] == ["llm-b"]  # llm-a is not ready
    assert started.status["canary"]["digest"] == D2
    assert started.status["activeVersion"]["digest"] == D1
    assert started.status["phase"] == "Progressing"
    assert cond(started, "Progressing")["reason"] == "Canary"
    assert reasons(started) == ["CanaryStarted"]

    pods[2] = pod("llm-b", D2)
    healthy, body = converge(body, source=source, pods=pods)
    assert healthy.status["canary"]["healthySince"] == NOW
    assert healthy.status["replicas"] == {"desired": 3, "ready": 2, "updated": 3}
    held, body = converge(body, source=source, pods=pods, now="2026-11-28T12:00:19Z")
    assert "canary" in held.status and held.events == []

    promoted, body = converge(body, source=source, pods=pods, now="2026-11-28T12:00:20Z")
    assert "canary" not in promoted.status
    assert promoted.status["activeVersion"]["digest"] == D2
    assert promoted.status["previousVersion"]["digest"] == D1
    assert reasons(promoted) == ["Promoted"]
    assert "after a healthy canary on llm-b for 20s" in promoted.events[0].message


def test_a_canary_pod_that_goes_unready_restarts_the_hold() -> None:
    body = adep(serving(D1), promotion=canary(hold=20))
    source = source_of(ftj(adapter(D2, "support-g2")))
    pods = [pod("llm-0", D1), pod("llm-1", D1)]
    _, body = converge(body, source=source, pods=pods)
    pods[0] = pod("llm-0", D2)
    _, body = converge(body, source=source, pods=pods)
    pods[0] = pod("llm-0", D2, "Loading")
    plan, body = converge(body, source=source, pods=pods, now=LATER)
    assert "healthySince" not in plan.status["canary"]
    assert plan.status["activeVersion"]["digest"] == D1


def test_canary_waits_for_a_ready_pod() -> None:
    body = adep(serving(D1), promotion=canary())
    source = source_of(ftj(adapter(D2, "support-g2")))
    plan, _ = converge(body, source=source, pods=[pod("llm-0", D1, ready=False)])
    assert "canary" not in plan.status and plan.status["phase"] == "Progressing"
    assert "waits for a ready pod" in cond(plan, "Progressing")["message"]


def test_a_new_source_version_mid_canary_replaces_the_canary() -> None:
    body = adep(serving(D1), promotion=canary())
    pods = [pod("llm-0", D1)]
    _, body = converge(body, source=source_of(ftj(adapter(D2, "support-g2"))), pods=pods)
    plan, _ = converge(body, source=source_of(ftj(adapter(D3, "support-g3"))), pods=pods)
    assert plan.status["canary"]["digest"] == D3
    assert reasons(plan) == ["CanaryAborted", "CanaryStarted"]


def test_failed_canary_is_withdrawn_degraded_and_not_retried_until_the_source_changes() -> None:
    body = adep(serving(D1), promotion=canary())
    source = source_of(ftj(adapter(D2, "support-g2")))
    pods = [pod("llm-0", D1), pod("llm-1", D1)]
    _, body = converge(body, source=source, pods=pods)
    pods[0] = pod("llm-0", D2, "Failed", message="digest mismatch for adapter_model.safetensors")
    failed, body = converge(body, source=source, pods=pods)
    assert "canary" not in failed.status
    assert failed.status["activeVersion"]["digest"] == D1
    assert failed.status["failedVersion"]["digest"] == D2
    assert failed.status["failedVersion"]["pod"] == "llm-0"
    assert failed.status["phase"] == "Degraded"
    degraded = cond(failed, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "RolloutFailed")
    assert "digest mismatch for adapter_model.safetensors" in degraded["message"]
    assert "llm-0" in degraded["message"]
    assert reasons(failed) == ["RolloutFailed"]

    # The agent moved llm-0 back to D1: still not retried, still Degraded.
    pods[0] = pod("llm-0", D1)
    again, body = converge(body, source=source, pods=pods, now=LATER)
    assert "canary" not in again.status and again.status["phase"] == "Degraded"

    retried, _ = converge(body, source=source_of(ftj(adapter(D3, "support-g3"))), pods=pods)
    assert retried.status["canary"]["digest"] == D3
    assert cond(retried, "Degraded")["status"] == "False"


# ---------------------------------------------------------------- rollback


def test_pod_failing_a_fresh_version_rolls_back_to_the_previous() -> None:
    body = adep(serving(D1))
    source = source_of(ftj(adapter(D2, "support-g2"), adapter(D1, "run-1")))
    _, body = converge(body, source=source, pods=[pod(f"llm-{i}", D1) for i in range(3)])
    assert body["status"]["activeVersion"]["digest"] == D2
    pods = [pod("llm-0", D2), pod("llm-1", D2, "Failed", message="load failed: rank 64 > 16")]
    rolled, body = converge(body, source=source, pods=pods)
    assert rolled.status["activeVersion"]["digest"] == D1
    assert "previousVersion" not in rolled.status
    assert rolled.status["failedVersion"]["digest"] == D2
    assert rolled.status["phase"] == "Degraded"
    assert "load failed: rank 64 > 16" in cond(rolled, "Degraded")["message"]
    assert "rolled back to" in rolled.events[0].message


def test_after_rollout_a_failing_pod_degrades_without_rollback() -> None:
    body = adep(serving(D1))
    source = source_of(ftj(adapter(D2, "support-g2"), adapter(D1, "run-1")))
    _, body = converge(body, source=source, pods=[pod(f"llm-{i}", D2) for i in range(3)])
    assert body["status"]["activeVersion"]["rolledOutAt"]
    pods = [pod("llm-0", D2), pod("llm-1", D2), pod("llm-3", D2, "Failed", message="s3 down")]
    plan, _ = converge(body, source=source, pods=pods)
    assert plan.status["activeVersion"]["digest"] == D2
    assert cond(plan, "Degraded")["reason"] == "PodFailed"
    assert plan.status["phase"] == "Degraded"


def test_rollback_is_pinning_the_previous_digest() -> None:
    body = adep(serving(D1), promotion=canary(replicas=1, requireImprovement=True))
    source = source_of(ftj(adapter(D2, "support-g2", evalLoss=1.0), adapter(D1, "run-1")))
    pods = [pod(f"llm-{i}", D1) for i in range(3)]
    _, body = converge(body, source=source, pods=pods)
    pods[0] = pod("llm-0", D2)
    _, body = converge(body, source=source, pods=pods)
    _, body = converge(body, source=source, pods=pods, now="2026-11-28T13:00:00Z")
    assert body["status"]["activeVersion"]["digest"] == D2
    previous = body["status"]["previousVersion"]["digest"]
    assert previous == D1

    pinned = adep(body["status"], generation=2, promotion=body["spec"]["promotion"])
    pinned["spec"]["source"]["digest"] = previous
    plan, _ = converge(pinned, source=source, pods=pods)
    assert "canary" not in plan.status  # it served before: no canary, no requireImprovement
    assert plan.status["activeVersion"]["digest"] == D1
    assert plan.status["previousVersion"]["digest"] == D2
    assert reasons(plan) == ["Promoted"]


def test_unknown_pinned_digest_is_blocked_with_the_known_versions() -> None:
    body = adep(serving(D1), source={"fineTuneJobRef": {"name": "support"}, "digest": D3})
    plan, _ = converge(body, source=source_of(ftj(adapter(D1, "run-1"))))
    assert plan.status["phase"] == "Blocked"
    blocked = cond(plan, "PromotionBlocked")
    assert blocked["reason"] == "UnknownDigest"
    assert D3 in blocked["message"] and f"{V1} (run run-1)" in blocked["message"]


# ---------------------------------------------------------------- several AdapterDeployments


def member(body: dict[str, Any]) -> Member:
    return Member.of(body, SETTINGS)


def test_adapter_name_and_agent_settings_conflicts_block_the_younger() -> None:
    older = adep(name="first", uid="uid-1", created="2026-11-28T09:00:00Z")
    same_name = adep(name="second", uid="uid-2")
    plan, _ = converge(same_name, siblings=[member(older)])
    assert plan.status["phase"] == "Blocked"
    assert cond(plan, "PromotionBlocked")["reason"] == "NameConflict"
    assert "AdapterDeployment first already serves" in cond(plan, "PromotionBlocked")["message"]

    other_port = adep(name="third", uid="uid-3", adapterName="billing")
    other_port["spec"]["target"]["servingPort"] = 9090
    plan, _ = converge(other_port, siblings=[member(older)])
    assert cond(plan, "PromotionBlocked")["reason"] == "TargetConflict"
    assert "target.servingPort" in cond(plan, "PromotionBlocked")["message"]

    fine = adep(name="fourth", uid="uid-4", adapterName="billing")
    plan, _ = converge(fine, siblings=[member(older)])
    assert plan.status["activeVersion"]["digest"] == D1


def test_unknown_engine_container_is_refused() -> None:
    body = adep()
    body["spec"]["target"]["engineContainers"] = ["vllm"]
    plan, _ = converge(body)
    assert cond(plan, "PromotionBlocked")["reason"] == "InvalidTarget"
    assert (
        "vllm not among the containers of Deployment llm (engine)"
        in (cond(plan, "PromotionBlocked")["message"])
    )


def test_target_plan_assembles_every_adapter_and_skips_what_is_already_there() -> None:
    first = adep(serving(D1), name="first", uid="uid-1", created="2026-11-28T09:00:00Z")
    second = adep(serving(D2), name="second", uid="uid-2", adapterName="billing")
    clash = adep(serving(D3), name="third", uid="uid-3")  # same adapterName as first
    members = [member(second), member(clash), member(first)]
    plan = plan_target(
        namespace="ml",
        deployment_name="llm",
        deployment=deployment(),
        members=members,
        config_map=None,
        settings=SETTINGS,
    )
    assert plan.config_map is not None
    doc = json.loads(plan.config_map["data"]["desired.json"])
    assert [a["name"] for a in doc["adapters"]] == ["billing", "support-assistant"]
    assert doc["adapters"][1]["active"] == {
        "version": V1,
        "uri": "s3://adapters/support/run-1/adapter/",
        "digest": D1,
    }
    owners = plan.config_map["metadata"]["ownerReferences"]
    assert [o["name"] for o in owners] == ["first", "second", "third"]
    assert plan.inject is not None
    assert [m["kind"] for m in plan.rbac] == ["Role", "RoleBinding"]
    assert plan.rbac[1]["subjects"][0]["name"] == "llm-sa"

    observed = ConfigMapView(
        name="kubetune-adapters-llm",
        deployment="llm",
        desired=plan.config_map["data"]["desired.json"],
        owners=("uid-1", "uid-2", "uid-3"),
    )
    injected = render_agent_injection(
        deployment=deployment(), target=AgentTarget.of(first["spec"], SETTINGS), settings=SETTINGS
    )
    applied = DeploymentView(
        **{
            **deployment().__dict__,
            "agent_present": True,
            "agent_config": injected["metadata"]["annotations"]["kubetune.io/agent-config"],
        }
    )
    again = plan_target(
        namespace="ml",
        deployment_name="llm",
        deployment=applied,
        members=members,
        config_map=observed,
        settings=SETTINGS,
    )
    assert again.config_map is None and again.inject is None


def test_target_plan_without_members_releases_the_agent_and_the_desired_set() -> None:
    applied = DeploymentView(**{**deployment().__dict__, "agent_config": "abc"})
    observed = ConfigMapView(name="kubetune-adapters-llm", deployment="llm", desired="", owners=())
    plan = plan_target(
        namespace="ml",
        deployment_name="llm",
        deployment=applied,
        members=[],
        config_map=observed,
        settings=SETTINGS,
    )
    assert plan.release == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "llm", "namespace": "ml"},
    }
    assert plan.delete_config_map and plan.delete_rbac
    assert plan.config_map is None and plan.inject is None


def test_pod_annotation_parsing_is_tolerant() -> None:
    assert parse_adapter_state(None) == ({}, "")
    reports, error = parse_adapter_state("{not json")
    assert reports == {} and "not JSON" in error
    reports, error = parse_adapter_state(
        json.dumps({"adapters": {"a": "x", "b": {"state": "Ready"}}})
    )
    assert list(reports) == ["b"] and reports["b"].state == "Ready" and error == ""
