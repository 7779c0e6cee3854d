"""What the agent should do next, decided from what it observes: the pure core of the sync loop.

Given the desired set, what the engine has loaded, what is verified on disk, failures,
in-flight request counts and the current routes, ``decide`` returns the new routes, the
versions to download/verify, load and unload, the folders to delete, readiness and the
per-adapter state to report. No I/O, no clock: the caller passes ``now``.

The rules that make a rollout lose no request:

- a stable name is routed to its target version only once the engine has loaded it; until
  then it stays on the version it was routed to (the old one keeps serving through a slow
  download, a failed verification or a refused load);
- a version is unloaded only when nothing routes to it, it is no longer anyone's target and
  no request is in flight on it;
- the engine's own model list is the truth about what is loaded, so versions the engine
  forgot (it restarted) are simply loaded again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from kubetune.api.contract import (
    ADAPTER_STATE_FAILED,
    ADAPTER_STATE_LOADING,
    ADAPTER_STATE_READY,
)
from kubetune.serving.agent.desired import DesiredAdapter, DesiredSet, VersionRef, split_engine_name


@dataclass(frozen=True)
class Failure:
    """Why a version could not be staged or loaded, and when to try again."""

    message: str
    permanent: bool  # verification or engine refusal: reported Failed; else transient
    retry_at: float
    attempts: int = 1


@dataclass(frozen=True)
class Observed:
    pod_name: str
    desired: DesiredSet | None  # None: the ConfigMap has not been read yet
    engine_up: bool
    engine_adapters: frozenset[str]  # versioned names the engine lists
    now: float
    staged: frozenset[str] = frozenset()  # verified on disk, ready to load
    staging: frozenset[str] = frozenset()  # download/verification under way
    on_disk: frozenset[str] = frozenset()  # version folders present in the adapter volume
    failures: Mapping[str, Failure] = field(default_factory=dict)
    inflight: Mapping[str, int] = field(default_factory=dict)
    routes: Mapping[str, str] = field(default_factory=dict)
    lost: frozenset[str] = frozenset()  # versions the engine dropped without being asked


@dataclass(frozen=True)
class AdapterReport:
    """One adapter's entry in the pod annotation (``kubetune.io/adapter-state``)."""

    version: str
    digest: str
    state: str
    message: str
    serving_version: str | None = None


@dataclass(frozen=True)
class Plan:
    routes: dict[str, str]  # stable name -> versioned engine name
    unavailable: dict[str, str]  # stable name -> why no version serves it yet
    stage: tuple[VersionRef, ...] = ()
    load: tuple[VersionRef, ...] = ()
    unload: tuple[str, ...] = ()
    delete: tuple[str, ...] = ()
    draining: dict[str, int] = field(default_factory=dict)
    ready: bool = False
    ready_reason: str = ""
    converged: bool = False
    report: dict[str, AdapterReport] = field(default_factory=dict)


def decide(obs: Observed) -> Plan:
    if obs.desired is None:
        return Plan(
            routes=dict(obs.routes),
            unavailable={},
            ready=False,
            ready_reason="the desired adapter set has not been read yet",
        )
    loaded = obs.engine_adapters
    routes: dict[str, str] = {}
    unavailable: dict[str, str] = {}
    stage: list[VersionRef] = []
    load: list[VersionRef] = []
    targets: dict[str, VersionRef] = {}
    for adapter in obs.desired.adapters:
        target = adapter.target_for(obs.pod_name)
        targets[adapter.name] = target
        serving = _serving_version(adapter, target, obs)
        if serving is None:
            unavailable[adapter.name] = _unavailable_reason(target, obs)
        else:
            routes[adapter.name] = serving
        step = _next_step(target, obs)
        if step == "load":
            load.append(target)
        elif step == "stage":
            stage.append(target)

    wanted = {t.engine_name for t in targets.values()} | set(routes.values())
    unload: list[str] = []
    draining: dict[str, int] = {}
    if obs.engine_up:
        for name in sorted(loaded - wanted):
            count = obs.inflight.get(name, 0)
            if count:
                draining[name] = count
            else:
                unload.append(name)
    # Loaded versions keep their folder: vLLM may evict a LoRA from its cache and re-read it.
    # With the engine silent we do not know what it holds, so nothing is deleted.
    needed = wanted | loaded | obs.staging
    delete = tuple(sorted(obs.on_disk - needed)) if obs.engine_up else ()

    ready, reason = _readiness(obs, unavailable)
    converged = (
        ready
        and all(routes.get(n) == t.engine_name for n, t in targets.items())
        and not unload
        and not draining
    )
    report = {
        adapter.name: _report(targets[adapter.name], routes.get(adapter.name), obs)
        for adapter in obs.desired.adapters
    }
    for name, message in obs.desired.invalid.items():
        report[name] = AdapterReport(
            version="", digest="", state=ADAPTER_STATE_FAILED, message=f"invalid entry: {message}"
        )
    return Plan(
        routes=routes,
        unavailable=unavailable,
        stage=tuple(stage),
        load=tuple(load),
        unload=tuple(unload),
        delete=delete,
        draining=draining,
        ready=ready,
        ready_reason=reason,
        converged=converged,
        report=report,
    )


