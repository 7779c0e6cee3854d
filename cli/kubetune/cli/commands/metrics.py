"""``kubetune metrics NAME [--plot FILE.png]``: a run's loss curves from object storage."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from kubetune.api import contract
from kubetune.cli import metrics as curves_mod
from kubetune.cli.errors import CliError
from kubetune.cli.kube import FINETUNEJOBS
from kubetune.cli.session import Session
from kubetune.cli.views import sparkline


@click.command()
@click.argument("name")
@click.option("--run", metavar="RUN", help="Run name (default: the current run).")
@click.option(
    "--plot",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write train and eval loss against the step to this PNG file.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the points as JSON.")
@click.pass_obj
def metrics(
    session: Session, /, *, name: str, run: str | None, plot: Path | None, as_json: bool
) -> None:
    """Train and eval loss of NAME's current run (or --run), from its metrics.jsonl."""
    namespace = session.namespace
    obj = session.kube.get(FINETUNEJOBS, name, namespace)
    spec = obj.get("spec") or {}
    run = run or ((obj.get("status") or {}).get("currentRun") or {}).get("name")
    if not run:
        raise CliError(f"finetunejob {namespace}/{name} has not started a run yet")
    uri = curves_mod.run_uri(spec, run) + contract.METRICS_FILE
    raw = session.store(spec).read(uri)
    if raw is None:
        raise CliError(f"no metrics for run {run} yet: {uri} does not exist")
    curves = curves_mod.parse(raw)
    if curves.empty:
        raise CliError(f"{uri} has no loss records yet")
    if as_json:
        click.echo(
            json.dumps(
                {
                    "run": run,
                    "train": [{"step": s, "loss": v} for s, v in curves.train],
                    "eval": [{"step": s, "evalLoss": v} for s, v in curves.eval],
                },
                indent=2,
            )
        )
    else:
        table = Table(
            title=f"{namespace}/{name} run {run}", title_justify="left", header_style="bold"
        )
        for column in ("SERIES", "POINTS", "FIRST", "LAST", "BEST"):
            table.add_column(column, no_wrap=True)
        for row in curves_mod.summary(curves):
            table.add_row(*row)
        session.out.print(table)
        if curves.train:
            session.out.print(f"train loss {sparkline([v for _, v in curves.train], width=60)}")
    if plot is not None:
        curves_mod.plot(curves, plot, title=f"{namespace}/{name} run {run}")
        session.err.print(f"wrote {plot}")
