"""``python -m kubetune.cluster up|down|status|env|logs``: the local cluster behind make cluster-up.

Covers: ``up`` starts a detached supervisor with control plane, object store and node agent and
reports the endpoints; a second ``up`` is a no-op that says so; ``status`` and ``env`` describe
the running cluster (the env file exports KUBECONFIG and the AWS_* variables); both nodes are
Ready; a pod in the cluster reaches the object store with the credentials from Secret
``kube-system/kubetune-s3``, and ``logs`` prints its output; ``down`` stops everything, also a
running pod and the process it daemonised out of its process group, and leaves no process
behind; a second
``down`` is a no-op; the next ``up`` reuses the ports, so the kubeconfig path stays valid.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from kubetune.cluster.kubectl import Kubectl
from kubetune.cluster.lifecycle import marked_processes
from tests.integration.cluster.cluster_helpers import IMAGES, wait_for


def cli(state: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "kubetune.cluster", *args, f"--state-dir={state}"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def exported(env_text: str) -> dict[str, str]:
    values = {}
    for line in env_text.splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            values[key] = shlex.split(value)[0]
    return values


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    state = tmp_path / "kubetune-state"
    yield state
    cli(state, "down", check=False)


S3_POD = """
import boto3, os
boto3.client('s3').put_object(Bucket='models', Key='from-pod.txt', Body=b'written by a pod')
print('stored', os.environ['AWS_ENDPOINT_URL'])
"""
# Still running at `down`, with a grandchild in its own session (outside the process group).
SLEEPER = """
import subprocess, sys, time
subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True)
print('sleeping', flush=True)
time.sleep(600)
"""


def test_up_is_idempotent_and_down_leaves_nothing(state: Path) -> None:
    first = cli(state, "up", f"--images-dir={IMAGES}")
    assert "local cluster up in" in first.stdout
    again = cli(state, "up", f"--images-dir={IMAGES}")
    assert "already up" in again.stdout
    assert "ready" in cli(state, "status").stdout

    env = exported(cli(state, "env").stdout)
    assert set(env) == {
        "KUBECONFIG",
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
    }
    assert env["KUBECONFIG"] == str(state / "kubeconfig")
    ports = json.loads((state / "ports.json").read_text())

    k = Kubectl(Path(env["KUBECONFIG"]), "kube-system")
    k.run(
        "wait", "--for=condition=Ready", "node/kubetune-cpu", "node/kubetune-gpu", "--timeout=30s"
    )
    gpu = json.loads(k.run("get", "node", "kubetune-gpu", "-o", "json").stdout)
    assert gpu["status"]["capacity"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in gpu["spec"][
        "taints"
    ]

    k.apply(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "s3-writer"},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {
                                "name": "main",
                                "image": "kubetune/testbox",
                                "args": [S3_POD],
                                "envFrom": [{"secretRef": {"name": "kubetune-s3"}}],
                            }
                        ],
                    }
                },
            },
        }
    )
    k.run("wait", "--for=condition=Complete", "job/s3-writer", "--timeout=60s")
    s3 = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    assert s3.get_object(Bucket="models", Key="from-pod.txt")["Body"].read() == b"written by a pod"
    pod = json.loads(k.run("get", "pods", "-l", "job-name=s3-writer", "-o", "json").stdout)
    name = pod["items"][0]["metadata"]["name"]
    assert cli(state, "logs", f"kube-system/{name}").stdout == (
        f"stored {env['AWS_ENDPOINT_URL']}\n"
    )
    k.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "sleeper"},
            "spec": {
                "containers": [{"name": "main", "image": "kubetune/testbox", "args": [SLEEPER]}]
            },
        }
    )
    wait_for(
        lambda: cli(state, "logs", "kube-system/sleeper", check=False).stdout == "sleeping\n",
        what="the sleeper pod to run",
    )
    # supervisor, etcd, apiserver, controller-manager, scheduler, versitygw, agent, 2 pod procs
    assert len(marked_processes(state.resolve())) == 9

    down = cli(state, "down")
    assert "local cluster down" in down.stdout
    assert marked_processes(state.resolve()) == []
    assert "already down" in cli(state, "down").stdout
    assert cli(state, "status", check=False).returncode == 3
    assert (state / "logs" / "kube-apiserver.log").exists()
    assert not (state / "kubeconfig").exists()

    cli(state, "up", f"--images-dir={IMAGES}")
    assert json.loads((state / "ports.json").read_text()) == ports
    wait_for(
        lambda: Kubectl(state / "kubeconfig").run("get", "nodes", check=False).returncode == 0,
        what="the restarted cluster to answer on the same kubeconfig",
    )
    cli(state, "down")
    assert marked_processes(state.resolve()) == []
