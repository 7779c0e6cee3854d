"""The AdapterDeployment reconcile, in two pure halves.

``reconcile``: from (object, target Deployment, its inference pods and their agents' reports,
the resolved source, the other AdapterDeployments on the same Deployment, now) to the desired
status and the events. It decides which version serves:

- the candidate is the source's latest adapter (a FineTuneJob's ``latestAdapter`` or the
  manifest at a pinned URI), or the version ``spec.source.digest`` names among the known ones;
- a candidate must pass ``promotion.gates`` (and beat the active version's evalLoss with
  ``requireImprovement``, except for an explicitly pinned digest) or the promotion is blocked
  and the active version keeps serving;
- the first version, a version that served before (rollback) and any version without a canary
  are promoted at once; otherwise the candidate goes to the first ``canary.replicas`` ready
  pods, and is promoted ``holdSeconds`` after all of them report it Ready;
- a pod reporting Failed for the canary, or for a freshly promoted version that has not yet
  rolled out everywhere, reverts to the version before; that digest is remembered and not
  retried until ``spec.source`` changes.

``plan_target``: from every AdapterDeployment on one Deployment (with their latest statuses)
to the objects they share: the desired-set ConfigMap, the agent injection and its RBAC.

Pure and idempotent: replaying a reconcile on the same inputs changes no status, emits no
events and plans no writes beyond the ones the observed objects still lack.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubetune.api import contract
from kubetune.operator.conditions import Event, get_condition, set_condition
from kubetune.operator.observed import AdapterView
from kubetune.operator.observed_serving import (
    AGENT_CONTAINER,
    AdapterReport,
    ConfigMapView,
    DeploymentView,
    ServingPodView,
)
from kubetune.operator.render_serving import (
    AgentTarget,
    desired_document,
    desired_entry,
    owner_reference,
    render_agent_injection,
    render_agent_release,
    render_agent_role,
    render_agent_role_binding,
    render_desired_config_map,
    version_of,
)
from kubetune.operator.settings import Settings
from kubetune.operator.spec import ObjectRef

Manifest = dict[str, Any]

# ---------------------------------------------------------------- conditions and reasons
COND_READY = "Ready"
COND_PROGRESSING = "Progressing"
COND_DEGRADED = "Degraded"
COND_PROMOTION_BLOCKED = "PromotionBlocked"

REASON_GATE_FAILED = "GateFailed"
REASON_NO_IMPROVEMENT = "NoImprovement"
REASON_UNKNOWN_DIGEST = "UnknownDigest"
REASON_SOURCE_NOT_READY = "SourceNotReady"
REASON_NAME_CONFLICT = "NameConflict"
REASON_TARGET_CONFLICT = "TargetConflict"
REASON_INVALID_TARGET = "InvalidTarget"
REASON_DEPLOYMENT_NOT_FOUND = "DeploymentNotFound"
REASON_ROLLOUT_FAILED = "RolloutFailed"
REASON_POD_FAILED = "PodFailed"
REASON_CANARY = "Canary"
REASON_ROLLING_OUT = "RollingOut"
REASON_ROLLOUT_COMPLETE = "RolloutComplete"
REASON_PROMOTED = "Promoted"
REASON_CANARY_STARTED = "CanaryStarted"
REASON_CANARY_ABORTED = "CanaryAborted"
REASON_PROMOTABLE = "Promotable"
REASON_AS_EXPECTED = "AsExpected"
REASON_NO_VERSION = "NoVersion"

MAX_PODS_IN_STATUS = 512
BLOCKING_REASONS_THAT_WAIT = frozenset({REASON_SOURCE_NOT_READY})
"""Blocks that mean "nothing to serve yet" rather than "refused": phase Pending, not Blocked,
while no version is active."""


@dataclass
class Plan:
    status: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)


# ---------------------------------------------------------------- versions and sources


@dataclass(frozen=True)
class Version:
    digest: str
    uri: str
    run: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return version_of(self.digest)

    @property
    def label(self) -> str:
        return f"{self.version} (run {self.run})" if self.run else self.version

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"digest": self.digest, "version": self.version, "uri": self.uri}
        if self.run:
            out["run"] = self.run
        out["metrics"] = dict(self.metrics)
        return out

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> Version | None:
        if not raw or not raw.get("digest"):
            return None
        metrics = {
            str(k): float(v)
            for k, v in (raw.get("metrics") or {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        return cls(
            digest=str(raw["digest"]),
            uri=str(raw.get("uri", "")),
            run=str(raw.get("run", "") or ""),
            metrics=metrics,
        )


@dataclass(frozen=True)
class SourceView:
    """What the source offers: the version it points at now, and every version it knows."""

    latest: Version | None = None
    known: tuple[Version, ...] = ()
    problem: str = ""
    """Why ``latest`` is None, in words that say what to do."""


def manifest_uri(spec: Mapping[str, Any]) -> str | None:
    """The manifest the glue must read before planning (pinned URIs only)."""
    uri = str((spec.get("source") or {}).get("uri") or "")
    return f"{uri.rstrip('/')}/{contract.MANIFEST_FILE}" if uri else None


def _run_of_uri(uri: str) -> str:
    """``s3://b/p/<run>/adapter/`` -> ``<run>`` (the contract's object layout), else ""."""
    parts = [p for p in uri.removeprefix("s3://").split("/") if p]
    return parts[-2] if len(parts) >= 3 and parts[-1] == contract.ADAPTER_DIR else ""


