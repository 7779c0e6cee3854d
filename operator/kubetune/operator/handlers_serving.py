"""Kopf glue of the AdapterDeployment controller: every trigger funnels into one locked,
level-triggered reconcile per AdapterDeployment, followed by a sync of the objects its target
Deployment shares with the other AdapterDeployments on it.

Triggers, all read through Kopf indexes so a reconcile GETs nothing from the API:

- ``on.event`` per AdapterDeployment, and one resync loop over the unsettled ones (it ends
  canary holds and retries after transient errors);
- FineTuneJob events (a new ``latestAdapter``) for the AdapterDeployments following it;
- Deployment events of targets, and events of their inference pods (label
  ``kubetune.io/serving-agent=true``, mapped to their Deployment by ``kubetune.io/deployment``,
  both labels set by the injected pod template) whose agents report adapter state;
- desired-set ConfigMap events (watched with a server-side label selector), so a ConfigMap
  edited or deleted by hand is rewritten.

Multi-tenancy of a Deployment: one ConfigMap ``kubetune-adapters-<deployment>`` lists every
AdapterDeployment's entry. Its content is recomputed, under a per-Deployment lock, from the
statuses of all AdapterDeployments targeting the Deployment (index + what this process last
decided), and owned by all of them, so the garbage collector deletes it with the last one.

Reuses ``handlers.State`` (API client, object-store reader, locks) with lock keys that cannot
collide with FineTuneJob keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import kopf
from lightkube import ApiError

from kubetune.api import constants as c
from kubetune.api import contract
from kubetune.operator import metrics
from kubetune.operator.handlers import SETTINGS, Key, State, _plain, state
from kubetune.operator.k8s import TRANSIENT, AdapterDeployment
from kubetune.operator.objectstore import ObjectStoreUnavailableError, utcnow
from kubetune.operator.observed import AdapterView
from kubetune.operator.observed_serving import ConfigMapView, DeploymentView, ServingPodView
from kubetune.operator.patching import merge_patch
from kubetune.operator.reconcile_adapterdeployment import (
    Member,
    Plan,
    manifest_uri,
    plan_target,
    reconcile,
    resolve_source,
)
from kubetune.operator.render_serving import FIELD_MANAGER, agent_rbac_name
from kubetune.operator.render_trainer import storage_endpoint

log = logging.getLogger("kubetune.operator.serving")

AGENT_RBAC = os.environ.get("KUBETUNE_AGENT_RBAC", "false").strip().lower() in ("true", "1")
"""KUBETUNE_AGENT_RBAC: let the operator create the agent's Role/RoleBinding (default false:
the chart's ``servingAgent.deployments`` or the Deployment's owners create them, so the
operator needs no RBAC-writing rights). Enable it only together with those rights."""
FORBIDDEN_BACKOFF_SECONDS = 600.0
MANIFEST_TTL_SECONDS = 60.0
MAX_MANIFEST_CACHE = 1024


@dataclass
class ServingState:
    decided: dict[Key, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    """Status whose desired-set entry was last written, by AdapterDeployment (with its uid)."""
    written_status: dict[Key, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    manifests: dict[str, tuple[float, AdapterView | None]] = field(default_factory=dict)
    rbac_applied: dict[tuple[str, str, str], str] = field(default_factory=dict)
    rbac_forbidden_until: dict[str, float] = field(default_factory=dict)
    injected: dict[Key, tuple[str, int]] = field(default_factory=dict)
    """Agent configuration applied per Deployment, with the generation it produced."""
    retry: set[Key] = field(default_factory=set)
    """AdapterDeployments whose last reconcile hit a transient error."""
    resync: asyncio.Task[None] | None = None
    indexes: Indexes | None = None
    """The indexes Kopf last handed to a handler (the resync loop is no handler)."""


_serving = ServingState()


def _adep_lock(key: Key) -> Key:
    return (key[0], f"{c.ADAPTERDEPLOYMENT_PLURAL}/{key[1]}")


def _target_lock(namespace: str, deployment: str) -> Key:
    return (namespace, f"deployments/{deployment}")


def _target_of(body: Mapping[str, Any]) -> str:
    return str(((body.get("spec") or {}).get("target") or {}).get("deploymentName", ""))


# ---------------------------------------------------------------- startup


@kopf.on.startup()
async def serving_startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Only our desired-set ConfigMaps: a cluster's other ConfigMaps never reach this process.
    # (Applies to every ConfigMap watch of the operator: the FineTuneJob side has none.)
    settings.watching.label_selectors["configmaps"] = contract.DEPLOYMENT_LABEL


@kopf.on.cleanup()
async def serving_cleanup(**_: Any) -> None:
    if _serving.resync is not None:
        _serving.resync.cancel()


# ---------------------------------------------------------------- indexes


@kopf.index(c.GROUP, c.VERSION, c.ADAPTERDEPLOYMENT_PLURAL)
def adapterdeployments_by_target(
    *, namespace: str | None, body: kopf.Body, **_: Any
) -> dict[Key, Any]:
    return {(namespace or "", _target_of(body)): _plain(body)}


@kopf.index(c.GROUP, c.VERSION, c.ADAPTERDEPLOYMENT_PLURAL)
def adapterdeployments_by_job(
    *, namespace: str | None, body: kopf.Body, **_: Any
) -> dict[Key, Any] | None:
    job = ((body.get("spec") or {}).get("source") or {}).get("fineTuneJobRef") or {}
    return {(namespace or "", str(job["name"])): _plain(body)} if job.get("name") else None


@kopf.index("apps", "v1", "deployments")
def serving_deployments(
    *, namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[Key, DeploymentView]:
    return {(namespace or "", name): DeploymentView.from_object(body)}


@kopf.index("", "v1", "pods", labels={c.LABEL_SERVING_AGENT: "true"})
def serving_pods(
    *, namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[Key, ServingPodView] | None:
    deployment = labels.get(contract.DEPLOYMENT_LABEL)
    if not deployment:
        return None
    return {(namespace or "", deployment): ServingPodView.from_object(body)}


@kopf.index("", "v1", "configmaps", labels={contract.DEPLOYMENT_LABEL: kopf.PRESENT})
def desired_sets(
    *, namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[Key, ConfigMapView]:
    return {(namespace or "", labels[contract.DEPLOYMENT_LABEL]): ConfigMapView.from_object(body)}


@dataclass(frozen=True)
class Indexes:
    """The Kopf indexes a reconcile reads instead of the API."""

    finetunejobs: kopf.Index[Key, Any]
    by_target: kopf.Index[Key, Any]
    by_job: kopf.Index[Key, Any]
    deployments: kopf.Index[Key, DeploymentView]
    pods: kopf.Index[Key, ServingPodView]
    config_maps: kopf.Index[Key, ConfigMapView]

    @classmethod
    def of(cls, kwargs: Mapping[str, Any]) -> Indexes:
        indexes = cls(
            kwargs["finetunejobs"],
            kwargs["adapterdeployments_by_target"],
            kwargs["adapterdeployments_by_job"],
            kwargs["serving_deployments"],
            kwargs["serving_pods"],
            kwargs["desired_sets"],
        )
        _serving.indexes = indexes
        if _serving.resync is None:
            # Started from a handler, not from the startup activity: the task inherits the
            # handler's context, where Kopf keeps the queue that kopf.event() posts to.
            _serving.resync = asyncio.create_task(resync_loop(SETTINGS.progress_interval))
        return indexes

    def deployment(self, namespace: str, name: str) -> DeploymentView | None:
        views = list(self.deployments.get((namespace, name), []))
        return views[-1] if views else None

    def config_map(self, namespace: str, deployment: str) -> ConfigMapView | None:
        views = list(self.config_maps.get((namespace, deployment), []))
        return views[-1] if views else None


def _latest(bodies: Iterable[Any]) -> list[dict[str, Any]]:
    """One body per uid (a store may briefly hold an object twice across a re-list)."""
    by_uid: dict[str, dict[str, Any]] = {}
    for body in bodies:
        by_uid[str(body["metadata"]["uid"])] = copy.deepcopy(body)
    return list(by_uid.values())


def _members(indexes: Indexes, namespace: str, deployment: str) -> list[dict[str, Any]]:
    """AdapterDeployments targeting a Deployment, without those being deleted."""
    return [
        b
        for b in _latest(indexes.by_target.get((namespace, deployment), []))
        if not b["metadata"].get("deletionTimestamp")
    ]


# ---------------------------------------------------------------- triggers


@kopf.on.event(c.GROUP, c.VERSION, c.ADAPTERDEPLOYMENT_PLURAL)
async def adapterdeployment_event(
    *, type: str, namespace: str | None, name: str, body: kopf.Body, **kwargs: Any
) -> None:
    key = (namespace or "", name)
    if type == "DELETED":
        uid = str(body.get("metadata", {}).get("uid", ""))
        forget(key)
        async with _guarded(key):
            await sync_target(key[0], _target_of(body), Indexes.of(kwargs), exclude=uid)
        return
    await reconcile_adapterdeployment(key, _plain(body), Indexes.of(kwargs))


async def resync_loop(interval: float) -> None:
    """One periodic pass over the AdapterDeployments that are not settled: canary holds end,
    pinned manifests that did not exist yet appear, transient errors are retried.

    A single task rather than a Kopf timer per object (as for FineTuneJobs); a Ready
    AdapterDeployment changes only through events (its source, Deployment, pods, ConfigMap).
    """
    while True:
        await asyncio.sleep(interval)
        indexes = _serving.indexes
        if indexes is None:
            continue
        for (namespace, _), store in list(indexes.by_target.items()):
            for body in _latest(store):
                key = (namespace, str(body["metadata"]["name"]))
                status = _fresh_status(key, body)
                settled = status.get("phase") == "Ready" and not status.get("canary")
                if settled and key not in _serving.retry:
                    continue
                try:
                    await reconcile_adapterdeployment(key, body, indexes)
                except Exception:  # one broken object must not stop the loop for the others
                    log.exception("%s/%s: reconcile failed", *key)


@kopf.on.event(c.GROUP, c.VERSION, c.FINETUNEJOB_PLURAL)
async def finetunejob_for_serving(*, namespace: str | None, name: str, **kwargs: Any) -> None:
    """A FineTuneJob changed (e.g. published an adapter): reconcile the AdapterDeployments that
    follow it."""
    indexes = Indexes.of(kwargs)
    for body in _latest(indexes.by_job.get((namespace or "", name), [])):
        await reconcile_adapterdeployment(
            (namespace or "", body["metadata"]["name"]), body, indexes
        )


@kopf.on.event("apps", "v1", "deployments")
async def target_deployment_event(*, namespace: str | None, name: str, **kwargs: Any) -> None:
    await _reconcile_target((namespace or "", name), Indexes.of(kwargs))


@kopf.on.event("", "v1", "pods", labels={c.LABEL_SERVING_AGENT: "true"})
@kopf.on.event("", "v1", "configmaps", labels={contract.DEPLOYMENT_LABEL: kopf.PRESENT})
async def target_child_event(
    *, namespace: str | None, labels: Mapping[str, str], **kwargs: Any
) -> None:
    deployment = labels.get(contract.DEPLOYMENT_LABEL, "")
    if deployment:
        await _reconcile_target((namespace or "", deployment), Indexes.of(kwargs))


async def _reconcile_target(target: Key, indexes: Indexes) -> None:
    bodies = _latest(indexes.by_target.get(target, []))
    for body in bodies:
        await reconcile_adapterdeployment((target[0], body["metadata"]["name"]), body, indexes)
    if not bodies:
        view = indexes.deployment(*target)
        if (view is not None and view.agent_config) or indexes.config_map(*target) is not None:
            # Nothing targets it any more: take the agent and the desired set away.
            async with _guarded(target):
                await sync_target(target[0], target[1], indexes)


# ---------------------------------------------------------------- the reconcile


def forget(key: Key) -> None:
    st = state()
    _serving.retry.discard(key)
    _serving.written_status.pop(key, None)
    _serving.decided.pop(key, None)
    st.locks.pop(_adep_lock(key), None)


def _namespace_terminating(err: Exception) -> bool:
    """A write refused because the namespace is being deleted: nothing left to converge."""
    if not isinstance(err, ApiError):
        return False
    details = getattr(err.status, "details", None)
    causes = getattr(details, "causes", None) or []
    return any(getattr(cause, "reason", "") == "NamespaceTerminating" for cause in causes) or (
        "is being terminated" in str(err.status.message or "")
    )


@contextlib.asynccontextmanager
async def _guarded(key: Key) -> AsyncIterator[list[str]]:
    """Turn storage and API errors into a warning and a retry on the next tick; yields a
    one-item list holding the metrics result label."""
    result = ["ok"]
    try:
        yield result
    except ObjectStoreUnavailableError as err:
        result[0] = "storage-error"
        log.warning("%s/%s: object store unavailable, retrying on the next tick: %s", *key, err)
    except TRANSIENT as err:
        if _namespace_terminating(err):
            result[0] = "namespace-terminating"
            log.debug("%s/%s: namespace is being deleted: %s", *key, err)
        else:
            result[0] = "api-error"
            log.warning("%s/%s: API error, retrying on the next tick: %s", *key, err)


async def reconcile_adapterdeployment(key: Key, body: dict[str, Any], indexes: Indexes) -> None:
    st = state()
    async with st.capacity, st.locks[_adep_lock(key)]:
        began = time.monotonic()
        async with _guarded(key) as result:
            await _reconcile_locked(st, key, body, indexes)
        if result[0] == "ok":
            _serving.retry.discard(key)
        else:
            _serving.retry.add(key)
        metrics.RECONCILES.labels(c.ADAPTERDEPLOYMENT_KIND, result[0]).inc()
        metrics.RECONCILE_SECONDS.labels(c.ADAPTERDEPLOYMENT_KIND).observe(time.monotonic() - began)


def _fresh_status(key: Key, body: Mapping[str, Any]) -> dict[str, Any]:
    """The newest status this process knows for an AdapterDeployment."""
    uid = str(body["metadata"]["uid"])
    for known in (_serving.decided.get(key), _serving.written_status.get(key)):
        if known is not None and known[0] == uid:
            return copy.deepcopy(known[1])
    return dict(body.get("status") or {})


async def _reconcile_locked(st: State, key: Key, body: dict[str, Any], indexes: Indexes) -> None:
    namespace = key[0]
    uid = str(body["metadata"]["uid"])
    if body["metadata"].get("deletionTimestamp"):
        # Going away (alone or with its namespace): withdraw its entry, report nothing.
        await sync_target(namespace, _target_of(body), indexes, exclude=uid)
        return
    written = _serving.written_status.get(key)
    if written is not None and written[0] == uid:
        body["status"] = copy.deepcopy(written[1])
    spec = body.get("spec") or {}
    target = _target_of(body)
    job_ref = ((spec.get("source") or {}).get("fineTuneJobRef") or {}).get("name")
    finetunejob = None
    if job_ref:
        jobs = list(indexes.finetunejobs.get((namespace, str(job_ref)), []))
        finetunejob = jobs[-1] if jobs else None
    manifest = await _read_manifest(st, body)
    siblings = [
        Member.of(b, st.settings, _fresh_status((namespace, b["metadata"]["name"]), b))
        for b in _members(indexes, namespace, target)
        if str(b["metadata"]["uid"]) != uid
    ]
    plan = reconcile(
        body=body,
        deployment=indexes.deployment(namespace, target),
        pods=list(indexes.pods.get((namespace, target), [])),
        source=resolve_source(spec, finetunejob=finetunejob, manifest=manifest),
        siblings=siblings,
        settings=st.settings,
        now=utcnow(),
    )
    # The agents are told first: status never claims a version the desired set lacks.
    await sync_target(namespace, target, indexes, own=(key, body, plan), exclude=uid)
    for config_map in _stale_desired_sets(indexes, namespace, target, uid):
        await sync_target(namespace, config_map, indexes, exclude=uid)

    old_status = body.get("status") or {}
    patch = merge_patch(old_status, plan.status)
    if patch:
        await st.kube.patch_status(AdapterDeployment, namespace, key[1], patch)
        metrics.API_REQUESTS.labels("status").inc()
    _serving.written_status[key] = (uid, plan.status)
    for event in plan.events:
        _event(body, event.type, event.reason, event.message)


def _stale_desired_sets(indexes: Indexes, namespace: str, target: str, uid: str) -> list[str]:
    """Deployments whose desired set still lists this AdapterDeployment though it now targets
    another Deployment (spec.target.deploymentName changed)."""
    stale = []
    for (ns, deployment), views in indexes.config_maps.items():
        if ns == namespace and deployment != target and any(uid in v.owners for v in views):
            stale.append(deployment)
    return stale


def _event(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    metrics.API_REQUESTS.labels("event").inc()
    kopf.event(cast(kopf.Body, body), type=type_, reason=reason, message=message)


async def _read_manifest(st: State, body: Mapping[str, Any]) -> AdapterView | None:
    """The manifest of a pinned source URI. Published manifests never change, but a person
    may re-upload one, so hits are re-read after a minute; misses after one interval."""
    uri = manifest_uri(body.get("spec") or {})
    if uri is None:
        return None
    now = time.monotonic()
    hit = _serving.manifests.get(uri)
    if hit is not None:
        ttl = MANIFEST_TTL_SECONDS if hit[1] is not None else st.settings.progress_interval * 0.9
        if now - hit[0] < ttl:
            return hit[1]
    endpoint = storage_endpoint(body.get("spec") or {}, st.settings)
    adapter = await st.store.adapter(uri, endpoint=endpoint)
    metrics.STORE_REQUESTS.labels("manifest").inc()
    if len(_serving.manifests) >= MAX_MANIFEST_CACHE:
        _serving.manifests.pop(next(iter(_serving.manifests)))
    _serving.manifests[uri] = (now, adapter)
    return adapter


# ---------------------------------------------------------------- objects shared per Deployment


async def sync_target(
    namespace: str,
    deployment: str,
    indexes: Indexes,
    *,
    own: tuple[Key, Mapping[str, Any], Plan] | None = None,
    exclude: str = "",
) -> None:
    """Bring the desired set, the agent injection and the agent RBAC of one Deployment in
    line with every AdapterDeployment targeting it. ``own`` is the reconcile in progress
    (its new status is not written yet); ``exclude`` a uid to leave out (deleted/retargeted).
    """
    st = state()
    async with st.locks[_target_lock(namespace, deployment)]:
        members = [
            Member.of(b, st.settings, _fresh_status((namespace, b["metadata"]["name"]), b))
            for b in _members(indexes, namespace, deployment)
            if str(b["metadata"]["uid"]) != exclude
        ]
        if own is not None:
            key, body, plan = own
            members.append(Member.of(body, st.settings, plan.status))
        view = indexes.deployment(namespace, deployment)
        plan_ = plan_target(
            namespace=namespace,
            deployment_name=deployment,
            deployment=view,
            members=members,
            config_map=indexes.config_map(namespace, deployment),
            settings=st.settings,
        )
        if plan_.config_map is not None:
            await st.kube.apply_fields(plan_.config_map, field_manager=FIELD_MANAGER)
            metrics.API_REQUESTS.labels("apply").inc()
        if own is not None:
            key, body, plan = own
            _serving.decided[key] = (str(body["metadata"]["uid"]), copy.deepcopy(plan.status))
        if plan_.inject is not None and view is not None and not _injected(view, plan_.inject):
            after = await st.kube.apply_fields(plan_.inject, field_manager=FIELD_MANAGER)
            metrics.API_REQUESTS.labels("apply").inc()
            _serving.injected[(namespace, deployment)] = (
                _config_of(plan_.inject),
                int(after.get("generation") or 0),
            )
            if own is not None and after.get("generation") != view.generation:
                _event(
                    own[1],
                    "Normal",
                    "AgentInjected",
                    f"added the kubetune agent sidecar and adapter volume to Deployment "
                    f"{deployment} with server-side apply (its pods roll out once)",
                )
        if plan_.release is not None:
            await st.kube.apply_fields(plan_.release, field_manager=FIELD_MANAGER)
            metrics.API_REQUESTS.labels("apply").inc()
            log.info("%s/%s: no AdapterDeployment left; removed the agent", namespace, deployment)
        await _sync_rbac(st, namespace, deployment, plan_.rbac, own)
        if plan_.delete_config_map:
            await st.kube.delete_if_present(
                "v1",
                "ConfigMap",
                namespace,
                f"{contract.DESIRED_ADAPTERS_CONFIGMAP_PREFIX}{deployment}",
            )
        if plan_.delete_rbac and AGENT_RBAC:
            name = agent_rbac_name(deployment)
            for kind in ("RoleBinding", "Role"):
                await st.kube.delete_if_present(
                    "rbac.authorization.k8s.io/v1", kind, namespace, name
                )
                _serving.rbac_applied.pop((namespace, kind, name), None)


def _config_of(inject: Mapping[str, Any]) -> str:
    return str(next(iter(inject["metadata"]["annotations"].values())))


def _injected(view: DeploymentView, inject: Mapping[str, Any]) -> bool:
    """This process already applied this configuration and the index has not caught up."""
    done = _serving.injected.get((view.namespace, view.name))
    return done is not None and done[0] == _config_of(inject) and view.generation < done[1]


async def _sync_rbac(
    st: State,
    namespace: str,
    deployment: str,
    manifests: list[dict[str, Any]],
    own: tuple[Key, Mapping[str, Any], Plan] | None,
) -> None:
    """Apply the agent's Role/RoleBinding when they changed since this process applied them.

    Forbidden (the chart did not grant the operator RBAC verbs) is not an error: the chart or
    the Deployment's owners provide the Role; the operator says so once and backs off.
    """
    if not AGENT_RBAC or time.monotonic() < _serving.rbac_forbidden_until.get(namespace, 0.0):
        return
    for manifest in manifests:
        key = (namespace, str(manifest["kind"]), str(manifest["metadata"]["name"]))
        content = json.dumps(manifest, sort_keys=True)
        if _serving.rbac_applied.get(key) == content:
            continue
        try:
            await st.kube.apply_fields(manifest, field_manager=FIELD_MANAGER)
        except ApiError as err:
            if err.status.code != 403:
                raise
            _serving.rbac_forbidden_until[namespace] = time.monotonic() + FORBIDDEN_BACKOFF_SECONDS
            message = (
                f"cannot create the agent's {manifest['kind']} {key[2]} ({err.status.message}); "
                "create it as docs/security.md shows, or grant the operator the rights, or set "
                "KUBETUNE_AGENT_RBAC=false"
            )
            log.warning("%s/%s: %s", namespace, deployment, message)
            if own is not None:
                _event(own[1], "Warning", "AgentRBACForbidden", message)
            return
        metrics.API_REQUESTS.labels("apply").inc()
        _serving.rbac_applied[key] = content
