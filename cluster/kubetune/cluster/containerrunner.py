"""One container of a pod as a local process (node agent I/O).

The runner starts the process its pod worker prepared, logs its output to a file, runs its
probes, records how it ended (exit code, reason, termination message) and restarts it
according to the restart policy with back-off. ``stop`` is the kubelet's kill: SIGTERM to the
process group, SIGKILL after the grace period. Every change is published through
``view()`` (a ``podstatus.ContainerView``) and the host's ``notify``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from kubetune.cluster.envresolve import EnvError
from kubetune.cluster.images import DockerfileError, ImageNotFoundError
from kubetune.cluster.launch import LaunchError, LaunchPlan
from kubetune.cluster.podlogs import read_tail
from kubetune.cluster.podstatus import ContainerView, Terminated, termination_message
from kubetune.cluster.probes import ProbeTarget, probe_loop
from kubetune.cluster.probestate import ProbeSpec, probe_spec
from kubetune.cluster.procscan import kill_all, processes_with_env
from kubetune.cluster.restartpolicy import backoff_seconds, should_restart
from kubetune.cluster.volumes import VolumeError

log = logging.getLogger(__name__)

_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1
UNKNOWN_EXIT = 137
CONTAINER_MARKER_ENV = "KUBETUNE_CONTAINER"


def _die_with_agent() -> None:  # between fork and exec: no allocation, no imports
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Prepared:
    """Everything needed to start one instance of the container."""

    plan: LaunchPlan
    image_id: str
    probe_target: ProbeTarget


class RunnerHost(Protocol):
    """What a runner needs from its pod worker."""

    @property
    def pod(self) -> Mapping[str, Any]: ...

    def notify(self) -> None: ...

    async def prepare(self, container: Mapping[str, Any]) -> Prepared: ...

    def log_path(self, container: str, restart: int) -> Path: ...

    def termination_file(self, container: str) -> Path: ...

    def event(self, reason: str, message: str, *, warning: bool = False) -> None: ...

    def grace_seconds(self) -> float: ...

    def backoff(self) -> tuple[float, float]: ...


class ContainerRunner:
    def __init__(
        self,
        *,
        host: RunnerHost,
        container: Mapping[str, Any],
        policy: str,
        sidecar: bool = False,
        probes: bool = True,
    ) -> None:
        self.host = host
        self.container = container
        self.name = str(container["name"])
        self.image = str(container.get("image", ""))
        self.policy = policy
        self.sidecar = sidecar
        self.started_event = asyncio.Event()
        self.done_event = asyncio.Event()
        self._probes = probes
        self._state = "waiting"
        self._waiting = ("PodInitializing", "")
        self._running_since = ""
        self._terminated: Terminated | None = None
        self._last: Terminated | None = None
        self._restarts = 0
        self._instances = 0
        self._ready = False
        self._started = False
        self._image_id = ""
        self._container_id = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._stop_grace = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._probe_tasks: list[asyncio.Task[None]] = []
        self._adopted: Terminated | None = None
        self._marker = ""

    # ------------------------------------------------------------------ status

    def view(self) -> ContainerView:
        return ContainerView(
            name=self.name,
            image=self.image,
            state=self._state,
            waiting_reason=self._waiting[0],
            waiting_message=self._waiting[1],
            running_since=self._running_since,
            terminated=self._terminated,
            last_terminated=self._last,
            restart_count=self._restarts,
            ready=self._ready,
            started=self._started,
            image_id=self._image_id,
            container_id=self._container_id,
            sidecar=self.sidecar,
        )

    @property
    def succeeded(self) -> bool:
        return self._terminated is not None and self._terminated.exit_code == 0

    def set_waiting(self, reason: str, message: str = "") -> None:
        if self._state == "running":
            return
        self._state = "waiting"
        self._waiting = (reason, message)
        self.host.notify()

    def adopt(self, status: Mapping[str, Any]) -> None:
        """Continue from a status a previous agent wrote (its process is gone)."""
        self._restarts = int(status.get("restartCount") or 0)
        state = status.get("state") or {}
        done = state.get("terminated")
        if done is not None:
            self._terminated = Terminated(
                exit_code=int(done.get("exitCode", 0)),
                reason=str(done.get("reason", "")),
                started_at=str(done.get("startedAt") or now_rfc3339()),
                finished_at=str(done.get("finishedAt") or now_rfc3339()),
                message=str(done.get("message", "")),
                container_id=str(done.get("containerID", "")),
            )
            self._state = "terminated"
            self._instances = 1
        elif "running" in state:
            self._adopted = Terminated(
                exit_code=UNKNOWN_EXIT,
                reason="ContainerStatusUnknown",
                started_at=str(state["running"].get("startedAt") or now_rfc3339()),
                finished_at=now_rfc3339(),
                message="the node agent restarted and the container's process was lost",
            )
            self._instances = 1

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self.run(), name=f"container {self.name}")
        return self._task

    async def _prepare(self, failures: int) -> tuple[Prepared | None, int]:
        """The launch, or None after reporting why it cannot start yet (and waiting)."""
        base, cap = self.host.backoff()
        try:
            return await self.host.prepare(self.container), 0
        except (ImageNotFoundError, DockerfileError) as err:
            self.set_waiting("ErrImagePull" if failures == 0 else "ImagePullBackOff", str(err))
            if failures == 0:
                self.host.event("Failed", f"Failed to pull image: {err}", warning=True)
        except (EnvError, VolumeError) as err:
            self.set_waiting("CreateContainerConfigError", str(err))
            self.host.event("Failed", f"Error: {err}", warning=True)
        except LaunchError as err:
            self.set_waiting("CreateContainerError", str(err))
            self.host.event("Failed", f"Error: {err}", warning=True)
        except Exception as err:  # a bug or odd spec must show in the pod status
            log.exception("container %s: preparing the launch failed", self.name)
            self.set_waiting("CreateContainerError", f"{type(err).__name__}: {err}")
        delay, failures = backoff_seconds(failures, base=base, cap=cap)
        await self._pause(delay)
        return None, failures

    def _resume_adopted(self) -> bool:
        """After an agent restart: False when the container is already done for good."""
        if self._adopted is not None:
            # Whatever the lost instance left behind outside its process group dies now.
            uid = self.host.pod["metadata"]["uid"]
            kill_all(
                processes_with_env(CONTAINER_MARKER_ENV, f"{uid}/{self.name}/{self._restarts}")
            )
            self._set_terminated(self._adopted)
        if self._state == "terminated" and self._terminated is not None:
            return should_restart(self.policy, self._terminated.exit_code)
        return True

    async def run(self) -> None:
        failures = 0
        prepare_failures = 0
        try:
            if not self._resume_adopted():
                return
            while not self._stopping:
                prepared, prepare_failures = await self._prepare(prepare_failures)
                if prepared is None or self._stopping:
                    continue
                began = time.monotonic()
                ended = await self._run_once(prepared)
                if self._stopping or not should_restart(self.policy, ended.exit_code):
                    break
                base, cap = self.host.backoff()
                delay, failures = backoff_seconds(
                    failures, base=base, cap=cap, ran_seconds=time.monotonic() - began
                )
                self._state = "waiting"
                self._last, self._terminated = ended, None
                self._waiting = (
                    "CrashLoopBackOff",
                    f"back-off {delay:g}s restarting failed container={self.name} "
                    f"pod={self.host.pod['metadata']['name']}",
                )
                self.host.event(
                    "BackOff", f"Back-off restarting failed container {self.name}", warning=True
                )
                self.host.notify()
                await self._pause(delay)
        finally:
            if self._stopping and self._terminated is None:
                self._mark_unknown()
            self.done_event.set()
            self.started_event.set()  # unblock anyone waiting for a sidecar that will not start
            self.host.notify()

    async def _pause(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _run_once(self, prepared: Prepared) -> Terminated:
        if self._instances:
            self._restarts += 1
            if self._terminated is not None:
                self._last = self._terminated
        self._instances += 1
        self._terminated = None
        self._image_id = prepared.image_id
        plan = prepared.plan
        log_path = self.host.log_path(self.name, self._restarts)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        term_file = self.host.termination_file(self.name)
        term_file.parent.mkdir(parents=True, exist_ok=True)
        term_file.write_bytes(b"")
        started_at = now_rfc3339()
        self._marker = f"{self.host.pod['metadata']['uid']}/{self.name}/{self._restarts}"
        try:
            with log_path.open("ab") as out:
                proc = await asyncio.create_subprocess_exec(
                    *plan.argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                    env={**plan.env, CONTAINER_MARKER_ENV: self._marker},
                    cwd=plan.cwd,
                    start_new_session=True,
                    preexec_fn=_die_with_agent,
                )
        except OSError as err:
            ended = Terminated(
                exit_code=128,
                reason="StartError",
                started_at=started_at,
                finished_at=now_rfc3339(),
                message=f"failed to start container process: exec {plan.argv[0]!r}: "
                f"{err.strerror or err}",
            )
            self.host.event("Failed", f"Error: {ended.message}", warning=True)
            self._set_terminated(ended)
            return ended
        self._proc = proc
        self._container_id = f"kubetune://{proc.pid}"
        self._state = "running"
        self._running_since = started_at
        self._waiting = ("", "")
        self.host.event("Started", f"Started container {self.name}")
        self._start_probes(prepared.probe_target)
        self.host.notify()
        if self._stopping:
            asyncio.create_task(self._terminate(proc, self._stop_grace))  # noqa: RUF006
        code = await proc.wait()
        for task in self._probe_tasks:
            task.cancel()
        self._probe_tasks.clear()
        # The container's other processes die with it, as with a cgroup kill: its process group,
        # and anything that escaped the group (marked environment).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        kill_all(processes_with_env(CONTAINER_MARKER_ENV, self._marker))
        self._proc = None
        sig = -code if code < 0 else None
        exit_code = 128 + sig if sig else code
        policy = str(self.container.get("terminationMessagePolicy") or "File")
        message = termination_message(
            policy=policy,
            file_text=term_file.read_text(errors="replace") if term_file.exists() else "",
            log_tail=read_tail(log_path) if exit_code != 0 else "",
            exit_code=exit_code,
        )
        ended = Terminated(
            exit_code=exit_code,
            reason="Completed" if exit_code == 0 else "Error",
            started_at=started_at,
            finished_at=now_rfc3339(),
            message=message,
            signal=sig,
            container_id=self._container_id,
        )
        self._set_terminated(ended)
        return ended

    def _set_terminated(self, ended: Terminated) -> None:
        self._state = "terminated"
        self._terminated = ended
        self._ready = False
        self._started = False
        self.host.notify()

    def _mark_unknown(self) -> None:
        if self._last is not None and self._state == "waiting":
            self._set_terminated(self._last)
            return
        now = now_rfc3339()
        self._set_terminated(
            Terminated(
                exit_code=UNKNOWN_EXIT,
                reason="ContainerStatusUnknown",
                started_at=now,
                finished_at=now,
                message="The container could not be located when the pod was terminated",
            )
        )

    # ------------------------------------------------------------------ probes

    def _start_probes(self, target: ProbeTarget) -> None:
        specs = {}
        if self._probes:
            for kind in ("startup", "liveness", "readiness"):
                probe = self.container.get(f"{kind}Probe")
                if probe:
                    specs[kind] = probe_spec(kind, probe)
        if "startup" in specs:
            self._probe_tasks.append(
                asyncio.create_task(
                    probe_loop(
                        specs["startup"],
                        target,
                        on_flip=lambda ok, msg: self._on_startup(ok, msg, specs, target),
                        stop_when_healthy=True,
                    )
                )
            )
        else:
            self._mark_started(specs, target)

    def _mark_started(self, specs: Mapping[str, ProbeSpec], target: ProbeTarget) -> None:
        self._started = True
        self.started_event.set()
        if "liveness" in specs:
            self._probe_tasks.append(
                asyncio.create_task(probe_loop(specs["liveness"], target, on_flip=self._on_live))
            )
        if "readiness" in specs:
            self._probe_tasks.append(
                asyncio.create_task(probe_loop(specs["readiness"], target, on_flip=self._on_ready))
            )
        else:
            self._ready = True
        self.host.notify()

    async def _on_startup(
        self, ok: bool, message: str, specs: Mapping[str, ProbeSpec], target: ProbeTarget
    ) -> None:
        if ok:
            self._mark_started(specs, target)
            return
        self.host.event("Unhealthy", f"Startup probe failed: {message}", warning=True)
        await self._kill_for_probe("startup", specs["startup"])

    async def _on_live(self, ok: bool, message: str) -> None:
        if ok:
            return
        self.host.event("Unhealthy", f"Liveness probe failed: {message}", warning=True)
        spec = probe_spec("liveness", self.container.get("livenessProbe") or {})
        await self._kill_for_probe("liveness", spec)

    async def _on_ready(self, ok: bool, message: str) -> None:
        self._ready = ok and self._state == "running"
        if not ok and message:
            self.host.event("Unhealthy", f"Readiness probe failed: {message}", warning=True)
        self.host.notify()

    async def _kill_for_probe(self, kind: str, spec: ProbeSpec) -> None:
        proc = self._proc
        if proc is None:
            return
        self.host.event("Killing", f"Container {self.name} failed {kind} probe, will be restarted")
        grace = spec.termination_grace
        # The probe task awaiting this is cancelled when the process exits; run it apart.
        asyncio.create_task(  # noqa: RUF006
            self._terminate(proc, grace if grace is not None else self.host.grace_seconds())
        )

    # ------------------------------------------------------------------ termination

    async def _terminate(self, proc: asyncio.subprocess.Process, grace: float) -> None:
        if proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), max(grace, 0.0))
        except TimeoutError:
            log.info("container %s ignored SIGTERM for %gs: SIGKILL", self.name, grace)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    async def stop(self, grace: float) -> None:
        """Kill the container for good (pod deletion or the end of a sidecar's pod)."""
        self._stopping = True
        self._stop_grace = grace
        self._wake.set()
        proc = self._proc
        if proc is not None:
            await self._terminate(proc, grace)
        if self._task is None:
            if self._terminated is None:
                self._mark_unknown()
            self.done_event.set()
            return
        await self.done_event.wait()

    def kill_now(self) -> None:
        self._stopping = True
        self._wake.set()
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
