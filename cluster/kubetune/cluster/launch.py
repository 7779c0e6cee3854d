"""What process to start for a container: argv, environment, working directory (pure).

Kubernetes semantics first (``command`` replaces the image ENTRYPOINT and drops its CMD,
``args`` replaces CMD, both with ``$(VAR)`` expansion), then localisation for a machine without
images: ``python``/``python3``/``/usr/local/bin/python3.11`` become the node agent's own
interpreter (the repository's virtual environment), init wrappers such as ``tini --`` are
dropped, and other programs are looked up on the host (console scripts in the venv first).
Env values and args that point into a volume mount are rewritten to host paths (``pathmap``).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from kubetune.cluster.envresolve import expand
from kubetune.cluster.images import ImageConfig
from kubetune.cluster.pathmap import map_path, rewrite_value

PYTHON_NAME = re.compile(r"^python(\d+(\.\d+)?)?$")
INIT_WRAPPERS = frozenset({"tini", "tini-static", "dumb-init", "catatonit"})
# Image ENV entries that describe the image's own file layout; on the host they would point
# at directories that do not exist, so the agent's values stand instead.
IMAGE_LAYOUT_ENV = frozenset(
    {"PATH", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "HOME"}
)


class LaunchError(ValueError):
    """The container cannot be started as specified (CreateContainerError)."""


@dataclass(frozen=True)
class LaunchPlan:
    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: str


def container_argv(
    *,
    image: ImageConfig,
    command: Sequence[str] | None,
    args: Sequence[str] | None,
    env: Mapping[str, str],
) -> list[str]:
    """ENTRYPOINT/CMD combined with the pod's command/args, Kubernetes-style."""
    if command:
        argv = [expand(c, env) for c in command] + [expand(a, env) for a in args or ()]
    elif args:
        argv = list(image.entrypoint) + [expand(a, env) for a in args]
    else:
        argv = list(image.entrypoint) + list(image.cmd)
    if not argv:
        raise LaunchError(
            "no command specified: the image's Dockerfile declares neither ENTRYPOINT nor CMD "
            "and the container sets no command"
        )
    return argv


def localise_argv(
    argv: Sequence[str],
    *,
    python: str,
    which: Callable[[str], str | None],
    is_executable: Callable[[str], bool],
) -> list[str]:
    """Replace the image's interpreter and tools by the host's."""
    out = list(argv)
    while out and posixpath.basename(out[0]) in INIT_WRAPPERS:
        out = out[1:]
        if out and out[0] == "--":
            out = out[1:]
    if not out:
        raise LaunchError(f"command {list(argv)} is only an init wrapper")
    program = out[0]
    base = posixpath.basename(program)
    if PYTHON_NAME.match(base):
        out[0] = python
    elif "/" in program:
        if not is_executable(program):
            out[0] = which(base) or program
    else:
        out[0] = which(program) or program
    return out


def working_dir(
    *, container_dir: str | None, image_dir: str, path_map: Mapping[str, str], default: str
) -> str:
    """A workingDir inside a volume is honoured; the image's own tree is the checkout."""
    wanted = container_dir or image_dir
    mapped = map_path(wanted, path_map) if wanted else None
    return mapped or default


def compose_env(
    *,
    defaults: Mapping[str, str],
    image_env: Sequence[tuple[str, str]],
    container_env: Mapping[str, str],
    forced: Mapping[str, str],
    path_map: Mapping[str, str],
    python_path_prefix: str = "",
) -> dict[str, str]:
    """defaults < image ENV < pod env < agent-forced values; paths into mounts rewritten."""
    env = dict(defaults)
    for key, value in image_env:
        if key not in IMAGE_LAYOUT_ENV:
            env[key] = rewrite_value(value, path_map)
    for key, value in container_env.items():
        env[key] = rewrite_value(value, path_map)
    env.update(forced)
    if python_path_prefix:
        existing = env.get("PYTHONPATH", "")
        env["PYTHONPATH"] = python_path_prefix + (":" + existing if existing else "")
    return env


def plan_launch(
    *,
    image: ImageConfig,
    container: Mapping[str, object],
    container_env: Mapping[str, str],
    env: Mapping[str, str],
    path_map: Mapping[str, str],
    python: str,
    default_cwd: str,
    which: Callable[[str], str | None],
    is_executable: Callable[[str], bool],
) -> LaunchPlan:
    """The full plan; ``container_env`` (unrewritten) feeds ``$(VAR)`` expansion."""
    command = container.get("command")
    args = container.get("args")
    argv = container_argv(
        image=image,
        command=[str(c) for c in command] if isinstance(command, list) else None,
        args=[str(a) for a in args] if isinstance(args, list) else None,
        env=container_env,
    )
    argv = localise_argv(argv, python=python, which=which, is_executable=is_executable)
    argv = [argv[0], *(rewrite_value(a, path_map) for a in argv[1:])]
    workdir = container.get("workingDir")
    cwd = working_dir(
        container_dir=str(workdir) if workdir else None,
        image_dir=image.workdir,
        path_map=path_map,
        default=default_cwd,
    )
    return LaunchPlan(argv=tuple(argv), env=dict(env), cwd=cwd)
