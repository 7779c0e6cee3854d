"""The Dockerfiles under images/, checked statically (no Docker engine is needed or used).

Covers: one Dockerfile per image name of the contract; each is multi-stage; every base image
is pinned (an exact version tag or a digest, never `latest` or a bare major version) and
stage references resolve; the final stage runs as the numeric non-root user 65532 and its
ENTRYPOINT is exec-form `["python", "-m", <module>]` with the module the contract expects
(and that module exists in the source tree once its component ships it); the operator image
installs only the `operator` extra and refuses torch; the trainer installs torch before
deepspeed, and deepspeed without build isolation, and runs offline (HF_*_OFFLINE=1);
serving installs the `serving` extra; every COPY source exists and survives .dockerignore,
which keeps virtualenvs, git data, tests and model files out of the build context.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kubetune.api import contract

REPO = Path(__file__).resolve().parents[3]
IMAGES = {
    contract.IMAGE_OPERATOR: "kubetune.operator",
    contract.IMAGE_TRAINER: "kubetune.trainer",
    contract.IMAGE_SERVING: "kubetune.serving.agent",
}
# Where each top-level component package lives (pyproject: one folder per component).
COMPONENT_ROOTS = ("operator", "trainer", "serving", "cluster")


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def of(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.of("ENV"):
            for key, value in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", instruction.args):
                values[key] = value
        return values


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def parse(path: Path) -> Dockerfile:
    """A small Dockerfile reader: continuation lines, comments, ARG defaults, stages."""
    logical: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # comments inside a continued instruction
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        logical.append((start, buffer + stripped))
        buffer = ""
    assert not buffer, f"{path}: dangling line continuation"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, text in logical:
        keyword, _, args = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", args, re.I)
            assert match, f"{path}:{number}: cannot read FROM {args}"
            stages.append(Stage(base=match[1], name=match[2]))
        elif not stages:
            assert keyword == "ARG", f"{path}:{number}: only ARG may precede FROM"
            name, _, default = args.partition("=")
            global_args[name.strip()] = default.strip()
        else:
            stages[-1].instructions.append(Instruction(keyword, args.strip(), number))
    return Dockerfile(global_args, stages)


def dockerfile(name: str) -> Dockerfile:
    return parse(REPO / "images" / name / "Dockerfile")


def resolve_base(image: Dockerfile, base: str) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: image.global_args.get(m[1], m[0]), base)


def dockerignore_patterns() -> list[tuple[bool, str]]:
    patterns = []
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            patterns.append((negated, line.lstrip("!").rstrip("/")))
    return patterns


def ignored(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern also matches below a folder."""
    result = False
    for negated, pattern in dockerignore_patterns():
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        candidates = [pattern, pattern.removeprefix("**/")]
        if any(fnmatch.fnmatchcase(p, c) for p in prefixes for c in candidates):
            result = not negated
    return result


# ------------------------------------------------------------------ every image


