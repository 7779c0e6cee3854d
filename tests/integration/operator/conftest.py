"""Fixtures for operator integration tests: the operator as a real process, and helpers that
play the kubelet (pod status) and the trainer (objects in the object store) through their
documented contracts, since no kubelet or GPU exists here.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from kubetune.cluster.controlplane import ControlPlane, free_port
from kubetune.cluster.kubectl import Kubectl
from kubetune.cluster.objectstore import ObjectStore
from kubetune.cluster.polling import eventually
from kubetune.cluster.process import ManagedProcess
from tests.conftest import make_test_namespace


@dataclass
class OperatorProcess:
    proc: ManagedProcess
    health_port: int
    metrics_port: int
    env: dict[str, str]

    def healthy(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.health_port}/healthz"
            with urllib.request.urlopen(url, timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def start(self) -> None:
        self.proc.start()
        eventually(lambda: self.healthy() or self._crashed(), timeout=60, what="operator /healthz")

    def _crashed(self) -> bool:
        code = self.proc.poll()
        if code is not None:
            raise AssertionError(f"operator exited with {code}:\n{self.proc.tail(60)}")
        return False

    def log(self) -> str:
        return self.proc.log_path.read_text(errors="replace")

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())


def operator_env(control_plane: ControlPlane, object_store: ObjectStore) -> dict[str, str]:
    return {
        **os.environ,
        **object_store.env,
        "KUBECONFIG": str(control_plane.kubeconfig),
        "KUBETUNE_S3_ENDPOINT": object_store.endpoint,
        "KUBETUNE_PROGRESS_INTERVAL": "1",
        # Only this folder's namespaces (op-..., see the namespace fixture below): other suites
        # play the operator themselves or run operators of their own.
        "KUBETUNE_WATCH_NAMESPACES": "op-*",
        # The tests run as cluster admin, so the operator may create the agent's Role.
        "KUBETUNE_AGENT_RBAC": "true",
        "KUBETUNE_TRAINER_IMAGE": "registry.local/kubetune/trainer:test",
        "KUBETUNE_METRICS_PORT": str(free_port()),
        "KUBETUNE_HEALTH_PORT": str(free_port()),
    }


def make_operator(env: dict[str, str], log_path: Path) -> OperatorProcess:
    proc = ManagedProcess(
        name="kubetune-operator",
        argv=[sys.executable, "-m", "kubetune.operator"],
        env=env,
        log_path=log_path,
    )
    return OperatorProcess(
        proc=proc,
        health_port=int(env["KUBETUNE_HEALTH_PORT"]),
        metrics_port=int(env["KUBETUNE_METRICS_PORT"]),
        env=env,
    )


@pytest.fixture(scope="session")
def operator(
    control_plane: ControlPlane,
    object_store: ObjectStore,
    crds: Kubectl,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    op = make_operator(
        operator_env(control_plane, object_store),
        tmp_path_factory.mktemp("operator") / "operator.log",
    )
    op.start()
    yield op
    op.proc.stop()
    assert "Traceback" not in op.log(), op.log()[-4000:]


# ---------------------------------------------------------------- kubelet and trainer doubles


class Kubelet:
    """Writes pod status the way a kubelet would (there is no kubelet in this cluster)."""

    def __init__(self, k: Kubectl) -> None:
        self.k = k

    def pods(self, run: str) -> list[dict[str, Any]]:
        out = self.k.run("get", "pods", "-l", f"kubetune.io/run={run}", "-o", "json").stdout
        return list(json.loads(out)["items"])

    def live_pod(self, run: str) -> str:
        def probe() -> str | None:
            live = [
                p
                for p in self.pods(run)
                if p["status"].get("phase") in (None, "Pending", "Running")
                and not p["metadata"].get("deletionTimestamp")
            ]
            return live[0]["metadata"]["name"] if live else None

        return eventually(probe, what=f"a live pod of run {run}")

    def _status(self, pod: str, status: dict[str, Any]) -> None:
        self.k.run(
            "patch",
            "pod",
            pod,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": status}),
        )

    def running(self, pod: str) -> None:
        self._status(
            pod,
            {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {
                        "name": "trainer",
                        "ready": True,
                        "restartCount": 0,
                        "image": "trainer",
                        "imageID": "",
                        "state": {"running": {"startedAt": "2026-11-28T12:00:00Z"}},
                    }
                ],
            },
        )

    def terminated(self, pod: str, *, exit_code: int, message: str = "") -> None:
        self._status(
            pod,
            {
                "phase": "Succeeded" if exit_code == 0 else "Failed",
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [
                    {
                        "name": "trainer",
                        "ready": False,
                        "restartCount": 0,
                        "image": "trainer",
                        "imageID": "",
                        "state": {
                            "terminated": {
                                "exitCode": exit_code,
                                "reason": "Completed" if exit_code == 0 else "Error",
                                "message": message,
                                "startedAt": "2026-11-28T12:00:00Z",
                                "finishedAt": "2026-11-28T12:01:00Z",
                            }
                        },
                    }
                ],
            },
        )

    def preempted(self, pod: str) -> None:
        self._status(
            pod,
            {
                "phase": "Failed",
                "conditions": [
                    {
                        "type": "DisruptionTarget",
                        "status": "True",
                        "reason": "PreemptionByScheduler",
                        "message": "preempted by a higher-priority pod",
                    }
                ],
            },
        )


class Trainer:
    """Writes what the trainer writes to the object store (progress, manifest)."""

    def __init__(self, store: ObjectStore) -> None:
        self.s3 = boto3.client(
            "s3",
            endpoint_url=store.endpoint,
            aws_access_key_id=store.access_key,
            aws_secret_access_key=store.secret_key,
            region_name=store.region,
        )

    def progress(self, prefix: str, run: str, *, step: int, total: int, loss: float) -> None:
        doc = {
            "step": step,
            "totalSteps": total,
            "epoch": step / total,
            "loss": loss,
            "tokensPerSecond": 1234.5,
            "etaSeconds": 60,
            "updatedAt": "2026-11-28T12:00:30Z",
        }
        self.s3.put_object(
            Bucket="adapters", Key=f"{prefix}/{run}/progress.json", Body=json.dumps(doc).encode()
        )

    def publish(self, prefix: str, run: str, *, eval_loss: float = 1.25) -> str:
        manifest = json.dumps(
            {
                "schemaVersion": 1,
                "kind": "kubetune.io/adapter-manifest",
                "run": run,
                "createdAt": "2026-11-28T12:01:00Z",
                "metrics": {"evalLoss": eval_loss, "trainLoss": 1.1},
                "files": {},
            },
            sort_keys=True,
        ).encode()
        self.s3.put_object(
            Bucket="adapters", Key=f"{prefix}/{run}/adapter/manifest.json", Body=manifest
        )
        return "sha256:" + hashlib.sha256(manifest).hexdigest()


@pytest.fixture
def namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    """Overrides tests/conftest.py: op-... namespaces, the ones the session operator watches."""
    name = make_test_namespace(kubectl, request, "op")
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def kubelet(k: Kubectl) -> Kubelet:
    return Kubelet(k)


@pytest.fixture
def trainer(object_store: ObjectStore) -> Trainer:
    return Trainer(object_store)
