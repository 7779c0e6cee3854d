"""A real Kubernetes control plane on loopback: etcd, kube-apiserver and, optionally,
kube-controller-manager and kube-scheduler.

Used by the integration tests (a session fixture), the local cluster and the demo::

    with ControlPlane(workdir=Path("/tmp/cp")) as cp:
        subprocess.run(["kubectl", "--kubeconfig", cp.kubeconfig, "get", "ns"])

Ports are picked free on 127.0.0.1, certificates are generated fresh, and every process is
stopped on exit; children also die with their parent (see ``process``).
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import yaml

from kubetune.cluster import pki as pki_mod
from kubetune.cluster.binaries import find_binary
from kubetune.cluster.process import ManagedProcess

log = logging.getLogger(__name__)

SERVICE_CIDR = "10.0.0.0/24"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
# The controllers Jobs and Deployments need to really create Pods, plus the housekeeping ones
# that make namespaces, service accounts and TTLs behave as in a real cluster.
CONTROLLERS = (
    "job-controller",
    "cronjob-controller",
    "replicaset-controller",
    "deployment-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    "ttl-after-finished-controller",
    "endpointslice-controller",
    "disruption-controller",
    "pod-garbage-collector-controller",
    # PersistentVolumeClaims: the binder binds claims to the volumes the local cluster's node
    # agent provisions; the protection controllers let bound claims and volumes be deleted.
    "persistentvolume-binder-controller",
    "persistentvolume-protection-controller",
    "persistentvolumeclaim-protection-controller",
)


class ControlPlaneError(RuntimeError):
    """A component failed to start; the message carries the tail of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class ControlPlane:
    """Start with ``start()`` or a ``with`` block; ``kubeconfig`` is the admin kubeconfig."""

    workdir: Path
    controllers: bool = True
    scheduler: bool = True
    startup_timeout: float = 120.0
    extra_apiserver_args: list[str] = field(default_factory=list)
    # 0 picks a free port; the local cluster passes its previous ports so that a kubeconfig
    # stays valid across restarts.
    apiserver_port: int = 0
    etcd_client_port: int = 0
    etcd_peer_port: int = 0
    processes: list[ManagedProcess] = field(default_factory=list, init=False)
    startup_seconds: dict[str, float] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.workdir = self.workdir.resolve()
        self.kubeconfig = self.workdir / "kubeconfig"
        self.etcd_url = ""

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ControlPlane:
        began = time.monotonic()
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.pki = pki_mod.generate(self.workdir / "pki")
            self._start_etcd()
            self._start_apiserver()
            self._write_kubeconfig()
            if self.controllers:
                self._start_controller_manager()
            if self.scheduler:
                self._start_scheduler()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds["total"] = time.monotonic() - began
        log.info(
            "control plane up in %.1fs (%s) at %s",
            self.startup_seconds["total"],
            ", ".join(f"{k} {v:.1f}s" for k, v in self.startup_seconds.items() if k != "total"),
            self.server,
        )
        return self

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def check_alive(self) -> None:
        """Raise if any component has exited (a crashed apiserver makes every test confusing)."""
        for proc in self.processes:
            code = proc.poll()
            if code is not None:
                raise ControlPlaneError(f"{proc.name} exited with {code}:\n{proc.tail()}")

    # ------------------------------------------------------------------ components

    def _spawn(self, name: str, argv: list[str]) -> ManagedProcess:
        proc = ManagedProcess(name=name, argv=argv, log_path=self.workdir / "logs" / f"{name}.log")
        proc.start()
        self.processes.append(proc)
        return proc

    def _start_etcd(self) -> None:
        began = time.monotonic()
        client_port = self.etcd_client_port or free_port()
        peer_port = self.etcd_peer_port or free_port()
        self.etcd_client_port, self.etcd_peer_port = client_port, peer_port
        self.etcd_url = f"http://127.0.0.1:{client_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        proc = self._spawn(
            "etcd",
            [
                str(find_binary("etcd")),
                "--name=default",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                # Test and demo data only: skip fsync, the single biggest cost on slow disks.
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        self._wait_http(proc, f"{self.etcd_url}/health", tls=False)
        self.startup_seconds["etcd"] = time.monotonic() - began

    def _start_apiserver(self) -> None:
        began = time.monotonic()
        self.apiserver_port = self.apiserver_port or free_port()
        p = self.pki
        proc = self._spawn(
            "kube-apiserver",
            [
                str(find_binary("kube-apiserver")),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.apiserver_port}",
                f"--tls-cert-file={p.serving.cert}",
                f"--tls-private-key-file={p.serving.key}",
                f"--client-ca-file={p.ca.cert}",
                # Published for aggregated-API authentication; components complain without it.
                f"--requestheader-client-ca-file={p.ca.cert}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--service-account-issuer={SA_ISSUER}",
                f"--service-account-key-file={p.service_account_pub}",
                f"--service-account-signing-key-file={p.service_account_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # `kubectl logs` reaches the node agent's kubelet API (see kubeletapi), both
                # sides authenticated by the local CA.
                f"--kubelet-client-certificate={p.kubelet_client.cert}",
                f"--kubelet-client-key={p.kubelet_client.key}",
                f"--kubelet-certificate-authority={p.ca.cert}",
                "--kubelet-preferred-address-types=InternalIP",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=false",
                "--profiling=false",
                "--endpoint-reconciler-type=none",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                *self.extra_apiserver_args,
            ],
        )
        self._wait_http(proc, f"{self.server}/readyz", tls=True)
        self.startup_seconds["kube-apiserver"] = time.monotonic() - began

    def _write_kubeconfig(self) -> None:
        p = self.pki
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "kubetune-local",
                    "cluster": {"server": self.server, "certificate-authority": str(p.ca.cert)},
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate": str(p.admin.cert),
                        "client-key": str(p.admin.key),
                    },
                }
            ],
            "contexts": [
                {
                    "name": "kubetune-local",
                    "context": {
                        "cluster": "kubetune-local",
                        "user": "admin",
                        "namespace": "default",
                    },
                }
            ],
            "current-context": "kubetune-local",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))
        self.kubeconfig.chmod(0o600)

    def _start_controller_manager(self) -> None:
        began = time.monotonic()
        port = free_port()
        proc = self._spawn(
            "kube-controller-manager",
            [
                str(find_binary("kube-controller-manager")),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                "--leader-elect=false",
                f"--controllers={','.join(CONTROLLERS)}",
                f"--service-account-private-key-file={self.pki.service_account_key}",
                f"--root-ca-file={self.pki.ca.cert}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--use-service-account-credentials=false",
                # Fast convergence for tests: the defaults are tuned for big clusters.
                "--concurrent-job-syncs=10",
                "--profiling=false",
            ],
        )
        self._wait_http(proc, f"https://127.0.0.1:{port}/healthz", tls=True, verify=False)
        self.startup_seconds["kube-controller-manager"] = time.monotonic() - began

    def _start_scheduler(self) -> None:
        began = time.monotonic()
        port = free_port()
        proc = self._spawn(
            "kube-scheduler",
            [
                str(find_binary("kube-scheduler")),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                "--leader-elect=false",
                "--profiling=false",
            ],
        )
        self._wait_http(proc, f"https://127.0.0.1:{port}/healthz", tls=True, verify=False)
        self.startup_seconds["kube-scheduler"] = time.monotonic() - began

    # ------------------------------------------------------------------ readiness

    def _ssl_context(self, *, verify: bool) -> ssl.SSLContext:
        if not verify:
            # Component health ports serve self-signed certs generated at start-up.
            ctx = ssl._create_unverified_context()  # noqa: S323
        else:
            ctx = ssl.create_default_context(cafile=str(self.pki.ca.cert))
        ctx.load_cert_chain(str(self.pki.admin.cert), str(self.pki.admin.key))
        return ctx

    def _wait_http(self, proc: ManagedProcess, url: str, *, tls: bool, verify: bool = True) -> None:
        deadline = time.monotonic() + self.startup_timeout
        context = self._ssl_context(verify=verify) if tls else None
        last_error = ""
        while time.monotonic() < deadline:
            code = proc.poll()
            if code is not None:
                raise ControlPlaneError(f"{proc.name} exited with {code}:\n{proc.tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2, context=context) as resp:  # noqa: S310
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, ssl.SSLError) as err:
                last_error = str(err)
            time.sleep(0.2)
        raise ControlPlaneError(
            f"{proc.name} not ready at {url} after {self.startup_timeout}s ({last_error}):\n"
            f"{proc.tail()}"
        )
