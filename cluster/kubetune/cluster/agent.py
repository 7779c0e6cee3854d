"""The local cluster's node agent: plays the kubelet for pods bound to its nodes.

It registers the nodes (``nodekeeper``), watches the pods bound to them (one list+watch per
node, relisting when the watch expires) and gives every pod a ``PodWorker``, which runs its
containers as local processes and writes its status. It also provisions directories for
PersistentVolumeClaims (``provisioner``). Run it with ``python -m kubetune.cluster agent``;
the cluster supervisor does that for ``make cluster-up`` and the tests do it in a fixture.

This is test and demo infrastructure, not a Kubernetes node: no isolation, no images, no CNI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from kubetune.cluster.devices import GpuAllocator
from kubetune.cluster.events import EventRecorder
from kubetune.cluster.images import ImageResolver
from kubetune.cluster.ipam import DEFAULT_POD_NETWORK, LoopbackPool
from kubetune.cluster.kubeapi import ApiError, KubeApi, WatchExpiredError, pod_path
from kubetune.cluster.kubectl import Kubectl
from kubetune.cluster.kubeletapi import KubeletApi, KubeletTls
from kubetune.cluster.nodekeeper import NodeKeeper, node_specs
from kubetune.cluster.podworker import AgentSettings, NodeServices, PodWorker
from kubetune.cluster.provisioner import Provisioner
from kubetune.cluster.volumes import VolumeError, decode_config_map, decode_secret

log = logging.getLogger(__name__)

SHIM_DIR = Path(__file__).resolve().parent / "podshim"
READY_FILE = "agent.ready"
TERMINAL = ("Succeeded", "Failed")


def repo_root() -> Path:
    """The checkout this package runs from (an editable install), else the working directory."""
    here = Path(__file__).resolve()
    candidate = here.parents[3] if len(here.parents) > 3 else Path.cwd()
    if (candidate / "pyproject.toml").is_file() and (candidate / "cluster").is_dir():
        return candidate
    return Path.cwd()


@dataclass
class AgentConfig:
    kubeconfig: Path
    workdir: Path
    images_dirs: list[Path] = field(default_factory=list)
    image_root: Path = field(default_factory=repo_root)
    node_prefix: str = "kubetune"
    gpus: int = 1
    cpu: str = "32"
    memory: str = "128Gi"
    node_labels: dict[str, str] = field(default_factory=dict)
    node_taints: list[dict[str, str]] = field(default_factory=list)
    pod_network: str = DEFAULT_POD_NETWORK
    python: str = sys.executable
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    resync_seconds: float = 10.0
    heartbeat_seconds: float = 10.0
    provisioner: bool = True
    python_shim: bool = True
    cluster_marker: str = ""
    delete_nodes_on_exit: bool = False
    shutdown_grace: float = 5.0
    kubelet_tls: KubeletTls | None = None
    """Serve the kubelet API (``kubectl logs``) with these certificates; None: do not."""


class ApiObjects:
    """ConfigMaps, Secrets, tokens and claim directories, read from the API server."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api

    async def config_map(self, namespace: str, name: str) -> dict[str, bytes] | None:
        obj = await self.api.get_or_none(f"/api/v1/namespaces/{namespace}/configmaps/{name}")
        return decode_config_map(obj) if obj is not None else None

    async def secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        obj = await self.api.get_or_none(f"/api/v1/namespaces/{namespace}/secrets/{name}")
        return decode_secret(obj) if obj is not None else None

    async def token(
        self,
        *,
        namespace: str,
        service_account: str,
        pod_name: str,
        pod_uid: str,
        audience: str | None,
        expiration_seconds: int,
    ) -> tuple[str, float]:
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": max(600, expiration_seconds),
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": pod_name,
                    "uid": pod_uid,
                },
            },
        }
        result = await self.api.create(
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token", body
        )
        status = result.get("status", {})
        expires = datetime.strptime(
            str(status["expirationTimestamp"]), "%Y-%m-%dT%H:%M:%SZ"
        ).replace(tzinfo=UTC)
        return str(status["token"]), expires.timestamp()

    async def claim_dir(self, namespace: str, claim: str) -> Path:
        pvc = await self.api.get_or_none(
            f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}"
        )
        if pvc is None:
            raise VolumeError(f'persistentvolumeclaim "{claim}" not found')
        volume = pvc.get("spec", {}).get("volumeName")
        if not volume or pvc.get("status", {}).get("phase") != "Bound":
            raise VolumeError(f'persistentvolumeclaim "{claim}" is not bound yet')
        pv = await self.api.get_or_none(f"/api/v1/persistentvolumes/{volume}")
        path = ((pv or {}).get("spec", {}).get("hostPath") or {}).get("path")
        if not path:
            raise VolumeError(
                f'persistentvolume "{volume}" of claim "{claim}" is not a local directory: the '
                f"local cluster only runs claims of StorageClass kubetune-local"
            )
        return _claim_path(path)


