"""The FineTuneJob reconcile: from (object, observed Jobs/Pods, object-store view, now) to a
plan of objects to create, Jobs to delete or (un)suspend, the desired status and the events.

Pure and idempotent: replaying a reconcile on the same inputs yields no creations, no status
change and no events. Rules:

- one run per training-relevant spec (``spec_hash``): a spec change starts a new run
  ``<job>-g<generation>``; a running older run is superseded (its Job deleted);
- a changed train object ETag with ``retrain.onDatasetChange`` starts ``...-r<n>``;
- a run's Job is created when absent, and recreated if deleted mid-run (the trainer resumes
  from its checkpoint), but a finished run is never run again;
- ``latestAdapter`` only ever moves to an adapter with a manifest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubetune.api import constants as c
from kubetune.api import contract
from kubetune.api.training import spec_hash
from kubetune.operator import naming, render_trainer
from kubetune.operator.conditions import Event, set_condition
from kubetune.operator.observed import JobCondition, JobView, PodView, StoreView
from kubetune.operator.settings import Settings
from kubetune.operator.spec import ObjectRef, validate

MAX_HISTORY = 20
FINISHED = frozenset({"Succeeded", "Failed", "Superseded"})

Manifest = dict[str, Any]


@dataclass
class Plan:
    create: list[Manifest] = field(default_factory=list)
    delete_jobs: list[str] = field(default_factory=list)
    set_suspend: dict[str, bool] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)


@dataclass(frozen=True)
class Reads:
    """Object-store reads the glue should perform before planning."""

    progress_uri: str | None = None
    manifest_uri: str | None = None
    dataset_uri: str | None = None


def run_uri(spec: Mapping[str, Any], run: str) -> str:
    return f"{spec['output']['uri'].rstrip('/')}/{run}/"


def reads_needed(body: Mapping[str, Any], jobs: Sequence[JobView]) -> Reads:
    spec = body.get("spec", {})
    current = (body.get("status") or {}).get("currentRun") or {}
    run = current.get("name", "")
    job = next((j for j in jobs if j.run == run), None) if run else None
    progress = manifest = None
    if job is not None and current.get("phase") not in FINISHED:
        base = run_uri(spec, run)
        if job.condition_true("Complete"):
            manifest = f"{base}{contract.ADAPTER_DIR}/{contract.MANIFEST_FILE}"
        elif job.ready:
            # Only a started trainer writes progress; pending pods would cost reads for nothing.
            progress = f"{base}{contract.PROGRESS_FILE}"
    dataset = None
    train = spec.get("dataset", {}).get("train", "")
    if spec.get("retrain", {}).get("onDatasetChange") and train.startswith("s3://"):
        dataset = train
    return Reads(progress_uri=progress, manifest_uri=manifest, dataset_uri=dataset)


# ---------------------------------------------------------------- the reconcile


def reconcile(
    *,
    body: Mapping[str, Any],
    jobs: Sequence[JobView],
    pods: Sequence[PodView],
    store: StoreView,
    settings: Settings,
    now: str,
) -> Plan:
    ref = ObjectRef.of(body)
    spec: Mapping[str, Any] = body.get("spec", {})
    old_status: Mapping[str, Any] = body.get("status") or {}
    plan = Plan()
    status: dict[str, Any] = {
        "observedGeneration": ref.generation,
        "conditions": list(old_status.get("conditions", [])),
        "currentRun": dict(old_status.get("currentRun") or {}),
        "latestAdapter": dict(old_status.get("latestAdapter") or {}),
        "runs": list(old_status.get("runs", [])),
    }

    def condition(type_: str, value: bool, reason: str, message: str) -> None:
        status["conditions"] = set_condition(
            status["conditions"],
            type_=type_,
            status=value,
            reason=reason,
            message=message,
            generation=ref.generation,
            now=now,
        )

    problems = validate(spec)
    if problems:
        message = "; ".join(str(p) for p in problems)
        condition(c.COND_VALIDATED, False, c.REASON_INVALID_SPEC, message)
        condition(c.COND_FAILED, True, c.REASON_INVALID_SPEC, message)
        status["phase"] = "Failed"
        _finish(plan, old_status, status, Event("Warning", c.REASON_INVALID_SPEC, message))
        return plan
    condition(c.COND_VALIDATED, True, c.REASON_VALID, "spec is valid")

    current = status["currentRun"]
    wanted_hash = spec_hash(spec)
    if current.get("specHash") != wanted_hash:
        current = _start_run(
            plan=plan,
            status=status,
            old=current,
            run=naming.run_name(ref.name, ref.generation),
            ref=ref,
            wanted_hash=wanted_hash,
            etag=store.dataset_etag,
            now=now,
        )
    elif _dataset_changed(spec, current, store):
        plan.events.append(
            Event(
                "Normal",
                c.REASON_DATASET_CHANGED,
                f"train object ETag changed ({current.get('datasetETag')} -> "
                f"{store.dataset_etag}); starting a new run",
            )
        )
        current = _start_run(
            plan=plan,
            status=status,
            old=current,
            run=naming.run_name(
                ref.name, ref.generation, naming.retrain_index(current["name"]) + 1
            ),
            ref=ref,
            wanted_hash=wanted_hash,
            etag=store.dataset_etag,
            now=now,
        )
    elif store.dataset_etag and not current.get("datasetETag"):
        current["datasetETag"] = store.dataset_etag

    run = current["name"]
    job = next((j for j in jobs if j.run == run), None)
    run_pods = [p for p in pods if p.run == run]
    if current.get("phase") not in FINISHED:
        _drive_run(
            plan=plan,
            ref=ref,
            spec=spec,
            current=current,
            status=status,
            job=job,
            pods=run_pods,
            store=store,
            settings=settings,
            now=now,
        )

    _set_summary_conditions(status, current, condition)
    _finish(plan, old_status, status)
    return plan


def _start_run(
    *,
    plan: Plan,
    status: dict[str, Any],
    old: Mapping[str, Any],
    run: str,
    ref: ObjectRef,
    wanted_hash: str,
    etag: str | None,
    now: str,
) -> dict[str, Any]:
    if old.get("name"):
        finished = dict(old)
        finished.pop("progress", None)
        finished.pop("specHash", None)
        if finished.get("phase") not in FINISHED:
            finished["phase"] = "Superseded"
            finished["completionTime"] = now
            finished["message"] = f"superseded by run {run}"
            plan.delete_jobs.append(naming.job_name(old["name"]))
            plan.events.append(
                Event("Normal", c.REASON_SUPERSEDED, f"run {old['name']} superseded by {run}")
            )
        _push_history(status, finished)
    current: dict[str, Any] = {
        "name": run,
        "generation": ref.generation,
        "specHash": wanted_hash,
        "phase": "Pending",
        "message": "creating the training Job",
    }
    if etag:
        current["datasetETag"] = etag
    status["currentRun"] = current
    return current


def _push_history(status: dict[str, Any], run: Mapping[str, Any]) -> None:
    runs = [r for r in status["runs"] if r.get("name") != run.get("name")]
    status["runs"] = [dict(run), *runs][:MAX_HISTORY]


def _dataset_changed(spec: Mapping[str, Any], current: Mapping[str, Any], store: StoreView) -> bool:
    return bool(
        spec.get("retrain", {}).get("onDatasetChange")
        and current.get("phase") == "Succeeded"
        and store.dataset_etag
        and current.get("datasetETag")
        and store.dataset_etag != current["datasetETag"]
    )


def _drive_run(
    *,
    plan: Plan,
    ref: ObjectRef,
    spec: Mapping[str, Any],
    current: dict[str, Any],
    status: dict[str, Any],
    job: JobView | None,
    pods: Sequence[PodView],
    store: StoreView,
    settings: Settings,
    now: str,
) -> None:
    run = current["name"]
    queued = bool(spec.get("queueName"))
    want_suspend = bool(spec.get("suspend")) and not queued

    if job is None:
        plan.create.extend(
            _run_objects(
                ref=ref, spec=spec, run=run, settings=settings, suspend=want_suspend or queued
            )
        )
        recreated = bool(current.get("startTime"))
        current.setdefault("startTime", now)
        current["phase"] = "Suspended" if want_suspend else "Pending"
        current["message"] = "waiting for the trainer pod"
        plan.events.append(
            Event(
                "Normal",
                c.REASON_JOB_CREATED,
                f"Job {naming.job_name(run)} was deleted mid-run; recreated it "
                "(the trainer resumes from its checkpoint)"
                if recreated
                else f"created Job {naming.job_name(run)}",
            )
        )
        return
    if job.deleting:
        current["message"] = f"waiting for Job {job.name} to be deleted before recreating it"
        return

    if not queued and job.suspended != want_suspend and not job.condition_true("Complete"):
        plan.set_suspend[job.name] = want_suspend

    complete = job.condition_true("Complete")
    failed = job.condition_true("Failed")
    if complete:
        _complete(plan=plan, spec=spec, current=current, status=status, store=store, now=now)
    elif failed:
        _fail(plan=plan, current=current, status=status, job_condition=failed, pods=pods, now=now)
    elif want_suspend or job.suspended:
        _suspended(plan=plan, spec=spec, current=current, by_user=want_suspend)
    else:
        _active(plan=plan, current=current, job=job, pods=pods)
    if store.progress is not None:
        current["progress"] = _progress(store.progress)


def _suspended(
    *, plan: Plan, spec: Mapping[str, Any], current: dict[str, Any], by_user: bool
) -> None:
    previous = current.get("phase")
    current["phase"] = "Suspended"
    if by_user:
        current["message"] = "suspended by spec.suspend; checkpoints are kept"
        if previous != "Suspended":
            plan.events.append(Event("Normal", c.REASON_SUSPENDED_BY_USER, current["message"]))
    elif spec.get("queueName"):
        current["reason"] = c.REASON_QUEUED
        current["message"] = f"waiting for Kueue queue {spec['queueName']} to admit the Job"
    else:
        current["message"] = "resuming"


def _active(*, plan: Plan, current: dict[str, Any], job: JobView, pods: Sequence[PodView]) -> None:
    run = current["name"]
    previous = current.get("phase")
    current.pop("reason", None)
    if previous == "Suspended":
        plan.events.append(Event("Normal", c.REASON_RESUMED, f"run {run} resumed"))
    running = job.ready > 0 or any(p.phase == "Running" for p in pods)
    current["phase"] = "Running" if running else "Pending"
    disrupted = [p for p in pods if p.disrupted]
    if disrupted:
        latest = max(disrupted, key=lambda p: p.created)
        current["message"] = (
            f"pod {latest.name} was preempted ({latest.disruption_reason or 'disruption'}); "
            "its replacement resumes from the latest checkpoint"
        )
        if current.get("preemptedPod") != latest.name:
            plan.events.append(Event("Warning", c.REASON_PREEMPTED, current["message"]))
            current["preemptedPod"] = latest.name
    else:
        current["message"] = "training" if running else "waiting for the trainer pod"
    if running and previous != "Running":
        plan.events.append(Event("Normal", c.REASON_TRAINING, f"run {run} is training"))


def _run_objects(
    *, ref: ObjectRef, spec: Mapping[str, Any], run: str, settings: Settings, suspend: bool
) -> list[Manifest]:
    objects = [render_trainer.render_config_map(ref=ref, spec=spec, run=run, settings=settings)]
    if int(spec.get("resources", {}).get("nodes", 1)) > 1:
        objects.append(render_trainer.render_service(ref=ref, run=run))
    if settings.trainer_egress:
        objects.append(
            render_trainer.render_network_policy(namespace=ref.namespace, settings=settings)
        )
    objects.append(
        render_trainer.render_job(ref=ref, spec=spec, run=run, settings=settings, suspend=suspend)
    )
    return objects


def _complete(
    *,
    plan: Plan,
    spec: Mapping[str, Any],
    current: dict[str, Any],
    status: dict[str, Any],
    store: StoreView,
    now: str,
) -> None:
    if not store.manifest_checked:
        current["message"] = "Job complete; reading the adapter manifest"
        return
    current["completionTime"] = now
    current.pop("progress", None)
    adapter = store.adapter
    if adapter is None:
        current["phase"] = "Failed"
        current["reason"] = c.REASON_MISSING_MANIFEST
        current["message"] = (
            "the trainer exited 0 but no adapter manifest exists at "
            f"{run_uri(spec, current['name'])}adapter/: nothing was published"
        )
        plan.events.append(Event("Warning", c.REASON_MISSING_MANIFEST, current["message"]))
        _push_history(status, _history_entry(current))
        return
    current["phase"] = "Succeeded"
    current["metrics"] = dict(adapter.metrics)
    current["message"] = f"published {adapter.uri} ({adapter.digest})"
    latest = {
        "uri": adapter.uri,
        "digest": adapter.digest,
        "run": current["name"],
        "metrics": dict(adapter.metrics),
        "publishedAt": adapter.published_at or now,
    }
    status["latestAdapter"] = latest
    entry = _history_entry(current)
    entry["adapter"] = latest
    _push_history(status, entry)
    plan.events.append(Event("Normal", c.REASON_ADAPTER_PUBLISHED, current["message"]))


def _fail(
    *,
    plan: Plan,
    current: dict[str, Any],
    status: dict[str, Any],
    job_condition: JobCondition,
    pods: Sequence[PodView],
    now: str,
) -> None:
    terminated = [p for p in pods if p.termination]
    trainer = max(terminated, key=lambda p: p.created).termination if terminated else {}
    if job_condition.reason == "DeadlineExceeded":
        reason = c.REASON_DEADLINE
    elif job_condition.reason == "BackoffLimitExceeded":
        reason = c.REASON_BACKOFF_LIMIT
    else:  # PodFailurePolicy: the trainer's documented user-error exit code
        reason = str(trainer.get("reason") or c.REASON_TRAINER_FAILED)
    detail = str(trainer.get("message") or job_condition.message or job_condition.reason)
    current["phase"] = "Failed"
    current["reason"] = reason
    current["message"] = detail[:4096]
    current["completionTime"] = now
    current.pop("progress", None)
    plan.events.append(Event("Warning", reason, current["message"]))
    _push_history(status, _history_entry(current))


def _history_entry(current: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("name", "generation", "phase", "startTime", "completionTime", "message", "metrics")
    return {k: current[k] for k in keep if k in current}


def _progress(raw: Mapping[str, Any]) -> dict[str, Any]:
    progress: dict[str, Any] = {}
    for key in ("step", "totalSteps", "etaSeconds"):
        if isinstance(raw.get(key), int | float):
            progress[key] = int(raw[key])
    for key in ("epoch", "loss", "evalLoss", "tokensPerSecond"):
        if isinstance(raw.get(key), int | float):
            progress[key] = round(float(raw[key]), 6)
    if raw.get("updatedAt"):
        progress["updatedAt"] = str(raw["updatedAt"])
    total = progress.get("totalSteps") or 0
    if total > 0:
        progress["percent"] = min(100, int(100 * progress.get("step", 0) / total))
    return progress


def _set_summary_conditions(
    status: dict[str, Any], current: Mapping[str, Any], condition: Any
) -> None:
    """One condition per phase, so `kubectl wait --for=condition=<Phase>` works."""
    phase = str(current.get("phase", "Pending"))
    status["phase"] = phase if phase != "Superseded" else "Pending"
    message = str(current.get("message", ""))
    reason = str(current.get("reason") or phase)
    for type_, active_reason in (
        (c.COND_RUNNING, c.REASON_TRAINING),
        (c.COND_SUSPENDED, c.REASON_SUSPENDED_BY_USER),
        (c.COND_SUCCEEDED, c.REASON_ADAPTER_PUBLISHED),
        (c.COND_FAILED, reason),
    ):
        active = phase == type_
        condition(type_, active, active_reason if active else reason, message)


def _finish(
    plan: Plan, old_status: Mapping[str, Any], status: dict[str, Any], *events: Event
) -> None:
    plan.status = status
    if dict(old_status) != status:
        plan.events.extend(events)
