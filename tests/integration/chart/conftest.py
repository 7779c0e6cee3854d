"""Fixtures for tests of the Helm chart against the session control plane.

- ``renderer``: renders the chart without any control plane (for content checks).
- ``helm``: renders ``charts/kubetune`` with given values (``helm template``, the server's
  Kubernetes version) into parsed manifests, and installs a rendering with server-side apply
  (``helm install`` would need nothing more, but apply lets a test pick the objects);
  ``module_helm`` is the same with installs that last for a whole module.
- ``restricted_namespace``: a fresh namespace that enforces Pod Security "restricted", for
  any test that must prove a pod kubetune creates is admitted there.
- ``monitoring_crds``: a minimal ServiceMonitor CRD, so manifests that contain one can be
  dry-run (the chart's own CRDs come from the session ``crds`` fixture).

The helpers behind them live in ``chartkit.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubetune.cluster.kubectl import Kubectl
from tests.integration.chart.chartkit import MIN_KUBE_VERSION, RESTRICTED, Helm, make_namespace

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def renderer() -> Helm:
    """Renders the chart without a control plane, for the oldest supported Kubernetes."""
    return Helm(None, MIN_KUBE_VERSION)


@pytest.fixture(scope="session")
def kube_version(kubectl: Kubectl) -> str:
    version = json.loads(kubectl.run("version", "-o", "json").stdout)
    return str(version["serverVersion"]["gitVersion"])


@pytest.fixture
def helm(kubectl: Kubectl, kube_version: str) -> Iterator[Helm]:
    runner = Helm(kubectl, kube_version)
    yield runner
    runner.cleanup()


@pytest.fixture(scope="module")
def module_helm(kubectl: Kubectl, kube_version: str) -> Iterator[Helm]:
    """A Helm runner whose installs live for the whole module (one install, many checks)."""
    runner = Helm(kubectl, kube_version)
    yield runner
    runner.cleanup()


@pytest.fixture
def restricted_namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace enforcing Pod Security "restricted", deleted afterwards."""
    name = make_namespace(kubectl, f"r-{request.node.name}", RESTRICTED)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def monitoring_crds(crds: Kubectl) -> Kubectl:
    """A ServiceMonitor CRD that accepts any spec: enough to dry-run a manifest that has one."""
    crds.apply((HERE / "servicemonitor-crd.yaml").read_text(), field_manager="kubetune-tests")
    crds.run(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/servicemonitors.monitoring.coreos.com",
    )
    return crds
