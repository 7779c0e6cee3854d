"""The e2e session: a cluster with kubetune installed the way users install it, and the
object store seeded with the CPU-tiny model and the sample golden examples.

By default a local process cluster is brought up in a temporary state folder and torn down
at the end. With ``KUBETUNE_E2E_CLUSTER=given`` the suite uses the cluster in KUBECONFIG and
the object store in AWS_* instead (kind: see e2e/kind/README.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e import demo, kit

NAMESPACE = "e2e"
SERVING = "e2e-serving"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "e2e" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kit.Cluster]:
    if os.environ.get("KUBETUNE_E2E_CLUSTER") == "given":
        yield kit.given_cluster()
        return
    state_dir = tmp_path_factory.mktemp("e2e-cluster")
    try:
        cluster = kit.local_cluster(state_dir)
        kit.install_kubetune(
            cluster,
            # The demo's namespace too: e2e/test_cli.py runs the quick start's commands there.
            workload_namespaces=[NAMESPACE, demo.NAMESPACE],
            serving_deployments=[(NAMESPACE, SERVING), (demo.NAMESPACE, demo.SERVING)],
        )
        yield cluster
    finally:
        kit.local_cluster_down(state_dir)


@pytest.fixture(scope="session")
def seed(cluster: kit.Cluster, tmp_path_factory: pytest.TempPathFactory) -> kit.Seed:
    return kit.seed_object_store(cluster, tmp_path_factory.mktemp("seed"))
