"""One pod on the local cluster, from binding to removal (node agent I/O).

The worker plays the kubelet for a single pod: it rejects what the local cluster cannot run
(hostPath and other volume types), allocates the pod's loopback IP, materialises its volumes,
lays out one directory per container (path map, root view, termination-log file, in-cluster
kubeconfig), runs init containers in order and then the app containers (``containerrunner``),
writes ``pod.status`` whenever anything changes (``podstatus``), and on deletion or eviction
stops the processes gracefully, writes the final status and removes the pod object
(``DELETE`` with grace 0, as the kubelet does once the containers are gone).

Directory layout under ``<workdir>/pods/<namespace>_<name>_<uid>/``::

    volumes/<volume>/                 emptyDir, configMap, secret, projected, downwardAPI
    containers/<container>/root/      the container's view: <mountPath> symlinks to volumes
    containers/<container>/termination-log
    containers/<container>/kubeconfig when the service-account token is mounted
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import httpx
import yaml

from kubetune.cluster.containerrunner import ContainerRunner, Prepared
from kubetune.cluster.devices import GpuAllocator, device_env, gpu_request
from kubetune.cluster.envresolve import EnvSources, referenced_objects, resolve_container_env
from kubetune.cluster.events import EventRecorder
from kubetune.cluster.images import ImageResolver
from kubetune.cluster.ipam import LoopbackPool
from kubetune.cluster.kubeapi import ApiError, KubeApi, pod_path
from kubetune.cluster.launch import compose_env, localise_argv, plan_launch
from kubetune.cluster.pathmap import PATH_MAP_ENV, build_path_map, encode, normalise
from kubetune.cluster.podlogs import container_log_path
from kubetune.cluster.podstatus import OWNED_CONDITIONS, PodView, compute_status
from kubetune.cluster.probes import ProbeTarget
from kubetune.cluster.restartpolicy import init_container_policy
from kubetune.cluster.volumes import (
    PodVolumes,
    VolumeError,
    VolumeSources,
    ensure_private,
    unsupported_volume,
    write_atomic,
)

log = logging.getLogger(__name__)

SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_TERMINATION_PATH = "/dev/termination-log"
DEFAULT_GRACE = 30.0


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ObjectSource(VolumeSources, Protocol):
    """ConfigMaps and Secrets for env resolution, on top of what volumes need."""


@dataclass(frozen=True)
class AgentSettings:
    """Node-agent-wide settings every pod worker uses."""

    workdir: Path
    image_root: Path
    python: str
    path_env: str
    apiserver_url: str
    shim_dir: str = ""
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    resync_seconds: float = 10.0
    memory_dir: Path | None = None
    cluster_marker: str = ""
    host_ip: str = "127.0.0.1"

    @property
    def pods_dir(self) -> Path:
        return self.workdir / "pods"

    @property
    def logs_dir(self) -> Path:
        return self.workdir / "logs" / "pods"


@dataclass
class NodeServices:
    """What the agent shares with its pod workers."""

    api: KubeApi
    images: ImageResolver
    pool: LoopbackPool
    events: EventRecorder
    sources: ObjectSource
    settings: AgentSettings
    allocatable: Mapping[str, Mapping[str, str]]  # node name -> allocatable
    gpus: Mapping[str, GpuAllocator]  # node name -> allocator (GPU nodes only)
    forget: Callable[[str], None]


def _strings(data: Mapping[str, bytes] | None) -> dict[str, str] | None:
    if data is None:
        return None
    return {k: v.decode("utf-8", errors="surrogateescape") for k, v in data.items()}


def _is_executable(path: str) -> bool:
    return Path(path).is_file() and os.access(path, os.X_OK)


class PodWorker:
    def __init__(self, *, pod: Mapping[str, Any], services: NodeServices) -> None:
        self._pod: Mapping[str, Any] = pod
        self.services = services
        meta = pod["metadata"]
        self.uid = str(meta["uid"])
        self.namespace = str(meta["namespace"])
        self.name = str(meta["name"])
        self.dir = services.settings.pods_dir / f"{self.namespace}_{self.name}_{self.uid}"
        spec = pod.get("spec", {})
        self.node = str(spec.get("nodeName", ""))
        self.restart_policy = str(spec.get("restartPolicy") or "Always")
        self.pod_ip = ""
        self._dirty = asyncio.Event()
        self._status_lock = asyncio.Lock()
        self._written: dict[str, Any] | None = None
        self._conditions: list[Mapping[str, Any]] = list(
            c
            for c in (pod.get("status", {}).get("conditions") or [])
            if c.get("type") in OWNED_CONDITIONS
        )
        self._sandbox_ready = False
        self._initialized = any(
            c.get("type") == "Initialized" and c.get("status") == "True" for c in self._conditions
        ) and bool(pod.get("status", {}).get("containerStatuses"))
        self._failure: tuple[str, str] | None = None
        self._final = False
        self._deleting = False
        self._gone = False
        self._volumes: PodVolumes | None = None
        self._path_maps: dict[str, dict[str, str]] = {}
        self._kubeconfigs: dict[str, tuple[Path, Path]] = {}  # container -> (token dir, file)
        self._gpu_ids: tuple[int, ...] = ()
        self._start_time = str(pod.get("status", {}).get("startTime") or _now())
        self._tasks: list[asyncio.Task[None]] = []
        self._terminating: asyncio.Task[None] | None = None
        self.init_runners = [
            ContainerRunner(
                host=self,
                container=c,
                policy=init_container_policy(self.restart_policy, c.get("restartPolicy")),
                sidecar=c.get("restartPolicy") == "Always",
                probes=c.get("restartPolicy") == "Always",
            )
            for c in spec.get("initContainers") or []
        ]
        self.runners = [
            ContainerRunner(host=self, container=c, policy=self.restart_policy)
            for c in spec.get("containers") or []
        ]
        if not self.init_runners:
            for runner in self.runners:
                runner.set_waiting("ContainerCreating")
        self._adopt(pod.get("status") or {})

    # ------------------------------------------------------------------ RunnerHost

    @property
    def pod(self) -> Mapping[str, Any]:
        return self._pod

    def notify(self) -> None:
        self._dirty.set()

    def container_running(self, container: str) -> bool:
        return any(
            r.name == container and r.view().state == "running"
            for r in (*self.init_runners, *self.runners)
        )

    def log_path(self, container: str, restart: int) -> Path:
        return container_log_path(
            self.services.settings.logs_dir,
            namespace=self.namespace,
            name=self.name,
            uid=self.uid,
            container=container,
            restart=restart,
        )

    def termination_file(self, container: str) -> Path:
        return self.dir / "containers" / container / "termination-log"

    def event(self, reason: str, message: str, *, warning: bool = False) -> None:
        self.services.events.pod_event(self._pod, reason=reason, message=message, warning=warning)

    def grace_seconds(self) -> float:
        meta = self._pod.get("metadata", {})
        for value in (
            meta.get("deletionGracePeriodSeconds"),
            self._pod.get("spec", {}).get("terminationGracePeriodSeconds"),
        ):
            if value is not None:
                return float(value)
        return DEFAULT_GRACE

    def backoff(self) -> tuple[float, float]:
        s = self.services.settings
        return s.backoff_base, s.backoff_cap

    async def prepare(self, container: Mapping[str, Any]) -> Prepared:
        services, settings = self.services, self.services.settings
        image = services.images.resolve(str(container.get("image", "")))
        cm_names, secret_names = referenced_objects(container)
        sources = EnvSources(
            config_maps={
                n: _strings(await services.sources.config_map(self.namespace, n)) for n in cm_names
            },
            secrets={
                n: _strings(await services.sources.secret(self.namespace, n)) for n in secret_names
            },
        )
        container_env = resolve_container_env(
            pod=self._pod,
            container=container,
            sources=sources,
            pod_ip=self.pod_ip,
            host_ip=settings.host_ip,
            node_allocatable=services.allocatable.get(self.node, {}),
        )
        name = str(container["name"])
        path_map = self._path_maps[name]
        cdir = self.dir / "containers" / name
        root = cdir / "root"
        forced = {
            "KUBETUNE_POD_IP": self.pod_ip,
            "KUBETUNE_POD_PORTS": ",".join(str(p) for p in sorted(set(self._ports().values()))),
            PATH_MAP_ENV: encode(path_map),
            "KUBETUNE_ROOT": str(root),
            "KUBETUNE_TERMINATION_LOG": str(self.termination_file(name)),
            **self._apiserver_env(),
            **device_env(self._gpu_ids),
        }
        if settings.cluster_marker:
            forced["KUBETUNE_LOCAL_CLUSTER"] = settings.cluster_marker
        defaults = {
            "PATH": settings.path_env,
            "HOME": str(root / "root"),
            "TMPDIR": str(root / "tmp"),
            "HOSTNAME": str(self._pod.get("spec", {}).get("hostname") or self.name),
            "LANG": "C.UTF-8",
        }
        if name in self._kubeconfigs:
            defaults["KUBECONFIG"] = str(self._kubeconfigs[name][1])
        env = compose_env(
            defaults=defaults,
            image_env=image.env,
            container_env=container_env,
            forced=forced,
            path_map=path_map,
            python_path_prefix=settings.shim_dir,
        )
        which = partial(shutil.which, path=settings.path_env)
        plan = plan_launch(
            image=image,
            container=container,
            container_env=container_env,
            env=env,
            path_map=path_map,
            python=settings.python,
            default_cwd=str(settings.image_root),
            which=which,
            is_executable=_is_executable,
        )
        target = ProbeTarget(
            pod_ip=self.pod_ip,
            ports=self._ports(),
            env=plan.env,
            cwd=plan.cwd,
            localise=partial(
                localise_argv, python=settings.python, which=which, is_executable=_is_executable
            ),
        )
        return Prepared(plan=plan, image_id=image.image_id, probe_target=target)

    # ------------------------------------------------------------------ events from the agent

    def start(self) -> None:
        for coro, what in ((self._lifecycle(), "pod"), (self._status_loop(), "status")):
            task = asyncio.create_task(coro, name=f"{what} {self.namespace}/{self.name}")
            task.add_done_callback(_log_crash)
            self._tasks.append(task)
        self.notify()

    def on_update(self, pod: Mapping[str, Any]) -> None:
        if pod.get("metadata", {}).get("uid") != self.uid:
            return
        self._pod = pod
        if pod["metadata"].get("deletionTimestamp") and self._terminating is None:
            self._terminating = asyncio.create_task(self._terminate(via_api=True))
        self.notify()

    def on_deleted(self) -> None:
        self._gone = True
        for runner in (*self.init_runners, *self.runners):
            runner.kill_now()
        if self._terminating is None:
            self._terminating = asyncio.create_task(self._terminate(via_api=False))

    async def shutdown(self, grace: float) -> None:
        """The agent is stopping: kill the processes, leave the pod object alone."""
        self._deleting = True
        await asyncio.gather(*(r.stop(grace) for r in (*self.init_runners, *self.runners)))
        await self._cancel_tasks()

    # ------------------------------------------------------------------ lifecycle

    def _adopt(self, status: Mapping[str, Any]) -> None:
        """Continue a pod a previous agent process started (its processes died with it)."""
        if not status.get("containerStatuses") and not status.get("initContainerStatuses"):
            return
        by_name = {s.get("name"): s for s in status.get("containerStatuses") or []}
        for runner in self.runners:
            if runner.name in by_name:
                runner.adopt(by_name[runner.name])
        init_by_name = {s.get("name"): s for s in status.get("initContainerStatuses") or []}
        for runner in self.init_runners:
            if runner.name in init_by_name:
                runner.adopt(init_by_name[runner.name])
        if status.get("podIP"):
            self.pod_ip = str(status["podIP"])

    async def _lifecycle(self) -> None:
        refused = unsupported_volume(self._pod)
        if refused:
            self._failure = ("UnsupportedVolume", refused)
            self.event("UnsupportedVolume", refused, warning=True)
            self.notify()
            return
        self._allocate()
        self.notify()
        await self._setup_sandbox()
        if self._deleting:
            return
        self._sandbox_ready = True
        self.notify()
        refresh = asyncio.create_task(self._refresh_loop(), name=f"refresh {self.name}")
        refresh.add_done_callback(_log_crash)
        self._tasks.append(refresh)
        for runner in self.init_runners:
            if self._deleting:
                return
            if runner.succeeded:
                continue
            runner.start()
            if runner.sidecar:
                await runner.started_event.wait()
                continue
            await runner.done_event.wait()
            if not runner.succeeded:
                return  # the pod failed (restartPolicy Never) or is being deleted
        if self._deleting:
            return
        self._initialized = True
        self.notify()
        for runner in self.runners:
            runner.start()
        await asyncio.gather(*(r.done_event.wait() for r in self.runners))
        sidecars = [r for r in self.init_runners if r.sidecar]
        if sidecars and not self._deleting:
            await asyncio.gather(*(r.stop(self.grace_seconds()) for r in sidecars))

    def _allocate(self) -> None:
        """The pod IP (kept across agent restarts) and GPU devices."""
        pool = self.services.pool
        if self._pod.get("spec", {}).get("hostNetwork"):
            self.pod_ip = self.services.settings.host_ip  # the node's address, as on a node
        elif not (self.pod_ip and pool.reserve(self.uid, self.pod_ip)):
            self.pod_ip = pool.allocate(self.uid)
        allocator = self.services.gpus.get(self.node)
        if allocator is not None:
            self._gpu_ids = allocator.assign(self.uid, gpu_request(self._pod))

    async def _setup_sandbox(self) -> None:
        settings = self.services.settings
        delay = 1.0
        while not self._deleting:
            ensure_private(self.dir)
            volumes = PodVolumes(
                pod=self._pod,
                pod_dir=self.dir,
                sources=self.services.sources,
                pod_ip=self.pod_ip,
                host_ip=settings.host_ip,
                node_allocatable=self.services.allocatable.get(self.node, {}),
                memory_dir=settings.memory_dir,
            )
            try:
                host_dirs = await volumes.setup()
            except (VolumeError, ApiError, httpx.HTTPError, OSError) as err:
                message = f"MountVolume.SetUp failed: {err}"
                self.event("FailedMount", message, warning=True)
                for runner in (*self.init_runners, *self.runners):
                    runner.set_waiting(runner.view().waiting_reason, message)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self._volumes = volumes
            for container in self._all_containers():
                self._layout_container(container, host_dirs)
            return

    def _all_containers(self) -> list[Mapping[str, Any]]:
        spec = self._pod.get("spec", {})
        return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]

    def _layout_container(
        self, container: Mapping[str, Any], host_dirs: Mapping[str, Path]
    ) -> None:
        name = str(container["name"])
        cdir = self.dir / "containers" / name
        root = cdir / "root"
        for sub in ("root", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        term_file = self.termination_file(name)
        term_file.touch()
        mounts: list[tuple[str, str]] = []
        for mount in container.get("volumeMounts") or []:
            base = host_dirs.get(mount["name"])
            if base is None:
                continue
            sub = str(mount.get("subPath") or mount.get("subPathExpr") or "").strip("/")
            target = base / sub if sub else base
            if sub and not target.exists():
                target.mkdir(parents=True, exist_ok=True)
            mounts.append((str(mount["mountPath"]), str(target)))
        termination_path = str(container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH)
        path_map = build_path_map(
            mounts=mounts, termination_path=termination_path, termination_file=str(term_file)
        )
        self._path_maps[name] = path_map
        _link_root(root, path_map)
        sa_dir = path_map.get(SA_MOUNT)
        if sa_dir:
            kubeconfig = cdir / "kubeconfig"
            self._kubeconfigs[name] = (Path(sa_dir), kubeconfig)
            self._write_kubeconfig(Path(sa_dir), kubeconfig)

    def _write_kubeconfig(self, sa_dir: Path, target: Path) -> None:
        """In-cluster access for clients that fall back to $KUBECONFIG (kopf, lightkube)."""
        token_file = sa_dir / "token"
        token = token_file.read_text().strip() if token_file.exists() else ""
        user: dict[str, Any] = {"tokenFile": str(token_file)}
        if token:
            user["token"] = token
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "in-cluster",
                    "cluster": {
                        "server": self.services.settings.apiserver_url,
                        "certificate-authority": str(sa_dir / "ca.crt"),
                    },
                }
            ],
            "users": [{"name": "service-account", "user": user}],
            "contexts": [
                {
                    "name": "in-cluster",
                    "context": {
                        "cluster": "in-cluster",
                        "user": "service-account",
                        "namespace": self.namespace,
                    },
                }
            ],
            "current-context": "in-cluster",
        }
        write_atomic(target, yaml.safe_dump(config, sort_keys=False).encode(), 0o600)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.services.settings.resync_seconds)
            if self._volumes is None:
                continue
            try:
                self._volumes.pod = self._pod
                await self._volumes.refresh()
                for sa_dir, kubeconfig in self._kubeconfigs.values():
                    self._write_kubeconfig(sa_dir, kubeconfig)
            except (VolumeError, ApiError, httpx.HTTPError, OSError) as err:
                log.warning("pod %s/%s: volume refresh failed: %s", self.namespace, self.name, err)

    def _ports(self) -> dict[str, int]:
        ports: dict[str, int] = {}
        for container in self._all_containers():
            for port in container.get("ports") or []:
                number = int(port.get("containerPort", 0))
                ports[str(port.get("name") or number)] = number
        return ports

    def _apiserver_env(self) -> dict[str, str]:
        url = httpx.URL(self.services.settings.apiserver_url)
        port = str(url.port or 443)
        return {
            "KUBERNETES_SERVICE_HOST": url.host,
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
        }

    # ------------------------------------------------------------------ status

    def _view(self) -> PodView:
        spec = self._pod.get("spec", {})
        foreign = {
            str(c.get("type")): str(c.get("status"))
            for c in (self._pod.get("status", {}).get("conditions") or [])
            if c.get("type") not in OWNED_CONDITIONS
        }
        return PodView(
            restart_policy=self.restart_policy,
            sandbox_ready=self._sandbox_ready,
            containers=[r.view() for r in self.runners],
            init_containers=[r.view() for r in self.init_runners],
            pod_ip=self.pod_ip,
            host_ip=self.services.settings.host_ip,
            start_time=self._start_time,
            failure=self._failure,
            final=self._final,
            readiness_gates=[g["conditionType"] for g in spec.get("readinessGates") or []],
            initialized=self._initialized,
            foreign_conditions=foreign,
        )

    async def _write_status(self) -> None:
        async with self._status_lock:
            if self._gone:
                return
            status = compute_status(self._view(), now=_now(), previous_conditions=self._conditions)
            if status == self._written:
                return
            body = {"metadata": {"uid": self.uid}, "status": status}
            try:
                await self.services.api.patch(
                    pod_path(self.namespace, self.name, "status"), body, kind="strategic"
                )
            except ApiError as err:
                if err.status in (404, 409):
                    self._gone = True
                    return
                raise
            self._written = status
            self._conditions = status["conditions"]

    async def _status_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self._write_status()
            except (ApiError, httpx.HTTPError) as err:
                log.warning("pod %s/%s: status update failed: %s", self.namespace, self.name, err)
                await asyncio.sleep(1.0)
                self._dirty.set()
            await asyncio.sleep(0.05)  # coalesce bursts of changes into one write

    # ------------------------------------------------------------------ termination

    async def _terminate(self, *, via_api: bool) -> None:
        self._deleting = True
        grace = self.grace_seconds()
        runners = (*self.init_runners, *self.runners)
        if any(r.view().state == "running" for r in runners):
            self.event("Killing", f"Stopping pod (grace period {grace:g}s)")
        await asyncio.gather(*(r.stop(grace) for r in runners))
        await self._cancel_tasks()
        if self._failure is None:
            self._final = True
        if via_api and not self._gone:
            try:
                await self._write_status()
                await self.services.api.delete(
                    pod_path(self.namespace, self.name),
                    {
                        "kind": "DeleteOptions",
                        "apiVersion": "v1",
                        "gracePeriodSeconds": 0,
                        "preconditions": {"uid": self.uid},
                    },
                )
            except (ApiError, httpx.HTTPError) as err:
                log.warning("pod %s/%s: final delete failed: %s", self.namespace, self.name, err)
        self._cleanup()

    async def _cancel_tasks(self) -> None:
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    def _cleanup(self) -> None:
        if self._volumes is not None:
            self._volumes.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.services.pool.release(self.uid)
        allocator = self.services.gpus.get(self.node)
        if allocator is not None:
            allocator.release(self.uid)
        self.services.forget(self.uid)


def _log_crash(task: asyncio.Task[None]) -> None:
    """A worker task that dies of a bug must say so in the agent log."""
    if not task.cancelled() and task.exception() is not None:
        log.error("%s crashed", task.get_name(), exc_info=task.exception())


def _link_root(root: Path, path_map: Mapping[str, str]) -> None:
    """``root/<mountPath>`` -> host path; nested mounts are reachable through the path map."""
    linked: list[str] = []
    for mount in sorted(path_map, key=len):
        mount_norm = normalise(mount)
        if any(mount_norm.startswith(parent.rstrip("/") + "/") for parent in linked):
            continue
        link = root / mount_norm.lstrip("/")
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            if link.is_symlink() or link.is_file():
                link.unlink()
            else:
                shutil.rmtree(link)
        link.symlink_to(path_map[mount])
        linked.append(mount_norm)
