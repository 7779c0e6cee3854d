"""Probe settings and result thresholds (pure; the node agent's probe loops use them).

A probe's result only flips after ``successThreshold`` consecutive successes or
``failureThreshold`` consecutive failures. Readiness and startup start as failed (not ready,
not started); liveness starts as healthy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ProbeSpec:
    kind: str  # readiness | liveness | startup
    handler: Mapping[str, Any]
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3
    termination_grace: float | None = None


def probe_spec(kind: str, probe: Mapping[str, Any]) -> ProbeSpec:
    """Kubernetes defaults applied to a container's ``<kind>Probe``."""
    handler = {k: v for k, v in probe.items() if k in ("httpGet", "tcpSocket", "exec", "grpc")}
    success = int(probe.get("successThreshold") or 1)
    if kind in ("liveness", "startup"):
        success = 1  # the API rejects anything else; be lenient with hand-written specs
    grace = probe.get("terminationGracePeriodSeconds")
    return ProbeSpec(
        kind=kind,
        handler=handler,
        initial_delay=float(probe.get("initialDelaySeconds") or 0),
        period=float(probe.get("periodSeconds") or 10),
        timeout=float(probe.get("timeoutSeconds") or 1),
        success_threshold=success,
        failure_threshold=int(probe.get("failureThreshold") or 3),
        termination_grace=float(grace) if grace is not None else None,
    )


@dataclass
class ProbeTracker:
    """Counts consecutive outcomes; ``observe`` says whether the result flipped."""

    success_threshold: int
    failure_threshold: int
    healthy: bool
    _successes: int = 0
    _failures: int = 0

    @classmethod
    def for_spec(cls, spec: ProbeSpec) -> ProbeTracker:
        return cls(
            success_threshold=spec.success_threshold,
            failure_threshold=spec.failure_threshold,
            healthy=spec.kind == "liveness",
        )

    def observe(self, ok: bool) -> bool:
        if ok:
            self._successes += 1
            self._failures = 0
            if not self.healthy and self._successes >= self.success_threshold:
                self.healthy = True
                return True
        else:
            self._failures += 1
            self._successes = 0
            if self.healthy and self._failures >= self.failure_threshold:
                self.healthy = False
                return True
        return False

    @property
    def failed_out(self) -> bool:
        """True once failures reached the threshold (startup probes give up then)."""
        return self._failures >= self.failure_threshold