def _claim_path(path: str) -> Path:
    target = Path(path)
    target.mkdir(parents=True, exist_ok=True)
    return target


class NodeAgent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.workers: dict[str, PodWorker] = {}
        self._deleting: set[str] = set()
        self.specs = node_specs(
            prefix=config.node_prefix,
            gpus=config.gpus,
            cpu=config.cpu,
            memory=config.memory,
            labels=config.node_labels,
            taints=config.node_taints,
        )

    @property
    def node_names(self) -> list[str]:
        return [s.name for s in self.specs]

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.config
        api = KubeApi.from_kubeconfig(cfg.kubeconfig)
        self.api = api
        settings = self._settings(api.server)
        kubelet = None
        if cfg.kubelet_tls is not None:
            kubelet = KubeletApi(
                logs_dir=settings.logs_dir, tls=cfg.kubelet_tls, is_running=self._is_running
            ).start()
        keeper = NodeKeeper(
            api=api,
            kubectl=Kubectl(cfg.kubeconfig),
            specs=self.specs,
            kubelet_port=kubelet.port if kubelet else 0,
        )
        await keeper.register()
        self.services = NodeServices(
            api=api,
            images=ImageResolver(cfg.images_dirs),
            pool=LoopbackPool(cfg.pod_network),
            events=EventRecorder(api),
            sources=ApiObjects(api),
            settings=settings,
            allocatable={s.name: s.capacity for s in self.specs},
            gpus={s.name: GpuAllocator(s.gpus) for s in self.specs if s.gpus},
            forget=self._forget,
        )
        tasks = [asyncio.create_task(keeper.run(cfg.heartbeat_seconds))]
        tasks += [asyncio.create_task(self._watch(node)) for node in self.node_names]
        if cfg.provisioner:
            provisioner = Provisioner(api=api, root=settings.workdir / "pvcs")
            tasks.append(asyncio.create_task(provisioner.run()))
        ready = self._write_ready()
        log.info("node agent ready: nodes %s, pod network %s", self.node_names, cfg.pod_network)
        try:
            await stop.wait()
        finally:
            ready.unlink(missing_ok=True)
            if kubelet is not None:
                kubelet.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(
                *(w.shutdown(cfg.shutdown_grace) for w in list(self.workers.values())),
                return_exceptions=True,
            )
            if cfg.delete_nodes_on_exit:
                with contextlib.suppress(ApiError, httpx.HTTPError):
                    await keeper.delete_nodes()
            await api.aclose()

    def _settings(self, server: str) -> AgentSettings:
        cfg = self.config
        cfg.workdir.mkdir(parents=True, exist_ok=True)
        venv_bin = str(Path(cfg.python).parent)
        path_env = os.pathsep.join([venv_bin, os.environ.get("PATH", "/usr/bin:/bin")])
        shm = Path("/dev/shm")  # noqa: S108 - emptyDir medium Memory lives in tmpfs, as on a node
        memory_dir = None
        if shm.is_dir() and os.access(shm, os.W_OK):
            tag = hashlib.sha256(str(cfg.workdir.resolve()).encode()).hexdigest()[:10]
            memory_dir = shm / f"kubetune-{tag}"
        return AgentSettings(
            workdir=cfg.workdir.resolve(),
            image_root=cfg.image_root,
            python=cfg.python,
            path_env=path_env,
            apiserver_url=server,
            shim_dir=str(SHIM_DIR) if cfg.python_shim else "",
            backoff_base=cfg.backoff_base,
            backoff_cap=cfg.backoff_cap,
            resync_seconds=cfg.resync_seconds,
            memory_dir=memory_dir,
            cluster_marker=cfg.cluster_marker,
        )

    def _write_ready(self) -> Path:
        ready = self.config.workdir / READY_FILE
        ready.write_text(json.dumps({"pid": os.getpid(), "nodes": self.node_names}))
        return ready

    def _is_running(self, namespace: str, pod: str, container: str) -> bool:
        """Called from the kubelet API's threads: reads only."""
        for worker in list(self.workers.values()):
            if worker.namespace == namespace and worker.name == pod:
                return worker.container_running(container)
        return False

    def _forget(self, uid: str) -> None:
        self.workers.pop(uid, None)

    async def _watch(self, node: str) -> None:
        params = {"fieldSelector": f"spec.nodeName={node}"}
        while True:
            try:
                listing = await self.api.get("/api/v1/pods", params)
                rv = str(listing["metadata"]["resourceVersion"])
                live = set()
                for pod in listing.get("items", []):
                    live.add(pod["metadata"]["uid"])
                    self._dispatch("ADDED", pod)
                for uid, worker in list(self.workers.items()):
                    if worker.node == node and uid not in live:
                        worker.on_deleted()
                while True:
                    async for kind, obj in self.api.watch(
                        "/api/v1/pods", resource_version=rv, params=params
                    ):
                        rv = str(obj.get("metadata", {}).get("resourceVersion") or rv)
                        if kind != "BOOKMARK":
                            self._dispatch(kind, obj)
            except asyncio.CancelledError:
                raise
            except WatchExpiredError:
                continue
            except Exception as err:  # relist after any watch failure
                log.warning("pod watch on %s failed (%s); relisting", node, err)
                await asyncio.sleep(1.0)

    def _dispatch(self, kind: str, pod: Mapping[str, Any]) -> None:
        meta = pod.get("metadata", {})
        uid = str(meta.get("uid", ""))
        worker = self.workers.get(uid)
        if kind == "DELETED":
            if worker is not None:
                worker.on_deleted()
            return
        if worker is not None:
            worker.on_update(pod)
            return
        status = pod.get("status", {})
        started = bool(status.get("containerStatuses") or status.get("initContainerStatuses"))
        if status.get("phase") in TERMINAL or (meta.get("deletionTimestamp") and not started):
            if meta.get("deletionTimestamp") and uid not in self._deleting:
                self._deleting.add(uid)
                asyncio.create_task(self._confirm_deletion(pod))  # noqa: RUF006
            return
        worker = PodWorker(pod=pod, services=self.services)
        self.workers[uid] = worker
        worker.start()
        if meta.get("deletionTimestamp"):
            worker.on_update(pod)

    async def _confirm_deletion(self, pod: Mapping[str, Any]) -> None:
        """A pod with nothing running: the kubelet's final DELETE (grace 0)."""
        meta = pod["metadata"]
        try:
            await self.api.delete(
                pod_path(meta["namespace"], meta["name"]),
                {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}},
            )
        except (ApiError, httpx.HTTPError) as err:
            log.info("final delete of %s/%s: %s", meta["namespace"], meta["name"], err)
        finally:
            self._deleting.discard(str(meta["uid"]))


