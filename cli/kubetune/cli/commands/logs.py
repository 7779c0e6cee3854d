"""``kubetune logs NAME``: the trainer's log of a run (the current one by default)."""

from __future__ import annotations

import click

from kubetune.api.constants import LABEL_FINETUNEJOB, LABEL_RUN
from kubetune.cli.errors import CliError
from kubetune.cli.kube import FINETUNEJOBS
from kubetune.cli.session import Session

TRAINER_CONTAINER = "trainer"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"


@click.command()
@click.argument("name")
@click.option("--run", metavar="RUN", help="Run name (default: the current run).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the trainer exits.")
@click.option("--tail", type=click.IntRange(min=0), help="Only the last N lines.")
@click.option(
    "--rank",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Node rank of a multi-node run (the Job's completion index).",
)
@click.pass_obj
def logs(
    session: Session, /, *, name: str, run: str | None, follow: bool, tail: int | None, rank: int
) -> None:
    """Print the trainer's log of NAME's current run (or --run), newest pod first."""
    namespace = session.namespace
    kube = session.kube
    obj = kube.get(FINETUNEJOBS, name, namespace)
    run = run or ((obj.get("status") or {}).get("currentRun") or {}).get("name")
    if not run:
        raise CliError(f"finetunejob {namespace}/{name} has not started a run yet")
    selector = f"{LABEL_FINETUNEJOB}={name},{LABEL_RUN}={run}"
    pods = kube.core("pods", namespace, selector=selector).get("items") or []
    pods = [
        p
        for p in pods
        if str((p["metadata"].get("annotations") or {}).get(COMPLETION_INDEX, "0")) == str(rank)
    ]
    if not pods:
        raise CliError(
            f"run {run} has no trainer pod of rank {rank} in {namespace} (not scheduled yet, "
            "or its Job was removed)"
        )
    pod = max(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""))
    for line in kube.pod_log(
        namespace, pod["metadata"]["name"], container=TRAINER_CONTAINER, follow=follow, tail=tail
    ):
        click.echo(line)
