"""Kopf glue: every handler funnels into one level-triggered reconcile per FineTuneJob.

- ``on.event`` for FineTuneJobs, and for the Jobs and Pods they own (found by label through
  Kopf indexes, so a reconcile reads no Kubernetes object from the API);
- one resync loop over unfinished FineTuneJobs: live progress, dataset ETags, retries after
  transient errors;
- ``on.startup`` configures Kopf, the API client, the object-store reader and metrics.

Handlers do not reconcile: they add the FineTuneJob's key to a coalescing work queue
(``workqueue``) and return, and a fixed set of workers reconcile the latest indexed state, one
worker per key at a time. The operator is the only writer of status (one replica, Recreate),
so the status it last wrote is authoritative even before the watch delivers it back; a stale
view is detected when creating an object that already exists, and that round's status and
events are dropped rather than guessed.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import httpx2
import kopf
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from prometheus_client import start_http_server

from kubetune.api import constants as c
from kubetune.operator import metrics
from kubetune.operator.k8s import TRANSIENT, FineTuneJob, Kube
from kubetune.operator.objectstore import ObjectStoreReader, ObjectStoreUnavailableError, utcnow
from kubetune.operator.observed import JobView, PodView, StoreView
from kubetune.operator.patching import merge_patch
from kubetune.operator.reconcile_finetunejob import Plan, Reads, reads_needed, reconcile
from kubetune.operator.render_trainer import storage_endpoint
from kubetune.operator.settings import Settings
from kubetune.operator.workqueue import WorkQueue, work

log = logging.getLogger("kubetune.operator")

SETTINGS = Settings.from_env()
Key = tuple[str, str]


@dataclass
class State:
    settings: Settings
    kube: Kube
    store: ObjectStoreReader
    locks: defaultdict[Key, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    written_status: dict[Key, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    """Status this process last wrote, by object, with the object's uid."""
    store_cache: dict[tuple[Key, str], tuple[float, Any]] = field(default_factory=dict)
    phases: dict[Key, str] = field(default_factory=dict)
    resync: asyncio.Task[None] | None = None
    queue: WorkQueue[Key] = field(default_factory=WorkQueue)
    workers: list[asyncio.Task[None]] = field(default_factory=list)
    # Bounds concurrent AdapterDeployment reconciles below the HTTP pool size (FineTuneJobs are
    # bounded by the number of queue workers).
    capacity: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(32))


_state: State | None = None


def state() -> State:
    if _state is None:
        raise RuntimeError("operator not started")
    return _state


# ---------------------------------------------------------------- lifecycle


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    global _state  # noqa: PLW0603 - one operator per process
    settings.persistence.finalizer = "kubetune.io/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kubetune.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="kubetune.io", key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    # Per-object workers are cheap but not free: release idle ones quickly.
    settings.batching.idle_timeout = 1.0
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    client = AsyncClient(
        config=KubeConfig.from_env(),
        field_manager=c.FIELD_MANAGER,
        timeout=httpx2.Timeout(30.0, pool=120.0),
    )
    _state = State(
        settings=SETTINGS,
        kube=Kube(client),
        store=ObjectStoreReader(endpoint=SETTINGS.s3_endpoint, region=SETTINGS.s3_region),
    )
    # Build the S3 client once, up front: concurrent first uses from worker threads would
    # each build one (botocore's service model alone is tens of MiB).
    await asyncio.to_thread(_state.store.warm_up)
    start_http_server(SETTINGS.metrics_port)
    log.info(
        "kubetune operator started (namespaces: %s, metrics on :%d)",
        ",".join(SETTINGS.watch_namespaces) or "all",
        SETTINGS.metrics_port,
    )


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    if _state is not None:
        for task in [_state.resync, *_state.workers]:
            if task is not None:
                task.cancel()
        await _state.kube.client.close()


# ---------------------------------------------------------------- indexes


def _plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """A private copy of an object without managedFields (often its largest part)."""
    plain = copy.deepcopy({k: body[k] for k in body})
    plain.get("metadata", {}).pop("managedFields", None)
    return plain