def resolve_source(
    spec: Mapping[str, Any],
    *,
    finetunejob: Mapping[str, Any] | None,
    manifest: AdapterView | None,
) -> SourceView:
    source = spec.get("source") or {}
    job_ref = (source.get("fineTuneJobRef") or {}).get("name")
    if job_ref:
        if finetunejob is None:
            return SourceView(
                problem=f"FineTuneJob {job_ref} does not exist in this namespace; create it or "
                "fix spec.source.fineTuneJobRef.name"
            )
        job_status = finetunejob.get("status") or {}
        latest = Version.from_mapping(job_status.get("latestAdapter"))
        known = [latest] if latest else []
        for run in job_status.get("runs") or []:
            version = Version.from_mapping(run.get("adapter"))
            if version is not None:
                known.append(version)
        if latest is None:
            phase = job_status.get("phase") or "Pending"
            return SourceView(
                known=tuple(known),
                problem=f"FineTuneJob {job_ref} has not published an adapter yet "
                f"(phase {phase}); waiting for its latestAdapter",
            )
        return SourceView(latest=latest, known=tuple(known))
    uri = str(source.get("uri") or "")
    if manifest is None:
        return SourceView(
            problem=f"no kubetune adapter manifest at {manifest_uri(spec)}: an adapter without a "
            "verifying manifest does not exist; check spec.source.uri (waiting for it to appear)"
        )
    version = Version(
        digest=manifest.digest,
        uri=manifest.uri or uri,
        run=_run_of_uri(uri),
        metrics=manifest.metrics,
    )
    return SourceView(latest=version, known=(version,))


def source_hash(spec: Mapping[str, Any]) -> str:
    canonical = json.dumps(spec.get("source") or {}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- AdapterDeployments on one target


@dataclass(frozen=True)
class Member:
    """One AdapterDeployment on a target Deployment, with its latest status."""

    name: str
    uid: str
    created: str
    adapter_name: str
    agent: AgentTarget
    status: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls, body: Mapping[str, Any], settings: Settings, status: Mapping[str, Any] | None = None
    ) -> Member:
        meta = body.get("metadata", {}) or {}
        spec = body.get("spec", {}) or {}
        return cls(
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            created=str(meta.get("creationTimestamp", "") or ""),
            adapter_name=str(spec.get("adapterName", "")),
            agent=AgentTarget.of(spec, settings),
            status=status if status is not None else (body.get("status") or {}),
        )

    @property
    def order(self) -> tuple[str, str]:
        return (self.created, self.name)


