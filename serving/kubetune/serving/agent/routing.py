"""The routing table the router reads and the sync loop replaces after every plan.

``resolve`` answers, for the ``model`` of one request: which engine model to send it to, which
version to count it against (so that version is not unloaded under it), or why this replica
cannot serve it yet. Stable names go to their routed version; versioned names the agent
manages are passed through but counted; every other name passes through untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubetune.serving.agent.plan import Plan


@dataclass(frozen=True)
class Resolution:
    engine_model: str
    tracked: str | None = None  # version to count the request against
    unavailable: str | None = None  # set: answer 503 with this message


@dataclass
class RoutingState:
    routes: dict[str, str] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    managed: frozenset[str] = frozenset()  # versioned names loaded in the engine
    base_model: str | None = None
    ready: bool = False
    ready_reason: str = "starting"
    status: dict[str, Any] = field(default_factory=dict)

    def apply(self, plan: Plan, *, managed: frozenset[str], base_model: str | None) -> None:
        self.routes = dict(plan.routes)
        self.unavailable = dict(plan.unavailable)
        self.managed = managed
        if base_model is not None:
            self.base_model = base_model
        self.ready = plan.ready
        self.ready_reason = plan.ready_reason

    def resolve(self, model: str) -> Resolution:
        routed = self.routes.get(model)
        if routed is not None:
            return Resolution(engine_model=routed, tracked=routed)
        reason = self.unavailable.get(model)
        if reason is not None:
            return Resolution(engine_model=model, unavailable=reason)
        if model in self.managed:
            return Resolution(engine_model=model, tracked=model)
        return Resolution(engine_model=model)
