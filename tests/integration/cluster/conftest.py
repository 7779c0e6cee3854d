"""Fixtures for the local cluster's node agent, on the session's real control plane.

``node_agent`` starts ``python -m kubetune.cluster agent`` once per session with nodes of its
own (a unique prefix, label and taint, so pods of other tests never land on them and ours never
land elsewhere) and the test images under ``tests/integration/cluster/images``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from kubetune.cluster.controlplane import ControlPlane
from tests.integration.cluster.cluster_helpers import AgentHandle, start_agent, stop_agent


@pytest.fixture(scope="session")
def node_agent(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentHandle]:
    handle = start_agent(
        kubeconfig=control_plane.kubeconfig,
        workdir=tmp_path_factory.mktemp("agent"),
        label=uuid.uuid4().hex[:8],
        network="127.77.0.0/16",
        extra=[
            "--delete-nodes-on-exit",
            f"--kubelet-cert={control_plane.pki.kubelet.cert}",
            f"--kubelet-key={control_plane.pki.kubelet.key}",
            f"--kubelet-client-ca={control_plane.pki.ca.cert}",
        ],
    )
    try:
        yield handle
    finally:
        stop_agent(handle)
