"""From container spec to process: path maps and launch plans (``pathmap``, ``launch``).

Covers: longest-prefix path mapping and its boundaries; rewriting of env values and args
(whole paths, ``--flag=/path``, ``NAME=/path``, ``/a:/b`` lists, URLs untouched); Kubernetes
command/args semantics over ENTRYPOINT/CMD with ``$(VAR)`` expansion; interpreter and tool
localisation (python variants, init wrappers, PATH lookup); env precedence (defaults < image
ENV < pod env < agent values, image layout variables dropped, PYTHONPATH prefix); working
directories inside volumes.
"""

from __future__ import annotations

import pytest

from kubetune.cluster.images import ImageConfig
from kubetune.cluster.launch import (
    LaunchError,
    compose_env,
    container_argv,
    localise_argv,
    plan_launch,
)
from kubetune.cluster.pathmap import build_path_map, decode, encode, map_path, rewrite_value

PATHS = build_path_map(
    mounts=[
        ("/etc/kubetune/", "/h/cfg"),
        ("/data", "/h/data"),
        ("/data/models", "/h/models"),
    ],
    termination_path="/dev/termination-log",
    termination_file="/h/term",
)


@pytest.mark.parametrize(
    ("path", "host"),
    [
        ("/etc/kubetune", "/h/cfg"),
        ("/etc/kubetune/run-config.json", "/h/cfg/run-config.json"),
        ("/etc/kubetune2/x", None),
        ("/data/x", "/h/data/x"),
        ("/data/models/m/config.json", "/h/models/m/config.json"),
        ("/data/models2", "/h/data/models2"),
        ("/dev/termination-log", "/h/term"),
        ("/tmp/x", None),
        ("relative/data", None),
        ("/data/./x/../y", "/h/data/y"),
    ],
)
def test_map_path(path: str, host: str | None) -> None:
    assert map_path(path, PATHS) == host


@pytest.mark.parametrize(
    ("value", "rewritten"),
    [
        ("/etc/kubetune/run-config.json", "/h/cfg/run-config.json"),
        ("--config=/etc/kubetune/run-config.json", "--config=/h/cfg/run-config.json"),
        ("KUBETUNE_RUN=/data/run", "KUBETUNE_RUN=/h/data/run"),
        ("/data/a:/srv/b", "/h/data/a:/srv/b"),
        ("s3://bucket/data/x", "s3://bucket/data/x"),
        ("http://host/data", "http://host/data"),
        ("--config", "--config"),
        ("/srv/elsewhere", "/srv/elsewhere"),
        ("a=b=/data", "a=b=/data"),
    ],
)
def test_rewrite_value(value: str, rewritten: str) -> None:
    assert rewrite_value(value, PATHS) == rewritten


def test_path_map_round_trips_through_json() -> None:
    assert decode(encode(PATHS)) == PATHS
    assert decode("") == {}
    with pytest.raises(ValueError, match="JSON object"):
        decode("[1]")


IMAGE = ImageConfig(entrypoint=("python", "-m", "app"), cmd=("--serve",), workdir="/app")


@pytest.mark.parametrize(
    ("command", "args", "argv"),
    [
        (None, None, ["python", "-m", "app", "--serve"]),
        (None, ["--once", "$(MODE)"], ["python", "-m", "app", "--once", "fast"]),
        (["sh", "-c"], None, ["sh", "-c"]),
        (["run", "$(MODE)"], ["$$(MODE)", "$(NOPE)"], ["run", "fast", "$(MODE)", "$(NOPE)"]),
    ],
)
def test_command_and_args_semantics(
    command: list[str] | None, args: list[str] | None, argv: list[str]
) -> None:
    assert container_argv(image=IMAGE, command=command, args=args, env={"MODE": "fast"}) == argv


def test_no_command_at_all_is_an_error() -> None:
    with pytest.raises(LaunchError, match="neither ENTRYPOINT nor CMD"):
        container_argv(image=ImageConfig(), command=None, args=None, env={})


def which(name: str) -> str | None:
    return {"kubetune-operator": "/venv/bin/kubetune-operator", "sh": "/bin/sh"}.get(name)


@pytest.mark.parametrize(
    ("argv", "localised"),
    [
        (["python", "-c", "x"], ["/venv/bin/python", "-c", "x"]),
        (["python3.12", "-m", "m"], ["/venv/bin/python", "-m", "m"]),
        (["/usr/local/bin/python3", "-m", "m"], ["/venv/bin/python", "-m", "m"]),
        (["tini", "--", "python", "-m", "m"], ["/venv/bin/python", "-m", "m"]),
        (["/usr/bin/dumb-init", "python3"], ["/venv/bin/python"]),
        (["/opt/venv/bin/kubetune-operator"], ["/venv/bin/kubetune-operator"]),
        (["sh", "-c", "echo"], ["/bin/sh", "-c", "echo"]),
        (["/bin/true"], ["/bin/true"]),
        (["not-installed"], ["not-installed"]),
    ],
)
def test_localise_argv(argv: list[str], localised: list[str]) -> None:
    out = localise_argv(
        argv,
        python="/venv/bin/python",
        which=which,
        is_executable=lambda p: p == "/bin/true",
    )
    assert out == localised


def test_env_precedence() -> None:
    env = compose_env(
        defaults={"PATH": "/venv/bin:/usr/bin", "HOME": "/h/root", "A": "default"},
        image_env=[
            ("PATH", "/opt/venv/bin:/usr/bin"),
            ("A", "image"),
            ("B", "image"),
            ("HOME", "/tmp"),
        ],
        container_env={"B": "pod", "CFG": "/data/x", "PYTHONPATH": "/srv/lib"},
        forced={"KUBETUNE_POD_IP": "127.1.0.2"},
        path_map=PATHS,
        python_path_prefix="/shim",
    )
    assert env == {
        "PATH": "/venv/bin:/usr/bin",
        "HOME": "/h/root",
        "A": "image",
        "B": "pod",
        "CFG": "/h/data/x",
        "PYTHONPATH": "/shim:/srv/lib",
        "KUBETUNE_POD_IP": "127.1.0.2",
    }


def test_plan_rewrites_args_and_honours_a_volume_working_dir() -> None:
    plan = plan_launch(
        image=IMAGE,
        container={"args": ["--config=/etc/kubetune/c.json", "/data/out"], "workingDir": "/data"},
        container_env={},
        env={"X": "1"},
        path_map=PATHS,
        python="/venv/bin/python",
        default_cwd="/repo",
        which=which,
        is_executable=lambda p: False,
    )
    assert plan.argv == (
        "/venv/bin/python",
        "-m",
        "app",
        "--config=/h/cfg/c.json",
        "/h/data/out",
    )
    assert plan.cwd == "/h/data"
    image_dir = plan_launch(
        image=IMAGE,
        container={},
        container_env={},
        env={},
        path_map=PATHS,
        python="/venv/bin/python",
        default_cwd="/repo",
        which=which,
        is_executable=lambda p: False,
    )
    assert image_dir.cwd == "/repo"  # the image's own WORKDIR is the checkout
