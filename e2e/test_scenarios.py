"""End-to-end scenarios on a real control plane with kubetune installed by Helm.

Every trainer, operator, engine and agent here is a real process running the working tree:
real PEFT training of the CPU-tiny model, a real S3 server, the official OpenAI client.
Scenarios (run in this order; later ones build on the adapters of earlier ones):

a. happy path: FineTuneJob -> Succeeded -> adapter with a verifying manifest in object
   storage -> AdapterDeployment -> the adapter answers differently from the base model;
b. GitOps retrain: a new dataset version is applied -> a new run; the old adapter serves
   until the new one is rolled out;
c. rollback to the previous adapter while serving (one field: spec.source.digest);
d. preemption: the trainer pod is evicted mid-run -> the run resumes from its checkpoint;
e. operator restart mid-run -> no duplicate Job, the run completes;
f. bad dataset -> Failed with the offending line numbers in status, nothing published.

Invariants, not log lines: exactly one Job per run, phases and conditions, digests.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest

from e2e import kit
from e2e.conftest import NAMESPACE, SERVING

JOB = "support"
ADEP = "support"


def jobs(k: Any, name: str) -> list[dict[str, Any]]:
    out = k.run("get", "jobs", "-l", f"kubetune.io/finetunejob={name}", "-o", "json").stdout
    return [j for j in json.loads(out)["items"] if not j["metadata"].get("deletionTimestamp")]


def adep_status(k: Any) -> dict[str, Any]:
    return dict(k.get("adep", ADEP).get("status") or {})


def routed(client: Any, prompt: str) -> tuple[str, str]:
    """(answer, engine model it was routed to) for the stable adapter name."""
    raw = client.chat.completions.with_raw_response.create(
        model=ADEP,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=32,
        temperature=0,
    )
    reply = raw.parse()
    return str(reply.choices[0].message.content or ""), raw.headers.get("x-kubetune-routed-to", "")


def verify_manifest(cluster: kit.Cluster, adapter_uri: str, digest: str) -> dict[str, Any]:
    s3 = cluster.s3
    bucket, _, prefix = adapter_uri.removeprefix("s3://").partition("/")
    raw = s3.get_object(Bucket=bucket, Key=f"{prefix}manifest.json")["Body"].read()
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    manifest = json.loads(raw)
    for name, entry in manifest["files"].items():
        body = s3.get_object(Bucket=bucket, Key=f"{prefix}{name}")["Body"].read()
        assert hashlib.sha256(body).hexdigest() == entry["sha256"], name
    return manifest


@pytest.fixture(scope="module")
def k(cluster: kit.Cluster) -> Any:
    return cluster.ns(NAMESPACE)


def train(k: Any, seed: kit.Seed, *, name: str, train: str, **spec: Any) -> dict[str, Any]:
    k.apply(
        kit.finetunejob(name, seed=seed, train=train, output=f"s3://adapters/e2e/{name}/", **spec),
        field_manager="kubetune-e2e",
    )
    return kit.follow_finetunejob(k, name)


def test_a_happy_path(cluster: kit.Cluster, seed: kit.Seed, k: Any) -> None:
    status = train(k, seed, name=JOB, train=seed.train_v1)
    assert status["phase"] == "Succeeded", status
    adapter = status["latestAdapter"]
    manifest = verify_manifest(cluster, adapter["uri"], adapter["digest"])
    assert manifest["run"] == f"{JOB}-g1"
    assert adapter["metrics"]["evalLoss"] > 0
    assert [j["metadata"]["name"] for j in jobs(k, JOB)] == [f"{JOB}-g1"]

    for manifest_ in kit.inference_deployment(SERVING, seed=seed, cluster=cluster):
        k.apply(manifest_, field_manager="kubetune-e2e")
    k.apply(kit.adapterdeployment(ADEP, deployment=SERVING, job=JOB), field_manager="kubetune-e2e")
    k.run("wait", "--for=condition=Ready", f"adep/{ADEP}", "--timeout=600s")
    k.run("rollout", "status", f"deployment/{SERVING}", "--timeout=600s")
    assert adep_status(k)["activeVersion"]["digest"] == adapter["digest"]
    with kit.openai_client(cluster, namespace=NAMESPACE, service=SERVING) as client:
        prompt = seed.prompts[0]
        base = kit.ask(client, "tiny-llama", prompt)
        tuned, engine_model = routed(client, prompt)
        assert engine_model == f"{ADEP}--{adapter['digest'][7:19]}"
        assert tuned and tuned != base


def test_b_gitops_retrain_rolls_out_the_new_adapter(
    cluster: kit.Cluster, seed: kit.Seed, k: Any
) -> None:
    old = k.get("ftj", JOB)["status"]["latestAdapter"]
    k.apply(
        kit.finetunejob(JOB, seed=seed, train=seed.train_v2, output=f"s3://adapters/e2e/{JOB}/"),
        field_manager="kubetune-e2e",
    )
    served_during: set[str] = set()
    with kit.openai_client(cluster, namespace=NAMESPACE, service=SERVING) as client:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            st = k.get("ftj", JOB).get("status") or {}
            if st.get("currentRun", {}).get("name") == f"{JOB}-g2" and st.get("phase") in (
                "Succeeded",
                "Failed",
            ):
                break
            served_during.add(routed(client, seed.prompts[1])[1])
            time.sleep(2)
        st = k.get("ftj", JOB)["status"]
        assert st["phase"] == "Succeeded", st
        new = st["latestAdapter"]
        assert new["run"] == f"{JOB}-g2" and new["digest"] != old["digest"]
        # Until the new run succeeded, the old adapter was the one serving.
        assert served_during == {f"{ADEP}--{old['digest'][7:19]}"}
        kit.eventually(
            lambda: (
                adep_status(k).get("activeVersion", {}).get("digest") == new["digest"]
                and adep_status(k).get("phase") == "Ready"
            ),
            timeout=300,
            what="the new adapter rolled out",
        )
        assert adep_status(k)["previousVersion"]["digest"] == old["digest"]
        assert routed(client, seed.prompts[1])[1] == f"{ADEP}--{new['digest'][7:19]}"
    assert {j["metadata"]["name"] for j in jobs(k, JOB)} >= {f"{JOB}-g2"}


def test_c_rollback_to_the_previous_adapter(cluster: kit.Cluster, seed: kit.Seed, k: Any) -> None:
    previous = adep_status(k)["previousVersion"]["digest"]
    k.apply(
        kit.adapterdeployment(
            ADEP,
            deployment=SERVING,
            job=JOB,
            source={"fineTuneJobRef": {"name": JOB}, "digest": previous},
        ),
        field_manager="kubetune-e2e",
    )
    kit.eventually(
        lambda: (
            adep_status(k).get("activeVersion", {}).get("digest") == previous
            and adep_status(k).get("phase") == "Ready"
        ),
        timeout=300,
        what="rollback to the previous version",
    )
    with kit.openai_client(cluster, namespace=NAMESPACE, service=SERVING) as client:
        assert routed(client, seed.prompts[2])[1] == f"{ADEP}--{previous[7:19]}"


def test_d_preempted_trainer_resumes_from_its_checkpoint(
    cluster: kit.Cluster, seed: kit.Seed, k: Any
) -> None:
    name = "preempt"
    k.apply(
        kit.finetunejob(
            name,
            seed=seed,
            train=seed.train_v1,
            output=f"s3://adapters/e2e/{name}/",
            checkpointing={"everySteps": 5, "everyMinutes": 1, "keep": 2},
        ),
        field_manager="kubetune-e2e",
    )
    run = f"{name}-g1"
    s3 = cluster.s3

    def checkpoint() -> int | None:
        listed = s3.list_objects_v2(Bucket="adapters", Prefix=f"e2e/{name}/{run}/checkpoints/")
        steps = [
            int(o["Key"].split("/")[-2])
            for o in listed.get("Contents", [])
            if o["Key"].endswith("/COMPLETE")
        ]
        return max(steps) if steps else None

    step = kit.eventually(checkpoint, timeout=600, what="a complete checkpoint")
    pod = next(
        p
        for p in json.loads(
            k.run("get", "pods", "-l", f"kubetune.io/run={run}", "-o", "json").stdout
        )["items"]
        if p["status"].get("phase") == "Running"
    )
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": pod["metadata"]["name"], "namespace": NAMESPACE},
    }
    k.run(
        "create",
        "--raw",
        f"/api/v1/namespaces/{NAMESPACE}/pods/{pod['metadata']['name']}/eviction",
        "-f",
        "-",
        stdin=json.dumps(eviction),
    )
    status = kit.follow_finetunejob(k, name)
    assert status["phase"] == "Succeeded", status
    assert [j["metadata"]["name"] for j in jobs(k, name)] == [run]
    pods = json.loads(k.run("get", "pods", "-l", f"kubetune.io/run={run}", "-o", "json").stdout)
    replacement = [p for p in pods["items"] if p["metadata"]["name"] != pod["metadata"]["name"]]
    assert replacement, "no replacement pod"
    log = cluster.pod_log(NAMESPACE, replacement[-1]["metadata"]["name"])
    resumed = [line for line in log.splitlines() if "resuming from checkpoint step" in line]
    assert resumed, log[-2000:]
    assert int(resumed[0].split("checkpoint step ")[1].split()[0]) >= step


def test_e_operator_restart_mid_run(cluster: kit.Cluster, seed: kit.Seed, k: Any) -> None:
    name = "restart"
    k.apply(
        kit.finetunejob(name, seed=seed, train=seed.train_v1, output=f"s3://adapters/e2e/{name}/"),
        field_manager="kubetune-e2e",
    )
    kit.eventually(
        lambda: (k.get("ftj", name).get("status") or {}).get("phase") == "Running",
        timeout=300,
        what="the run to start",
    )
    operator = cluster.ns(kit.RELEASE_NAMESPACE)
    operator.run("delete", "pod", "-l", "app.kubernetes.io/name=kubetune", "--wait=true")
    operator.run(
        "rollout",
        "status",
        "deployment",
        "-l",
        "app.kubernetes.io/name=kubetune",
        "--timeout=300s",
        check=False,
    )
    status = kit.follow_finetunejob(k, name)
    assert status["phase"] == "Succeeded", status
    assert [j["metadata"]["name"] for j in jobs(k, name)] == [f"{name}-g1"]
    assert status["observedGeneration"] == 1


def test_f_bad_dataset_fails_with_line_numbers(
    cluster: kit.Cluster, seed: kit.Seed, k: Any
) -> None:
    name = "baddata"
    status = train(k, seed, name=name, train=seed.broken)
    assert status["phase"] == "Failed"
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "InvalidDataset"
    assert "line 2" in failed["message"] and "line 3" in failed["message"], failed["message"]
    listed = cluster.s3.list_objects_v2(Bucket="adapters", Prefix=f"e2e/{name}/")
    assert not [o for o in listed.get("Contents", []) if o["Key"].endswith("manifest.json")]
    assert "latestAdapter" not in status or not status["latestAdapter"]
    # One pod only: a user error is not retried.
    pods = json.loads(k.run("get", "pods", "-l", f"kubetune.io/run={name}-g1", "-o", "json").stdout)
    assert len(pods["items"]) == 1
