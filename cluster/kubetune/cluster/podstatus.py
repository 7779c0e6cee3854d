"""Pod status from container runtime states (pure; the node agent's status writer uses it).

Given a snapshot of each container (``ContainerView``) and of the pod sandbox (``PodView``),
compute what the kubelet would write into ``pod.status``: the phase, the conditions
(PodReadyToStartContainers, Initialized, ContainersReady, Ready; PodScheduled and
DisruptionTarget belong to others and are left alone), init and app ``containerStatuses`` with
their states, restart counts and termination messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

OWNED_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")
TERMINAL_PHASES = ("Succeeded", "Failed")
MESSAGE_MAX_BYTES = 4096
LOG_FALLBACK_BYTES = 2048
LOG_FALLBACK_LINES = 80


@dataclass(frozen=True)
class Terminated:
    exit_code: int
    reason: str
    started_at: str
    finished_at: str
    message: str = ""
    signal: int | None = None
    container_id: str = ""

    def as_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "exitCode": self.exit_code,
            "reason": self.reason,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
        }
        if self.message:
            state["message"] = self.message
        if self.signal:
            state["signal"] = self.signal
        if self.container_id:
            state["containerID"] = self.container_id
        return {"terminated": state}


@dataclass(frozen=True)
class ContainerView:
    """One container as the runner sees it now."""

    name: str
    image: str
    state: str = "waiting"  # waiting | running | terminated
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    running_since: str = ""
    terminated: Terminated | None = None
    last_terminated: Terminated | None = None
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    image_id: str = ""
    container_id: str = ""
    sidecar: bool = False  # an init container with restartPolicy Always


@dataclass(frozen=True)
class PodView:
    restart_policy: str
    sandbox_ready: bool
    containers: Sequence[ContainerView]
    init_containers: Sequence[ContainerView] = ()
    pod_ip: str = ""
    host_ip: str = ""
    start_time: str = ""
    failure: tuple[str, str] | None = None  # (reason, message): rejected by the node agent
    final: bool = False  # every process is gone for good (the pod was deleted or evicted)
    readiness_gates: Sequence[str] = ()
    initialized: bool = False  # init containers all done once: stays so (sidecars may stop later)
    foreign_conditions: Mapping[str, str] = field(default_factory=dict)  # type -> status


def termination_message(*, policy: str, file_text: str, log_tail: str, exit_code: int) -> str:
    """The message the kubelet reports: the termination file, or the log tail on error."""
    message = file_text.encode()[:MESSAGE_MAX_BYTES].decode(errors="ignore")
    if not message.strip() and policy == "FallbackToLogsOnError" and exit_code != 0:
        lines = log_tail.splitlines()[-LOG_FALLBACK_LINES:]
        tail = "\n".join(lines).encode()[-LOG_FALLBACK_BYTES:]
        message = tail.decode(errors="ignore")
    return message


def _init_done(view: PodView) -> tuple[bool, list[str]]:
    if view.initialized:
        return True, []
    pending = []
    for c in view.init_containers:
        if c.sidecar:
            if not c.started:
                pending.append(c.name)
        elif not (c.state == "terminated" and c.terminated and c.terminated.exit_code == 0):
            pending.append(c.name)
    return not pending, pending


def _succeeded(c: ContainerView) -> bool:
    return c.state == "terminated" and c.terminated is not None and c.terminated.exit_code == 0


def _init_phase(view: PodView) -> str:
    for c in view.init_containers:
        failed = c.state == "terminated" and c.terminated and c.terminated.exit_code != 0
        if failed and not c.sidecar and view.restart_policy == "Never":
            return "Failed"
    return "Pending"


def _app_phase(view: PodView) -> str:
    running = waiting = stopped = succeeded = 0
    for c in view.containers:
        if c.state == "running":
            running += 1
        elif c.state == "terminated":
            stopped += 1
            succeeded += _succeeded(c)
        elif c.last_terminated is not None:
            stopped += 1  # waiting to restart
        else:
            waiting += 1
    if waiting or not (running or stopped):
        return "Pending"
    if running or view.restart_policy == "Always":
        return "Running"
    if stopped == succeeded:
        return "Succeeded"
    return "Running" if view.restart_policy == "OnFailure" else "Failed"


def compute_phase(view: PodView) -> str:
    """The kubelet's phase rules (``getPhase``), plus the terminal phase of a deleted pod."""
    if view.failure:
        return "Failed"
    if view.final:
        done = bool(view.containers) and all(_succeeded(c) for c in view.containers)
        return "Succeeded" if done else "Failed"
    if not view.sandbox_ready:
        return "Pending"
    if not _init_done(view)[0]:
        return _init_phase(view)
    phase = _app_phase(view)
    if phase in TERMINAL_PHASES and any(
        c.sidecar and c.state == "running" for c in view.init_containers
    ):
        return "Running"  # terminal only once the sidecars have been stopped too
    return phase


