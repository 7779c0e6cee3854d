"""The agent's pure decisions (``kubetune.serving.agent.plan.decide``), as a table.

Covers: nothing happens before the desired set is read; a fresh pod stages, then loads, then
routes and is ready; a switch keeps routing to the old version until the new one is loaded,
then drains the old one (no unload while requests are in flight) and unloads it; a failed
version is retried only after its backoff, is reported Failed with the old version still
serving, and a transient error is reported as Loading; versions the engine lost are staged
again; canary pods target the canary; adapters dropped from the desired set are unloaded;
version folders no one needs are deleted, loaded ones kept, none while the engine is silent;
after an agent restart the engine's active version is adopted; invalid entries are reported
Failed; readiness and its reason.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from kubetune.serving.agent.desired import DesiredAdapter, DesiredSet, VersionRef
from kubetune.serving.agent.plan import Failure, Observed, Plan, decide

POD = "serving-0"


def ref(name: str, n: int) -> VersionRef:
    digest = "sha256:" + f"{n:02x}" * 32
    return VersionRef(
        name=name, version=digest[7:19], uri=f"s3://adapters/{name}/{n}/", digest=digest
    )


V1, V2 = ref("support", 1), ref("support", 2)
OTHER = ref("other", 3)


def desired(*adapters: DesiredAdapter, invalid: dict[str, str] | None = None) -> DesiredSet:
    return DesiredSet(resource_version="7", adapters=adapters, invalid=invalid or {})


def observed(**overrides: Any) -> Observed:
    base = Observed(
        pod_name=POD,
        desired=desired(DesiredAdapter(name="support", active=V1)),
        engine_up=True,
        engine_adapters=frozenset(),
        now=100.0,
    )
    return replace(base, **overrides)


ON_V2 = desired(DesiredAdapter(name="support", active=V2))
FAILED_V2 = Failure(message="digest mismatch", permanent=True, retry_at=200.0)

CASES = [
    pytest.param(
        observed(desired=None),
        {"routes": {}, "stage": [], "ready": False, "reason": "has not been read"},
        id="desired-set-not-read-yet",
    ),
    pytest.param(
        observed(),
        {
            "routes": {},
            "stage": [V1],
            "ready": False,
            "reason": "support",
            "state": ("Loading", "queued"),
        },
        id="fresh-pod-stages",
    ),
    pytest.param(
        observed(staging=frozenset({V1.engine_name})),
        {"stage": [], "load": [], "state": ("Loading", "downloading and verifying")},
        id="staging-in-progress",
    ),
    pytest.param(
        observed(staged=frozenset({V1.engine_name})),
        {"load": [V1], "state": ("Loading", "verified; loading into the engine")},
        id="staged-is-loaded",
    ),
    pytest.param(
        observed(staged=frozenset({V1.engine_name}), engine_up=False),
        {
            "load": [],
            "ready": False,
            "reason": "engine",
            "state": ("Loading", "waiting for the engine"),
        },
        id="engine-down-waits-but-keeps-staging",
    ),
    pytest.param(
        observed(engine_adapters=frozenset({V1.engine_name})),
        {
            "routes": {"support": V1.engine_name},
            "ready": True,
            "converged": True,
            "state": ("Ready", f"serving version {V1.version}"),
            "serving": V1.version,
        },
        id="loaded-routes-and-is-ready",
    ),
    pytest.param(
        observed(
            desired=ON_V2,
            engine_adapters=frozenset({V1.engine_name}),
            routes={"support": V1.engine_name},
        ),
        {
            "routes": {"support": V1.engine_name},
            "stage": [V2],
            "unload": [],
            "ready": True,
            "converged": False,
            "state": ("Loading", f"queued; still serving version {V1.version}"),
            "serving": V1.version,
        },
        id="switch-keeps-old-until-new-loaded",
    ),
    pytest.param(
        observed(
            desired=ON_V2,
            engine_adapters=frozenset({V1.engine_name, V2.engine_name}),
            routes={"support": V1.engine_name},
            inflight={V1.engine_name: 2},
        ),
        {
            "routes": {"support": V2.engine_name},
            "unload": [],
            "draining": {V1.engine_name: 2},
            "converged": False,
            "state": ("Ready", "serving"),
        },
        id="switch-drains-old-version",
    ),
    pytest.param(
        observed(
            desired=ON_V2,
            engine_adapters=frozenset({V1.engine_name, V2.engine_name}),
            routes={"support": V2.engine_name},
        ),
        {"routes": {"support": V2.engine_name}, "unload": [V1.engine_name], "draining": {}},
        id="drained-old-version-unloaded",
    ),
    pytest.param(
        observed(
            desired=ON_V2,
            engine_adapters=frozenset({V1.engine_name}),
            routes={"support": V1.engine_name},
            failures={V2.engine_name: FAILED_V2},
        ),
        {
            "routes": {"support": V1.engine_name},
            "stage": [],
            "ready": True,
            "state": ("Failed", f"digest mismatch; still serving version {V1.version}"),
            "serving": V1.version,
        },
        id="failed-version-waits-backoff-old-serves",
    ),
    pytest.param(
        observed(
            desired=ON_V2,
            engine_adapters=frozenset({V1.engine_name}),
            now=250.0,
            routes={"support": V1.engine_name},
            failures={V2.engine_name: FAILED_V2},
        ),
        {"stage": [V2], "state": ("Failed", "digest mismatch")},
        id="failed-version-retried-after-backoff",
    ),
    pytest.param(
        observed(failures={V1.engine_name: replace(FAILED_V2, permanent=False, message="timeout")}),
        {
            "stage": [],
            "ready": False,
            "state": ("Loading", "retrying after a transient error: timeout"),
        },
        id="transient-error-is-loading",
    ),
    pytest.param(
        observed(
            desired=desired(DesiredAdapter(name="support", active=V1)),
            failures={V1.engine_name: FAILED_V2},
        ),
        {"routes": {}, "ready": False, "reason": "support", "state": ("Failed", "digest mismatch")},
        id="failed-with-nothing-to-serve-is-not-ready",
    ),
    pytest.param(
        observed(routes={"support": V1.engine_name}, lost=frozenset({V1.engine_name})),
        {
            "routes": {},
            "stage": [V1],
            "ready": False,
            "state": ("Loading", "the engine restarted and lost this version"),
        },
        id="engine-restart-reloads",
    ),
    pytest.param(
        observed(
            desired=desired(
                DesiredAdapter(name="support", active=V1, canary=V2, canary_pods=frozenset({POD}))
            )
        ),
        {"stage": [V2]},
        id="canary-pod-targets-canary",
    ),
    pytest.param(
        observed(
            desired=desired(
                DesiredAdapter(
                    name="support", active=V1, canary=V2, canary_pods=frozenset({"serving-1"})
                )
            )
        ),
        {"stage": [V1]},
        id="other-pods-target-active",
    ),
    pytest.param(
        observed(engine_adapters=frozenset({V1.engine_name, OTHER.engine_name})),
        {"routes": {"support": V1.engine_name}, "unload": [OTHER.engine_name]},
        id="adapter-dropped-from-desired-set-unloaded",
    ),
    pytest.param(
        observed(
            engine_adapters=frozenset({V1.engine_name, OTHER.engine_name}),
            inflight={OTHER.engine_name: 1},
        ),
        {"unload": [], "draining": {OTHER.engine_name: 1}},
        id="dropped-adapter-drains-first",
    ),
    pytest.param(
        observed(
            desired=ON_V2,
            engine_adapters=frozenset({V1.engine_name}),
            on_disk=frozenset({V1.engine_name, V2.engine_name, OTHER.engine_name}),
            routes={"support": V1.engine_name},
        ),
        {"delete": [OTHER.engine_name]},
        id="unneeded-folders-deleted-loaded-kept",
    ),
    pytest.param(
        observed(desired=ON_V2, engine_up=False, on_disk=frozenset({V1.engine_name})),
        {"delete": [], "stage": [V2]},
        id="engine-silent-deletes-nothing-but-stages",
    ),
    pytest.param(
        observed(
            desired=desired(
                DesiredAdapter(name="support", active=V1, canary=V2, canary_pods=frozenset({POD}))
            ),
            engine_adapters=frozenset({V1.engine_name}),
        ),
        {"routes": {"support": V1.engine_name}, "stage": [V2], "unload": []},
        id="agent-restart-adopts-active-version",
    ),
    pytest.param(
        observed(
            engine_adapters=frozenset({V1.engine_name}),
            desired=desired(
                DesiredAdapter(name="support", active=V1),
                invalid={"broken": "adapters[1].uri must be s3://"},
            ),
        ),
        {"ready": True, "report": {"broken": ("Failed", "invalid entry: adapters[1].uri")}},
        id="invalid-entries-reported-failed",
    ),
]


@pytest.mark.parametrize(("obs", "expected"), CASES)
def test_decide(obs: Observed, expected: dict[str, Any]) -> None:
    plan = decide(obs)
    checks = {
        "routes": lambda p: p.routes,
        "stage": lambda p: list(p.stage),
        "load": lambda p: list(p.load),
        "unload": lambda p: list(p.unload),
        "delete": lambda p: list(p.delete),
        "draining": lambda p: p.draining,
        "ready": lambda p: p.ready,
        "converged": lambda p: p.converged,
    }
    for key, value in expected.items():
        if key in checks:
            assert checks[key](plan) == value, key
    if "reason" in expected:
        assert expected["reason"] in plan.ready_reason
    if "state" in expected:
        state, message = expected["state"]
        assert plan.report["support"].state == state
        assert message in plan.report["support"].message, plan.report["support"].message
    if "serving" in expected:
        assert plan.report["support"].serving_version == expected["serving"]
    for name, (state, message) in expected.get("report", {}).items():
        assert plan.report[name].state == state and message in plan.report[name].message


def test_a_whole_switch_replayed_step_by_step_never_leaves_the_name_unrouted() -> None:
    """Feeding each plan's effect back in, as the sync loop does, keeps the name routed."""
    obs = observed(
        engine_adapters=frozenset({V1.engine_name}),
        routes={"support": V1.engine_name},
        desired=ON_V2,
        inflight={V1.engine_name: 1},
    )
    for _ in range(8):
        plan: Plan = decide(obs)
        assert "support" in plan.routes, obs
        loaded = set(obs.engine_adapters) | {r.engine_name for r in plan.load}
        loaded -= set(plan.unload)
        obs = replace(
            obs,
            routes=plan.routes,
            staged=frozenset(r.engine_name for r in plan.stage),
            engine_adapters=frozenset(loaded),
            inflight={},  # the last request on v1 finishes
        )
    assert decide(obs).converged
    assert obs.engine_adapters == {V2.engine_name}
