"""Node-level bookkeeping of the local cluster (``ipam``, ``devices``, ``nodekeeper``,
``provisioner``, ``services``, ``podlogs``).

Covers: loopback pod IPs (unique, stable per pod, next-fit after release, refuses networks
outside 127/8, keeps an adopted address); GPU assignment and its env; the CPU and GPU node specs
(capacity, labels, GPU taint, extra taints); which claims need a directory and which volumes
are released; the PersistentVolume built for a claim; ready endpoints of a Service from its
selected pods; the kubelet-style log layout and lookups (latest, previous, errors).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from kubetune.cluster.devices import GpuAllocator, device_env, gpu_request
from kubetune.cluster.ipam import LoopbackPool
from kubetune.cluster.nodekeeper import node_specs
from kubetune.cluster.nodes import GPU_TAINT
from kubetune.cluster.podlogs import LogNotFoundError, container_log_path, read_log
from kubetune.cluster.provisioner import (
    PROVISIONER,
    claims_needing_volumes,
    released_volumes,
    volume_for_claim,
)
from kubetune.cluster.services import ready_endpoints


def test_loopback_pool() -> None:
    pool = LoopbackPool("127.5.0.0/30")
    a, b = pool.allocate("a"), pool.allocate("b")
    assert (a, b) == ("127.5.0.1", "127.5.0.2")
    assert pool.allocate("a") == a
    pool.release("a")
    assert pool.allocate("c") == "127.5.0.3"  # next-fit: no immediate reuse
    assert pool.allocate("d") == "127.5.0.1"
    with pytest.raises(RuntimeError, match="no free address"):
        pool.allocate("e")
    with pytest.raises(ValueError, match=r"inside 127\.0\.0\.0/8"):
        LoopbackPool("10.0.0.0/24")
    fresh = LoopbackPool("127.6.0.0/24")
    assert fresh.reserve("old", "127.6.0.9")
    assert not fresh.reserve("other", "127.6.0.9")
    assert not fresh.reserve("x", "127.9.0.1")


def test_gpu_assignment() -> None:
    pod = {"spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "2"}}}, {}]}}
    assert gpu_request(pod) == 2
    gpus = GpuAllocator(3)
    assert gpus.assign("a", 2) == (0, 1)
    assert gpus.assign("b", 2) == (2,)
    gpus.release("a")
    assert gpus.assign("c", 1) == (0,)
    assert device_env((0, 2)) == {"NVIDIA_VISIBLE_DEVICES": "0,2", "CUDA_VISIBLE_DEVICES": "0,2"}
    assert device_env(()) == {"NVIDIA_VISIBLE_DEVICES": "void", "CUDA_VISIBLE_DEVICES": ""}


def test_node_specs() -> None:
    extra = {"key": "t", "value": "x", "effect": "NoSchedule"}
    cpu, gpu = node_specs(prefix="kt", gpus=2, cpu="8", memory="16Gi", taints=[extra])
    assert cpu.name == "kt-cpu" and "nvidia.com/gpu" not in cpu.capacity
    assert list(cpu.taints) == [extra]
    assert gpu.name == "kt-gpu" and gpu.capacity["nvidia.com/gpu"] == "2"
    assert list(gpu.taints) == [GPU_TAINT, extra]
    assert gpu.labels["nvidia.com/gpu.present"] == "true"
    assert [s.name for s in node_specs(prefix="kt", gpus=0, cpu="1", memory="1Gi")] == ["kt-cpu"]


def claim(name: str, **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}-0000",
            "annotations": {"volume.kubernetes.io/storage-provisioner": PROVISIONER},
            **meta,
        },
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}},
    }


def test_provisioner_selection_and_volume(tmp_path: Path) -> None:
    bound = claim("bound")
    bound["spec"]["volumeName"] = "pv-x"
    foreign = claim("foreign")
    foreign["metadata"]["annotations"] = {"volume.kubernetes.io/storage-provisioner": "other"}
    claims = [claim("new"), claim("made"), bound, foreign, claim("gone", deletionTimestamp=T)]
    todo = claims_needing_volumes(claims, {"pvc-uid-made-0000"})
    assert [c["metadata"]["name"] for c in todo] == ["new"]
    pv = volume_for_claim(claim("new"), root=tmp_path)
    assert pv["metadata"]["name"] == "pvc-uid-new-0000"
    assert pv["spec"]["capacity"] == {"storage": "2Gi"}
    assert pv["spec"]["claimRef"]["uid"] == "uid-new-0000"
    assert pv["spec"]["hostPath"]["path"] == str(tmp_path / "ns" / "new-uid-new-")
    released = {
        "metadata": {"annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
        "spec": {"persistentVolumeReclaimPolicy": "Delete"},
        "status": {"phase": "Released"},
    }
    retained = {**released, "spec": {"persistentVolumeReclaimPolicy": "Retain"}}
    assert released_volumes([released, retained, pv]) == [released]


T = "2026-01-01T00:00:00Z"


def pod(name: str, ip: str, *, ready: bool, port_name: str = "http") -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"containers": [{"ports": [{"name": port_name, "containerPort": 8080}]}]},
        "status": {
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def test_ready_endpoints() -> None:
    service = {"spec": {"ports": [{"name": "web", "port": 80, "targetPort": "http"}]}}
    pods = [pod("a", "127.1.0.2", ready=True), pod("b", "127.1.0.3", ready=False)]
    assert ready_endpoints(service, pods, "web") == [("127.1.0.2", 8080)]
    assert ready_endpoints(service, pods, 80) == [("127.1.0.2", 8080)]
    numbered = {"spec": {"ports": [{"port": 80, "targetPort": 9000}, {"port": 81}]}}
    assert ready_endpoints(numbered, pods, 81) == [("127.1.0.2", 81)]
    with pytest.raises(ValueError, match="no port"):
        ready_endpoints(numbered, pods, "nope")


def test_log_layout_and_lookup(tmp_path: Path) -> None:
    def write(uid: str, container: str, restart: int, text: str) -> None:
        path = container_log_path(
            tmp_path, namespace="ns", name="p", uid=uid, container=container, restart=restart
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    write("u1", "main", 0, "first pod\n")
    os.utime(tmp_path / "ns_p_u1", (1_000_000, 1_000_000))  # the older pod instance
    write("u2", "main", 0, "run 0\n")
    write("u2", "main", 1, "run 1\nlast\n")
    write("u2", "side", 0, "side\n")
    with pytest.raises(LogNotFoundError, match=r"containers \['main', 'side'\]"):
        read_log(tmp_path, namespace="ns", name="p")
    assert read_log(tmp_path, namespace="ns", name="p", container="main") == "run 1\nlast\n"
    assert read_log(tmp_path, namespace="ns", name="p", container="main", tail=1) == "last"
    previous = read_log(tmp_path, namespace="ns", name="p", container="main", previous=True)
    assert previous == "run 0\n"
    with pytest.raises(LogNotFoundError, match="has not restarted"):
        read_log(tmp_path, namespace="ns", name="p", container="side", previous=True)
    with pytest.raises(LogNotFoundError, match="no logs for pod ns/q"):
        read_log(tmp_path, namespace="ns", name="q")
