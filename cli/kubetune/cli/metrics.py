"""Loss curves from a run's ``metrics.jsonl``: parsing and summary (pure), and the PNG plot.

Step lines carry ``loss``; evaluation lines carry ``evalLoss`` (see ``kubetune.api.contract``).
A torn last line (the trainer rewrites the file while we read it) is skipped, not an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Curves:
    train: list[tuple[int, float]] = field(default_factory=list)
    eval: list[tuple[int, float]] = field(default_factory=list)
    tokens_per_second: float | None = None

    @property
    def empty(self) -> bool:
        return not self.train and not self.eval


def run_uri(spec: dict[str, Any], run: str) -> str:
    return f"{str(spec['output']['uri']).rstrip('/')}/{run}/"


def parse(data: bytes) -> Curves:
    curves = Curves()
    for line in data.decode(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            continue
        step = record["step"]
        if isinstance(record.get("loss"), int | float):
            curves.train.append((step, float(record["loss"])))
            if isinstance(record.get("tokensPerSecond"), int | float):
                curves.tokens_per_second = float(record["tokensPerSecond"])
        elif isinstance(record.get("evalLoss"), int | float):
            curves.eval.append((step, float(record["evalLoss"])))
    return curves


def summary(curves: Curves) -> list[tuple[str, str, str, str, str]]:
    """(series, points, first, last, best) for each non-empty series."""
    rows = []
    for name, points in (("train loss", curves.train), ("eval loss", curves.eval)):
        if not points:
            continue
        best = min(points, key=lambda p: p[1])
        rows.append(
            (
                name,
                str(len(points)),
                f"{points[0][1]:.4f} (step {points[0][0]})",
                f"{points[-1][1]:.4f} (step {points[-1][0]})",
                f"{best[1]:.4f} (step {best[0]})",
            )
        )
    return rows


def plot(curves: Curves, path: Path, *, title: str) -> None:
    """Write train and eval loss against the step as a PNG."""
    import matplotlib  # noqa: PLC0415 - only `metrics --plot` pays for matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # noqa: PLC0415

    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=120)
    try:
        if curves.train:
            steps, losses = zip(*curves.train, strict=True)
            axes.plot(steps, losses, label="train loss", color="#1f77b4", linewidth=1.4)
        if curves.eval:
            steps, losses = zip(*curves.eval, strict=True)
            axes.plot(steps, losses, label="eval loss", color="#d62728", marker="o", linewidth=1.4)
        axes.set_xlabel("optimizer step")
        axes.set_ylabel("loss")
        axes.set_title(title)
        axes.grid(True, alpha=0.3)
        axes.legend()
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png")
    finally:
        plt.close(figure)