def _serving_version(adapter: DesiredAdapter, target: VersionRef, obs: Observed) -> str | None:
    """The loaded version requests for ``adapter`` go to, preferring the target."""
    loaded = obs.engine_adapters
    if target.engine_name in loaded:
        return target.engine_name
    current = obs.routes.get(adapter.name)
    if current in loaded:
        return current
    # After an agent restart the engine may still hold versions: prefer the active one.
    if adapter.active.engine_name in loaded:
        return adapter.active.engine_name
    others = sorted(n for n in loaded if (split_engine_name(n) or ("",))[0] == adapter.name)
    return others[-1] if others else None


def _next_step(target: VersionRef, obs: Observed) -> str | None:
    """ "stage", "load" or None (loaded, in progress, or waiting out a failure's backoff)."""
    name = target.engine_name
    failure = obs.failures.get(name)
    if name in obs.engine_adapters or (failure is not None and failure.retry_at > obs.now):
        return None
    if name in obs.staged:
        return "load" if obs.engine_up else None
    return None if name in obs.staging else "stage"


def _readiness(obs: Observed, unavailable: Mapping[str, str]) -> tuple[bool, str]:
    if not obs.engine_up:
        return False, "the engine is not answering"
    if unavailable:
        names = ", ".join(sorted(unavailable))
        return False, f"no loaded version yet for: {names}"
    return True, "every desired adapter is served"


def _unavailable_reason(target: VersionRef, obs: Observed) -> str:
    failure = obs.failures.get(target.engine_name)
    if failure is not None and failure.permanent:
        return f"adapter {target.name!r} version {target.version} failed: {failure.message}"
    return (
        f"adapter {target.name!r} version {target.version} is still loading on this replica; "
        "retry shortly"
    )


def _report(target: VersionRef, serving: str | None, obs: Observed) -> AdapterReport:
    split = split_engine_name(serving) if serving else None
    serving_version = split[1] if split else None

    def entry(state: str, message: str) -> AdapterReport:
        return AdapterReport(
            version=target.version,
            digest=target.digest,
            state=state,
            message=message,
            serving_version=serving_version,
        )

    if target.engine_name in obs.engine_adapters:
        return entry(ADAPTER_STATE_READY, f"serving version {target.version}")
    still = f"; still serving version {serving_version}" if serving_version else ""
    failure = obs.failures.get(target.engine_name)
    if failure is not None and failure.permanent:
        return entry(ADAPTER_STATE_FAILED, failure.message + still)
    if not obs.engine_up:
        message = "waiting for the engine to answer"
    elif failure is not None:
        message = f"retrying after a transient error: {failure.message}"
    elif target.engine_name in obs.lost:
        message = "the engine restarted and lost this version; loading it again"
    elif target.engine_name in obs.staging:
        message = "downloading and verifying"
    elif target.engine_name in obs.staged:
        message = "verified; loading into the engine"
    else:
        message = "queued"
    return entry(ADAPTER_STATE_LOADING, message + still)