@kopf.index(c.GROUP, c.VERSION, c.FINETUNEJOB_PLURAL)
def finetunejobs(*, namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {(namespace or "", name): _plain(body)}


@kopf.index("batch", "v1", "jobs", labels={c.LABEL_FINETUNEJOB: kopf.PRESENT})
def trainer_jobs(
    *, namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[Key, JobView]:
    return {(namespace or "", labels[c.LABEL_FINETUNEJOB]): JobView.from_object(_plain(body))}


@kopf.index("", "v1", "pods", labels={c.LABEL_COMPONENT: c.COMPONENT_TRAINER})
def trainer_pods(
    *, namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[Key, PodView]:
    owner = labels.get(c.LABEL_FINETUNEJOB, "")
    return {(namespace or "", owner): PodView.from_object(_plain(body))}


# ---------------------------------------------------------------- triggers


@dataclass(frozen=True)
class Indexes:
    """The Kopf indexes a reconcile reads instead of the API."""

    finetunejobs: kopf.Index[Key, Any]
    jobs: kopf.Index[Key, JobView]
    pods: kopf.Index[Key, PodView]

    @classmethod
    def of(cls, kwargs: Mapping[str, Any]) -> Indexes:
        global _latest_indexes  # noqa: PLW0603 - Kopf hands indexes to handlers only
        _latest_indexes = cls(
            kwargs["finetunejobs"], kwargs["trainer_jobs"], kwargs["trainer_pods"]
        )
        return _latest_indexes


_latest_indexes: Indexes | None = None


@kopf.on.event(c.GROUP, c.VERSION, c.FINETUNEJOB_PLURAL)
async def finetunejob_event(
    *, type: str, namespace: str | None, name: str, body: kopf.Body, **kwargs: Any
) -> None:
    key = (namespace or "", name)
    Indexes.of(kwargs)
    if type == "DELETED":
        forget(key)
        return
    enqueue(key)


async def resync_loop(interval: float) -> None:
    """One periodic pass over unfinished FineTuneJobs: live progress, dataset ETags, retries.

    A single task instead of a Kopf timer per object: at thousands of objects, per-object
    timers each pin a task and a full copy of the object's latest body.
    """
    while True:
        await asyncio.sleep(interval)
        indexes = _latest_indexes
        if indexes is None:
            continue
        for key, store in list(indexes.finetunejobs.items()):
            bodies = list(store)
            if bodies and _needs_resync(bodies[-1]):
                state().queue.add(key)
        metrics.WORKQUEUE_DEPTH.set(len(state().queue))


def _needs_resync(body: Mapping[str, Any]) -> bool:
    phase = (body.get("status") or {}).get("phase")
    retrain = body.get("spec", {}).get("retrain", {}).get("onDatasetChange", False)
    return bool(retrain) or phase not in ("Succeeded", "Failed")


@kopf.on.event("batch", "v1", "jobs", labels={c.LABEL_FINETUNEJOB: kopf.PRESENT})
@kopf.on.event("", "v1", "pods", labels={c.LABEL_COMPONENT: c.COMPONENT_TRAINER})
async def child_event(*, namespace: str | None, labels: Mapping[str, str], **kwargs: Any) -> None:
    """A Job or Pod of a run changed: reconcile its FineTuneJob (known from the index)."""
    Indexes.of(kwargs)
    enqueue((namespace or "", labels.get(c.LABEL_FINETUNEJOB, "")))


def enqueue(key: Key) -> None:
    st = state()
    if not st.workers:
        # Started from a handler, not from on.startup: the tasks inherit Kopf's context,
        # which kopf.event() needs to post events.
        st.workers = [
            asyncio.create_task(work(st.queue, reconcile_key)) for _ in range(st.settings.workers)
        ]
        st.resync = asyncio.create_task(resync_loop(st.settings.progress_interval))
    st.queue.add(key)
    metrics.WORKQUEUE_DEPTH.set(len(st.queue))


async def reconcile_key(key: Key) -> None:
    """Reconcile the latest indexed state of one FineTuneJob (gone: nothing to do)."""
    metrics.WORKQUEUE_DEPTH.set(len(state().queue))
    indexes = _latest_indexes
    bodies = list(indexes.finetunejobs.get(key, [])) if indexes is not None else []
    if indexes is not None and bodies:
        await reconcile_finetunejob(key, copy.deepcopy(bodies[-1]), indexes)


# ---------------------------------------------------------------- the reconcile


def forget(key: Key) -> None:
    st = state()
    st.written_status.pop(key, None)
    st.phases.pop(key, None)
    for cache_key in [k for k in st.store_cache if k[0] == key]:
        del st.store_cache[cache_key]
    _refresh_phase_gauge(st)


async def reconcile_finetunejob(key: Key, body: dict[str, Any], indexes: Indexes) -> None:
    """One reconcile; the work queue guarantees no other runs for this key meanwhile."""
    st = state()
    began = time.monotonic()
    result = "ok"
    try:
        await _reconcile_once(st, key, body, indexes)
    except ObjectStoreUnavailableError as err:
        result = "storage-error"
        log.warning("%s/%s: object store unavailable, retrying on the next tick: %s", *key, err)
    except TRANSIENT as err:
        result = "api-error"
        log.warning("%s/%s: API error, retrying on the next tick: %s", *key, err)
    finally:
        metrics.RECONCILES.labels(c.FINETUNEJOB_KIND, result).inc()
        metrics.RECONCILE_SECONDS.labels(c.FINETUNEJOB_KIND).observe(time.monotonic() - began)


async def _reconcile_once(st: State, key: Key, body: dict[str, Any], indexes: Indexes) -> None:
    uid = body["metadata"]["uid"]
    written = st.written_status.get(key)
    if written is not None and written[0] == uid:
        body["status"] = copy.deepcopy(written[1])
    jobs = list(indexes.jobs.get(key, []))
    pods = list(indexes.pods.get(key, []))
    store = await _read_store(st, key, body, reads_needed(body, jobs))
    plan = reconcile(
        body=body, jobs=jobs, pods=pods, store=store, settings=st.settings, now=utcnow()
    )
    if not await _apply(st, key, body, plan):
        return
    old_status = body.get("status") or {}
    patch = merge_patch(old_status, plan.status)
    if patch:
        await st.kube.patch_status(FineTuneJob, key[0], key[1], patch)
        metrics.API_REQUESTS.labels("status").inc()
        _observe_run_end(old_status, plan.status)
    st.written_status[key] = (uid, plan.status)
    for event in plan.events:
        metrics.API_REQUESTS.labels("event").inc()
        kopf.event(
            cast(kopf.Body, body), type=event.type, reason=event.reason, message=event.message
        )
    st.phases[key] = str(plan.status.get("phase", ""))
    _refresh_phase_gauge(st)


async def _apply(st: State, key: Key, body: Mapping[str, Any], plan: Plan) -> bool:
    """Carry out the plan's writes; False when the plan was built on a stale view."""
    namespace = key[0]
    for job in plan.delete_jobs:
        await st.kube.delete_job(namespace, job)
        metrics.API_REQUESTS.labels("delete").inc()
    fresh = True
    for manifest in plan.create:
        if manifest["kind"] == "NetworkPolicy":
            await st.kube.apply(manifest)
            continue
        created = await st.kube.create_if_absent(manifest)
        metrics.API_REQUESTS.labels("create").inc()
        if not created and manifest["kind"] == "Job":
            # Our index had not seen this Job yet: the plan's "created a Job" status and
            # events would be wrong. The Job's watch event triggers a correct reconcile.
            fresh = False
    for job, suspend in plan.set_suspend.items():
        await st.kube.set_job_suspend(namespace, job, suspend)
        metrics.API_REQUESTS.labels("patch").inc()
    if not fresh:
        log.debug("%s/%s: stale view (Job already existed); skipping status", *key)
    return fresh


async def _read_store(st: State, key: Key, body: Mapping[str, Any], reads: Reads) -> StoreView:
    endpoint = storage_endpoint(body.get("spec", {}), st.settings)
    ttl = st.settings.progress_interval * 0.9

    async def cached(kind: str, uri: str, read: Any) -> Any:
        now = time.monotonic()
        hit = st.store_cache.get((key, kind))
        if hit is not None and hit[1][0] == uri and now - hit[0] < ttl:
            return hit[1][1]
        value = await read(uri, endpoint=endpoint)
        metrics.STORE_REQUESTS.labels(kind).inc()
        st.store_cache[(key, kind)] = (now, (uri, value))
        return value

    progress = adapter = etag = None
    if reads.progress_uri:
        progress = await cached("progress", reads.progress_uri, st.store.progress)
    if reads.manifest_uri:
        adapter = await st.store.adapter(reads.manifest_uri, endpoint=endpoint)
        metrics.STORE_REQUESTS.labels("manifest").inc()
    if reads.dataset_uri:
        etag = await cached("etag", reads.dataset_uri, st.store.etag)
    return StoreView(
        progress=progress,
        adapter=adapter,
        manifest_checked=reads.manifest_uri is not None,
        dataset_etag=etag,
    )


def _observe_run_end(old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    before = (old.get("currentRun") or {}).get("phase")
    run = new.get("currentRun") or {}
    if run.get("phase") in ("Succeeded", "Failed") and before != run.get("phase"):
        try:
            start = dt.datetime.fromisoformat(str(run["startTime"]).replace("Z", "+00:00"))
            end = dt.datetime.fromisoformat(str(run["completionTime"]).replace("Z", "+00:00"))
        except (KeyError, ValueError):
            return
        metrics.RUN_SECONDS.labels(run["phase"]).observe((end - start).total_seconds())


def _refresh_phase_gauge(st: State) -> None:
    counts: dict[str, int] = defaultdict(int)
    for phase in st.phases.values():
        counts[phase] += 1
    for phase in ("Pending", "Running", "Succeeded", "Failed", "Suspended"):
        metrics.RUNS.labels(phase).set(counts.get(phase, 0))
