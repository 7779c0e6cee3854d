"""Progress and metrics history under the run folder: what the operator shows while training.

``progress.json`` holds the latest snapshot; ``metrics.jsonl`` one line per optimizer step.
Both are kept locally and uploaded whole (object stores cannot append), at most every
``interval_s`` seconds and whenever the loop forces it (checkpoints, evaluation, the end).
Only rank 0 reports. ``snapshot`` and ``eta_seconds`` are pure.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from pathlib import Path
from typing import Any

from kubetune.api import contract
from kubetune.trainer.storage import Store, join

log = logging.getLogger(__name__)


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def eta_seconds(*, done: int, total: int, seconds_per_step: float) -> float | None:
    if done >= total:
        return 0.0
    if seconds_per_step <= 0:
        return None
    return round((total - done) * seconds_per_step, 1)


def snapshot(
    *,
    step: int,
    total_steps: int,
    epoch: float,
    loss: float | None,
    eval_loss: float | None,
    tokens_per_second: float | None,
    eta: float | None,
    phase: str,
    resumed_from_step: int | None,
    updated_at: str,
) -> dict[str, Any]:
    """The ``progress.json`` document (camelCase, as the operator reads it)."""
    return {
        "phase": phase,
        "step": step,
        "totalSteps": total_steps,
        "epoch": round(epoch, 4),
        "loss": None if loss is None else round(loss, 6),
        "evalLoss": None if eval_loss is None else round(eval_loss, 6),
        "tokensPerSecond": None if tokens_per_second is None else round(tokens_per_second, 1),
        "etaSeconds": eta,
        "resumedFromStep": resumed_from_step,
        "updatedAt": updated_at,
    }


def eval_record(*, step: int, result: dict[str, Any]) -> dict[str, Any]:
    """A ``metrics.jsonl`` line for one evaluation on the validation set: it has ``evalLoss``
    (and ``perplexity``) where step lines have ``loss``, so readers tell them apart."""
    record: dict[str, Any] = {"step": step, "evalLoss": round(float(result["evalLoss"]), 6)}
    if "perplexity" in result:
        record["perplexity"] = round(float(result["perplexity"]), 4)
    record["time"] = now_rfc3339()
    return record


class ProgressReporter:
    """Rank 0's writer of ``progress.json`` and ``metrics.jsonl``."""

    def __init__(
        self, *, store: Store, run_uri: str, work_dir: Path, enabled: bool, interval_s: float
    ) -> None:
        self._store = store
        self._progress_uri = join(run_uri, contract.PROGRESS_FILE)
        self._metrics_uri = join(run_uri, contract.METRICS_FILE)
        self._metrics_path = work_dir / contract.METRICS_FILE
        self._enabled = enabled
        self._interval = interval_s
        self._last_upload = 0.0
        self._latest: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = []
        if enabled:
            self._write_history()  # a stale local file of an earlier attempt must not leak in

    def restore(self, *, up_to_step: int) -> None:
        """Continue the history of an earlier attempt, dropping steps after the checkpoint."""
        if not self._enabled:
            return
        previous = self._store.read_bytes_or_none(self._metrics_uri) or b""
        for line in previous.decode(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn write of an older attempt: skip the line, keep the rest
            if isinstance(record, dict) and int(record.get("step", 0)) <= up_to_step:
                self.history.append(record)
        self._write_history()

    def record(self, metrics: dict[str, Any]) -> None:
        if not self._enabled:
            return
        self.history.append(metrics)
        with self._metrics_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(metrics, sort_keys=True) + "\n")

    def update(self, progress: dict[str, Any], *, force: bool = False) -> None:
        if not self._enabled:
            return
        self._latest = progress
        if force or time.monotonic() - self._last_upload >= self._interval:
            self.flush()

    def flush(self) -> None:
        if not self._enabled or self._latest is None:
            return
        if self._metrics_path.is_file():
            self._store.upload_file(self._metrics_path, self._metrics_uri)
        self._store.write_bytes(
            self._progress_uri, json.dumps(self._latest, sort_keys=True).encode()
        )
        self._last_upload = time.monotonic()

    def _write_history(self) -> None:
        self._metrics_path.parent.mkdir(parents=True, exist_ok=True)
        with self._metrics_path.open("w", encoding="utf-8") as handle:
            for record in self.history:
                handle.write(json.dumps(record, sort_keys=True) + "\n")
