"""Image references -> Dockerfiles -> entrypoints (``kubetune.cluster.images``).

Covers: which references are kubetune images; exec and shell forms of ENTRYPOINT/CMD; SHELL;
ENTRYPOINT resetting an inherited CMD; stage inheritance (``FROM <stage>``) versus external
bases; ENV in both syntaxes with ARG/ENV substitution; relative WORKDIR; continuation lines,
comments and heredocs; errors that name the line; the resolver's search order, its
ErrImagePull-style message, its reload on change and its content-hash image ID; the
repository's own Dockerfiles parse to a python entrypoint.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune.cluster.images import (
    DockerfileError,
    ImageNotFoundError,
    ImageResolver,
    image_name,
    parse_dockerfile,
)

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("ref", "name"),
    [
        ("kubetune/trainer", "trainer"),
        ("kubetune/trainer:0.1.0", "trainer"),
        ("registry.example.com:5000/team/kubetune/serving:dev", "serving"),
        ("ghcr.io/acme/kubetune/operator@sha256:" + "a" * 64, "operator"),
        ("kubetune/test-box.v2:1", "test-box.v2"),
        ("busybox", None),
        ("docker.io/library/python:3.12", None),
        ("notkubetune/trainer", None),
        ("kubetune/Trainer", None),
    ],
)
def test_image_name(ref: str, name: str | None) -> None:
    assert image_name(ref) == name


@pytest.mark.parametrize(
    ("text", "entrypoint", "cmd"),
    [
        ('FROM x\nENTRYPOINT ["python", "-m", "app"]', ("python", "-m", "app"), ()),
        ("FROM x\nCMD python -m app --flag", (), ("/bin/sh", "-c", "python -m app --flag")),
        ('FROM x\nSHELL ["/bin/bash", "-lc"]\nCMD echo hi', (), ("/bin/bash", "-lc", "echo hi")),
        ('FROM x\nCMD ["a"]\nENTRYPOINT ["b"]', ("b",), ("a",)),
        ('FROM x AS base\nCMD ["a"]\nFROM base\nENTRYPOINT ["b"]', ("b",), ()),
        ('FROM x AS base\nENTRYPOINT ["b"]\nFROM base\nCMD ["c"]', ("b",), ("c",)),
        ('FROM x AS build\nENTRYPOINT ["b"]\nFROM python:3\nCMD ["c"]', (), ("c",)),
        ("FROM x\nENTRYPOINT [not json", ("/bin/sh", "-c", "[not json"), ()),
    ],
)
def test_entrypoint_and_cmd(text: str, entrypoint: tuple[str, ...], cmd: tuple[str, ...]) -> None:
    config = parse_dockerfile(text)
    assert (config.entrypoint, config.cmd) == (entrypoint, cmd)


DOCKERFILE = """# syntax=docker/dockerfile:1
ARG BASE=python:3.12
FROM ${BASE} AS build
ENV SHOULD_NOT=leak
FROM ${BASE}
ARG HOME_DIR=/srv
ENV A=1 \\
    # a comment inside a continuation
    B="two words"
ENV C=${A}-${MISSING:-dflt}-${A:+set} \\
    A=2 D=${A}
ENV LEGACY value with spaces
RUN <<SCRIPT
ENV NOT=an-instruction
SCRIPT
WORKDIR ${HOME_DIR}
WORKDIR app
ENTRYPOINT ["python"]
"""


def test_env_arg_workdir_and_line_handling() -> None:
    config = parse_dockerfile(DOCKERFILE)
    assert dict(config.env) == {
        "A": "2",
        "B": "two words",
        "C": "1-dflt-set",
        "D": "1",  # docker: one ENV instruction substitutes the values from before it
        "LEGACY": "value with spaces",
    }
    assert config.workdir == "/srv/app"
    assert config.entrypoint == ("python",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ENV A=1", "line 1: ENV before the first FROM"),
        ("FROM x\nSHELL sh -c", "line 2: SHELL must be a JSON array"),
        ("# only a comment", "no FROM instruction"),
        ("FROM x\nENV A=1 broken", "line 2: ENV 'broken' is not NAME=value"),
    ],
)
def test_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=message):
        parse_dockerfile(text)


def test_resolver_search_order_id_and_not_found(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for base, cmd in ((first, "first"), (second, "second")):
        (base / "box").mkdir(parents=True)
        (base / "box" / "Dockerfile").write_text(f'FROM x\nCMD ["{cmd}"]\n')
    (second / "other").mkdir()
    (second / "other" / "Dockerfile").write_text('FROM x\nCMD ["other"]\n')
    resolver = ImageResolver([first, second])
    box = resolver.resolve("reg/kubetune/box:1")
    assert box.cmd == ("first",)
    assert box.image_id.startswith("kubetune-local://box@sha256:")
    assert resolver.resolve("kubetune/other").cmd == ("other",)
    (first / "box" / "Dockerfile").write_text('FROM x\nCMD ["changed!"]\n')
    assert resolver.resolve("kubetune/box").cmd == ("changed!",)
    with pytest.raises(ImageNotFoundError, match="maps to missing/Dockerfile"):
        resolver.resolve("kubetune/missing")
    with pytest.raises(ImageNotFoundError, match="not a kubetune image"):
        resolver.resolve("busybox")


@pytest.mark.parametrize("name", ["operator", "trainer", "serving"])
def test_repository_images_start_python_modules(name: str) -> None:
    if not (REPO / "images" / name / "Dockerfile").exists():
        pytest.skip(f"images/{name}/Dockerfile not written yet")
    config = ImageResolver([REPO / "images"]).resolve(f"kubetune/{name}:dev")
    argv = (*config.entrypoint, *config.cmd)
    assert argv[0] in ("python", "python3")
    assert argv[1] == "-m"
    assert argv[2].startswith(f"kubetune.{name}")
