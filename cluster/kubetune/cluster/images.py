"""Image reference -> entrypoint, read from the image's Dockerfile (local cluster node agent).

The local cluster has no registry and no container runtime, so an image is "pulled" by finding
the Dockerfile that builds it: ``<anything>/kubetune/<name>[:tag][@digest]`` maps to
``<images dir>/<name>/Dockerfile``. The FINAL stage's ENTRYPOINT, CMD, WORKDIR and ENV become the
container's defaults, exactly as ``docker build`` would record them, so the Dockerfiles and the
local cluster cannot drift apart. Parsing is pure (``parse_dockerfile``); ``ImageResolver`` adds
the file lookup and a cache keyed by the file's size and mtime.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

IMAGE_REF = re.compile(
    r"(?:^|/)kubetune/(?P<name>[a-z0-9]+(?:[._-][a-z0-9]+)*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>[a-z0-9]+:[a-fA-F0-9]+))?$"
)
_DEFAULT_SHELL = ("/bin/sh", "-c")
_VAR = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:[-+])?(?P<word>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)
_HEREDOC = re.compile(r"<<-?\s*[\"']?(?P<tag>[A-Za-z_][A-Za-z0-9_]*)[\"']?")


class ImageNotFoundError(LookupError):
    """No Dockerfile builds this image; the message says where we looked (ErrImagePull)."""


class DockerfileError(ValueError):
    """The Dockerfile cannot be interpreted; the message names the line."""


@dataclass(frozen=True)
class ImageConfig:
    """What ``docker inspect`` would report for the built image (the parts a pod needs)."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    workdir: str = "/"
    env: tuple[tuple[str, str], ...] = ()
    name: str = ""
    dockerfile: Path | None = None
    digest: str = ""

    @property
    def image_id(self) -> str:
        """A stable identifier for containerStatuses[].imageID: the Dockerfile's content hash."""
        return f"kubetune-local://{self.name}@sha256:{self.digest}"


@dataclass
class _Stage:
    name: str = ""
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    cmd_set_here: bool = False
    workdir: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    args: dict[str, str] = field(default_factory=dict)
    shell: tuple[str, ...] = _DEFAULT_SHELL

    def inherit(self, name: str) -> _Stage:
        return _Stage(
            name=name,
            entrypoint=self.entrypoint,
            cmd=self.cmd,
            workdir=self.workdir,
            env=dict(self.env),
            shell=self.shell,
        )


def image_name(ref: str) -> str | None:
    """``registry.example/kubetune/trainer:1.2`` -> ``trainer``; None for foreign images."""
    match = IMAGE_REF.search(ref.strip())
    return match.group("name") if match else None


