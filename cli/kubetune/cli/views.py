"""How runs, adapters and numbers are shown (pure: dicts in, strings and rows out)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.text import Text

SPARKS = "▁▂▃▄▅▆▇█"
PHASE_STYLES = {
    "Succeeded": "green",
    "Failed": "red",
    "Running": "cyan",
    "Pending": "yellow",
    "Suspended": "yellow",
    "Ready": "green",
    "Degraded": "red",
    "Blocked": "yellow",
}


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def duration(seconds: float | None) -> str:
    """``75`` -> ``1m15s``; ``None`` -> ``-``."""
    if seconds is None or seconds < 0 or math.isnan(seconds):
        return "-"
    total = round(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def age(timestamp: str | None, now: datetime | None = None) -> str:
    """Time since an RFC 3339 timestamp, kubectl style (``5m``, ``3h``, ``2d``)."""
    when = parse_time(timestamp)
    if when is None:
        return "-"
    seconds = ((now or datetime.now(UTC)) - when).total_seconds()
    if seconds < 120:
        return f"{max(0, int(seconds))}s"
    if seconds < 7200:
        return f"{int(seconds // 60)}m"
    if seconds < 172800:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds // 86400)}d"


def number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.{digits - 1}e}"
    if abs(value) >= 1:
        return f"{value:.{digits}g}"
    return f"{value:.{digits}f}".rstrip("0").rstrip(".")


def version(digest: str | None) -> str:
    """``sha256:3f2a9c1d4e5b...`` -> ``3f2a9c1d4e5b`` (the name agents load a version under)."""
    if not digest:
        return "-"
    return digest.removeprefix("sha256:")[:12]


def progress_text(progress: Mapping[str, Any] | None) -> str:
    if not progress or not progress.get("totalSteps"):
        return "-"
    step, total = int(progress.get("step") or 0), int(progress["totalSteps"])
    percent = progress.get("percent")
    if percent is None:
        percent = int(100 * step / total) if total else 0
    return f"{step}/{total} ({percent}%)"


def sparkline(values: Sequence[float], width: int = 40) -> str:
    """Unicode blocks for a series, averaged into at most ``width`` buckets."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return ""
    if len(finite) > width:
        size = len(finite) / width
        finite = [
            sum(chunk) / len(chunk)
            for i in range(width)
            if (chunk := finite[int(i * size) : max(int(i * size) + 1, int((i + 1) * size))])
        ]
    low, high = min(finite), max(finite)
    span = high - low
    if span == 0:
        return SPARKS[len(SPARKS) // 2] * len(finite)
    return "".join(
        SPARKS[min(len(SPARKS) - 1, int((v - low) / span * len(SPARKS)))] for v in finite
    )


def phase_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("status") or {}).get("phase") or "Pending")


def styled_phase(phase: str) -> Text:
    return Text(phase, style=PHASE_STYLES.get(phase, ""))


def bold(text: str) -> Text:
    return Text(text, style="bold")


def verdict(ok: bool, message: str) -> Text:
    """``✓ message`` in green or ``✗ message`` in red (the consoles never parse markup: text
    from datasets and the cluster is printed as it is)."""
    return Text.assemble(("✓", "green") if ok else ("✗", "red"), " ", message)


def finetunejob_row(obj: Mapping[str, Any], *, now: datetime | None = None) -> dict[str, str]:
    """One line of ``kubetune list``: the job, its current run (live losses while it trains,
    its final metrics once it finished) and its latest adapter."""
    status = obj.get("status") or {}
    current = status.get("currentRun") or {}
    progress = current.get("progress") or {}
    final = current.get("metrics") or {}
    return {
        "namespace": obj["metadata"].get("namespace", ""),
        "name": obj["metadata"]["name"],
        "phase": phase_of(obj),
        "run": current.get("name") or "-",
        "progress": progress_text(progress),
        "loss": number(progress.get("loss", final.get("trainLoss"))),
        "evalLoss": number(progress.get("evalLoss", final.get("evalLoss"))),
        "adapter": version((status.get("latestAdapter") or {}).get("digest")),
        "age": age(obj["metadata"].get("creationTimestamp"), now),
    }


def run_rows(obj: Mapping[str, Any]) -> list[dict[str, str]]:
    """The run history (newest first) with phases, times, metrics and adapters."""
    status = obj.get("status") or {}
    runs = list(status.get("runs") or [])
    current = status.get("currentRun") or {}
    if current.get("name") and all(r.get("name") != current["name"] for r in runs):
        runs.insert(0, current)
    rows = []
    for run in runs:
        metrics = run.get("metrics") or (run.get("adapter") or {}).get("metrics") or {}
        started, finished = parse_time(run.get("startTime")), parse_time(run.get("completionTime"))
        took = (finished - started).total_seconds() if started and finished else None
        rows.append(
            {
                "run": str(run.get("name", "-")),
                "generation": str(run.get("generation", "-")),
                "phase": str(run.get("phase") or "-"),
                "started": age(run.get("startTime")),
                "duration": duration(took),
                "trainLoss": number(metrics.get("trainLoss")),
                "evalLoss": number(metrics.get("evalLoss")),
                "adapter": version((run.get("adapter") or {}).get("digest")),
                "reason": str(run.get("reason") or ""),
            }
        )
    return rows


def condition_rows(obj: Mapping[str, Any]) -> list[dict[str, str]]:
    """Conditions; the message only where the condition holds (False ones repeat it)."""
    return [
        {
            "type": str(c.get("type")),
            "status": str(c.get("status")),
            "reason": str(c.get("reason") or ""),
            "message": str(c.get("message") or "") if c.get("status") == "True" else "",
            "since": str(c.get("lastTransitionTime") or ""),
        }
        for c in (obj.get("status") or {}).get("conditions") or []
    ]


def spec_summary(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The fields a reader checks first, as (label, value)."""
    lora = spec.get("lora") or {}
    hp = spec.get("hyperparameters") or {}
    res = spec.get("resources") or {}
    dataset = spec.get("dataset") or {}
    method = str(spec.get("method", "lora"))
    if method != "full" and lora:
        method += f" r{lora.get('rank', '?')} alpha {lora.get('alpha', '?')}"
    rows = [
        ("base model", str((spec.get("baseModel") or {}).get("uri", "-"))),
        ("train", str(dataset.get("train", "-"))),
    ]
    if dataset.get("validation"):
        rows.append(("validation", str(dataset["validation"])))
    if (spec.get("evaluation") or {}).get("testSet"):
        rows.append(("test set", str(spec["evaluation"]["testSet"])))
    rows += [
        ("method", method),
        (
            "hyperparameters",
            ", ".join(
                f"{k} {hp[k]}"
                for k in ("epochs", "learningRate", "batchSize", "maxSeqLength")
                if k in hp
            )
            or "-",
        ),
        (
            "resources",
            ", ".join(f"{k} {res[k]}" for k in ("gpus", "cpu", "memory", "nodes") if k in res)
            or "-",
        ),
        ("output", str((spec.get("output") or {}).get("uri", "-"))),
    ]
    if spec.get("suspend"):
        rows.append(("suspended", "yes (set spec.suspend=false to resume)"))
    return rows
