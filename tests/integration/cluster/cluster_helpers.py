"""Helpers for the node agent's integration tests: pod manifests that target the test agent's
nodes (``AgentHandle``), the testbox image (``python_container``: ``python3 -c <code>``), and
polling (``wait_for``) without sleeping longer than needed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune.cluster.kubectl import Kubectl
from kubetune.cluster.podlogs import LogNotFoundError, read_log
from kubetune.cluster.polling import eventually

IMAGES = Path(__file__).resolve().parent / "images"
TESTBOX = "registry.test/kubetune/testbox:1"


# Kept under the name these tests use.
wait_for = eventually


@dataclass
class AgentHandle:
    workdir: Path
    prefix: str
    label: str
    process: subprocess.Popen[bytes]

    @property
    def cpu_node(self) -> str:
        return f"{self.prefix}-cpu"

    @property
    def gpu_node(self) -> str:
        return f"{self.prefix}-gpu"

    def placement(self, *, gpu: bool = False) -> dict[str, Any]:
        """nodeSelector + tolerations that put a pod on this agent's nodes only."""
        tolerations = [{"key": "kubetune.io/agent-under-test", "operator": "Exists"}]
        if gpu:
            tolerations.append({"key": "nvidia.com/gpu", "operator": "Exists"})
        return {
            "nodeSelector": {"kubetune.io/agent-under-test": self.label},
            "tolerations": tolerations,
        }

    def pod_spec(
        self, *containers: dict[str, Any], gpu: bool = False, **extra: Any
    ) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "terminationGracePeriodSeconds": 5,
            **self.placement(gpu=gpu),
            "containers": list(containers),
        }
        spec.update(extra)
        return spec

    def pod(
        self, name: str, *containers: dict[str, Any], gpu: bool = False, **extra: Any
    ) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": self.pod_spec(*containers, gpu=gpu, **extra),
        }

    def log(self, namespace: str, pod: str, container: str | None = None, **kw: Any) -> str:
        """The container's log; "" while the container has not started."""
        try:
            return self._read(namespace, pod, container, **kw)
        except LogNotFoundError:
            return ""

    def _read(self, namespace: str, pod: str, container: str | None, **kw: Any) -> str:
        return read_log(
            self.workdir / "logs" / "pods",
            namespace=namespace,
            name=pod,
            container=container,
            **kw,
        )


def start_agent(
    *,
    kubeconfig: Path,
    workdir: Path,
    label: str,
    network: str,
    extra: Sequence[str] = (),
) -> AgentHandle:
    """Start ``python -m kubetune.cluster agent`` with nodes only our pods tolerate."""
    prefix = f"agent-{label}"
    with (workdir / "agent.log").open("ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kubetune.cluster",
                "agent",
                f"--kubeconfig={kubeconfig}",
                f"--workdir={workdir}",
                f"--images-dir={IMAGES}",
                f"--node-prefix={prefix}",
                f"--node-label=kubetune.io/agent-under-test={label}",
                f"--node-taint=kubetune.io/agent-under-test={label}:NoSchedule",
                f"--pod-network={network}",
                "--restart-backoff=0.5",
                "--restart-backoff-max=2",
                "--resync-seconds=1",
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    wait_for(
        lambda: (workdir / "agent.ready").exists() or proc.poll() is not None,
        timeout=60,
        what="the node agent to register its nodes",
    )
    assert proc.poll() is None, (workdir / "agent.log").read_text()
    return AgentHandle(workdir=workdir, prefix=prefix, label=label, process=proc)


def stop_agent(handle: AgentHandle) -> None:
    handle.process.terminate()
    try:
        handle.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        handle.process.kill()
        handle.process.wait()


def python_container(code: str, name: str = "main", **extra: Any) -> dict[str, Any]:
    """A testbox container running ``python -c code`` (the image's ENTRYPOINT + args)."""
    return {"name": name, "image": TESTBOX, "args": [code], **extra}


def get_json(k: Kubectl, kind: str, name: str) -> dict[str, Any] | None:
    result = k.run("get", kind, name, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def pod_phase(k: Kubectl, name: str) -> str:
    pod = get_json(k, "pod", name)
    return str((pod or {}).get("status", {}).get("phase", ""))


def container_status(pod: dict[str, Any], name: str = "main") -> dict[str, Any]:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        if status["name"] == name:
            return dict(status)
    return {}


def condition(pod: dict[str, Any], kind: str) -> dict[str, Any]:
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond["type"] == kind:
            return dict(cond)
    return {}
