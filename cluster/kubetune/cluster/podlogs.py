"""Where the local cluster keeps container logs, and how to read them (``kubectl logs`` stand-in).

``kubectl logs`` asks the kubelet, which the local cluster does not have, so the node agent
writes each container's stdout and stderr (interleaved, plain text) to
``<logs root>/<namespace>_<pod>_<uid>/<container>/<restartCount>.log``, the kubelet's own
layout. Logs outlive the pod object until the cluster is torn down, so tests can read the
output of a pod that already finished. ``python -m kubetune.cluster logs`` prints them.
"""

from __future__ import annotations

from pathlib import Path


class LogNotFoundError(FileNotFoundError):
    """No log for that pod/container; the message lists what exists."""


def pod_log_dir(root: Path, *, namespace: str, name: str, uid: str) -> Path:
    return root / f"{namespace}_{name}_{uid}"


def container_log_path(
    root: Path, *, namespace: str, name: str, uid: str, container: str, restart: int
) -> Path:
    return pod_log_dir(root, namespace=namespace, name=name, uid=uid) / container / f"{restart}.log"


def _pod_dirs(root: Path, namespace: str, name: str) -> list[Path]:
    prefix = f"{namespace}_{name}_"
    dirs = [
        d
        for d in root.glob(f"{namespace}_{name}_*")
        if d.is_dir() and "_" not in d.name[len(prefix) :]
    ]
    return sorted(dirs, key=lambda d: d.stat().st_mtime)


def find_log(
    root: Path, *, namespace: str, name: str, container: str | None = None, previous: bool = False
) -> Path:
    """The newest pod instance's log of ``container`` (the only one when None)."""
    dirs = _pod_dirs(root, namespace, name)
    if not dirs:
        raise LogNotFoundError(f"no logs for pod {namespace}/{name} under {root}")
    pod_dir = dirs[-1]
    containers = sorted(d.name for d in pod_dir.iterdir() if d.is_dir())
    if container is None:
        if len(containers) != 1:
            raise LogNotFoundError(
                f"pod {namespace}/{name} has containers {containers}: name one of them"
            )
        container = containers[0]
    runs = sorted(
        (p for p in (pod_dir / container).glob("*.log") if p.stem.isdigit()),
        key=lambda p: int(p.stem),
    )
    if not runs:
        raise LogNotFoundError(
            f"no logs for container {container!r} of pod {namespace}/{name} (have {containers})"
        )
    if previous:
        if len(runs) < 2:
            raise LogNotFoundError(f"container {container!r} has not restarted: no previous log")
        return runs[-2]
    return runs[-1]


def read_log(
    root: Path,
    *,
    namespace: str,
    name: str,
    container: str | None = None,
    previous: bool = False,
    tail: int | None = None,
) -> str:
    text = find_log(
        root, namespace=namespace, name=name, container=container, previous=previous
    ).read_text(errors="replace")
    if tail is not None:
        text = "\n".join(text.splitlines()[-tail:])
    return text


def read_tail(path: Path, max_bytes: int = 16384) -> str:
    """The last ``max_bytes`` of a log file (for termination messages)."""
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
