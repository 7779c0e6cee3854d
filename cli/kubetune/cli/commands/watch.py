"""``kubetune watch NAME``: a live progress bar with step, ETA and a loss sparkline.

The FineTuneJob's status (which the operator keeps current from the trainer's
``progress.json``) drives the bar; the loss history comes from the run's ``metrics.jsonl`` in
object storage when it is reachable, else from the losses seen in the status. On a terminal
the display redraws in place; otherwise (CI logs, pipes) it prints a line per change. The exit
code follows the outcome: 0 Succeeded, 1 Failed, 3 timed out.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import click
from rich.console import Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from kubetune.cli import metrics as curves_mod
from kubetune.cli.errors import EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, CliError
from kubetune.cli.kube import FINETUNEJOBS
from kubetune.cli.session import Session
from kubetune.cli.views import duration, number, parse_time, sparkline, verdict, version

DONE = ("Succeeded", "Failed")
HISTORY_EVERY_SECONDS = 5.0


@dataclass
class Snapshot:
    """What one poll of the FineTuneJob says, reduced to what the display shows."""

    name: str
    run: str
    phase: str
    settled: bool
    """The operator has acted on the latest spec and the phase is final."""
    step: int = 0
    total: int = 0
    eta: float | None = None
    loss: float | None = None
    eval_loss: float | None = None
    tokens_per_second: float | None = None
    message: str = ""
    reason: str = ""

    @classmethod
    def of(cls, obj: dict[str, Any]) -> Snapshot:
        status = obj.get("status") or {}
        current = status.get("currentRun") or {}
        progress = current.get("progress") or {}
        # A finished run keeps its final metrics instead of live progress.
        final = current.get("metrics") or {}
        phase = str(status.get("phase") or "Pending")
        observed = int(status.get("observedGeneration") or 0) >= int(obj["metadata"]["generation"])
        failed: dict[str, Any] = next(
            (
                c
                for c in status.get("conditions") or []
                if c.get("type") == "Failed" and c.get("status") == "True"
            ),
            {},
        )
        if not observed:
            # The spec changed and the operator has not acted on it yet: the status still
            # describes the previous run, which is not the one being watched.
            return cls(name=obj["metadata"]["name"], run="-", phase="Pending", settled=False)
        run = str(current.get("name") or "-")
        reason = str(current.get("reason") or "")
        message = str(current.get("message") or failed.get("message") or "")
        if failed.get("reason") == "InvalidSpec":
            # The spec itself was refused: no run started, the current run is an older one.
            run, reason, message = "-", "InvalidSpec", str(failed.get("message") or "")
        return cls(
            name=obj["metadata"]["name"],
            run=run,
            phase=phase,
            settled=phase in DONE,
            step=int(progress.get("step") or 0),
            total=int(progress.get("totalSteps") or 0),
            eta=progress.get("etaSeconds"),
            loss=progress.get("loss", final.get("trainLoss")),
            eval_loss=progress.get("evalLoss", final.get("evalLoss")),
            tokens_per_second=progress.get("tokensPerSecond"),
            message=message,
            reason=reason,
        )

    def line(self, losses: list[float]) -> str:
        parts = [f"{self.run if self.run != '-' else self.name} {self.phase}"]
        if self.total:
            parts.append(f"step {self.step}/{self.total} ({int(100 * self.step / self.total)}%)")
        if self.loss is not None:
            parts.append(f"loss {number(self.loss)}")
        if self.eval_loss is not None:
            parts.append(f"eval {number(self.eval_loss)}")
        if self.phase == "Running" and self.eta is not None:
            parts.append(f"ETA {duration(self.eta)}")
        if losses:
            parts.append(sparkline(losses, width=24))
        return "  ".join(parts)


@dataclass
class History:
    """Training losses of the followed run: metrics.jsonl when the store answers."""

    session: Session
    spec: dict[str, Any]
    losses: list[float] = field(default_factory=list)
    seen: list[float] = field(default_factory=list)
    unavailable: str = ""
    _fetched_at: float = 0.0
    _run: str = ""

    def update(self, snap: Snapshot, *, force: bool = False) -> list[float]:
        if snap.run != self._run:
            self._run, self.losses, self.seen = snap.run, [], []
        if snap.loss is not None and (not self.seen or self.seen[-1] != snap.loss):
            self.seen.append(float(snap.loss))
        due = force or time.monotonic() - self._fetched_at >= HISTORY_EVERY_SECONDS
        if snap.run != "-" and not self.unavailable and due:
            self._fetched_at = time.monotonic()
            try:
                store = self.session.store(self.spec)
                raw = store.read(curves_mod.run_uri(self.spec, snap.run) + "metrics.jsonl")
            except CliError as err:
                self.unavailable = err.message
            else:
                if raw:
                    self.losses = [loss for _, loss in curves_mod.parse(raw).train]
        # metrics.jsonl is uploaded every few seconds: between uploads the losses seen in the
        # status may be the longer history.
        return self.losses if len(self.losses) >= len(self.seen) else self.seen


def _panel(snap: Snapshot, losses: list[float]) -> Group:
    head = Text.assemble(
        (snap.name, "bold"), "  run ", (snap.run, "cyan"), "  ", (snap.phase, "bold")
    )
    rows: list[Any] = [head]
    if snap.total:
        eta = f"ETA {duration(snap.eta)}" if snap.phase == "Running" else ""
        bar = Table.grid(padding=(0, 2))
        bar.add_row(
            ProgressBar(total=snap.total, completed=snap.step, width=50),
            Text(f"step {snap.step}/{snap.total}  {100 * snap.step // snap.total}%  {eta}"),
        )
        rows.append(bar)
    figures = [
        f"loss {number(snap.loss)}",
        f"eval loss {number(snap.eval_loss)}",
    ]
    if snap.tokens_per_second:
        figures.append(f"{number(round(snap.tokens_per_second))} tokens/s")
    rows.append(Text("  ".join(figures)))
    if losses:
        rows.append(Text.assemble("loss ", (sparkline(losses, width=50), "magenta")))
    if snap.message and snap.phase not in ("Running", "Succeeded"):
        rows.append(Text(snap.message, style="yellow"))
    return Group(*rows)


class LineDisplay:
    """Not a terminal (CI logs, pipes): a timestamped line when something worth reading
    changed, at most every 5 seconds while only the step moves."""

    def __init__(self, session: Session) -> None:
        self.console = session.out
        self.printed = ""
        self.at = 0.0
        self.key: tuple[Any, ...] | None = None

    def show(self, snap: Snapshot, losses: list[float]) -> None:
        line = snap.line(losses)
        key = (snap.phase, snap.run, snap.eval_loss)
        due = snap.settled or key != self.key or time.monotonic() - self.at >= 5.0
        if line != self.printed and due:
            self.console.print(f"{datetime.now():%H:%M:%S}  {line}", soft_wrap=True)
            self.printed, self.at, self.key = line, time.monotonic(), key


def follow(
    session: Session, name: str, *, namespace: str, timeout: float | None, interval: float
) -> int:
    """Follow the FineTuneJob until its latest spec's run finishes; return the exit code."""
    kube = session.kube
    obj = kube.get(FINETUNEJOBS, name, namespace)
    history = History(session, dict(obj.get("spec") or {}))
    deadline = None if timeout is None else time.monotonic() + timeout
    snap = Snapshot.of(obj)
    with contextlib.ExitStack() as stack:
        if session.out.is_terminal:
            live = stack.enter_context(
                Live(_panel(snap, []), console=session.out, refresh_per_second=4)
            )

            def show(snap: Snapshot, losses: list[float]) -> None:
                live.update(_panel(snap, losses))

        else:
            show = LineDisplay(session).show
        while True:
            show(snap, history.update(snap, force=snap.settled))
            if snap.settled or (deadline is not None and time.monotonic() > deadline):
                break
            time.sleep(interval)
            obj = kube.get(FINETUNEJOBS, name, namespace)
            snap = Snapshot.of(obj)
    if history.unavailable:
        session.err.print(f"(loss history from object storage unavailable: {history.unavailable})")
    if not snap.settled:
        session.err.print(
            f"error: {namespace}/{name} is still {snap.phase} after {duration(timeout)} "
            "(--timeout)",
        )
        return EXIT_TIMEOUT
    return _verdict(session, obj, snap)