def substitute(text: str, variables: Mapping[str, str]) -> str:
    """Dockerfile variable substitution: ``$V``, ``${V}``, ``${V:-default}``, ``${V:+alt}``."""

    def one(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare")
        value = variables.get(name)
        op = match.group("op")
        if op == ":-":
            return value if value else match.group("word")
        if op == ":+":
            return match.group("word") if value else ""
        return value if value is not None else ""

    return _VAR.sub(one, text)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join continuation lines, drop comments and heredoc bodies; keep 1-based line numbers."""
    escape = "\\"
    lines = text.splitlines()
    # Parser directives (only at the very top): we honour `escape`, ignore the rest.
    for raw in lines:
        directive = re.match(r"^#\s*(\w+)\s*=\s*(\S+)\s*$", raw)
        if not directive:
            break
        if directive.group(1).lower() == "escape":
            escape = directive.group(2)
    out: list[tuple[int, str]] = []
    current: list[str] = []
    start = 0
    heredoc: str | None = None
    for number, raw in enumerate(lines, start=1):
        if heredoc is not None:
            if raw.strip() == heredoc:
                heredoc = None
            continue
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and (not stripped or stripped.startswith("#")):
            continue  # comments and blank lines inside a continuation are dropped
        if not current:
            start = number
        if stripped.endswith(escape):
            current.append(stripped[: -len(escape)])
            continue
        current.append(stripped)
        logical = " ".join(part.strip() for part in current)
        current = []
        out.append((start, logical))
        tag = _HEREDOC.search(logical)
        if tag and logical.split(None, 1)[0].upper() in {"RUN", "COPY", "ADD"}:
            heredoc = tag.group("tag")
    if current:
        out.append((start, " ".join(current)))
    return out


def _exec_or_shell(value: str, shell: tuple[str, ...]) -> tuple[str, ...]:
    value = value.strip()
    if value.startswith("["):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(p, str) for p in parsed):
            return tuple(parsed)
    if not value:
        return ()
    return (*shell, value)


def _split_words(text: str) -> list[str]:
    """Split ENV/ARG arguments on whitespace, honouring double/single quotes and escapes."""
    words: list[str] = []
    buf: list[str] = []
    quote = ""
    in_word = False
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = ""
            elif ch == "\\" and quote == '"' and i + 1 < len(text):
                i += 1
                buf.append(text[i])
            else:
                buf.append(ch)
        elif ch in "\"'":
            quote = ch
            in_word = True
        elif ch == "\\" and i + 1 < len(text):
            i += 1
            buf.append(text[i])
            in_word = True
        elif ch.isspace():
            if in_word:
                words.append("".join(buf))
                buf, in_word = [], False
        else:
            buf.append(ch)
            in_word = True
        i += 1
    if in_word:
        words.append("".join(buf))
    return words


def _parse_env(rest: str, variables: Mapping[str, str], line: int) -> list[tuple[str, str]]:
    words = _split_words(rest)
    if not words:
        raise DockerfileError(f"line {line}: ENV needs at least one name")
    if "=" not in words[0]:
        # Legacy form `ENV NAME value with spaces`.
        name, _, value = rest.strip().partition(" ")
        return [(name, substitute(" ".join(_split_words(value)), variables))]
    pairs = []
    for word in words:
        name, sep, value = word.partition("=")
        if not sep:
            raise DockerfileError(f"line {line}: ENV {word!r} is not NAME=value")
        pairs.append((name, substitute(value, variables)))
    return pairs


def _from(rest: str, line: int, stages: list[_Stage], global_args: Mapping[str, str]) -> _Stage:
    words = [w for w in rest.split() if not w.startswith("--")]
    if not words:
        raise DockerfileError(f"line {line}: FROM without an image")
    base = substitute(words[0], global_args)
    alias = words[2] if len(words) >= 3 and words[1].upper() == "AS" else ""
    parent = next((s for s in stages if s.name and s.name == base.lower()), None)
    return parent.inherit(alias.lower()) if parent else _Stage(name=alias.lower())


def _arg(
    rest: str, stage: _Stage | None, global_args: dict[str, str], overrides: Mapping[str, str]
) -> None:
    for word in _split_words(rest):
        name, sep, default = word.partition("=")
        target = global_args if stage is None else stage.args
        if name in overrides:
            target[name] = overrides[name]
        elif sep:
            scope = global_args if stage is None else {**stage.args, **stage.env}
            target[name] = substitute(default, scope)
        elif stage is not None and name in global_args:
            target[name] = global_args[name]


def _apply(stage: _Stage, keyword: str, rest: str, line: int) -> None:
    """One instruction of a stage; those that do not shape the runtime config are skipped."""
    variables = {**stage.args, **stage.env}
    if keyword == "ENV":
        for name, value in _parse_env(rest, variables, line):
            stage.env[name] = value
            variables[name] = value
    elif keyword == "WORKDIR":
        stage.workdir = str(PurePosixPath(stage.workdir) / substitute(rest, variables))
    elif keyword == "SHELL":
        shell = _exec_or_shell(rest, ())
        if not rest.startswith("[") or not shell:
            raise DockerfileError(f"line {line}: SHELL must be a JSON array")
        stage.shell = shell
    elif keyword == "ENTRYPOINT":
        stage.entrypoint = _exec_or_shell(rest, stage.shell)
        if not stage.cmd_set_here:
            stage.cmd = ()  # docker: a new ENTRYPOINT resets an inherited CMD
    elif keyword == "CMD":
        stage.cmd = _exec_or_shell(rest, stage.shell)
        stage.cmd_set_here = True


def parse_dockerfile(text: str, *, build_args: Mapping[str, str] | None = None) -> ImageConfig:
    """The final stage's ENTRYPOINT, CMD, WORKDIR and ENV, with stage inheritance."""
    global_args: dict[str, str] = {}
    stages: list[_Stage] = []
    stage: _Stage | None = None
    overrides = dict(build_args or {})
    for line, logical in _logical_lines(text):
        keyword, _, rest = logical.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            stage = _from(rest, line, stages, global_args)
            stages.append(stage)
        elif keyword == "ARG":
            _arg(rest, stage, global_args, overrides)
        elif stage is None:
            raise DockerfileError(f"line {line}: {keyword} before the first FROM")
        else:
            _apply(stage, keyword, rest, line)
    if not stages:
        raise DockerfileError("no FROM instruction")
    final = stages[-1]
    return ImageConfig(
        entrypoint=final.entrypoint,
        cmd=final.cmd,
        workdir=final.workdir,
        env=tuple(final.env.items()),
    )


@dataclass
class ImageResolver:
    """Find and parse ``<dir>/<name>/Dockerfile`` in the first of ``search_dirs`` that has it."""

    search_dirs: Sequence[Path]
    _cache: dict[Path, tuple[tuple[int, int], ImageConfig]] = field(default_factory=dict)

    def dockerfile_for(self, ref: str) -> Path:
        name = image_name(ref)
        dirs = ", ".join(str(d) for d in self.search_dirs) or "(no images directory configured)"
        if name is None:
            raise ImageNotFoundError(
                f'image "{ref}" is not a kubetune image: the local cluster runs only images named '
                f"<registry>/kubetune/<name>[:tag], each built by <images dir>/<name>/Dockerfile "
                f"(searched {dirs})"
            )
        for directory in self.search_dirs:
            candidate = directory / name / "Dockerfile"
            if candidate.is_file():
                return candidate
        raise ImageNotFoundError(
            f'image "{ref}" maps to {name}/Dockerfile, which is in none of: {dirs}'
        )

    def resolve(self, ref: str) -> ImageConfig:
        path = self.dockerfile_for(ref)
        stat = path.stat()
        key = (stat.st_size, stat.st_mtime_ns)
        cached = self._cache.get(path)
        if cached and cached[0] == key:
            return cached[1]
        data = path.read_bytes()
        try:
            parsed = parse_dockerfile(data.decode("utf-8", errors="replace"))
        except DockerfileError as err:
            raise DockerfileError(f"{path}: {err}") from err
        config = replace(
            parsed,
            name=path.parent.name,
            dockerfile=path,
            digest=hashlib.sha256(data).hexdigest(),
        )
        self._cache[path] = (key, config)
        return config
