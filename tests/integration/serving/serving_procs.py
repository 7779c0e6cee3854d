"""Real processes for the serving tests and benchmark: the reference engine and the adapter
agent, each started exactly as a pod would run it (``python -m ...``), with its log in a file
and killed with its parent (``kubetune.cluster.process``).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx

from kubetune.api.contract import ADAPTER_STATE_ANNOTATION
from kubetune.cluster.controlplane import free_port
from kubetune.cluster.kubectl import Kubectl
from kubetune.cluster.process import ManagedProcess

T = TypeVar("T")


def wait_for(
    check: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.05,
    what: str,
    log: Callable[[], str] | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` (and a log tail)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as err:  # the condition may not be checkable yet
            last_error = err
        time.sleep(interval)
    tail = f"\n--- log ---\n{log()}" if log else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what} ({last_error!r}){tail}")


class EngineProcess:
    """``python -m kubetune.serving.engine`` on a fixed loopback port (kept across restarts)."""

    def __init__(
        self,
        *,
        model_dir: Path,
        served_name: str,
        workdir: Path,
        port: int | None = None,
        max_lora_rank: int = 64,
        lora_modules: tuple[str, ...] = (),
        threads: int = 1,
        name: str = "engine",
    ) -> None:
        self.model_dir = model_dir
        self.served_name = served_name
        self.workdir = workdir
        self.port = port or free_port()
        self.max_lora_rank = max_lora_rank
        self.lora_modules = lora_modules
        self.threads = threads
        self.name = name
        self.starts = 0
        self._proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def log_tail(self) -> str:
        return self._proc.tail(40) if self._proc else ""

    def start(self, *, wait: bool = True, timeout: float = 180.0) -> EngineProcess:
        argv = [
            sys.executable,
            "-m",
            "kubetune.serving.engine",
            "--model",
            str(self.model_dir),
            "--served-model-name",
            self.served_name,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--max-lora-rank",
            str(self.max_lora_rank),
            "--threads",
            str(self.threads),
            "--log-level",
            "warning",
        ]
        if self.lora_modules:
            argv += ["--lora-modules", *self.lora_modules]
        self.starts += 1
        self._proc = ManagedProcess(
            name=self.name,
            argv=argv,
            log_path=self.log_path,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(self.threads)},
        )
        self._proc.start()
        if wait:
            self.wait_healthy(timeout=timeout)
        return self

    def healthy(self) -> bool:
        if self._proc is None or self._proc.poll() is not None:
            return False
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_healthy(self, *, timeout: float = 180.0) -> None:
        def up() -> bool:
            if self._proc is not None and self._proc.poll() is not None:
                raise AssertionError(f"engine exited:\n{self.log_tail()}")
            return self.healthy()

        wait_for(up, timeout=timeout, interval=0.2, what=f"engine {self.url}", log=self.log_tail)

    def kill(self) -> None:
        """SIGKILL, as an OOM kill or a node failure would end it."""
        if self._proc is not None and self._proc.pid is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
            wait_for(lambda: self._proc.poll() is not None, timeout=10, what="engine to die")  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop(grace_seconds=5)


class AgentProcess:
    """``python -m kubetune.serving.agent`` configured through its environment, as in a pod."""

    def __init__(
        self,
        *,
        workdir: Path,
        pod_name: str,
        namespace: str,
        deployment: str,
        engine_url: str,
        kubeconfig: Path,
        s3_env: Mapping[str, str],
        adapter_dir: Path | None = None,
        engine_kind: str = "kubetune",
        max_lora_rank: int = 64,
        base_model_name: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        name: str = "agent",
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.adapter_dir = adapter_dir or workdir / f"{name}-adapters"
        self.name = name
        self.env = {
            **os.environ,
            **s3_env,
            "PYTHONUNBUFFERED": "1",
            "KUBECONFIG": str(kubeconfig),
            "POD_NAME": pod_name,
            "POD_NAMESPACE": namespace,
            "KUBETUNE_DEPLOYMENT": deployment,
            "KUBETUNE_ENGINE_URL": engine_url,
            "KUBETUNE_LISTEN": f"127.0.0.1:{self.port}",
            "KUBETUNE_ADAPTER_DIR": str(self.adapter_dir),
            "KUBETUNE_ENGINE": engine_kind,
            "KUBETUNE_MAX_LORA_RANK": str(max_lora_rank),
            "KUBETUNE_ENGINE_POLL_SECONDS": "0.5",
            "KUBETUNE_RETRY_SECONDS": "2",
            **({"KUBETUNE_BASE_MODEL_NAME": base_model_name} if base_model_name else {}),
            **(extra_env or {}),
        }
        self._proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self) -> str:
        return self._proc.tail(60) if self._proc else ""

    def start(self, *, timeout: float = 60.0) -> AgentProcess:
        self._proc = ManagedProcess(
            name=self.name,
            argv=[sys.executable, "-m", "kubetune.serving.agent"],
            log_path=self.workdir / f"{self.name}.log",
            env=self.env,
        )
        self._proc.start()

        def live() -> bool:
            if self._proc is not None and self._proc.poll() is not None:
                raise AssertionError(f"agent exited:\n{self.log_tail()}")
            try:
                return httpx.get(f"{self.url}/kubetune/live", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(live, timeout=timeout, interval=0.1, what=f"agent {self.url}", log=self.log_tail)
        return self

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/kubetune/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def status(self) -> dict:
        return httpx.get(f"{self.url}/kubetune/status", timeout=5).json()

    def wait_ready(self, *, timeout: float = 60.0) -> None:
        wait_for(self.ready, timeout=timeout, what=f"agent {self.name} ready", log=self.log_tail)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop(grace_seconds=5)


def engine_adapters(engine_url: str) -> set[str]:
    """LoRA names the engine lists (entries with a parent)."""
    models = httpx.get(f"{engine_url}/v1/models", timeout=10).json()["data"]
    return {m["id"] for m in models if m.get("parent")}


def pod_state(k: Kubectl, pod: str) -> dict[str, Any] | None:
    """The agent's ``kubetune.io/adapter-state`` annotation on ``pod``, parsed."""
    annotations = k.get("pod", pod)["metadata"].get("annotations") or {}
    raw = annotations.get(ADAPTER_STATE_ANNOTATION)
    return json.loads(raw) if raw else None


def create_pod(k: Kubectl, name: str, *, app: str) -> str:
    """A Pod object an agent can annotate; its scheduler does not exist, so nothing runs it."""
    k.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": app}},
            "spec": {
                "schedulerName": "kubetune-tests-unscheduled",
                "containers": [{"name": "agent", "image": "kubetune/serving"}],
            },
        }
    )
    return name
