"""Compact, typed views of what the operator observes: the Jobs and Pods of a FineTuneJob's
runs, and what the trainer wrote to the object store.

Built from raw API objects by the glue layer (``from_object``), consumed by the pure planner.
Keeping only these few fields is also what keeps the operator's memory flat at thousands of
objects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubetune.api import constants as c


@dataclass(frozen=True)
class JobCondition:
    status: str
    reason: str
    message: str


@dataclass(frozen=True)
class JobView:
    name: str
    run: str
    suspended: bool
    active: int
    ready: int
    succeeded: int
    failed: int
    deleting: bool
    start_time: str
    completion_time: str
    conditions: Mapping[str, JobCondition] = field(default_factory=dict)

    @classmethod
    def from_object(cls, job: Mapping[str, Any]) -> JobView:
        meta = job.get("metadata", {})
        spec = job.get("spec", {})
        status = job.get("status", {}) or {}
        conditions = {
            cond["type"]: JobCondition(
                status=cond.get("status", "Unknown"),
                reason=cond.get("reason", "") or "",
                message=cond.get("message", "") or "",
            )
            for cond in status.get("conditions", []) or []
        }
        return cls(
            name=meta.get("name", ""),
            run=(meta.get("labels") or {}).get(c.LABEL_RUN, meta.get("name", "")),
            suspended=bool(spec.get("suspend", False)),
            active=int(status.get("active", 0) or 0),
            ready=int(status.get("ready", 0) or 0),
            succeeded=int(status.get("succeeded", 0) or 0),
            failed=int(status.get("failed", 0) or 0),
            deleting=bool(meta.get("deletionTimestamp")),
            start_time=status.get("startTime", "") or "",
            completion_time=status.get("completionTime", "") or "",
            conditions=conditions,
        )

    def condition_true(self, type_: str) -> JobCondition | None:
        cond = self.conditions.get(type_)
        return cond if cond is not None and cond.status == "True" else None


@dataclass(frozen=True)
class PodView:
    name: str
    run: str
    phase: str
    disrupted: bool
    """The pod carries DisruptionTarget=True: preempted, evicted or drained."""
    disruption_reason: str
    exit_code: int | None
    termination: Mapping[str, Any]
    """The trainer's JSON termination message, or {"message": text} when not JSON."""
    created: str

    @classmethod
    def from_object(cls, pod: Mapping[str, Any]) -> PodView:
        meta = pod.get("metadata", {})
        status = pod.get("status", {}) or {}
        disrupted = next(
            (
                cond
                for cond in status.get("conditions", []) or []
                if cond.get("type") == "DisruptionTarget" and cond.get("status") == "True"
            ),
            None,
        )
        exit_code: int | None = None
        termination: dict[str, Any] = {}
        for cs in status.get("containerStatuses", []) or []:
            terminated = (cs.get("state") or {}).get("terminated")
            if not terminated:
                continue
            exit_code = terminated.get("exitCode")
            text = (terminated.get("message") or "").strip()
            if text:
                termination = parse_termination_message(text)
        return cls(
            name=meta.get("name", ""),
            run=(meta.get("labels") or {}).get(c.LABEL_RUN, ""),
            phase=status.get("phase", "Pending") or "Pending",
            disrupted=disrupted is not None,
            disruption_reason=(disrupted or {}).get("reason", "") or "",
            exit_code=exit_code,
            termination=termination,
            created=meta.get("creationTimestamp", "") or "",
        )


def parse_termination_message(text: str) -> dict[str, Any]:
    # The trainer writes one JSON line; with FallbackToLogsOnError a crash leaves log lines.
    last = text.strip().splitlines()[-1] if text.strip() else ""
    try:
        parsed = json.loads(last)
    except json.JSONDecodeError:
        return {"message": text[-1024:]}
    return parsed if isinstance(parsed, dict) else {"message": text[-1024:]}


@dataclass(frozen=True)
class AdapterView:
    """A published adapter: its folder, manifest digest and metrics."""

    uri: str
    digest: str
    metrics: Mapping[str, float]
    published_at: str


@dataclass(frozen=True)
class StoreView:
    """What the trainer wrote for the current run, and the train object's ETag."""

    progress: Mapping[str, Any] | None = None
    adapter: AdapterView | None = None
    manifest_checked: bool = False
    """True when the manifest was looked for (so None adapter means "not there")."""
    dataset_etag: str | None = None
