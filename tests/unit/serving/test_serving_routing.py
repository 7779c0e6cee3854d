"""The router's shared state and the state report (``routing``, ``inflight``, ``reporter``).

Covers: stable names resolve to their routed version and are counted; names with no loaded
version resolve to a 503 reason; managed versioned names pass through but are counted; other
names pass through untouched; in-flight counts call back when a version drains; the pod
annotation document has the contract's shape (plus ``servingVersion``) and a UTC timestamp.
"""

from __future__ import annotations

from datetime import UTC, datetime

from kubetune.serving.agent.inflight import InFlight
from kubetune.serving.agent.plan import AdapterReport, Plan
from kubetune.serving.agent.reporter import state_document
from kubetune.serving.agent.routing import Resolution, RoutingState


def test_resolve() -> None:
    routing = RoutingState()
    routing.apply(
        Plan(
            routes={"support": "support--aaaaaaaaaaaa"},
            unavailable={"billing": "loading"},
            ready=True,
        ),
        managed=frozenset({"support--aaaaaaaaaaaa", "support--bbbbbbbbbbbb"}),
        base_model="tiny",
    )
    assert routing.ready and routing.base_model == "tiny"
    assert routing.resolve("support") == Resolution(
        "support--aaaaaaaaaaaa", tracked="support--aaaaaaaaaaaa"
    )
    assert routing.resolve("billing") == Resolution("billing", unavailable="loading")
    assert routing.resolve("support--bbbbbbbbbbbb") == Resolution(
        "support--bbbbbbbbbbbb", tracked="support--bbbbbbbbbbbb"
    )
    assert routing.resolve("tiny") == Resolution("tiny")


def test_inflight_reports_idle_versions() -> None:
    idle: list[str] = []
    inflight = InFlight(on_idle=idle.append)
    inflight.acquire("v1")
    inflight.acquire("v1")
    inflight.release("v1")
    assert (inflight.count("v1"), idle) == (1, [])
    inflight.release("v1")
    assert (inflight.count("v1"), idle, inflight.snapshot()) == (0, ["v1"], {})


def test_state_document() -> None:
    document = state_document(
        {
            "support": AdapterReport(
                version="bbbbbbbbbbbb",
                digest="sha256:bb",
                state="Failed",
                message="digest mismatch",
                serving_version="aaaaaaaaaaaa",
            ),
            "billing": AdapterReport(
                version="cccccccccccc", digest="sha256:cc", state="Loading", message="queued"
            ),
        },
        resource_version="812",
        now=datetime(2026, 11, 28, 21, 0, 5, tzinfo=UTC),
    )
    assert document == {
        "configResourceVersion": "812",
        "adapters": {
            "billing": {
                "version": "cccccccccccc",
                "digest": "sha256:cc",
                "state": "Loading",
                "message": "queued",
            },
            "support": {
                "version": "bbbbbbbbbbbb",
                "digest": "sha256:bb",
                "state": "Failed",
                "message": "digest mismatch",
                "servingVersion": "aaaaaaaaaaaa",
            },
        },
        "updatedAt": "2026-11-28T21:00:05Z",
    }