def conflict_of(member: Member, members: Sequence[Member]) -> tuple[str, str] | None:
    """(reason, message) when ``member`` may not contribute to its Deployment's desired set.

    The oldest AdapterDeployment of a Deployment configures its agent; another one must ask
    for the same agent settings, and each adapter name is served by the oldest claimant.
    """
    ordered = sorted(members, key=lambda m: m.order)
    primary = ordered[0]
    if member.uid != primary.uid:
        differences = primary.agent.differences(member.agent)
        if differences:
            return (
                REASON_TARGET_CONFLICT,
                f"AdapterDeployment {primary.name} already configures the agent of Deployment "
                f"{member.agent.deployment} and differs in {', '.join(differences)}; use the same "
                "values (one agent serves every adapter of a Deployment)",
            )
    for other in ordered:
        if other.uid == member.uid:
            break
        if other.adapter_name == member.adapter_name:
            return (
                REASON_NAME_CONFLICT,
                f"AdapterDeployment {other.name} already serves adapterName "
                f"{member.adapter_name!r} on Deployment {member.agent.deployment}; choose another "
                "spec.adapterName",
            )
    return None


def missing_engine_containers(agent: AgentTarget, deployment: DeploymentView) -> list[str]:
    """Named engine containers the Deployment's pod template lacks (applying a volume mount
    to a container that does not exist would add a container without an image)."""
    return [
        name
        for name in agent.engine_containers
        if name not in deployment.containers or name == AGENT_CONTAINER
    ]


def _invalid_target(agent: AgentTarget, deployment: DeploymentView) -> str:
    missing = missing_engine_containers(agent, deployment)
    if missing:
        engines = [n for n in deployment.containers if n != AGENT_CONTAINER]
        return (
            f"spec.target.engineContainers: {', '.join(missing)} not among the containers of "
            f"Deployment {deployment.name} ({', '.join(engines) or 'none'}); fix the names"
        )
    return ""


# ---------------------------------------------------------------- the reconcile


