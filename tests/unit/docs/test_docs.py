"""The documentation: the site builds offline and strict, the reference pages match their
sources, and every command the docs show is a real one.

``kubetune`` lines are parsed by the command itself (an unknown command, option or choice
fails); ``make`` lines name existing targets; ``python -m`` lines name importable modules.
The quick start's commands are also *run* verbatim by the e2e suite (``e2e/test_cli.py``).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from kubetune.cli.main import main as kubetune

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
PAGES = [*sorted((REPO / "docs").rglob("*.md")), REPO / "README.md"]
TOOLS = ("kubetune", "make", "python")
OPERATORS = {"&&", "||", ";", "|", ">", ">>", "<"}
SHELL_BLOCK = re.compile(r"```(?:bash|sh|console)\n(.*?)```", re.DOTALL)


def shell_lines() -> list[tuple[str, str]]:
    """(page, command line) of every shell block, continuation lines joined."""
    found = []
    for page in PAGES:
        for block in SHELL_BLOCK.findall(page.read_text()):
            joined = re.sub(r"\\\n\s*", " ", block)
            for raw in joined.splitlines():
                line = raw.strip().removeprefix("$ ")
                if line and not line.startswith("#"):
                    found.append((str(page.relative_to(REPO)), line.split(" #")[0].strip()))
    return found


def split_commands(line: str) -> list[list[str]]:
    """The simple commands of a shell line; a redirection ends its command."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    out: list[list[str]] = [[]]
    skip = False
    for token in lexer:
        if token in OPERATORS:
            skip = token in {">", ">>", "<"}
            out.append([])
        elif not skip:
            out[-1].append(token)
    return [argv for argv in out if argv]


def commands(tool: str) -> list[tuple[str, list[str]]]:
    out = []
    for page, line in shell_lines():
        try:
            parts = split_commands(line)
        except ValueError:
            # A line of a multi-line quoted argument (``kubectl patch ... "$(...)"``); the
            # tools checked here never span lines that way.
            assert not line.startswith(TOOLS), f"{page}: cannot parse {line!r}"
            continue
        out += [(page, argv) for argv in parts if argv[0] == tool]
    return out


def unparsed(ctx: click.Context) -> list[str]:
    """A group context's subcommand and its arguments (Click 8.2+ keeps the subcommand in
    ``_protected_args``; Click 9 will keep everything in ``args``)."""
    return [*getattr(ctx, "_protected_args", []), *ctx.args]


def test_the_docs_show_commands_of_every_kind() -> None:
    assert len(commands("kubetune")) >= 30
    assert commands("make") and commands("python")


@pytest.mark.parametrize(
    ("page", "argv"), commands("kubetune"), ids=lambda v: " ".join(v) if isinstance(v, list) else v
)
def test_kubetune_commands_in_the_docs_parse(page: str, argv: list[str]) -> None:
    ctx = kubetune.make_context("kubetune", argv[1:])
    command: click.Command = kubetune
    args = unparsed(ctx)
    while isinstance(command, click.Group) and args:
        name, sub, args = command.resolve_command(ctx, args)
        assert sub is not None, f"{page}: unknown command {name}"
        ctx = sub.make_context(name or "", args, parent=ctx)
        command, args = sub, unparsed(ctx)
    assert not isinstance(command, click.Group), f"{page}: {' '.join(argv)} names no command"


def makefile_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([a-zA-Z][\w-]*):", text, flags=re.MULTILINE))


@pytest.mark.parametrize(
    ("page", "argv"), commands("make"), ids=lambda v: " ".join(v) if isinstance(v, list) else v
)
def test_make_targets_in_the_docs_exist(page: str, argv: list[str]) -> None:
    targets = [a for a in argv[1:] if "=" not in a and not a.startswith("-")]
    assert set(targets) <= makefile_targets(), f"{page}: {' '.join(argv)}"


@pytest.mark.parametrize(
    ("page", "argv"), commands("python"), ids=lambda v: " ".join(v) if isinstance(v, list) else v
)
def test_python_modules_in_the_docs_exist(page: str, argv: list[str]) -> None:
    if argv[1] == "-m":
        assert importlib.util.find_spec(argv[2]) is not None, f"{page}: no module {argv[2]}"
    else:
        assert (REPO / argv[1]).is_file(), f"{page}: no script {argv[1]}"


def test_reference_pages_match_crds_cli_and_chart() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "hack" / "docs-reference.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_site_builds_strict_and_offline(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).parent / "mkdocs"
    result = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    site = tmp_path / "site"
    for page in (
        "index.html",
        "quickstart.html",
        "reference/finetunejob.html",
        "reference/cli.html",
    ):
        assert (site / page).is_file(), page
    html = (site / "reference" / "finetunejob.html").read_text()
    assert "spec.hyperparameters.learningRate" in html
    index = (site / "index.html").read_text()
    assert "fonts.googleapis.com" not in index  # nothing is fetched when the page is opened
    assert (site / "assets" / "demo-loss.png").is_file()
