"""Pod status from container states (``podstatus``), restart decisions and probe thresholds.

Covers: the phase table (sandbox, init containers incl. sidecars, running/waiting/terminated
app containers under each restart policy, node rejection, deletion); conditions (types,
reasons, messages, lastTransitionTime kept while the status holds, readiness gates, explicit
nulls for the strategic merge); container statuses (waiting/running/terminated, lastState);
termination messages (file, FallbackToLogsOnError, size limits); restart decisions and
back-off with reset; probe defaults and threshold flips.
"""

from __future__ import annotations

from typing import Any

import pytest

from kubetune.cluster.podstatus import (
    ContainerView,
    PodView,
    Terminated,
    compute_phase,
    compute_status,
    termination_message,
)
from kubetune.cluster.probestate import ProbeTracker, probe_spec
from kubetune.cluster.restartpolicy import backoff_seconds, init_container_policy, should_restart

T0 = "2026-01-01T00:00:00Z"


def done(code: int) -> Terminated:
    return Terminated(
        exit_code=code, reason="Completed" if code == 0 else "Error", started_at=T0, finished_at=T0
    )


def c(state: str, code: int | None = None, *, ready: bool = False, **kw: Any) -> ContainerView:
    return ContainerView(
        name=kw.pop("name", "c"),
        image="kubetune/x",
        state=state,
        terminated=done(code) if code is not None and state == "terminated" else None,
        ready=ready,
        **kw,
    )


def view(*containers: ContainerView, policy: str = "Never", **kw: Any) -> PodView:
    return PodView(
        restart_policy=policy,
        sandbox_ready=kw.pop("sandbox_ready", True),
        containers=list(containers),
        **kw,
    )


RESTARTING = c("waiting", last_terminated=done(1), waiting_reason="CrashLoopBackOff")


@pytest.mark.parametrize(
    ("pod", "phase"),
    [
        (view(c("waiting"), sandbox_ready=False), "Pending"),
        (view(c("waiting")), "Pending"),
        (view(c("running")), "Running"),
        (view(c("running"), c("terminated", 0, name="d")), "Running"),
        (view(c("terminated", 0)), "Succeeded"),
        (view(c("terminated", 1)), "Failed"),
        (view(c("terminated", 0), c("terminated", 2, name="d")), "Failed"),
        (view(c("terminated", 1), policy="OnFailure"), "Running"),
        (view(c("terminated", 0), policy="OnFailure"), "Succeeded"),
        (view(c("terminated", 0), policy="Always"), "Running"),
        (view(RESTARTING, policy="Always"), "Running"),
        (view(c("running"), failure=("UnsupportedVolume", "no")), "Failed"),
        (view(c("terminated", 0), final=True, policy="Always"), "Succeeded"),
        (view(c("terminated", 143), final=True, policy="Always"), "Failed"),
        (view(c("running"), init_containers=[c("running", name="i")]), "Pending"),
        (view(c("waiting"), init_containers=[c("terminated", 1, name="i")]), "Failed"),
        (
            view(c("waiting"), init_containers=[c("terminated", 1, name="i")], policy="OnFailure"),
            "Pending",
        ),
        (view(c("running"), init_containers=[c("terminated", 0, name="i")]), "Running"),
        (
            view(
                c("terminated", 0),
                init_containers=[c("running", name="s", sidecar=True, started=True)],
            ),
            "Running",
        ),
        (
            view(
                c("terminated", 0),
                init_containers=[c("terminated", 143, name="s", sidecar=True)],
                initialized=True,
            ),
            "Succeeded",
        ),
        (view(c("waiting"), init_containers=[c("running", name="s", sidecar=True)]), "Pending"),
    ],
)
def test_phase(pod: PodView, phase: str) -> None:
    assert compute_phase(pod) == phase


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {cond["type"]: cond for cond in status["conditions"]}


def test_conditions_of_a_running_unready_pod_then_ready() -> None:
    status = compute_status(view(c("running"), c("running", ready=True, name="d")), now=T0)
    conds = conditions(status)
    assert conds["PodReadyToStartContainers"]["status"] == "True"
    assert conds["Initialized"]["status"] == "True"
    assert conds["Initialized"]["reason"] is None  # explicit null clears a stale reason
    assert conds["ContainersReady"] == {
        "type": "ContainersReady",
        "status": "False",
        "lastProbeTime": None,
        "lastTransitionTime": T0,
        "reason": "ContainersNotReady",
        "message": "containers with unready status: [c]",
    }
    later = compute_status(
        view(c("running", ready=True), c("running", ready=True, name="d")),
        now="2026-01-01T00:01:00Z",
        previous_conditions=status["conditions"],
    )
    after = conditions(later)
    assert after["Ready"]["status"] == "True"
    assert after["Ready"]["lastTransitionTime"] == "2026-01-01T00:01:00Z"
    assert after["Initialized"]["lastTransitionTime"] == T0  # unchanged status keeps its time