# ---------------------------------------------------------------------- command line


def _pairs(values: Sequence[str]) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"{value!r} is not key=value")
        out[key] = val
    return out


def _taint(value: str) -> dict[str, str]:
    """``key=value:Effect`` or ``key:Effect``."""
    head, sep, effect = value.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"taint {value!r} is not key[=value]:Effect")
    key, _, val = head.partition("=")
    taint = {"key": key, "effect": effect}
    if val:
        taint["value"] = val
    return taint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True, help="pods, logs, claims")
    parser.add_argument(
        "--images-dir",
        type=Path,
        action="append",
        default=[],
        help="folder of <name>/Dockerfile; repeatable, first match wins (default: images/)",
    )
    parser.add_argument("--image-root", type=Path, default=None, help="working dir of pods")
    parser.add_argument("--node-prefix", default="kubetune")
    parser.add_argument("--gpus", type=int, default=1, help="nvidia.com/gpu of the GPU node")
    parser.add_argument("--cpu", default="32")
    parser.add_argument("--memory", default="128Gi")
    parser.add_argument("--node-label", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--node-taint", action="append", default=[], type=_taint)
    parser.add_argument("--pod-network", default=DEFAULT_POD_NETWORK)
    parser.add_argument("--restart-backoff", type=float, default=1.0)
    parser.add_argument("--restart-backoff-max", type=float, default=60.0)
    parser.add_argument("--resync-seconds", type=float, default=10.0)
    parser.add_argument("--no-provisioner", action="store_true")
    parser.add_argument("--no-python-shim", action="store_true")
    parser.add_argument("--cluster-marker", default="")
    parser.add_argument("--delete-nodes-on-exit", action="store_true")
    parser.add_argument(
        "--kubelet-cert",
        type=Path,
        default=None,
        help="serve the kubelet API (container logs) with this certificate",
    )
    parser.add_argument("--kubelet-key", type=Path, default=None)
    parser.add_argument(
        "--kubelet-client-ca", type=Path, default=None, help="CA of the API server's client cert"
    )


def config_from_args(args: argparse.Namespace) -> AgentConfig:
    images = list(args.images_dir) or [repo_root() / "images"]
    return AgentConfig(
        kubeconfig=args.kubeconfig,
        workdir=args.workdir,
        images_dirs=[p.resolve() for p in images],
        image_root=(args.image_root or repo_root()).resolve(),
        node_prefix=args.node_prefix,
        gpus=args.gpus,
        cpu=args.cpu,
        memory=args.memory,
        node_labels=_pairs(args.node_label),
        node_taints=list(args.node_taint),
        pod_network=args.pod_network,
        backoff_base=args.restart_backoff,
        backoff_cap=args.restart_backoff_max,
        resync_seconds=args.resync_seconds,
        provisioner=not args.no_provisioner,
        python_shim=not args.no_python_shim,
        cluster_marker=args.cluster_marker,
        delete_nodes_on_exit=args.delete_nodes_on_exit,
        kubelet_tls=(
            KubeletTls(
                cert=args.kubelet_cert, key=args.kubelet_key, client_ca=args.kubelet_client_ca
            )
            if args.kubelet_cert
            else None
        ),
    )


def run_agent(config: AgentConfig) -> int:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await NodeAgent(config).run(stop)

    asyncio.run(main())
    return 0
