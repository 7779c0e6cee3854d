"""``cluster up``/``down``/``status``/``env``: the local cluster's lifecycle (make cluster-up).

``up`` starts the supervisor (``supervisor``) detached and waits until it reports ready; when
a healthy cluster is already up it only reports it. ``down`` stops the supervisor (SIGTERM,
then SIGKILL), kills any process still carrying this cluster's marker in its environment
(there should be none; ``down`` says so when it finds some), and removes the cluster state,
keeping ``logs/`` and the port/credential choices so the next ``up`` reuses them. Everything
lives in one state directory, ``.kubetune/`` at the repository root by default.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kubetune.cluster.agent import repo_root
from kubetune.cluster.procscan import kill_all, processes_with_env
from kubetune.cluster.supervisor import MARKER_ENV, StateFiles

KEEP_ON_DOWN = ("logs", "ports.json", "s3-credentials.json", ".lock")
UP_TIMEOUT = 300.0
DOWN_TIMEOUT = 60.0


def default_state_dir() -> Path:
    return Path(os.environ.get("KUBETUNE_STATE_DIR") or repo_root() / ".kubetune").resolve()


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def supervisor_alive(pid: int, state_dir: Path) -> bool:
    """The pid is alive AND is this state directory's supervisor (pids get reused)."""
    if pid <= 0:
        return False
    argv = _cmdline(pid)
    return "supervise" in argv and any(str(state_dir) in a for a in argv)


def marked_processes(state_dir: Path) -> list[int]:
    """Processes whose environment carries this cluster's marker (children, pods, leftovers)."""
    return processes_with_env(MARKER_ENV, str(state_dir))


@dataclass(frozen=True)
class Outcome:
    code: int
    message: str


def _summary(files: StateFiles) -> str:
    state = files.read(files.state)
    timings = state.get("timings") or {}
    return (
        f"  API server:    {state.get('apiserver', '?')}\n"
        f"  object store:  {state.get('s3Endpoint', '?')} (buckets models, datasets, adapters; "
        f"credentials in Secret kube-system/kubetune-s3)\n"
        f"  kubeconfig:    {files.kubeconfig}\n"
        f"  environment:   source {files.env}\n"
        f"  logs:          {files.logs}/ (pod logs: python -m kubetune.cluster logs NS/POD)\n"
        f"  started in:    {timings.get('total', '?')}s {timings}"
    )


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One ``up``/``down`` at a time per state directory (two makes in parallel, say)."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def up(
    state_dir: Path,
    *,
    images_dirs: list[Path],
    gpus: int,
    timeout: float = UP_TIMEOUT,
    agent_args: list[str] | None = None,
) -> Outcome:
    with _locked(state_dir.resolve()):
        return _up(
            StateFiles(state_dir),
            images_dirs=images_dirs,
            gpus=gpus,
            timeout=timeout,
            agent_args=agent_args or [],
        )


def _up(
    files: StateFiles,
    *,
    images_dirs: list[Path],
    gpus: int,
    timeout: float,
    agent_args: list[str],
) -> Outcome:
    state = files.read(files.state)
    pid = int(state.get("pid") or 0)
    if supervisor_alive(pid, files.root):
        if state.get("phase") == "ready":
            return Outcome(0, f"local cluster already up (supervisor pid {pid})\n{_summary(files)}")
        if state.get("phase") == "starting":
            return _wait_ready(files, pid, time.monotonic(), timeout)
        return Outcome(
            1,
            f"local cluster is {state.get('phase')}: {state.get('message', '')}\n"
            f"run `make cluster-down` (or python -m kubetune.cluster down) and try again",
        )
    _sweep(files.root)
    _reset(files.root)
    files.root.mkdir(parents=True, exist_ok=True)
    files.logs.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "kubetune.cluster",
        "supervise",
        f"--state-dir={files.root}",
        f"--gpus={gpus}",
        *(f"--images-dir={d}" for d in images_dirs),
        *(f"--agent-arg={a}" for a in agent_args),
    ]
    began = time.monotonic()
    with (files.logs / "supervisor.log").open("ab") as out:
        # A new session: the supervisor must outlive `make` and the terminal that ran it.
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            cwd=str(repo_root()),
            env={**os.environ, MARKER_ENV: str(files.root)},
        )
    files.update_state(phase="starting", pid=proc.pid, message="")
    return _wait_ready(files, proc.pid, began, timeout)


def _wait_ready(files: StateFiles, pid: int, began: float, timeout: float) -> Outcome:
    while time.monotonic() - began < timeout:
        state = files.read(files.state)
        phase = state.get("phase")
        if phase == "ready":
            took = time.monotonic() - began
            return Outcome(0, f"local cluster up in {took:.1f}s\n{_summary(files)}")
        if phase == "failed" or not _pid_running(pid):
            tail = _tail(files.logs / "supervisor.log")
            return Outcome(1, f"local cluster failed to start: {state.get('message', '')}\n{tail}")
        time.sleep(0.3)
    return Outcome(1, f"local cluster not ready after {timeout:.0f}s; see {files.logs}/")


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with Path(f"/proc/{pid}/stat").open() as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def _reset(root: Path) -> None:
    """Remove a previous cluster's state; keep logs and the port/credential choices."""
    if not root.is_dir():
        return
    for entry in root.iterdir():
        if entry.name in KEEP_ON_DOWN:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _sweep(root: Path) -> list[int]:
    """SIGKILL every process still marked with this cluster; the pids it found."""
    leftovers = marked_processes(root)
    kill_all(leftovers)
    return leftovers


def down(state_dir: Path, *, timeout: float = DOWN_TIMEOUT) -> Outcome:
    with _locked(state_dir.resolve()):
        return _down(StateFiles(state_dir), timeout=timeout)


def _down(files: StateFiles, *, timeout: float) -> Outcome:
    state = files.read(files.state)
    pid = int(state.get("pid") or 0)
    was_up = supervisor_alive(pid, files.root)
    if was_up:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_running(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _pid_running(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # its children die with it (PDEATHSIG)
            time.sleep(0.5)
    leftovers = _sweep(files.root)
    _reset(files.root)
    note = f"; killed {len(leftovers)} leftover process(es): {leftovers}" if leftovers else ""
    if was_up:
        return Outcome(0, f"local cluster down (no processes left){note}")
    return Outcome(0, f"local cluster already down{note}")


def status(state_dir: Path) -> Outcome:
    files = StateFiles(state_dir)
    state = files.read(files.state)
    pid = int(state.get("pid") or 0)
    if not supervisor_alive(pid, files.root):
        return Outcome(3, "local cluster is down")
    processes = marked_processes(files.root)
    text = (
        f"local cluster {state.get('phase')} (supervisor pid {pid}, {len(processes)} processes)"
        f"{': ' + str(state.get('message')) if state.get('message') else ''}\n{_summary(files)}"
    )
    return Outcome(0 if state.get("phase") == "ready" else 1, text)


def env(state_dir: Path) -> Outcome:
    files = StateFiles(state_dir)
    state = files.read(files.state)
    if not supervisor_alive(int(state.get("pid") or 0), files.root) or not files.env.exists():
        return Outcome(1, "# local cluster is down: run `make cluster-up`")
    return Outcome(0, files.env.read_text().rstrip("\n"))
