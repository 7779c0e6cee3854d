"""The agent's sync loop: observe, ask ``plan.decide`` what to do, do it, report; repeat.

One pass runs whenever something changed (the desired set, a staging task finished, a version
drained) and at least every ``engine_poll_seconds``, which is also how fast an engine restart
is noticed: each pass starts by reading the engine's ``/v1/models``, and versions it no longer
lists are loaded again. Passes never overlap, and engine calls happen only inside a pass, so
the plan always sees the engine's latest answer. Downloads and verification run as background
tasks so a large download never delays routing, draining or restart detection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubetune.serving.agent.config import AgentConfig
from kubetune.serving.agent.desired import DesiredSet, VersionRef, split_engine_name
from kubetune.serving.agent.download import AdapterStager
from kubetune.serving.agent.engine_client import (
    EngineClient,
    EngineModels,
    EngineRefusedError,
    EngineUnavailableError,
)
from kubetune.serving.agent.inflight import InFlight
from kubetune.serving.agent.plan import Failure, Observed, Plan, decide
from kubetune.serving.agent.reporter import StateReporter
from kubetune.serving.agent.routing import RoutingState
from kubetune.serving.agent.verify import VerificationError

log = logging.getLogger(__name__)


class AdapterSync:
    def __init__(
        self,
        *,
        config: AgentConfig,
        engine: EngineClient,
        stager: AdapterStager,
        routing: RoutingState,
        inflight: InFlight,
        reporter: StateReporter | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.engine = engine
        self.stager = stager
        self.routing = routing
        self.inflight = inflight
        self.reporter = reporter
        self.clock = clock
        self.desired: DesiredSet | None = None
        self.desired_error: str | None = None
        self.wake = asyncio.Event()
        self.last_plan: Plan | None = None
        self._known_loaded: frozenset[str] = frozenset()
        self._lost: set[str] = set()
        self._staged: set[str] = set()
        self._staging: dict[str, asyncio.Task[None]] = {}
        self._failures: dict[str, Failure] = {}

    # ------------------------------------------------------------------ inputs

    def set_desired(self, desired: DesiredSet) -> None:
        self.desired = desired
        self.desired_error = None
        self.wake.set()

    def set_desired_error(self, message: str) -> None:
        self.desired_error = message

    def poke(self, _name: str = "") -> None:
        self.wake.set()

    # ------------------------------------------------------------------ loop

    async def run(self) -> None:
        self.stager.clean_leftovers()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=self.config.engine_poll_seconds)
            self.wake.clear()
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sync pass failed; retrying")
                await asyncio.sleep(self.config.engine_poll_seconds)

    async def step(self) -> Plan:
        models = await self._observe_engine()
        managed = frozenset(n for n in (models.adapters if models else {}) if split_engine_name(n))
        if models is not None:
            gone = self._known_loaded - managed
            if gone:
                log.warning("the engine no longer lists %s (restarted?); reloading", sorted(gone))
                self._lost |= gone
            self._known_loaded = managed
            self._lost -= managed
            # A verification is good for one load; the engine already holds these.
            self._staged -= managed
        plan = decide(
            Observed(
                pod_name=self.config.pod_name,
                desired=self.desired,
                engine_up=models is not None,
                engine_adapters=self._known_loaded if models is not None else frozenset(),
                now=self.clock(),
                staged=frozenset(self._staged),
                staging=frozenset(self._staging),
                on_disk=self.stager.on_disk(),
                failures=dict(self._failures),
                inflight=self.inflight.snapshot(),
                routes=dict(self.routing.routes),
                lost=frozenset(self._lost),
            )
        )
        if models is not None or self.desired is None:
            # With the engine silent we know nothing new: keep routing as it was.
            self.routing.apply(plan, managed=managed, base_model=models.base if models else None)
        else:
            self.routing.ready = False
            self.routing.ready_reason = plan.ready_reason
        self.last_plan = plan
        for ref in plan.stage:
            self._start_staging(ref)
        for name in plan.delete:
            await asyncio.to_thread(self.stager.delete, name)
            self._staged.discard(name)
        for ref in plan.load:
            await self._load(ref)
        for name in plan.unload:
            await self._unload(name)
        if self.reporter is not None and self.desired is not None:
            await self.reporter.report(plan.report, resource_version=self.desired.resource_version)
        return plan

    def status(self) -> dict[str, Any]:
        """What ``/kubetune/status`` shows: enough to debug a pod without its logs."""
        plan = self.last_plan
        return {
            "ready": self.routing.ready,
            "reason": self.routing.ready_reason,
            "converged": bool(plan and plan.converged),
            "desiredResourceVersion": self.desired.resource_version if self.desired else None,
            "desiredError": self.desired_error,
            "routes": dict(self.routing.routes),
            "unavailable": dict(self.routing.unavailable),
            "engineAdapters": sorted(self._known_loaded),
            "inflight": self.inflight.snapshot(),
            "draining": dict(plan.draining) if plan else {},
            "adapters": {
                name: {
                    "version": r.version,
                    "state": r.state,
                    "message": r.message,
                    "servingVersion": r.serving_version,
                }
                for name, r in (plan.report.items() if plan else [])
            },
        }

    # ------------------------------------------------------------------ actions

    async def _observe_engine(self) -> EngineModels | None:
        try:
            return await self.engine.models()
        except EngineUnavailableError as err:
            log.debug("engine not answering: %s", err)
            return None

    def _start_staging(self, ref: VersionRef) -> None:
        task = asyncio.create_task(self._stage(ref), name=f"stage {ref.engine_name}")
        self._staging[ref.engine_name] = task

    async def _stage(self, ref: VersionRef) -> None:
        name = ref.engine_name
        try:
            await asyncio.to_thread(self.stager.stage, ref)
        except VerificationError as err:
            log.error("refused %s: %s", name, err)
            self._fail(name, str(err), permanent=True)
        except Exception as err:  # object store hiccups are retried
            log.warning("staging %s failed, will retry: %s", name, err)
            self._fail(name, f"{type(err).__name__}: {err}", permanent=False)
        else:
            self._staged.add(name)
            self._failures.pop(name, None)
        finally:
            self._staging.pop(name, None)
            self.wake.set()

    async def _load(self, ref: VersionRef) -> None:
        name = ref.engine_name
        # Loaded once per verification: a later reload (engine restart) verifies again.
        self._staged.discard(name)
        path = str(self.config.engine_adapter_dir / Path(name))
        try:
            await self.engine.load(name, path)
        except EngineRefusedError as err:
            log.error("the engine refused %s: %s", name, err.message)
            self._fail(name, f"the engine refused the adapter: {err.message}", permanent=True)
            return
        except EngineUnavailableError as err:
            self._fail(name, str(err), permanent=False)
            return
        log.info("loaded %s into the engine", name)
        self._failures.pop(name, None)
        self._known_loaded |= {name}
        self._lost.discard(name)
        self.wake.set()

    async def _unload(self, name: str) -> None:
        if self.inflight.count(name):
            return  # a request arrived on a versioned name since the plan: wait for it
        try:
            await self.engine.unload(name)
        except (EngineRefusedError, EngineUnavailableError) as err:
            log.warning("could not unload %s: %s", name, err)
            return
        log.info("unloaded %s (drained)", name)
        self._known_loaded -= {name}
        self.wake.set()

    def _fail(self, name: str, message: str, *, permanent: bool) -> None:
        previous = self._failures.get(name)
        attempts = previous.attempts + 1 if previous else 1
        delay = min(self.config.retry_seconds * 2 ** (attempts - 1), self.config.retry_max_seconds)
        self._failures[name] = Failure(
            message=message, permanent=permanent, retry_at=self.clock() + delay, attempts=attempts
        )
