"""The chart and the operator together, against the real control plane.

Covers: the operator, running with the token of the chart's ServiceAccount and nothing else,
completes a FineTuneJob reconcile (creates the run's ConfigMap and Job, writes status, posts
events): the chart's RBAC is sufficient; trainer Jobs rendered by the operator's own renderer
(CPU, multi-GPU, multi-node) get their pods admitted in a namespace that enforces Pod
Security "restricted".
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from kubetune.cluster.controlplane import free_port
from kubetune.cluster.kubectl import Kubectl
from kubetune.cluster.process import ManagedProcess
from kubetune.operator.render_trainer import render_job
from kubetune.operator.settings import Settings
from kubetune.operator.spec import ObjectRef
from tests.integration.chart.chartkit import (
    RESTRICTED,
    Helm,
    make_namespace,
    service_account_kubeconfig,
)
from tests.integration.operator.conftest import eventually


def ftj(name: str, **resources: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name},
        "spec": {
            "baseModel": {"uri": "s3://models/tiny/"},
            "dataset": {"train": "s3://datasets/support/train.jsonl"},
            "resources": {"gpus": 0, "cpu": "1", "memory": "1Gi", **resources},
            "output": {"uri": "s3://adapters/chart-test/"},
        },
    }


def test_operator_with_chart_identity_completes_a_reconcile(
    crds: Kubectl, helm: Helm, tmp_path: Path
) -> None:
    release_ns = make_namespace(crds, "kubetune-system")
    team_ns = make_namespace(crds, "team")
    rendering = helm.render(
        {"watchNamespaces": [team_ns]}, namespace=release_ns, values_dir=tmp_path
    )
    # Everything but the CRDs (already installed) and the operator Deployment (no kubelet
    # here: the operator runs below as a local process with the Deployment's identity).
    helm.install(rendering.without("CustomResourceDefinition", "Deployment"))
    account = rendering.deployment["spec"]["template"]["spec"]["serviceAccountName"]
    kubeconfig = service_account_kubeconfig(
        crds, namespace=release_ns, service_account=account, path=tmp_path / "sa.kubeconfig"
    )
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "KUBETUNE_WATCH_NAMESPACES": team_ns,
        "KUBETUNE_PROGRESS_INTERVAL": "1",
        "KUBETUNE_METRICS_PORT": str(free_port()),
        "KUBETUNE_HEALTH_PORT": str(free_port()),
        "KUBETUNE_S3_ENDPOINT": "http://127.0.0.1:9",  # never reached: nothing is running
    }
    operator = ManagedProcess(
        name="operator-chart-identity",
        argv=[sys.executable, "-m", "kubetune.operator"],
        env=env,
        log_path=tmp_path / "operator.log",
    )
    operator.start()
    try:
        team = crds.with_namespace(team_ns)
        team.apply(ftj("rbac-check"))
        st = eventually(
            lambda: (team.get("ftj", "rbac-check").get("status") or {}).get("currentRun"),
            what="status written by the chart-identity operator",
        )
        assert st["name"] == "rbac-check-g1"
        assert team.get("job", "rbac-check-g1")["metadata"]["labels"]["kubetune.io/run"] == (
            "rbac-check-g1"
        )
        team.get("configmap", "rbac-check-g1-config")
        events = json.loads(team.run("get", "events", "-o", "json").stdout)["items"]
        assert "JobCreated" in {e["reason"] for e in events}
        log = (tmp_path / "operator.log").read_text()
        assert "Forbidden" not in log and "403" not in log, log[-3000:]
    finally:
        operator.stop()


@pytest.mark.parametrize(
    "resources",
    [
        {"gpus": 0},
        {"gpus": 4, "cpu": "16", "memory": "64Gi"},
        {"gpus": 2, "nodes": 2, "cpu": "16", "memory": "64Gi"},
    ],
    ids=["cpu", "multi-gpu", "multi-node"],
)
def test_trainer_pods_pass_restricted_pod_security(
    kubectl: Kubectl, resources: dict[str, Any]
) -> None:
    namespace = make_namespace(kubectl, "restricted-trainer", RESTRICTED)
    k = kubectl.with_namespace(namespace)
    try:
        body = ftj("psa")
        body["spec"]["resources"].update(resources)
        ref = ObjectRef(namespace=namespace, name="psa", uid="0" * 8, generation=1)
        job = render_job(
            ref=ref, spec=body["spec"], run="psa-g1", settings=Settings(), suspend=False
        )
        job["metadata"].pop("ownerReferences")  # no FineTuneJob object behind it here
        k.apply(job)
        pods = eventually(
            lambda: json.loads(k.run("get", "pods", "-o", "json").stdout)["items"],
            what="trainer pods created under restricted Pod Security",
        )
        assert len(pods) >= 1
        events = json.loads(k.run("get", "events", "-o", "json").stdout)["items"]
        assert not [e for e in events if e["reason"] == "FailedCreate"], events
    finally:
        kubectl.run("delete", "namespace", namespace, "--wait=false", check=False)