def _parse_time(value: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _seconds_between(start: str, end: str) -> float:
    a, b = _parse_time(start), _parse_time(end)
    return (b - a).total_seconds() if a and b else 0.0


@dataclass
class _Block:
    reason: str
    message: str


def reconcile(
    *,
    body: Mapping[str, Any],
    deployment: DeploymentView | None,
    pods: Sequence[ServingPodView],
    source: SourceView,
    siblings: Sequence[Member],
    settings: Settings,
    now: str,
) -> Plan:
    return _Reconcile(
        body=body,
        deployment=deployment,
        pods=pods,
        source=source,
        siblings=siblings,
        settings=settings,
        now=now,
    ).run()


class _Reconcile:
    """One reconcile's working state; every method is pure over it."""

    def __init__(
        self,
        *,
        body: Mapping[str, Any],
        deployment: DeploymentView | None,
        pods: Sequence[ServingPodView],
        source: SourceView,
        siblings: Sequence[Member],
        settings: Settings,
        now: str,
    ) -> None:
        self.ref = ObjectRef.of(body)
        self.body = body
        self.spec: Mapping[str, Any] = body.get("spec", {}) or {}
        self.old: Mapping[str, Any] = body.get("status") or {}
        self.name = str(self.spec.get("adapterName", ""))
        self.deployment = deployment
        self.pods = sorted((p for p in pods if p.live), key=lambda p: p.name)
        self.source = source
        self.siblings = [s for s in siblings if s.uid != self.ref.uid]
        self.settings = settings
        self.now = now
        self.status: dict[str, Any] = {
            "observedGeneration": self.ref.generation,
            "conditions": [dict(cond) for cond in self.old.get("conditions", [])],
        }
        for key in ("activeVersion", "previousVersion", "canary", "failedVersion"):
            if self.old.get(key):
                self.status[key] = copy.deepcopy(dict(self.old[key]))
        self.events: list[Event] = []

    # ------------------------------------------------------------ helpers

    @property
    def active(self) -> Version | None:
        return Version.from_mapping(self.status.get("activeVersion"))

    @property
    def previous(self) -> Version | None:
        return Version.from_mapping(self.status.get("previousVersion"))

    def report(self, pod: ServingPodView) -> AdapterReport | None:
        return pod.reports.get(self.name)

    def message_of(self, pod: ServingPodView) -> str:
        report = self.report(pod)
        return (report.message if report is not None else "") or "no message"

    def reports_state(self, pod: ServingPodView, digest: str, state: str) -> bool:
        report = self.report(pod)
        return report is not None and report.digest == digest and report.state == state

    def condition(self, type_: str, value: bool, reason: str, message: str) -> None:
        self.status["conditions"] = set_condition(
            self.status["conditions"],
            type_=type_,
            status=value,
            reason=reason,
            message=message,
            generation=self.ref.generation,
            now=self.now,
        )

    def event(self, type_: str, reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    # ------------------------------------------------------------ flow

    def run(self) -> Plan:
        if self.deployment is None:
            target = (self.spec.get("target") or {}).get("deploymentName", "")
            return self.stop(
                phase="Pending",
                reason=REASON_DEPLOYMENT_NOT_FOUND,
                message=f"Deployment {target} not found in namespace {self.ref.namespace}; "
                "create it or fix spec.target.deploymentName",
                blocked=None,
            )
        me = Member.of(self.body, self.settings, self.status)
        conflict = conflict_of(me, [*self.siblings, me])
        invalid = _invalid_target(me.agent, self.deployment)
        if conflict is None and invalid:
            conflict = (REASON_INVALID_TARGET, invalid)
        if conflict is not None:
            refusal = _Block(*conflict)
            return self.stop(
                phase="Blocked", reason=refusal.reason, message=refusal.message, blocked=refusal
            )

        self.observe_failures()
        candidate, block = self.choose_candidate()
        self.advance(candidate, block)
        return self.summarize(candidate, block)

    def stop(self, *, phase: str, reason: str, message: str, blocked: _Block | None) -> Plan:
        """A reconcile that cannot look at versions: keep them, report why."""
        self.status["phase"] = phase
        self.status["replicas"] = self.replica_counts()
        self.status["pods"] = self.pod_states()
        self.condition(COND_READY, False, reason, message)
        self.condition(COND_PROGRESSING, False, reason, message)
        self.condition(COND_DEGRADED, False, REASON_AS_EXPECTED, "")
        self.set_block_condition(blocked)
        if reason == REASON_DEPLOYMENT_NOT_FOUND and self.transitioned(COND_READY, reason):
            self.event("Warning", reason, message)
        return Plan(status=self.status, events=self.events)

    def transitioned(self, type_: str, reason: str) -> bool:
        old = get_condition(self.old.get("conditions", []), type_)
        return old is None or old.get("reason") != reason

    # ------------------------------------------------------------ failures and rollback

    def observe_failures(self) -> None:
        canary = Version.from_mapping(self.status.get("canary"))
        if canary is not None:
            pods = set(self.status["canary"].get("pods") or [])
            failed = next(
                (
                    p
                    for p in self.pods
                    if p.name in pods and self.reports_state(p, canary.digest, "Failed")
                ),
                None,
            )
            if failed is not None:
                message = self.message_of(failed)
                self.status.pop("canary")
                self.record_failure(canary, failed.name, message)
                keeps = self.active.label if self.active else "nothing"
                self.event(
                    "Warning",
                    REASON_ROLLOUT_FAILED,
                    f"canary {canary.label} failed on pod {failed.name}: {message}; withdrew it, "
                    f"{keeps} keeps serving",
                )
            return
        active = self.active
        if active is None or self.status["activeVersion"].get("rolledOutAt"):
            return
        failed = next(
            (p for p in self.pods if self.reports_state(p, active.digest, "Failed")), None
        )
        previous = self.previous
        if failed is None or previous is None:
            return
        message = self.message_of(failed)
        self.record_failure(active, failed.name, message)
        restored = dict(self.status["previousVersion"])
        restored["promotedAt"] = self.now
        restored.pop("rolledOutAt", None)
        self.status["activeVersion"] = restored
        self.status.pop("previousVersion")
        self.event(
            "Warning",
            REASON_ROLLOUT_FAILED,
            f"version {active.label} failed on pod {failed.name}: {message}; rolled back to "
            f"{previous.label}",
        )

    def record_failure(self, version: Version, pod: str, message: str) -> None:
        self.status["failedVersion"] = {
            **version.fields(),
            "pod": pod,
            "message": message[:4096],
            "failedAt": self.now,
            "sourceHash": source_hash(self.spec),
        }

    # ------------------------------------------------------------ which version

    def known_versions(self) -> list[Version]:
        seen: dict[str, Version] = {}
        extra = [
            Version.from_mapping(self.status.get(k))
            for k in ("activeVersion", "previousVersion", "canary")
        ]
        for version in [*self.source.known, *extra]:
            if version is not None and version.digest not in seen:
                seen[version.digest] = version
        return list(seen.values())

    def choose_candidate(self) -> tuple[Version | None, _Block | None]:
        pin = str((self.spec.get("source") or {}).get("digest") or "")
        if pin:
            known = self.known_versions()
            found = next((v for v in known if v.digest == pin), None)
            if found is None:
                listed = ", ".join(f"{v.digest} (run {v.run or '?'})" for v in known[:6]) or "none"
                return None, _Block(
                    REASON_UNKNOWN_DIGEST,
                    f"spec.source.digest {pin} is not a known version (the source's history, "
                    f"status.activeVersion or status.previousVersion); known: {listed}. Fix the "
                    "digest or remove it to follow the source",
                )
            candidate = found
        elif self.source.latest is None:
            return None, _Block(REASON_SOURCE_NOT_READY, self.source.problem)
        else:
            candidate = self.source.latest
        active = self.active
        if active is not None and candidate.digest == active.digest:
            return candidate, None
        return candidate, self.gates(candidate, pinned=bool(pin))

    def gates(self, candidate: Version, *, pinned: bool) -> _Block | None:
        promotion = self.spec.get("promotion") or {}
        keeps = f"; {self.active.label} keeps serving" if self.active else ""
        for metric, gate in sorted((promotion.get("gates") or {}).items()):
            value = candidate.metrics.get(metric)
            if value is None:
                have = ", ".join(sorted(candidate.metrics)) or "none"
                return _Block(
                    REASON_GATE_FAILED,
                    f"spec.promotion.gates.{metric}: candidate {candidate.label} has no {metric} "
                    f"metric in its manifest (it has: {have}); evaluate that metric or remove "
                    f"the gate{keeps}",
                )
            if gate.get("min") is not None and value < float(gate["min"]):
                return _Block(
                    REASON_GATE_FAILED,
                    f"spec.promotion.gates.{metric}: candidate {candidate.label} has {metric} "
                    f"{value:g} < min {float(gate['min']):g}{keeps}",
                )
            if gate.get("max") is not None and value > float(gate["max"]):
                return _Block(
                    REASON_GATE_FAILED,
                    f"spec.promotion.gates.{metric}: candidate {candidate.label} has {metric} "
                    f"{value:g} > max {float(gate['max']):g}{keeps}",
                )
        active = self.active
        if promotion.get("requireImprovement") and active is not None and not pinned:
            metric = contract.METRIC_EVAL_LOSS
            mine, theirs = candidate.metrics.get(metric), active.metrics.get(metric)
            if mine is None or theirs is None:
                which = candidate.label if mine is None else f"active {active.label}"
                return _Block(
                    REASON_NO_IMPROVEMENT,
                    f"spec.promotion.requireImprovement: {which} has no {metric} to compare; "
                    f"evaluate with loss or set requireImprovement: false{keeps}",
                )
            if not mine < theirs:
                return _Block(
                    REASON_NO_IMPROVEMENT,
                    f"spec.promotion.requireImprovement: candidate {candidate.label} {metric} "
                    f"{mine:g} is not lower than active {active.label} {metric} {theirs:g}{keeps}",
                )
        return None

    # ------------------------------------------------------------ promotion and canary

    def advance(self, candidate: Version | None, block: _Block | None) -> None:
        active = self.active
        canary = Version.from_mapping(self.status.get("canary"))
        promotable = (
            candidate is not None
            and block is None
            and (active is None or candidate.digest != active.digest)
            and not self.refused(candidate)
        )
        if canary is not None and (
            not promotable or candidate is None or canary.digest != candidate.digest
        ):
            self.status.pop("canary")
            why = (
                block.message
                if block is not None
                else f"the source moved to {candidate.label}"
                if candidate is not None
                else "the source has no version"
            )
            self.event("Normal", REASON_CANARY_ABORTED, f"canary {canary.label} withdrawn: {why}")
        if not promotable or candidate is None:
            return
        previous = self.previous
        canary_replicas = int(
            ((self.spec.get("promotion") or {}).get("canary") or {}).get("replicas", 0)
        )
        served_before = previous is not None and previous.digest == candidate.digest
        if active is None or canary_replicas <= 0 or served_before:
            self.promote(candidate, how="")
            return
        self.run_canary(candidate, canary_replicas)

    def refused(self, candidate: Version) -> bool:
        failed = self.status.get("failedVersion") or {}
        return bool(
            failed.get("digest") == candidate.digest
            and failed.get("sourceHash") == source_hash(self.spec)
        )

    def run_canary(self, candidate: Version, replicas: int) -> None:
        live = {p.name: p for p in self.pods}
        canary = self.status.get("canary")
        if canary is not None:
            kept = [name for name in canary.get("pods") or [] if name in live]
            if kept != list(canary.get("pods") or []):
                canary["pods"] = kept
                canary.pop("healthySince", None)
        if canary is None or not canary.get("pods"):
            eligible = [p.name for p in self.pods if p.ready and p.phase == "Running"]
            chosen = eligible[:replicas]
            if not chosen:
                return  # summarize() reports that the canary waits for a ready pod
            started = canary is None
            canary = {**candidate.fields(), "pods": chosen, "startedAt": self.now}
            self.status["canary"] = canary
            if started:
                self.event(
                    "Normal",
                    REASON_CANARY_STARTED,
                    f"canary {candidate.label} on pod(s) {', '.join(chosen)}",
                )
            return
        healthy = all(
            self.reports_state(live[name], candidate.digest, "Ready") for name in canary["pods"]
        )
        if not healthy:
            canary.pop("healthySince", None)
            return
        canary.setdefault("healthySince", self.now)
        hold = int(((self.spec.get("promotion") or {}).get("canary") or {}).get("holdSeconds", 60))
        held = _seconds_between(canary["healthySince"], self.now)
        if held >= hold:
            pods = ", ".join(canary["pods"])
            self.status.pop("canary")
            self.promote(candidate, how=f" after a healthy canary on {pods} for {held:g}s")

    def promote(self, candidate: Version, *, how: str) -> None:
        active = self.active
        if active is not None:
            previous = dict(self.status["activeVersion"])
            self.status["previousVersion"] = previous
        self.status["activeVersion"] = {**candidate.fields(), "promotedAt": self.now}
        failed = self.status.get("failedVersion") or {}
        if failed and failed.get("digest") != candidate.digest:
            self.status.pop("failedVersion")
        replaced = f"; previous {active.label}" if active is not None else ""
        self.event("Normal", REASON_PROMOTED, f"promoted {candidate.label}{how}{replaced}")

    # ------------------------------------------------------------ status

    def target_digest(self, pod: ServingPodView) -> str:
        canary = self.status.get("canary") or {}
        if canary.get("digest") and pod.name in (canary.get("pods") or []):
            return str(canary["digest"])
        return str((self.status.get("activeVersion") or {}).get("digest", ""))

    def replica_counts(self) -> dict[str, int]:
        active = str((self.status.get("activeVersion") or {}).get("digest", ""))
        desired = self.deployment.replicas if self.deployment is not None else 0
        if self.deployment is None:
            return {"desired": 0, "ready": 0, "updated": 0}
        ready = sum(1 for p in self.pods if active and self.reports_state(p, active, "Ready"))
        updated = sum(
            1
            for p in self.pods
            if self.target_digest(p) and self.reports_state(p, self.target_digest(p), "Ready")
        )
        return {"desired": desired, "ready": ready, "updated": updated}

    def pod_states(self) -> list[dict[str, Any]]:
        states = []
        for pod in self.pods[:MAX_PODS_IN_STATUS]:
            report = self.report(pod)
            if report is None:
                states.append(
                    {
                        "name": pod.name,
                        "version": "",
                        "state": "Unknown",
                        "message": pod.report_error or "no report from the agent yet",
                    }
                )
                continue
            states.append(
                {
                    "name": pod.name,
                    "version": report.version or version_of(report.digest),
                    "state": report.state,
                    "message": report.message[:1024],
                }
            )
        return states

    def set_block_condition(self, block: _Block | None) -> None:
        if block is None:
            self.condition(COND_PROMOTION_BLOCKED, False, REASON_PROMOTABLE, "")
            return
        old = get_condition(self.old.get("conditions", []), COND_PROMOTION_BLOCKED)
        self.condition(COND_PROMOTION_BLOCKED, True, block.reason, block.message)
        if (
            old is None
            or old.get("status") != "True"
            or old.get("reason") != block.reason
            or old.get("message") != block.message
        ):
            self.event("Warning", block.reason, block.message)

    def summarize(self, candidate: Version | None, block: _Block | None) -> Plan:
        replicas = self.replica_counts()
        self.status["replicas"] = replicas
        self.status["pods"] = self.pod_states()
        self.complete_rollout(replicas)
        failure = self.standing_failure(candidate)
        progress = self.progress(candidate, block, failure, replicas)
        phase = self.phase(block, failure, progressing=progress is not None)
        self.status["phase"] = phase
        if progress is not None:
            self.condition(COND_PROGRESSING, True, *progress)
        else:
            self.condition(COND_PROGRESSING, False, phase, "")
        self.ready_condition(phase, block, failure, progress, replicas)
        if failure is not None:
            self.condition(COND_DEGRADED, True, *failure)
        else:
            self.condition(COND_DEGRADED, False, REASON_AS_EXPECTED, "")
        self.set_block_condition(block)
        return Plan(status=self.status, events=self.events)

    def complete_rollout(self, replicas: Mapping[str, int]) -> None:
        """Stamp rolledOutAt once every desired replica reports the active version Ready:
        from then on a failing pod no longer rolls the version back."""
        active = self.active
        if active is None or self.status["activeVersion"].get("rolledOutAt"):
            return
        if self.status.get("canary") is None and replicas["ready"] >= replicas["desired"]:
            self.status["activeVersion"]["rolledOutAt"] = self.now
            self.event(
                "Normal",
                REASON_ROLLOUT_COMPLETE,
                f"{active.label} serves on {replicas['ready']}/{replicas['desired']} replicas",
            )

    def progress(
        self,
        candidate: Version | None,
        block: _Block | None,
        failure: tuple[str, str] | None,
        replicas: Mapping[str, int],
    ) -> tuple[str, str] | None:
        """(reason, message) of the Progressing condition while a rollout moves; else None."""
        active = self.active
        canary = self.status.get("canary")
        if canary is not None:
            healthy = (
                f", healthy since {canary['healthySince']}"
                if canary.get("healthySince")
                else ", waiting for the pod(s) to report it Ready"
            )
            pods = ", ".join(canary.get("pods") or [])
            return REASON_CANARY, f"canary {canary.get('version')} on {pods}{healthy}"
        if (
            candidate is not None
            and block is None
            and failure is None
            and active is not None
            and candidate.digest != active.digest
        ):
            deployment = self.deployment.name if self.deployment else ""
            return (
                REASON_CANARY,
                f"canary {candidate.label} waits for a ready pod of Deployment {deployment}",
            )
        if active is not None and replicas["ready"] < replicas["desired"]:
            return (
                REASON_ROLLING_OUT,
                f"{active.label} Ready on {replicas['ready']}/{replicas['desired']} replicas",
            )
        return None

    def phase(
        self, block: _Block | None, failure: tuple[str, str] | None, *, progressing: bool
    ) -> str:
        if failure is not None:
            return "Degraded"
        if block is not None:
            if self.active is None and block.reason in BLOCKING_REASONS_THAT_WAIT:
                return "Pending"
            return "Blocked"
        if self.active is None:
            return "Pending"
        return "Progressing" if progressing else "Ready"

    def ready_condition(
        self,
        phase: str,
        block: _Block | None,
        failure: tuple[str, str] | None,
        progress: tuple[str, str] | None,
        replicas: Mapping[str, int],
    ) -> None:
        """Ready=True exactly in phase Ready, so `kubectl wait --for=condition=Ready` waits
        for the whole rollout; otherwise the reason of the phase."""
        active = self.active
        if phase == "Ready" and active is not None:
            message = f"{active.label} Ready on {replicas['ready']}/{replicas['desired']} replicas"
            self.condition(COND_READY, True, REASON_ROLLOUT_COMPLETE, message)
            return
        reason, message = (
            failure
            or ((block.reason, block.message) if block is not None else None)
            or progress
            or (REASON_NO_VERSION, "no version promoted yet")
        )
        self.condition(COND_READY, False, reason, message)

    def standing_failure(self, candidate: Version | None) -> tuple[str, str] | None:
        """A failure that still stands: the candidate is a refused digest, or pods report
        Failed for the version desired for them."""
        failed = self.status.get("failedVersion") or {}
        if candidate is not None and failed and self.refused(candidate):
            active = self.active
            keeps = f"{active.label} keeps serving" if active else "nothing is served"
            return (
                REASON_ROLLOUT_FAILED,
                f"version {candidate.label} failed on pod {failed.get('pod', '')}: "
                f"{failed.get('message', '')}; {keeps}; it is not retried until spec.source "
                "changes",
            )
        for pod in self.pods:
            digest = self.target_digest(pod)
            if digest and self.reports_state(pod, digest, "Failed"):
                rolled_out = (self.status.get("activeVersion") or {}).get("rolledOutAt")
                reason = REASON_POD_FAILED if rolled_out else REASON_ROLLOUT_FAILED
                return (
                    reason,
                    f"pod {pod.name} failed to load {version_of(digest)}: {self.message_of(pod)}",
                )
        return None


# ---------------------------------------------------------------- objects shared per Deployment


@dataclass
class TargetPlan:
    """Writes for one target Deployment; None/False: the observed object is already right."""

    config_map: Manifest | None = None
    delete_config_map: bool = False
    inject: Manifest | None = None
    release: Manifest | None = None
    rbac: list[Manifest] = field(default_factory=list)
    """Role and RoleBinding as they should be (the glue skips unchanged re-applies)."""
    delete_rbac: bool = False


def plan_target(
    *,
    namespace: str,
    deployment_name: str,
    deployment: DeploymentView | None,
    members: Sequence[Member],
    config_map: ConfigMapView | None,
    settings: Settings,
) -> TargetPlan:
    plan = TargetPlan()
    if not members:
        if deployment is not None and deployment.agent_config:
            plan.release = render_agent_release(namespace=namespace, deployment=deployment_name)
        plan.delete_config_map = config_map is not None
        plan.delete_rbac = config_map is not None or plan.release is not None
        return plan
    ordered = sorted(members, key=lambda m: m.order)
    entries = []
    for member in ordered:
        if conflict_of(member, ordered) is not None:
            continue
        entry = desired_entry(member.adapter_name, member.status)
        if entry is not None:
            entries.append(entry)
    owners = [
        owner_reference(name=m.name, uid=m.uid) for m in sorted(ordered, key=lambda m: m.name)
    ]
    document = desired_document(entries)
    if (
        config_map is None
        or config_map.desired != document
        or config_map.owners != tuple(sorted(m.uid for m in ordered))
    ):
        plan.config_map = render_desired_config_map(
            namespace=namespace, deployment=deployment_name, document=document, owners=owners
        )
    if deployment is None:
        return plan
    primary = ordered[0]
    if missing_engine_containers(primary.agent, deployment):
        return plan  # the primary's status says what to fix; never apply a broken template
    inject = render_agent_injection(deployment=deployment, target=primary.agent, settings=settings)
    wanted = inject["metadata"]["annotations"]
    if not deployment.agent_present or deployment.agent_config != next(iter(wanted.values())):
        plan.inject = inject
    plan.rbac = [
        render_agent_role(namespace=namespace, deployment=deployment_name, owners=owners),
        render_agent_role_binding(
            namespace=namespace,
            deployment=deployment_name,
            service_account=deployment.service_account,
            owners=owners,
        ),
    ]
    return plan
