"""Killing the operator at arbitrary moments and restarting it.

Covers: SIGKILL during a burst of creations, repeated, leaves exactly one Job per run and a
converged status for every FineTuneJob; a run that finishes while the operator is down is
picked up on restart (Succeeded, with its adapter), and no finished run is started again.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid

from kubetune.cluster.kubectl import Kubectl
from tests.integration.operator.conftest import Kubelet, OperatorProcess, Trainer, eventually
from tests.integration.operator.test_finetunejob_controller import jobs, manifest, status


def kill(op: OperatorProcess) -> None:
    pid = op.proc.pid
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    op.proc.stop()


def test_kill_during_creation_burst_yields_one_job_per_run(
    operator: OperatorProcess, k: Kubectl
) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    names = [f"burst-{i}" for i in range(6)]
    for round_ in range(3):
        for name in names[round_ * 2 : round_ * 2 + 2]:
            k.apply(manifest(name, prefix))
        time.sleep(0.3 * round_)
        kill(operator)
        operator.start()
    for name in names:
        eventually(lambda n=name: status(k, n).get("currentRun", {}).get("name"), what=name)
    for name in names:
        assert [j["metadata"]["name"] for j in jobs(k, name)] == [f"{name}-g1"]
        st = status(k, name)
        assert st["observedGeneration"] == 1
        assert st["phase"] == "Pending"


def test_run_finishing_while_operator_is_down_converges(
    operator: OperatorProcess, k: Kubectl, kubelet: Kubelet, trainer: Trainer
) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    k.apply(manifest("downtime", prefix))
    pod = kubelet.live_pod("downtime-g1")
    kubelet.running(pod)
    eventually(lambda: status(k, "downtime").get("phase") == "Running")
    kill(operator)
    digest = trainer.publish(prefix, "downtime-g1")
    kubelet.terminated(pod, exit_code=0, message=json.dumps({"status": "succeeded"}))
    eventually(
        lambda: any(
            c["type"] == "Complete" and c["status"] == "True"
            for c in jobs(k, "downtime")[0].get("status", {}).get("conditions", [])
        ),
        what="Job Complete while the operator is down",
    )
    operator.start()
    st = eventually(lambda: (s := status(k, "downtime")).get("phase") == "Succeeded" and s)
    assert st["latestAdapter"]["digest"] == digest
    # Let a few timer ticks pass: the finished run is never started again.
    time.sleep(3)
    assert [j["metadata"]["name"] for j in jobs(k, "downtime")] == ["downtime-g1"]
    assert len(kubelet.pods("downtime-g1")) == 1