def _container_status(c: ContainerView) -> dict[str, Any]:
    state: dict[str, Any]
    if c.state == "running":
        state = {"running": {"startedAt": c.running_since}}
    elif c.state == "terminated" and c.terminated is not None:
        state = c.terminated.as_state()
    else:
        waiting: dict[str, Any] = {"reason": c.waiting_reason}
        if c.waiting_message:
            waiting["message"] = c.waiting_message
        state = {"waiting": waiting}
    status: dict[str, Any] = {
        "name": c.name,
        "image": c.image,
        "imageID": c.image_id,
        "ready": c.ready,
        "started": c.started,
        "restartCount": c.restart_count,
        "state": state,
        "lastState": c.last_terminated.as_state() if c.last_terminated else {},
    }
    if c.container_id:
        status["containerID"] = c.container_id
    return status


def _condition(
    kind: str,
    ok: bool,
    *,
    now: str,
    previous: Mapping[str, Mapping[str, Any]],
    reason: str = "",
    message: str = "",
) -> dict[str, Any]:
    status = "True" if ok else "False"
    before = previous.get(kind)
    since = now
    if before and before.get("status") == status and before.get("lastTransitionTime"):
        since = str(before["lastTransitionTime"])
    condition: dict[str, Any] = {
        "type": kind,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": since,
    }
    # Explicit nulls: the status is a strategic merge patch, which would otherwise keep a
    # stale reason/message from the previous write of the same condition type.
    condition["reason"] = reason if not ok and reason else None
    condition["message"] = message if not ok and message else None
    return condition


def compute_status(
    view: PodView, *, now: str, previous_conditions: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """The ``status`` to patch (strategic merge keeps conditions owned by others)."""
    previous = {str(c.get("type")): c for c in previous_conditions}
    phase = compute_phase(view)
    terminal = phase in TERMINAL_PHASES
    initialised, pending_init = _init_done(view)
    unready = [c.name for c in view.init_containers if c.sidecar and not c.ready]
    unready += [c.name for c in view.containers if not c.ready]
    containers_ready = not unready and not terminal
    gates_missing = [g for g in view.readiness_gates if view.foreign_conditions.get(g) != "True"]
    if terminal:
        ready_reason, ready_message = "PodCompleted", ""
    elif unready:
        ready_reason = "ContainersNotReady"
        ready_message = f"containers with unready status: [{' '.join(unready)}]"
    else:
        ready_reason = "ReadinessGatesNotReady"
        ready_message = (
            f'corresponding condition of pod readiness gate "{gates_missing[0]}" does not exist.'
            if gates_missing
            else ""
        )
    conditions = [
        _condition(
            "PodReadyToStartContainers",
            view.sandbox_ready and not view.final and not view.failure,
            now=now,
            previous=previous,
        ),
        _condition(
            "Initialized",
            initialised,
            now=now,
            previous=previous,
            reason="ContainersNotInitialized",
            message=f"containers with incomplete status: [{' '.join(pending_init)}]",
        ),
        _condition(
            "ContainersReady",
            containers_ready,
            now=now,
            previous=previous,
            reason="PodCompleted" if terminal else "ContainersNotReady",
            message="" if terminal else ready_message if unready else "",
        ),
        _condition(
            "Ready",
            containers_ready and not gates_missing,
            now=now,
            previous=previous,
            reason=ready_reason,
            message=ready_message,
        ),
    ]
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "containerStatuses": [_container_status(c) for c in view.containers],
    }
    if view.init_containers:
        status["initContainerStatuses"] = [_container_status(c) for c in view.init_containers]
    if view.host_ip:
        status["hostIP"] = view.host_ip
        status["hostIPs"] = [{"ip": view.host_ip}]
    if view.pod_ip:
        status["podIP"] = view.pod_ip
        status["podIPs"] = [{"ip": view.pod_ip}]
    if view.start_time:
        status["startTime"] = view.start_time
    if view.failure:
        status["reason"], status["message"] = view.failure
    return status
