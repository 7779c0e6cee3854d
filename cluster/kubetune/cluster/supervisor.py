"""The long-lived owner of a local cluster's processes (``python -m kubetune.cluster supervise``).

``cluster up`` starts this detached from the terminal. It starts the control plane
(etcd, kube-apiserver, controller-manager, scheduler), the object store (versitygw, buckets
models/datasets/adapters) and the node agent, writes ``kubeconfig`` and ``env`` into the state
directory, stores the S3 credentials as Secret ``kube-system/kubetune-s3``, reports progress in
``state.json`` and then watches its children: a node agent that dies is restarted, a dead
control-plane component marks the cluster degraded. SIGTERM (``cluster down``) stops
everything in reverse order. Its children die with it (PDEATHSIG), which is why a short-lived
``up`` command cannot own them.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import socket
import sys
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from kubetune.cluster.agent import READY_FILE
from kubetune.cluster.controlplane import ControlPlane, ControlPlaneError, free_port
from kubetune.cluster.kubectl import Kubectl, KubectlError
from kubetune.cluster.objectstore import ObjectStore, ObjectStoreError
from kubetune.cluster.process import ManagedProcess

log = logging.getLogger(__name__)

BUCKETS = ("models", "datasets", "adapters")
S3_SECRET = "kubetune-s3"  # noqa: S105 - a Secret name, not a password
S3_SECRET_NAMESPACE = "kube-system"  # noqa: S105
INFO_CONFIGMAP = "kubetune-local-cluster"
MARKER_ENV = "KUBETUNE_LOCAL_CLUSTER"
AGENT_RESTARTS = 5


@dataclass
class SuperviseOptions:
    state_dir: Path
    images_dirs: list[Path] = field(default_factory=list)
    gpus: int = 1
    agent_args: list[str] = field(default_factory=list)


class StateFiles:
    """The files under the state directory that ``up``/``down``/``status`` read."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.state = self.root / "state.json"
        self.ports = self.root / "ports.json"
        self.credentials = self.root / "s3-credentials.json"
        self.kubeconfig = self.root / "kubeconfig"
        self.env = self.root / "env"
        self.logs = self.root / "logs"

    def read(self, path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return dict(data) if isinstance(data, dict) else {}

    def write(self, path: Path, data: Mapping[str, Any], *, private: bool = False) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        if private:
            tmp.chmod(0o600)
        tmp.replace(path)

    def update_state(self, **fields: Any) -> None:
        state = self.read(self.state)
        state.update(fields)
        state["updatedAt"] = time.time()
        self.write(self.state, state)


def port_free(port: int) -> bool:
    """Free to listen on: TIME_WAIT leftovers do not count (Go servers set SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def stable_ports(previous: Mapping[str, Any]) -> dict[str, int]:
    """The ports of the previous run where still free, fresh ones otherwise."""
    ports = {}
    for name in ("apiserver", "etcdClient", "etcdPeer", "s3"):
        old = int(previous.get(name) or 0)
        ports[name] = old if old and port_free(old) else free_port()
    return ports


def env_file_text(*, kubeconfig: Path, s3_env: Mapping[str, str]) -> str:
    lines = [
        "# kubetune local cluster: `source .kubetune/env` (test and demo infrastructure)",
        f"export KUBECONFIG={shlex.quote(str(kubeconfig))}",
    ]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in sorted(s3_env.items())]
    return "\n".join(lines) + "\n"


class Supervisor:
    def __init__(self, options: SuperviseOptions) -> None:
        self.options = options
        self.files = StateFiles(options.state_dir)
        self.stop = threading.Event()
        self.control_plane: ControlPlane | None = None
        self.store: ObjectStore | None = None
        self.agent: ManagedProcess | None = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("signal %s: stopping the local cluster", signum)
        self.stop.set()

    def run(self) -> int:
        os.environ[MARKER_ENV] = str(self.files.root)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        began = time.monotonic()
        self.files.update_state(
            phase="starting", pid=os.getpid(), message="", startedAt=time.time()
        )
        try:
            timings = self._start()
        except (ControlPlaneError, ObjectStoreError, KubectlError, OSError, TimeoutError) as err:
            log.exception("local cluster failed to start")
            self.files.update_state(phase="failed", message=str(err))
            self._stop_all()
            return 1
        if self.stop.is_set():
            self._stop_all()
            return 0
        timings["total"] = round(time.monotonic() - began, 2)
        self.files.update_state(phase="ready", timings=timings)
        log.info("local cluster ready in %.1fs", timings["total"])
        self._watch()
        self._stop_all()
        return 0

    def _start(self) -> dict[str, float]:
        files = self.files
        files.logs.mkdir(parents=True, exist_ok=True)
        ports = stable_ports(files.read(files.ports))
        files.write(files.ports, ports)
        timings: dict[str, float] = {}
        began = time.monotonic()
        self.control_plane = ControlPlane(
            workdir=files.root,
            apiserver_port=ports["apiserver"],
            etcd_client_port=ports["etcdClient"],
            etcd_peer_port=ports["etcdPeer"],
        ).start()
        timings["controlPlane"] = round(time.monotonic() - began, 2)
        began = time.monotonic()
        credentials = files.read(files.credentials)
        store_args: dict[str, Any] = {}
        if credentials.get("accessKey") and credentials.get("secretKey"):
            store_args = {
                "access_key": credentials["accessKey"],
                "secret_key": credentials["secretKey"],
            }
        self.store = ObjectStore(
            workdir=files.root / "s3", buckets=BUCKETS, port=ports["s3"], **store_args
        ).start()
        files.write(
            files.credentials,
            {"accessKey": self.store.access_key, "secretKey": self.store.secret_key},
            private=True,
        )
        _link_log(files.logs / "versitygw.log", files.root / "s3" / "versitygw.log")
        timings["objectStore"] = round(time.monotonic() - began, 2)
        files.env.write_text(
            env_file_text(kubeconfig=self.control_plane.kubeconfig, s3_env=self.store.env)
        )
        files.env.chmod(0o600)
        self._publish_s3(Kubectl(self.control_plane.kubeconfig))
        began = time.monotonic()
        self._start_agent()
        self._wait_agent_ready()
        timings["nodeAgent"] = round(time.monotonic() - began, 2)
        files.update_state(
            apiserver=self.control_plane.server,
            s3Endpoint=self.store.endpoint,
            kubeconfig=str(self.control_plane.kubeconfig),
            env=str(files.env),
        )
        return timings

    def _publish_s3(self, kubectl: Kubectl) -> None:
        assert self.store is not None
        kubectl.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": S3_SECRET, "namespace": S3_SECRET_NAMESPACE},
                "type": "Opaque",
                "stringData": dict(self.store.env),
            },
            field_manager="kubetune-local-cluster",
        )
        kubectl.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": INFO_CONFIGMAP, "namespace": "kube-public"},
                "data": {
                    "s3Endpoint": self.store.endpoint,
                    "s3Region": self.store.region,
                    "s3SecretRef": f"{S3_SECRET_NAMESPACE}/{S3_SECRET}",
                    "buckets": ",".join(BUCKETS),
                },
            },
            field_manager="kubetune-local-cluster",
        )

    def _agent_argv(self) -> list[str]:
        assert self.control_plane is not None
        argv = [
            sys.executable,
            "-m",
            "kubetune.cluster",
            "agent",
            f"--kubeconfig={self.control_plane.kubeconfig}",
            f"--workdir={self.files.root}",
            f"--gpus={self.options.gpus}",
            f"--cluster-marker={self.files.root}",
            f"--pod-network={pod_network_for(self.files.root)}",
            f"--kubelet-cert={self.control_plane.pki.kubelet.cert}",
            f"--kubelet-key={self.control_plane.pki.kubelet.key}",
            f"--kubelet-client-ca={self.control_plane.pki.ca.cert}",
        ]
        argv += [f"--images-dir={d}" for d in self.options.images_dirs]
        return argv + list(self.options.agent_args)

    def _start_agent(self) -> None:
        (self.files.root / READY_FILE).unlink(missing_ok=True)
        self.agent = ManagedProcess(
            name="node-agent",
            argv=self._agent_argv(),
            log_path=self.files.logs / "agent.log",
            env=dict(os.environ),
        )
        self.agent.start()

    def _wait_agent_ready(self, timeout: float = 60.0) -> None:
        assert self.agent is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stop.is_set():
            if (self.files.root / READY_FILE).exists():
                return
            code = self.agent.poll()
            if code is not None:
                raise OSError(f"node agent exited with {code}:\n{self.agent.tail()}")
            time.sleep(0.2)
        if not self.stop.is_set():
            raise TimeoutError(f"node agent not ready after {timeout}s:\n{self.agent.tail()}")

    def _watch(self) -> None:
        restarts = 0
        while not self.stop.wait(2.0):
            assert self.control_plane is not None and self.agent is not None
            try:
                self.control_plane.check_alive()
            except ControlPlaneError as err:
                self.files.update_state(phase="degraded", message=str(err)[:2000])
            code = self.agent.poll()
            if code is None:
                continue
            if restarts >= AGENT_RESTARTS:
                self.files.update_state(
                    phase="degraded",
                    message=f"node agent keeps exiting ({code}); see logs/agent.log",
                )
                continue
            restarts += 1
            log.warning("node agent exited with %s; restarting (%d)", code, restarts)
            self._start_agent()

    def _stop_all(self) -> None:
        self.files.update_state(phase="stopping")
        if self.agent is not None:
            self.agent.stop(grace_seconds=20.0)
        if self.store is not None:
            self.store.stop()
        if self.control_plane is not None:
            self.control_plane.stop()
        self.files.update_state(phase="stopped")


def _link_log(link: Path, target: Path) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


def supervise(options: SuperviseOptions) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return Supervisor(options).run()


def pod_network_for(state_dir: Path) -> str:
    """A loopback /16 of this cluster's own (127.2-127.251.x.x), chosen by its state folder.

    Two local clusters at once (a demo and a test run) must not hand out the same pod
    addresses: their pods would collide on ports.
    """
    second_octet = 2 + zlib.crc32(str(state_dir.resolve()).encode()) % 250
    return f"127.{second_octet}.0.0/16"
