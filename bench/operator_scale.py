"""Benchmark: FineTuneJob-created -> Job-created latency of the kubetune operator at scale,
against Kubernetes' own Job-created -> Pod-created latency measured in the same run.

    .venv/bin/python bench/operator_scale.py [--count 1000] [--workers 8]

Starts a real control plane (etcd, kube-apiserver, kube-controller-manager) and object store,
installs the CRDs, runs the operator as a subprocess, creates COUNT FineTuneJobs and watches
FineTuneJobs, Jobs and Pods. Latencies are between watch events seen by one client (same
clock, same delays), so the baseline pays exactly the same observation costs. Prints p50/p99
of both, their ratio, the operator's peak RSS (VmHWM) and its API calls per FineTuneJob
(client-side count of creates, patches, deletes and events; the handful of long-lived watch
streams are not per-object and are excluded). Not a test: nothing here asserts timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Pod

from kubetune.cluster.controlplane import ControlPlane, free_port
from kubetune.cluster.kubectl import Kubectl
from kubetune.cluster.objectstore import ObjectStore
from kubetune.cluster.process import ManagedProcess

REPO = Path(__file__).resolve().parent.parent
NS = "bench"
FineTuneJob = create_namespaced_resource("kubetune.io", "v1alpha1", "FineTuneJob", "finetunejobs")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def body(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": f"ftj-{i:05d}", "namespace": NS},
        "spec": {
            "baseModel": {"uri": "s3://models/tiny/"},
            "dataset": {"train": "s3://datasets/bench/train.jsonl"},
            "resources": {"gpus": 0, "cpu": "100m", "memory": "64Mi"},
            "output": {"uri": "s3://adapters/bench/"},
        },
    }


async def watch(client: AsyncClient, res: Any, seen: dict[str, float], key: Any) -> None:
    async for op, obj in client.watch(res, namespace=NS):
        if op == "ADDED":
            name = key(obj)
            if name and name not in seen:
                seen[name] = time.monotonic()


async def run(count: int, workers: int, kubeconfig: Path, op: ManagedProcess) -> dict[str, Any]:
    client = AsyncClient(config=KubeConfig.from_file(str(kubeconfig)))
    ftj_seen: dict[str, float] = {}
    job_seen: dict[str, float] = {}
    pod_seen: dict[str, float] = {}
    watchers = [
        asyncio.create_task(watch(client, FineTuneJob, ftj_seen, lambda o: o.metadata.name)),
        asyncio.create_task(
            watch(client, Job, job_seen, lambda o: o.metadata.labels.get("kubetune.io/finetunejob"))
        ),
        asyncio.create_task(
            watch(client, Pod, pod_seen, lambda o: o.metadata.labels.get("kubetune.io/finetunejob"))
        ),
    ]
    await asyncio.sleep(1)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def creator() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            await client.create(FineTuneJob.from_dict(body(i)))

    began = time.monotonic()
    await asyncio.gather(*(creator() for _ in range(workers)))
    created_in = time.monotonic() - began
    deadline = time.monotonic() + 600
    while (len(job_seen) < count or len(pod_seen) < count) and time.monotonic() < deadline:  # noqa: ASYNC110 - polling two dicts the watchers fill
        await asyncio.sleep(0.5)
    converged_in = time.monotonic() - began
    for task in watchers:
        task.cancel()
    await client.close()
    ftj_to_job = [job_seen[n] - ftj_seen[n] for n in job_seen if n in ftj_seen]
    job_to_pod = [pod_seen[n] - job_seen[n] for n in pod_seen if n in job_seen]
    return {
        "count": count,
        "jobs": len(job_seen),
        "pods": len(pod_seen),
        "created_in_s": round(created_in, 1),
        "converged_in_s": round(converged_in, 1),
        "ftj_to_job": ftj_to_job,
        "job_to_pod": job_to_pod,
    }


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def api_calls(metrics_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("kubetune_api_requests_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kubetune-bench-"))
    with (
        ControlPlane(workdir=work / "cp", scheduler=False) as cp,
        ObjectStore(workdir=work / "s3", buckets=("models", "datasets", "adapters")) as store,
    ):
        kubectl = Kubectl(cp.kubeconfig)
        for crd in sorted((REPO / "crds").glob("*.yaml")):
            kubectl.apply(crd.read_text())
        kubectl.run("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        kubectl.run("create", "namespace", NS)
        metrics_port, health_port = free_port(), free_port()
        op = ManagedProcess(
            name="operator",
            argv=[sys.executable, "-m", "kubetune.operator"],
            env={
                **os.environ,
                **store.env,
                "KUBECONFIG": str(cp.kubeconfig),
                "KUBETUNE_S3_ENDPOINT": store.endpoint,
                "KUBETUNE_PROGRESS_INTERVAL": "30",
                # As in the operator image: bound glibc malloc arenas (one per thread by default).
                "MALLOC_ARENA_MAX": "2",
                "KUBETUNE_METRICS_PORT": str(metrics_port),
                "KUBETUNE_HEALTH_PORT": str(health_port),
            },
            log_path=work / "operator.log",
        )
        op.start()
        time.sleep(3)
        try:
            result = asyncio.run(run(args.count, args.workers, cp.kubeconfig, op))
            assert op.pid is not None
            rss = peak_rss_mib(op.pid)
            calls = api_calls(metrics_port)
        finally:
            op.stop()
    ftj, base = result["ftj_to_job"], result["job_to_pod"]
    report = {
        "fineTuneJobs": result["count"],
        "jobsCreated": result["jobs"],
        "podsCreated": result["pods"],
        "createdInSeconds": result["created_in_s"],
        "convergedInSeconds": result["converged_in_s"],
        "ftjToJob": {
            "p50": round(percentile(ftj, 0.5), 3),
            "p99": round(percentile(ftj, 0.99), 3),
            "mean": round(statistics.fmean(ftj), 3),
        },
        "jobToPodBaseline": {
            "p50": round(percentile(base, 0.5), 3),
            "p99": round(percentile(base, 0.99), 3),
            "mean": round(statistics.fmean(base), 3),
        },
        "p99Ratio": round(percentile(ftj, 0.99) / percentile(base, 0.99), 2),
        "p50Ratio": round(percentile(ftj, 0.5) / percentile(base, 0.5), 2),
        "operatorPeakRssMiB": round(rss, 1),
        "apiCallsPerFineTuneJob": round(calls / result["count"], 2),
        "targets": {"p99Ratio": "<= 2.0", "operatorPeakRssMiB": "<= 150"},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
