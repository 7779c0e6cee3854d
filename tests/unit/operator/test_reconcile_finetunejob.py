"""The FineTuneJob planner, as tables over (object, Jobs, Pods, object-store view).

Covers: first run creates exactly its ConfigMap and Job; replaying any reconcile is a no-op
(no creations, no events, same status); Job status drives phases (Pending, Running,
Succeeded with the manifest, Failed with the trainer's reason and line numbers,
DeadlineExceeded, BackoffLimitExceeded, MissingManifest); a spec change supersedes a running
run while latestAdapter stays; suspend/resume toggles never start a new run; a Job deleted
mid-run is recreated, a finished run never; preemption is reported once; a changed dataset
ETag retrains; an invalid spec is refused; Kueue jobs are created suspended.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubetune.operator.observed import AdapterView, JobView, PodView, StoreView
from kubetune.operator.reconcile_finetunejob import Plan, reads_needed, reconcile
from kubetune.operator.settings import Settings
from tests.unit.operator.builders import NOW, ftj, job, pod

SETTINGS = Settings(trainer_image="registry.local/kubetune/trainer:0.1.0")
ADAPTER = AdapterView(
    uri="s3://adapters/support/support-g1/adapter/",
    digest="sha256:abc",
    metrics={"evalLoss": 1.2},
    published_at=NOW,
)


def plan_for(
    body: dict[str, Any],
    jobs: list[dict[str, Any]] = (),  # type: ignore[assignment]
    pods: list[dict[str, Any]] = (),  # type: ignore[assignment]
    store: StoreView | None = None,
) -> Plan:
    return reconcile(
        body=body,
        jobs=[JobView.from_object(j) for j in jobs],
        pods=[PodView.from_object(p) for p in pods],
        store=store or StoreView(),
        settings=SETTINGS,
        now=NOW,
    )


def kinds(plan: Plan) -> list[str]:
    return [obj["kind"] for obj in plan.create]


def cond(plan: Plan, type_: str) -> dict[str, Any]:
    return next(c for c in plan.status["conditions"] if c["type"] == type_)


def converge(body: dict[str, Any], **observed: Any) -> tuple[Plan, dict[str, Any]]:
    """Reconcile, apply the status, and check the replay changes nothing."""
    plan = plan_for(body, **observed)
    applied = {**body, "status": plan.status}
    replay = plan_for(applied, **{k: v for k, v in observed.items()})
    assert replay.create == [] or kinds(plan) == [], "replay created objects"
    assert replay.events == [], f"replay emitted {replay.events}"
    assert replay.status == plan.status
    return plan, applied


def test_first_reconcile_creates_config_map_and_job_once() -> None:
    plan = plan_for(ftj())
    assert kinds(plan) == ["ConfigMap", "Job"]
    assert plan.status["phase"] == "Pending"
    assert plan.status["currentRun"]["name"] == "support-g1"
    assert [e.reason for e in plan.events] == ["JobCreated"]
    # Replay with the Job now observed: nothing new.
    applied = {**ftj(), "status": plan.status}
    replay = plan_for(applied, jobs=[job("support-g1")])
    assert replay.create == [] and replay.events == []
    assert replay.status["currentRun"] == {
        **plan.status["currentRun"],
        "message": "waiting for the trainer pod",
    }


def test_running_then_succeeded_with_manifest() -> None:
    body = {**ftj(), "status": plan_for(ftj()).status}
    running, body = converge(
        body, jobs=[job("support-g1", active=1, ready=1)], pods=[pod("support-g1", "p1")]
    )
    assert running.status["phase"] == "Running"
    assert [e.reason for e in running.events] == ["Training"]
    assert cond(running, "Running")["status"] == "True"

    done_job = job("support-g1", conditions=[("Complete", "", "")])
    waiting = plan_for(body, jobs=[done_job])
    assert waiting.status["phase"] == "Running"  # until the manifest has been read
    done, body = converge(
        body, jobs=[done_job], store=StoreView(adapter=ADAPTER, manifest_checked=True)
    )
    assert done.status["phase"] == "Succeeded"
    assert cond(done, "Succeeded")["status"] == "True"
    assert cond(done, "Running")["status"] == "False"
    assert done.status["latestAdapter"]["digest"] == "sha256:abc"
    assert done.status["runs"][0]["name"] == "support-g1"
    assert [e.reason for e in done.events] == ["AdapterPublished"]
    # A finished run is never re-run, even when its Job disappears (TTL, manual delete).
    gone = plan_for(body, jobs=[])
    assert gone.create == [] and gone.events == []


def test_complete_without_manifest_fails_and_publishes_nothing() -> None:
    body = {**ftj(), "status": plan_for(ftj()).status}
    plan = plan_for(
        body,
        jobs=[job("support-g1", conditions=[("Complete", "", "")])],
        store=StoreView(manifest_checked=True),
    )
    assert plan.status["phase"] == "Failed"
    assert cond(plan, "Failed")["reason"] == "MissingManifest"
    assert plan.status["latestAdapter"] == {}


@pytest.mark.parametrize(
    ("job_reason", "termination", "reason", "text"),
    [
        (
            "PodFailurePolicy",
            {
                "status": "failed",
                "reason": "InvalidDataset",
                "message": "train.jsonl line 3: missing 'messages'; line 9: empty content",
            },
            "InvalidDataset",
            "line 3",
        ),
        ("DeadlineExceeded", None, "DeadlineExceeded", "deadline"),
        (
            "BackoffLimitExceeded",
            {
                "status": "failed",
                "reason": "InfrastructureError",
                "message": "object store unreachable",
            },
            "BackoffLimitExceeded",
            "object store unreachable",
        ),
    ],
)
def test_failures_surface_reason_and_trainer_message(
    job_reason: str, termination: dict[str, Any] | None, reason: str, text: str
) -> None:
    body = {**ftj(), "status": plan_for(ftj()).status}
    pods = []
    if termination:
        pods.append(
            pod("support-g1", "p1", phase="Failed", exit_code=42, message=json.dumps(termination))
        )
    failed = job("support-g1", conditions=[("Failed", job_reason, f"Job {job_reason}: deadline")])
    plan, _ = converge(body, jobs=[failed], pods=pods)
    assert plan.status["phase"] == "Failed"
    assert cond(plan, "Failed")["reason"] == reason
    assert text in cond(plan, "Failed")["message"]
    assert plan.status["latestAdapter"] == {}
    assert plan.status["runs"][0]["phase"] == "Failed"


def test_spec_change_supersedes_running_run_and_keeps_latest_adapter() -> None:
    status = plan_for(ftj()).status
    status["latestAdapter"] = {
        "uri": "s3://adapters/support/support-g0/adapter/",
        "digest": "sha256:old",
        "run": "support-g0",
        "metrics": {},
    }
    changed = ftj(generation=2, status=status, hyperparameters={"epochs": 2})
    plan = plan_for(changed, jobs=[job("support-g1", active=1, ready=1)])
    assert plan.delete_jobs == ["support-g1"]
    assert kinds(plan) == ["ConfigMap", "Job"]
    assert plan.status["currentRun"]["name"] == "support-g2"
    assert plan.status["runs"][0] == {
        **plan.status["runs"][0],
        "name": "support-g1",
        "phase": "Superseded",
    }
    assert plan.status["latestAdapter"]["digest"] == "sha256:old"
    assert cond(plan, "Succeeded")["status"] == "False"
    assert {e.reason for e in plan.events} == {"Superseded", "JobCreated"}


def test_suspend_and_resume_never_start_a_new_run() -> None:
    body = {**ftj(), "status": plan_for(ftj()).status}
    _, body = converge(body, jobs=[job("support-g1", active=1, ready=1)])
    suspended_spec = ftj(generation=2, status=body["status"], suspend=True)
    plan = plan_for(suspended_spec, jobs=[job("support-g1", active=1, ready=1)])
    assert plan.create == [] and plan.delete_jobs == []
    assert plan.set_suspend == {"support-g1": True}
    assert plan.status["phase"] == "Suspended"
    assert plan.status["currentRun"]["name"] == "support-g1"
    applied = {**suspended_spec, "status": plan.status}
    resumed_spec = ftj(generation=3, status=applied["status"], suspend=False)
    plan = plan_for(resumed_spec, jobs=[job("support-g1", suspend=True)])
    assert plan.set_suspend == {"support-g1": False}
    assert plan.status["currentRun"]["name"] == "support-g1"


def test_job_deleted_mid_run_is_recreated() -> None:
    body = {**ftj(), "status": plan_for(ftj()).status}
    _, body = converge(body, jobs=[job("support-g1", active=1, ready=1)])
    plan = plan_for(body, jobs=[])
    assert kinds(plan) == ["ConfigMap", "Job"]
    assert "resumes from its checkpoint" in plan.events[0].message
    waiting = plan_for(body, jobs=[job("support-g1", deleting=True)])
    assert waiting.create == []


def test_preemption_is_reported_once() -> None:
    body = {**ftj(), "status": plan_for(ftj()).status}
    pods = [
        pod(
            "support-g1",
            "p1",
            phase="Failed",
            disrupted="PreemptionByScheduler",
            created="2026-11-28T11:00:00Z",
        ),
        pod("support-g1", "p2", phase="Pending", created="2026-11-28T11:05:00Z"),
    ]
    plan, _ = converge(body, jobs=[job("support-g1", active=1)], pods=pods)
    assert [e.reason for e in plan.events] == ["Preempted"]
    assert "resumes from the latest checkpoint" in plan.status["currentRun"]["message"]


def test_dataset_etag_change_retrains_after_success() -> None:
    body = ftj(retrain={"onDatasetChange": True})
    body = {**body, "status": plan_for(body, store=StoreView(dataset_etag='"e1"')).status}
    assert body["status"]["currentRun"]["datasetETag"] == '"e1"'
    done = plan_for(
        body,
        jobs=[job("support-g1", conditions=[("Complete", "", "")])],
        store=StoreView(adapter=ADAPTER, manifest_checked=True, dataset_etag='"e1"'),
    )
    body = {**body, "status": done.status}
    same = plan_for(
        body,
        jobs=[job("support-g1", conditions=[("Complete", "", "")])],
        store=StoreView(dataset_etag='"e1"'),
    )
    assert same.create == []
    changed = plan_for(
        body,
        jobs=[job("support-g1", conditions=[("Complete", "", "")])],
        store=StoreView(dataset_etag='"e2"'),
    )
    assert changed.status["currentRun"]["name"] == "support-g1-r1"
    assert kinds(changed) == ["ConfigMap", "Job"]
    assert changed.status["latestAdapter"]["run"] == "support-g1"


def test_invalid_spec_is_refused_without_creating_anything() -> None:
    plan = plan_for(ftj(output={"uri": "pvc://adapters/x"}))
    assert plan.create == []
    assert plan.status["phase"] == "Failed"
    assert cond(plan, "Validated")["reason"] == "InvalidSpec"
    assert "spec.output.uri" in cond(plan, "Validated")["message"]
    assert [e.reason for e in plan.events] == ["InvalidSpec"]


def test_kueue_job_is_created_suspended_and_left_to_kueue() -> None:
    body = ftj(queueName="team-a")
    plan = plan_for(body)
    job_obj = plan.create[-1]
    assert job_obj["spec"]["suspend"] is True
    assert job_obj["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    body = {**body, "status": plan.status}
    queued = plan_for(body, jobs=[job("support-g1", suspend=True)])
    assert queued.set_suspend == {}  # never fight Kueue over suspend
    assert (
        cond(queued, "Suspended")["reason"] == "Queued"
        or queued.status["currentRun"]["reason"] == "Queued"
    )


def test_reads_needed_follow_the_run() -> None:
    body = {**ftj(), "status": plan_for(ftj()).status}
    assert (
        reads_needed(body, [JobView.from_object(job("support-g1", active=1))]).progress_uri is None
    )
    assert reads_needed(
        body, [JobView.from_object(job("support-g1", active=1, ready=1))]
    ).progress_uri == ("s3://adapters/support/support-g1/progress.json")
    done = reads_needed(
        body, [JobView.from_object(job("support-g1", conditions=[("Complete", "", "")]))]
    )
    assert done.manifest_uri == "s3://adapters/support/support-g1/adapter/manifest.json"
    assert reads_needed(body, []).progress_uri is None
