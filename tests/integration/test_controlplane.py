"""The local control plane component: readiness, controllers, version and no orphans.

Covers: the session control plane serves the pinned Kubernetes version (stamped at build
time); the Job controller and scheduler really run (a Job creates a Pod that gets bound to a
registered Node); a control plane whose owning process is SIGKILLed leaves no process
behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kubetune.cluster.controlplane import ControlPlane, ControlPlaneError
from kubetune.cluster.kubectl import Kubectl
from kubetune.cluster.nodes import GPU_TAINT, register_node

REPO = Path(__file__).resolve().parents[2]


def pinned_k8s_version() -> str:
    for line in (REPO / "hack" / "tools" / "kube" / "go.mod").read_text().splitlines():
        words = line.removeprefix("require").split()
        if words[:1] == ["k8s.io/kubernetes"]:
            return words[1]
    raise AssertionError("k8s.io/kubernetes not pinned in hack/tools/kube/go.mod")


def test_server_reports_the_pinned_version(kubectl: Kubectl) -> None:
    version = json.loads(kubectl.run("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == pinned_k8s_version()
    assert version["clientVersion"]["gitVersion"] == pinned_k8s_version()


def test_job_controller_and_scheduler_bind_pods_to_nodes(
    control_plane: ControlPlane, k: Kubectl, namespace: str
) -> None:
    node = f"node-{namespace}"[:63]
    register_node(
        k,
        node,
        capacity={"cpu": "4", "memory": "8Gi", "pods": "10", "nvidia.com/gpu": "1"},
        labels={"kubetune.io/test-node": namespace},
        taints=[GPU_TAINT],
    )
    try:
        k.apply(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": "hello"},
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "nodeSelector": {"kubetune.io/test-node": namespace},
                            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
                            "containers": [{"name": "c", "image": "busybox"}],
                        }
                    }
                },
            }
        )
        deadline = time.monotonic() + 60
        bound = ""
        while time.monotonic() < deadline and not bound:
            pods = json.loads(k.run("get", "pods", "-l", "job-name=hello", "-o", "json").stdout)
            bound = next((p["spec"].get("nodeName", "") for p in pods["items"]), "")
            time.sleep(0.5)
        assert bound == node
    finally:
        k.run("delete", "node", node, "--wait=false", check=False)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_killed_owner_leaves_no_orphans(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import json, sys, time
        from pathlib import Path
        from kubetune.cluster.controlplane import ControlPlane, ControlPlaneError
        cp = ControlPlane(workdir=Path({str(tmp_path / "cp")!r})).start()
        print(json.dumps([p.pid for p in cp.processes]), flush=True)
        time.sleep(600)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        pids = json.loads(owner.stdout.readline())
        assert len(pids) == 4 and all(_alive(pid) for pid in pids)
    finally:
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.2)
    assert [pid for pid in pids if _alive(pid)] == []


def test_stop_is_idempotent_and_clean(tmp_path: Path) -> None:
    cp = ControlPlane(workdir=tmp_path / "cp", controllers=False, scheduler=False).start()
    pids = [p.pid for p in cp.processes]
    assert cp.startup_seconds["total"] > 0
    cp.stop()
    cp.stop()
    assert not any(_alive(pid) for pid in pids if pid is not None)


def test_apiserver_failure_names_the_component_and_cleans_up(tmp_path: Path) -> None:
    cp = ControlPlane(
        workdir=tmp_path / "cp",
        controllers=False,
        scheduler=False,
        startup_timeout=30,
        extra_apiserver_args=["--no-such-flag"],
    )
    with pytest.raises(ControlPlaneError, match="kube-apiserver exited") as err:
        cp.start()
    assert "no-such-flag" in str(err.value)  # the log tail says why
    assert cp.processes == []


def test_broken_etcd_binary_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assets = tmp_path / "assets"
    assets.mkdir()
    fake = assets / "etcd"
    fake.write_text("#!/bin/sh\necho 'etcd: broken on purpose' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("KUBETUNE_ASSETS", str(assets))
    cp = ControlPlane(workdir=tmp_path / "cp", controllers=False, scheduler=False)
    with pytest.raises(ControlPlaneError, match="etcd exited with 3") as err:
        cp.start()
    assert "broken on purpose" in str(err.value)