def test_terminal_pods_report_pod_completed_and_readiness_gates_block() -> None:
    conds = conditions(compute_status(view(c("terminated", 0)), now=T0))
    assert conds["Ready"]["reason"] == conds["ContainersReady"]["reason"] == "PodCompleted"
    assert conds["Ready"]["message"] is None
    gated = conditions(
        compute_status(view(c("running", ready=True), readiness_gates=["example.com/ok"]), now=T0)
    )
    assert gated["ContainersReady"]["status"] == "True"
    assert gated["Ready"]["status"] == "False"
    assert gated["Ready"]["reason"] == "ReadinessGatesNotReady"
    opened = conditions(
        compute_status(
            view(
                c("running", ready=True),
                readiness_gates=["example.com/ok"],
                foreign_conditions={"example.com/ok": "True"},
            ),
            now=T0,
        )
    )
    assert opened["Ready"]["status"] == "True"


def test_container_statuses_and_pod_fields() -> None:
    crashed = Terminated(
        exit_code=3, reason="Error", started_at=T0, finished_at=T0, message="boom", signal=None
    )
    status = compute_status(
        view(
            c(
                "waiting",
                waiting_reason="CrashLoopBackOff",
                waiting_message="back-off 1s",
                last_terminated=crashed,
                restart_count=2,
            ),
            init_containers=[c("terminated", 0, name="init")],
            policy="OnFailure",
            pod_ip="127.1.0.4",
            host_ip="127.0.0.1",
            start_time=T0,
        ),
        now=T0,
    )
    assert status["phase"] == "Running"
    (main,) = status["containerStatuses"]
    assert main["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 1s"}}
    assert main["lastState"]["terminated"]["exitCode"] == 3
    assert main["lastState"]["terminated"]["message"] == "boom"
    assert main["restartCount"] == 2
    assert status["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    assert (status["podIP"], status["podIPs"]) == ("127.1.0.4", [{"ip": "127.1.0.4"}])
    assert status["hostIPs"] == [{"ip": "127.0.0.1"}]
    failed = compute_status(view(c("waiting"), failure=("UnsupportedVolume", "hostPath")), now=T0)
    assert (failed["phase"], failed["reason"], failed["message"]) == (
        "Failed",
        "UnsupportedVolume",
        "hostPath",
    )


@pytest.mark.parametrize(
    ("policy", "file_text", "log", "code", "message"),
    [
        ("File", '{"ok": true}', "noise", 0, '{"ok": true}'),
        ("File", "", "the error", 1, ""),
        ("FallbackToLogsOnError", "", "a\nthe error\n", 1, "a\nthe error"),
        ("FallbackToLogsOnError", "", "all good", 0, ""),
        ("FallbackToLogsOnError", "from file", "log", 1, "from file"),
        ("File", "x" * 5000, "", 1, "x" * 4096),
        ("FallbackToLogsOnError", "", "\n".join(str(i) for i in range(200)), 1, None),
    ],
)
def test_termination_message(
    policy: str, file_text: str, log: str, code: int, message: str | None
) -> None:
    got = termination_message(policy=policy, file_text=file_text, log_tail=log, exit_code=code)
    if message is None:  # the log fallback keeps the last 80 lines
        assert got.splitlines() == [str(i) for i in range(120, 200)]
    else:
        assert got == message


@pytest.mark.parametrize(
    ("policy", "code", "restart"),
    [
        ("Always", 0, True),
        ("Always", 1, True),
        ("OnFailure", 0, False),
        ("OnFailure", 137, True),
        ("Never", 1, False),
    ],
)
def test_should_restart(policy: str, code: int, restart: bool) -> None:
    assert should_restart(policy, code) is restart


def test_backoff_doubles_caps_and_resets() -> None:
    delays = []
    failures = 0
    for _ in range(5):
        delay, failures = backoff_seconds(failures, base=1.0, cap=5.0)
        delays.append(delay)
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff_seconds(7, base=1.0, cap=5.0, ran_seconds=700.0) == (1.0, 1)


@pytest.mark.parametrize(
    ("pod", "container", "policy"),
    [("Never", None, "Never"), ("Always", None, "OnFailure"), ("Never", "Always", "Always")],
)
def test_init_container_policy(pod: str, container: str | None, policy: str) -> None:
    assert init_container_policy(pod, container) == policy


def test_probe_defaults_and_thresholds() -> None:
    spec = probe_spec("readiness", {"httpGet": {"port": 80}, "failureThreshold": 2})
    assert (spec.period, spec.timeout, spec.success_threshold, spec.failure_threshold) == (
        10.0,
        1.0,
        1,
        2,
    )
    ready = ProbeTracker.for_spec(spec)
    assert not ready.healthy
    assert ready.observe(True) and ready.healthy
    assert not ready.observe(False)  # one failure is below the threshold
    assert ready.observe(False) and not ready.healthy
    live = ProbeTracker.for_spec(probe_spec("liveness", {"exec": {}, "successThreshold": 3}))
    assert live.healthy and live.success_threshold == 1
    assert not live.observe(False) and not live.observe(False)
    assert live.observe(False) and not live.healthy and live.failed_out
