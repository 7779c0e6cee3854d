"""Find processes by a marker in their environment (the local cluster's stand-in for cgroups).

A container runtime kills every process of a container through its cgroup; pod processes here
are plain host processes, and one that starts its own session escapes the process group. The
node agent therefore marks each container instance's environment (``KUBETUNE_CONTAINER``) and
the supervisor marks the whole cluster (``KUBETUNE_LOCAL_CLUSTER``); whoever cleans up looks
for the marker in ``/proc/<pid>/environ``, which children inherit.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def processes_with_env(name: str, value: str) -> list[int]:
    """Pids (other than ours) whose initial environment has ``name=value``."""
    needle = f"\0{name}={value}\0".encode()
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = b"\0" + (entry / "environ").read_bytes() + b"\0"
        except OSError:
            continue
        if needle in environ:
            found.append(int(entry.name))
    return sorted(found)


def kill_all(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
