"""The FineTuneJob controller as a real process against a real control plane.

The test plays the kubelet (pod status) and the trainer (progress and manifest in the real
object store); the controller-manager's Job controller turns pod outcomes into Job status,
exactly as in a cluster. Covers: a run from apply to Succeeded with live progress and a
verifying manifest (and `kubectl wait`); user error fails fast with the trainer's line
numbers; infrastructure errors hit backoffLimit; deadline; preemption resumes in a
replacement pod; suspend/resume keeps the run; re-applying the same manifest changes
nothing; a spec change supersedes the run while latestAdapter stays; a Job deleted mid-run
is recreated; deleting the FineTuneJob cascades.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from kubetune.api.runconfig import RunConfig
from kubetune.cluster.kubectl import Kubectl
from tests.integration.operator.conftest import Kubelet, OperatorProcess, Trainer, eventually

pytestmark = pytest.mark.usefixtures("operator")


def manifest(name: str, prefix: str, **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name},
        "spec": {
            "baseModel": {"uri": "s3://models/tiny/"},
            "dataset": {"train": "s3://datasets/support/train.jsonl"},
            "resources": {"gpus": 0, "cpu": "1", "memory": "1Gi"},
            "output": {"uri": f"s3://adapters/{prefix}/"},
        },
    }
    body["spec"].update(spec)
    return body


def status(k: Kubectl, name: str) -> dict[str, Any]:
    return dict(k.get("ftj", name).get("status") or {})


def jobs(k: Kubectl, name: str) -> list[dict[str, Any]]:
    out = k.run("get", "jobs", "-l", f"kubetune.io/finetunejob={name}", "-o", "json").stdout
    return list(json.loads(out)["items"])


def phase_is(k: Kubectl, name: str, phase: str) -> Any:
    return lambda: status(k, name) if status(k, name).get("phase") == phase else None


def condition(st: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in st.get("conditions", []) if c["type"] == type_)


def events(k: Kubectl, name: str) -> list[str]:
    out = k.run(
        "get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json"
    ).stdout
    return [e["reason"] for e in json.loads(out)["items"]]


def event_messages(k: Kubectl, name: str) -> list[str]:
    out = k.run(
        "get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json"
    ).stdout
    return [e.get("message", "") for e in json.loads(out)["items"]]


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def test_run_succeeds_with_progress_and_manifest(
    k: Kubectl, kubelet: Kubelet, trainer: Trainer, prefix: str
) -> None:
    k.apply(manifest("happy", prefix))
    job = eventually(lambda: jobs(k, "happy"), what="the Job")[0]
    assert job["metadata"]["name"] == "happy-g1"
    assert job["metadata"]["ownerReferences"][0]["kind"] == "FineTuneJob"
    config_map = k.get("configmap", "happy-g1-config")
    config = RunConfig.from_json(config_map["data"]["run-config.json"])
    assert config.run == "happy-g1" and config.output_uri == f"s3://adapters/{prefix}/"

    pod = kubelet.live_pod("happy-g1")
    kubelet.running(pod)
    eventually(phase_is(k, "happy", "Running"), what="phase Running")
    trainer.progress(prefix, "happy-g1", step=5, total=20, loss=2.5)
    progress = eventually(
        lambda: status(k, "happy").get("currentRun", {}).get("progress"), what="progress"
    )
    assert progress["step"] == 5 and progress["percent"] == 25 and progress["loss"] == 2.5

    digest = trainer.publish(prefix, "happy-g1", eval_loss=1.25)
    kubelet.terminated(pod, exit_code=0, message=json.dumps({"status": "succeeded"}))
    k.run("wait", "--for=condition=Succeeded", "ftj/happy", "--timeout=60s")
    st = status(k, "happy")
    assert st["phase"] == "Succeeded"
    assert st["latestAdapter"]["digest"] == digest
    assert st["latestAdapter"]["uri"] == f"s3://adapters/{prefix}/happy-g1/adapter/"
    assert st["latestAdapter"]["metrics"]["evalLoss"] == 1.25
    assert st["runs"][0]["name"] == "happy-g1" and st["runs"][0]["phase"] == "Succeeded"
    assert st["observedGeneration"] == 1
    assert len(jobs(k, "happy")) == 1
    reasons = eventually(lambda: (r := events(k, "happy")) and "AdapterPublished" in r and r)
    assert {"JobCreated", "Training", "AdapterPublished"} <= set(reasons)


def test_user_error_fails_fast_with_line_numbers(k: Kubectl, kubelet: Kubelet, prefix: str) -> None:
    k.apply(manifest("baddata", prefix, runPolicy={"backoffLimit": 5}))
    pod = kubelet.live_pod("baddata-g1")
    message = {
        "status": "failed",
        "reason": "InvalidDataset",
        "message": "train.jsonl: line 3: 'messages' is missing; line 8: empty assistant reply",
    }
    kubelet.terminated(pod, exit_code=42, message=json.dumps(message))
    st = eventually(phase_is(k, "baddata", "Failed"), what="phase Failed")
    failed = condition(st, "Failed")
    assert failed["reason"] == "InvalidDataset"
    assert "line 3" in failed["message"] and "line 8" in failed["message"]
    assert st["latestAdapter"] == {} or "latestAdapter" not in st
    # FailJob: no retry despite backoffLimit 5.
    assert len(kubelet.pods("baddata-g1")) == 1


def test_infrastructure_errors_hit_backoff_limit(k: Kubectl, kubelet: Kubelet, prefix: str) -> None:
    k.apply(manifest("flaky", prefix, runPolicy={"backoffLimit": 0}))
    pod = kubelet.live_pod("flaky-g1")
    kubelet.terminated(
        pod,
        exit_code=1,
        message=json.dumps(
            {
                "status": "failed",
                "reason": "InfrastructureError",
                "message": "object store unreachable",
            }
        ),
    )
    st = eventually(phase_is(k, "flaky", "Failed"))
    assert condition(st, "Failed")["reason"] == "BackoffLimitExceeded"
    assert "object store unreachable" in condition(st, "Failed")["message"]


def test_deadline_exceeded(k: Kubectl, kubelet: Kubelet, prefix: str) -> None:
    k.apply(manifest("slow", prefix, runPolicy={"activeDeadlineSeconds": 2}))
    kubelet.running(kubelet.live_pod("slow-g1"))
    st = eventually(phase_is(k, "slow", "Failed"), timeout=90)
    assert condition(st, "Failed")["reason"] == "DeadlineExceeded"


def test_preemption_continues_in_a_replacement_pod(
    k: Kubectl, kubelet: Kubelet, trainer: Trainer, prefix: str
) -> None:
    k.apply(manifest("preempt", prefix, runPolicy={"backoffLimit": 0}))
    first = kubelet.live_pod("preempt-g1")
    kubelet.running(first)
    kubelet.preempted(first)
    second = eventually(
        lambda: next(
            (
                p["metadata"]["name"]
                for p in kubelet.pods("preempt-g1")
                if p["metadata"]["name"] != first
            ),
            None,
        ),
        what="a replacement pod",
    )
    st = eventually(
        lambda: (s := status(k, "preempt")).get("currentRun", {}).get("preemptedPod") and s
    )
    assert first in st["currentRun"]["message"]
    assert "Preempted" in events(k, "preempt")
    kubelet.running(second)
    digest = trainer.publish(prefix, "preempt-g1")
    kubelet.terminated(second, exit_code=0)
    st = eventually(phase_is(k, "preempt", "Succeeded"))
    assert st["latestAdapter"]["digest"] == digest  # backoffLimit 0, yet the run survived


def test_suspend_and_resume_keep_the_run(k: Kubectl, kubelet: Kubelet, prefix: str) -> None:
    k.apply(manifest("pause", prefix))
    kubelet.running(kubelet.live_pod("pause-g1"))
    eventually(phase_is(k, "pause", "Running"))
    k.apply(manifest("pause", prefix, suspend=True))
    eventually(lambda: jobs(k, "pause")[0]["spec"]["suspend"] is True, what="Job suspended")
    st = eventually(phase_is(k, "pause", "Suspended"))
    assert st["currentRun"]["name"] == "pause-g1"
    k.apply(manifest("pause", prefix, suspend=False))
    eventually(lambda: jobs(k, "pause")[0]["spec"]["suspend"] is False, what="Job resumed")
    assert [j["metadata"]["name"] for j in jobs(k, "pause")] == ["pause-g1"]
    assert status(k, "pause")["currentRun"]["name"] == "pause-g1"


def test_gitops_reapply_is_a_no_op_and_change_starts_a_new_run(
    k: Kubectl, kubelet: Kubelet, trainer: Trainer, prefix: str
) -> None:
    k.apply(manifest("gitops", prefix))
    pod = kubelet.live_pod("gitops-g1")
    digest = trainer.publish(prefix, "gitops-g1")
    kubelet.terminated(pod, exit_code=0)
    eventually(phase_is(k, "gitops", "Succeeded"))
    before = k.get("ftj", "gitops")["metadata"]
    k.apply(manifest("gitops", prefix))
    after = k.get("ftj", "gitops")["metadata"]
    assert after["generation"] == before["generation"] == 1
    assert [j["metadata"]["name"] for j in jobs(k, "gitops")] == ["gitops-g1"]

    k.apply(manifest("gitops", prefix, dataset={"train": "s3://datasets/support/v2/train.jsonl"}))
    st = eventually(
        lambda: (s := status(k, "gitops")).get("currentRun", {}).get("name") == "gitops-g2" and s
    )
    assert st["latestAdapter"]["digest"] == digest  # the last good adapter until g2 succeeds
    assert condition(st, "Succeeded")["status"] == "False"
    eventually(lambda: {j["metadata"]["name"] for j in jobs(k, "gitops")} >= {"gitops-g2"})


def test_superseding_a_running_run_deletes_its_job(
    k: Kubectl, kubelet: Kubelet, prefix: str
) -> None:
    k.apply(manifest("supersede", prefix))
    kubelet.running(kubelet.live_pod("supersede-g1"))
    k.apply(manifest("supersede", prefix, hyperparameters={"epochs": 1}))
    eventually(
        lambda: (
            [
                j["metadata"]["name"]
                for j in jobs(k, "supersede")
                if not j["metadata"].get("deletionTimestamp")
            ]
            == ["supersede-g2"]
        ),
        what="only the g2 Job",
    )
    runs = status(k, "supersede")["runs"]
    assert runs[0]["name"] == "supersede-g1" and runs[0]["phase"] == "Superseded"


def test_job_deleted_mid_run_is_recreated(k: Kubectl, kubelet: Kubelet, prefix: str) -> None:
    k.apply(manifest("recreate", prefix))
    kubelet.running(kubelet.live_pod("recreate-g1"))
    eventually(phase_is(k, "recreate", "Running"))
    uid = jobs(k, "recreate")[0]["metadata"]["uid"]
    k.run("delete", "job", "recreate-g1", "--cascade=background", "--wait=true")
    new = eventually(
        lambda: [j for j in jobs(k, "recreate") if j["metadata"]["uid"] != uid],
        what="a recreated Job",
    )
    assert new[0]["metadata"]["name"] == "recreate-g1"
    messages = eventually(
        lambda: [m for m in event_messages(k, "recreate") if "recreated" in m],
        what="a JobCreated event saying the Job was recreated",
    )
    assert "resumes from its checkpoint" in messages[0]
    st = status(k, "recreate")
    assert st["currentRun"]["name"] == "recreate-g1"


def test_deleting_the_finetunejob_cascades(k: Kubectl, prefix: str) -> None:
    k.apply(manifest("cascade", prefix))
    eventually(lambda: jobs(k, "cascade"))
    k.run("delete", "ftj", "cascade", "--wait=true")
    eventually(lambda: not jobs(k, "cascade"), what="Jobs garbage-collected")
    eventually(
        lambda: k.run("get", "configmap", "cascade-g1-config", check=False).returncode != 0,
        what="ConfigMap garbage-collected",
    )


def test_metrics_are_exported(operator: OperatorProcess, k: Kubectl, prefix: str) -> None:
    k.apply(manifest("metrics", prefix))
    eventually(lambda: jobs(k, "metrics"))
    text = operator.metrics()
    assert 'kubetune_reconcile_total{kind="FineTuneJob",result="ok"}' in text
    assert "kubetune_runs{" in text
