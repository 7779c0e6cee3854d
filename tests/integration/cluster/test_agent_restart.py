"""A node agent that dies and comes back (the supervisor restarts it).

Covers: the pods' processes die with the agent (no orphans); the new agent adopts the pods it
finds on its nodes, keeps their pod IPs, records the lost containers as terminated with
ContainerStatusUnknown (exit 137) and applies each pod's restart policy: Always restarts the
container (restartCount 1), Never leaves the pod Failed.
"""

from __future__ import annotations

import signal
import uuid
from pathlib import Path
from typing import Any

from kubetune.cluster.controlplane import ControlPlane
from kubetune.cluster.kubectl import Kubectl
from kubetune.cluster.procscan import processes_with_env
from tests.integration.cluster.cluster_helpers import (
    container_status,
    get_json,
    pod_phase,
    python_container,
    start_agent,
    stop_agent,
    wait_for,
)

SLEEP = "import os, time; print(os.getpid(), flush=True); time.sleep(600)"


def test_a_restarted_agent_adopts_its_pods(
    control_plane: ControlPlane, k: Kubectl, namespace: str, tmp_path: Path
) -> None:
    label = uuid.uuid4().hex[:8]
    args: dict[str, Any] = {
        "kubeconfig": control_plane.kubeconfig,
        "workdir": tmp_path,
        "label": label,
        "network": "127.78.0.0/16",
        "extra": ["--no-provisioner"],
    }
    agent = start_agent(**args)
    try:
        k.run("wait", "--for=create", "serviceaccount/default", "--timeout=30s")
        for name, policy in (("always", "Always"), ("never", "Never")):
            k.apply(agent.pod(name, python_container(SLEEP), restartPolicy=policy))
        for name in ("always", "never"):
            wait_for(lambda n=name: agent.log(namespace, n), what=f"{name} to print its pid")
        before = {n: get_json(k, "pod", n) for n in ("always", "never")}
        pids = [int(agent.log(namespace, n)) for n in ("always", "never")]

        agent.process.send_signal(signal.SIGKILL)
        agent.process.wait()
        wait_for(
            lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids),
            what="the pod processes to die with the agent",
        )

        agent = start_agent(**args)
        always = wait_for(
            lambda: (
                (p := get_json(k, "pod", "always"))
                and container_status(p).get("restartCount") == 1
                and "running" in container_status(p)["state"]
                and p
            ),
            what="the Always pod to be restarted",
        )
        lost = container_status(always)["lastState"]["terminated"]
        assert (lost["exitCode"], lost["reason"]) == (137, "ContainerStatusUnknown")
        assert always["status"]["podIP"] == before["always"]["status"]["podIP"]
        wait_for(lambda: pod_phase(k, "never") == "Failed", what="the Never pod to fail")
        never = get_json(k, "pod", "never")
        assert never is not None
        assert container_status(never)["state"]["terminated"]["reason"] == "ContainerStatusUnknown"
        uid = always["metadata"]["uid"]
        assert processes_with_env("KUBETUNE_CONTAINER", f"{uid}/main/1"), "runs again"
    finally:
        k.run("delete", "pods", "--all", "--wait=false", check=False)
        stop_agent(agent)
        for node in (agent.cpu_node, agent.gpu_node):
            k.run("delete", "node", node, "--wait=false", check=False)