def test_one_dockerfile_per_contract_image() -> None:
    assert sorted(p.parent.name for p in (REPO / "images").glob("*/Dockerfile")) == sorted(IMAGES)


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_multi_stage_with_pinned_bases(name: str) -> None:
    image = dockerfile(name)
    assert len(image.stages) >= 2, "build in one stage, ship only the virtualenv"
    names = {s.name for s in image.stages if s.name}
    for stage in image.stages:
        base = resolve_base(image, stage.base)
        if base in names:
            continue
        assert "$" not in base, f"unresolved ARG in FROM {stage.base}"
        repository, _, tag = base.partition("@")[0].rpartition(":")
        digest = base.partition("@")[2]
        assert repository and tag, f"{base}: no tag"
        assert tag != "latest" and "latest" not in base
        if not digest:
            # An exact version (major.minor.patch) in the tag, not a floating "3" or "slim".
            assert re.search(r"\d+\.\d+\.\d+", tag), f"{base}: pin an exact version or a digest"
        else:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), base


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_final_stage_runs_python_module_as_non_root(name: str) -> None:
    final = dockerfile(name).final
    (user,) = final.of("USER")
    uid = user.args.split(":")[0]
    assert uid.isdigit() and int(uid) == 65532, "numeric non-root user for runAsNonRoot"
    entrypoints = final.of("ENTRYPOINT")
    assert len(entrypoints) == 1
    argv = json.loads(entrypoints[0].args)  # exec form: the local node agent reads it too
    assert argv == ["python", "-m", IMAGES[name]]
    assert final.of("CMD") == [], "arguments come from the pod spec"
    assert "/opt/venv/bin" in final.env()["PATH"], "python must resolve to the venv"
    assert user.line > max(i.line for i in final.of("RUN") or [Instruction("", "", 0)])


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_entrypoint_module_exists(name: str) -> None:
    module = IMAGES[name]
    parts = module.split(".")
    candidates = [REPO / root / Path(*parts) / "__main__.py" for root in COMPONENT_ROOTS] + [
        REPO / root / Path(*parts[:-1]) / f"{parts[-1]}.py" for root in COMPONENT_ROOTS
    ]
    package = [REPO / root / Path(*parts[:2]) for root in COMPONENT_ROOTS]
    assert any(p.is_dir() for p in package), f"component package of {module} is missing"
    if not any(c.is_file() for c in candidates):
        pytest.skip(f"{module} is not implemented yet; `python -m {module}` would fail")


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_copy_sources_reach_the_build_context(name: str) -> None:
    for stage in dockerfile(name).stages:
        for instruction in stage.of("COPY"):
            words = [w for w in instruction.args.split() if not w.startswith("--")]
            if "--from=" in instruction.args:
                continue
            for source in words[:-1]:
                path = source.rstrip("/")
                assert (REPO / path).exists(), f"COPY {source}: not in the repository"
                assert not ignored(path), f"COPY {source}: excluded by .dockerignore"


def test_dockerignore_keeps_the_context_small_and_clean() -> None:
    for path in (".venv/bin/python", ".git/config", "tests/conftest.py", "charts/kubetune"):
        assert ignored(path), path
    for path in ("operator/kubetune/api/crds.py", "pyproject.toml", "README.md"):
        assert not ignored(path), path
    assert ignored("trainer/kubetune/trainer/__pycache__/x.pyc")
    assert ignored("operator/model.safetensors")


# ------------------------------------------------------------------ per image


def pip_installs(name: str) -> list[str]:
    runs = [i.args for stage in dockerfile(name).stages for i in stage.of("RUN")]
    return [cmd for run in runs for cmd in run.split("&&") if "pip install" in cmd]


def test_operator_image_has_no_torch() -> None:
    installs = pip_installs("operator")
    assert any('".[operator]"' in cmd for cmd in installs)
    for cmd in installs:
        assert "torch" not in cmd and "trainer]" not in cmd and "serving]" not in cmd
    text = (REPO / "images" / "operator" / "Dockerfile").read_text()
    assert "torch must not be in the operator image" in text


def test_trainer_installs_deepspeed_after_torch_without_isolation() -> None:
    installs = pip_installs("trainer")
    torch = next(i for i, cmd in enumerate(installs) if "torch==" in cmd)
    deepspeed = next(i for i, cmd in enumerate(installs) if "deepspeed" in cmd)
    assert torch < deepspeed
    assert "--no-build-isolation" in installs[deepspeed]
    assert any('".[trainer]"' in cmd for cmd in installs)
    assert "cuda" in dockerfile("trainer").global_args["CUDA_IMAGE"]


@pytest.mark.parametrize("name", ["trainer", "serving"])
def test_model_code_runs_offline(name: str) -> None:
    env = dockerfile(name).final.env()
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        assert env.get(key) == "1", key


def test_serving_installs_the_serving_extra() -> None:
    assert any('".[serving]"' in cmd for cmd in pip_installs("serving"))
    text = (REPO / "images" / "serving" / "Dockerfile").read_text()
    assert "python -m kubetune.serving.engine" in text.replace('", "', " ")
