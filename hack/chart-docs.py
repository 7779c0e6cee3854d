#!/usr/bin/env python3
"""Generate the chart README's values table from the `# --` comments in values.yaml.

    python hack/chart-docs.py [--chart charts/kubetune] [--check]

The comment convention is helm-docs': a comment that starts with ``# --`` documents the key
right below it; further ``#`` lines before the key continue the description, and
``# @default -- text`` replaces the printed default. ``README.md.tmpl`` in the chart folder
holds the prose; its line ``<!-- values-table -->`` is replaced by the table.

Every value must be documented, by its own comment or an ancestor's: an undocumented leaf is
an error, as is a comment above a key that does not exist. ``--check`` exits 1 when README.md
differs from what would be generated (the chart tests run it too).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CHART = REPO / "charts" / "kubetune"
MARKER = "<!-- values-table -->"
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-/]+|\"[^\"]+\"):(?:\s|$)")
DOC_START = re.compile(r"^\s*# -- ?(?P<text>.*)$")
DEFAULT_OVERRIDE = re.compile(r"^\s*# @default -- ?(?P<text>.*)$")
COMMENT = re.compile(r"^\s*#(?P<text>.*)$")


class DocsError(ValueError):
    """values.yaml breaks the documentation convention; the message lists every problem."""


@dataclass(frozen=True)
class ValueDoc:
    path: str
    description: str
    default: str | None  # an @default override, printed as is


def parse_comments(text: str) -> list[ValueDoc]:
    """The documented keys of a values file, in file order, with their dotted paths."""
    docs: list[ValueDoc] = []
    stack: list[tuple[int, str]] = []
    description: list[str] | None = None
    default: str | None = None
    in_list_item_at: int | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        # Keys and comments inside list items belong to the list's value, not to the values tree.
        if in_list_item_at is not None and indent > in_list_item_at:
            continue
        if match := DOC_START.match(line):
            description, default = [match["text"].strip()], None
            continue
        if match := DEFAULT_OVERRIDE.match(line):
            default = match["text"].strip()
            continue
        if match := COMMENT.match(line):
            if description is not None:
                description.append(match["text"].strip())
            continue
        in_list_item_at = None
        if line.lstrip().startswith("- "):
            in_list_item_at = indent
            continue
        match = KEY_LINE.match(line)
        if not match:
            continue
        key = match["key"].strip('"')
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        if description is not None:
            path = ".".join(k for _, k in stack)
            docs.append(ValueDoc(path, " ".join(p for p in description if p), default))
        description, default = None, None
    return docs


def leaves(values: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every value; lists and empty maps are leaves."""
    if isinstance(values, dict) and values:
        out: list[str] = []
        for key, value in values.items():
            out += leaves(value, f"{prefix}.{key}" if prefix else str(key))
        return out
    return [prefix]


def lookup(values: Any, path: str) -> Any:
    node = values
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            raise KeyError(path)
        node = node[key]
    return node


def type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def check(values: Any, docs: list[ValueDoc]) -> list[str]:
    """Every problem with the documentation of ``values``; empty when all is well."""
    problems = []
    documented = {d.path for d in docs}
    for doc in docs:
        try:
            lookup(values, doc.path)
        except KeyError:
            problems.append(f"{doc.path}: documented but not a value")
        if not doc.description:
            problems.append(f"{doc.path}: empty description")
    for leaf in leaves(values):
        parts = leaf.split(".")
        if not any(".".join(parts[:i]) in documented for i in range(1, len(parts) + 1)):
            problems.append(f"{leaf}: not documented (add a `# --` comment above it)")
    return problems


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(values: Any, docs: list[ValueDoc]) -> str:
    rows = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for doc in docs:
        value = lookup(values, doc.path)
        default = doc.default or f"`{json.dumps(value, separators=(',', ':'))}`"
        rows.append(
            f"| `{doc.path}` | {type_name(value)} | {_cell(default)} | {_cell(doc.description)} |"
        )
    return "\n".join(rows)


def render(chart: Path) -> str:
    """The README of ``chart``; raises DocsError when a value is not documented."""
    text = (chart / "values.yaml").read_text(encoding="utf-8")
    values = yaml.safe_load(text) or {}
    docs = parse_comments(text)
    problems = check(values, docs)
    if problems:
        raise DocsError("values.yaml:\n  " + "\n  ".join(problems))
    template = (chart / "README.md.tmpl").read_text(encoding="utf-8")
    if MARKER not in template:
        raise DocsError(f"README.md.tmpl has no {MARKER} line")
    return template.replace(MARKER, table(values, docs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chart", type=Path, default=DEFAULT_CHART)
    parser.add_argument("--check", action="store_true", help="fail if README.md is stale")
    args = parser.parse_args(argv)
    try:
        readme = render(args.chart)
    except DocsError as err:
        print(err, file=sys.stderr)
        return 1
    target = args.chart / "README.md"
    if args.check:
        if not target.exists() or target.read_text(encoding="utf-8") != readme:
            print(f"{target} is stale; run `python hack/chart-docs.py`", file=sys.stderr)
            return 1
        return 0
    target.write_text(readme, encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
