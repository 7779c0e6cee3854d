"""Shared fixtures: one real control plane per test session, one namespace per test.

The object store is a real S3 server process (versitygw) per session, with the buckets
``models``, ``datasets`` and ``adapters``; ``s3_env`` points boto3 at it for one test.

The control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) comes from
``kubetune.cluster.controlplane`` and the binaries ``make binaries`` built. Tests marked
``integration`` use it; unit tests never start it.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubetune.cluster.controlplane import ControlPlane
from kubetune.cluster.kubectl import Kubectl
from kubetune.cluster.objectstore import ObjectStore

REPO = Path(__file__).resolve().parent.parent
log = logging.getLogger("kubetune.tests")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests under tests/unit are unit tests; under tests/integration, integration tests."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "unit" in parts:
            item.add_marker(pytest.mark.unit)
        elif "integration" in parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    workdir = Path(os.environ.get("KUBETUNE_TEST_WORKDIR") or tmp_path_factory.mktemp("cp"))
    with ControlPlane(workdir=workdir) as cp:
        log.info("control plane startup: %s", cp.startup_seconds)
        yield cp


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Kubectl:
    return Kubectl(control_plane.kubeconfig)


@pytest.fixture(scope="session")
def crds(kubectl: Kubectl) -> Kubectl:
    """The kubetune CRDs, applied server-side and Established."""
    for path in sorted((REPO / "crds").glob("*.yaml")):
        kubectl.apply(path.read_text(), field_manager="kubetune-crds")
    kubectl.run("wait", "--for=condition=Established", "--timeout=60s", "crd", "-l", "", "--all")
    return kubectl


def make_test_namespace(kubectl: Kubectl, request: pytest.FixtureRequest, prefix: str) -> str:
    stem = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    name = f"{prefix}-{stem}-{uuid.uuid4().hex[:5]}"
    kubectl.run("create", "namespace", name)
    return name


@pytest.fixture
def namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test, deleted afterwards (without waiting).

    Named t-...; the operator that operator tests run watches only op-... namespaces, so
    suites that play the operator themselves (serving, CRD admission) are left alone.
    """
    name = make_test_namespace(kubectl, request, "t")
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def k(kubectl: Kubectl, namespace: str) -> Kubectl:
    """kubectl bound to the test's namespace."""
    return kubectl.with_namespace(namespace)


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    with ObjectStore(
        workdir=tmp_path_factory.mktemp("s3"), buckets=("models", "datasets", "adapters")
    ) as store:
        yield store


@pytest.fixture
def s3_env(object_store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> ObjectStore:
    """Point boto3 (AWS_* variables) at the session object store for this test."""
    for key, value in object_store.env.items():
        monkeypatch.setenv(key, value)
    return object_store