def _verdict(session: Session, obj: dict[str, Any], snap: Snapshot) -> int:
    status = obj.get("status") or {}
    current = status.get("currentRun") or {}
    started, finished = (
        parse_time(current.get("startTime")),
        parse_time(current.get("completionTime")),
    )
    took = f" in {duration((finished - started).total_seconds())}" if started and finished else ""
    if snap.phase == "Succeeded":
        adapter = status.get("latestAdapter") or {}
        figures = "  ".join(
            f"{key} {number(value)}" for key, value in (adapter.get("metrics") or {}).items()
        )
        session.out.print(
            verdict(
                True,
                f"{snap.run} Succeeded{took}: adapter {adapter.get('uri', '-')} "
                f"(version {version(adapter.get('digest'))})",
            ),
        )
        if figures:
            session.out.print(f"  {figures}")
        return EXIT_OK
    who = snap.run if snap.run != "-" else snap.name
    session.out.print(
        verdict(
            False,
            f"{who} Failed{took if snap.run != '-' else ''}"
            + (f" ({snap.reason})" if snap.reason else "")
            + (f": {snap.message}" if snap.message else ""),
        )
    )
    return EXIT_FAILED


@click.command()
@click.argument("name")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Give up (exit 3) after this many seconds.",
)
@click.option(
    "--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True, hidden=True
)
@click.pass_obj
def watch(session: Session, /, *, name: str, timeout: float | None, interval: float) -> None:
    """Follow NAME's current run: progress bar, step, ETA, loss and a loss sparkline.

    Returns when the run of the latest spec finishes: exit 0 when it Succeeded, 1 when it
    Failed, 3 when --timeout ran out first.
    """
    code = follow(session, name, namespace=session.namespace, timeout=timeout, interval=interval)
    if code:
        raise SystemExit(code)
