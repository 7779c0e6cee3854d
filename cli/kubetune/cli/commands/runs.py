"""``kubetune list``, ``get NAME`` and ``describe NAME``: FineTuneJobs and their runs."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import click
import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from kubetune.cli.kube import FINETUNEJOBS
from kubetune.cli.session import Session
from kubetune.cli.views import (
    age,
    bold,
    condition_rows,
    duration,
    finetunejob_row,
    number,
    run_rows,
    spec_summary,
    styled_phase,
    version,
)

OUTPUT = click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json", "yaml"]),
    default="table",
    show_default=True,
    help="Output format (json/yaml: the objects as the API returns them).",
)


def _dump(objects: Any, fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(objects, indent=2))
    else:
        click.echo(yaml.safe_dump(objects, sort_keys=False), nl=False)


def _jobs_table(objects: list[dict[str, Any]], *, namespaces: bool) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    columns = ["NAME", "PHASE", "RUN", "PROGRESS", "LOSS", "EVAL LOSS", "ADAPTER", "AGE"]
    if namespaces:
        columns.insert(0, "NAMESPACE")
    for column in columns:
        table.add_column(column, no_wrap=True)
    for obj in objects:
        row = finetunejob_row(obj)
        cells: list[str | Text] = [
            row["name"],
            styled_phase(row["phase"]),
            row["run"],
            row["progress"],
            row["loss"],
            row["evalLoss"],
            row["adapter"],
            row["age"],
        ]
        if namespaces:
            cells.insert(0, row["namespace"])
        table.add_row(*cells)
    return table


@click.command("list")
@click.option("-A", "--all-namespaces", is_flag=True, help="FineTuneJobs of every namespace.")
@OUTPUT
@click.pass_obj
def list_(session: Session, /, *, all_namespaces: bool, output: str) -> None:
    """FineTuneJobs with phase, current run, progress, losses and latest adapter."""
    namespace = None if all_namespaces else session.namespace
    objects = session.kube.list_all(FINETUNEJOBS, namespace)
    if output != "table":
        _dump(objects, output)
        return
    if not objects:
        where = "any namespace" if all_namespaces else f"namespace {namespace}"
        session.err.print(f"no FineTuneJobs in {where}")
        return
    session.out.print(_jobs_table(objects, namespaces=all_namespaces))


@click.command()
@click.argument("name")
@OUTPUT
@click.pass_obj
def get(session: Session, /, *, name: str, output: str) -> None:
    """One FineTuneJob as a table row (or the whole object with -o json|yaml)."""
    obj = session.kube.get(FINETUNEJOBS, name, session.namespace)
    if output != "table":
        _dump(obj, output)
        return
    session.out.print(_jobs_table([obj], namespaces=False))


def _describe_spec(out: Console, obj: dict[str, Any]) -> None:
    meta, status = obj["metadata"], obj.get("status") or {}
    phase = styled_phase(status.get("phase") or "Pending")
    out.print(
        Text.assemble(bold(f"FineTuneJob {meta.get('namespace')}/{meta['name']}"), "  ", phase)
    )
    out.print(
        f"generation {meta.get('generation')} "
        f"(observed {status.get('observedGeneration', '-')}), "
        f"created {age(meta.get('creationTimestamp'))} ago"
    )
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for label, value in spec_summary(obj.get("spec") or {}):
        table.add_row(label, value)
    out.print(table)


def _describe_current(out: Console, current: dict[str, Any]) -> None:
    progress = current.get("progress") or {}
    phase = styled_phase(current.get("phase") or "-")
    out.print()
    out.print(Text.assemble(bold("Current run"), f" {current.get('name')}  ", phase))
    if progress:
        fields = [
            ("step", f"{progress.get('step', '-')}/{progress.get('totalSteps', '-')}"),
            ("epoch", number(progress.get("epoch"))),
            ("loss", number(progress.get("loss"))),
            ("eval loss", number(progress.get("evalLoss"))),
            ("tokens/s", number(progress.get("tokensPerSecond"))),
            ("ETA", duration(progress.get("etaSeconds"))),
            ("updated", age(progress.get("updatedAt")) + " ago"),
        ]
        out.print("  ".join(f"{k} {v}" for k, v in fields))
    if current.get("message"):
        out.print(f"message: {current['message']}")


def _table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def _describe_history(out: Console, obj: dict[str, Any]) -> None:
    conditions = condition_rows(obj)
    if conditions:
        rows = ([c["type"], c["status"], c["reason"], c["message"]] for c in conditions)
        out.print(_table("Conditions", ("TYPE", "STATUS", "REASON", "MESSAGE"), rows))
    runs = run_rows(obj)
    if runs:
        keys = ("run", "generation", "phase", "started", "duration", "trainLoss", "evalLoss")
        rows = ([*(r[k] for k in keys), r["adapter"]] for r in runs)
        columns = ("RUN", "GEN", "PHASE", "STARTED", "TOOK", "TRAIN LOSS", "EVAL LOSS", "ADAPTER")
        out.print(_table("Runs (newest first)", columns, rows))
    adapter = (obj.get("status") or {}).get("latestAdapter") or {}
    if adapter:
        out.print(
            Text.assemble(
                bold("Latest adapter"),
                f" {adapter.get('uri')}  version {version(adapter.get('digest'))}  "
                f"(run {adapter.get('run', '-')})",
            )
        )
        metrics = adapter.get("metrics") or {}
        if metrics:
            figures = "  ".join(f"{k} {number(v)}" for k, v in metrics.items())
            out.print(f"  {figures}")


@click.command()
@click.argument("name")
@click.pass_obj
def describe(session: Session, /, *, name: str) -> None:
    """NAME in full: spec summary, current run, conditions, run history, adapter, events."""
    namespace = session.namespace
    kube = session.kube
    obj = kube.get(FINETUNEJOBS, name, namespace)
    out = session.out
    _describe_spec(out, obj)
    current = (obj.get("status") or {}).get("currentRun") or {}
    if current:
        _describe_current(out, current)
    _describe_history(out, obj)
    events = kube.events_for(namespace, kind="FineTuneJob", name=name)
    if events:
        rows = (
            [
                age(e.get("lastTimestamp") or e.get("eventTime")),
                e.get("type", ""),
                e.get("reason", ""),
                e.get("message", ""),
            ]
            for e in events[-15:]
        )
        out.print(_table("Events", ("AGE", "TYPE", "REASON", "MESSAGE"), rows))
