"""Making this pod's adapter state visible to the operator: the ``kubetune.io/adapter-state``
annotation on the agent's own pod (``kubetune.api.contract``).

Written with a JSON merge patch that touches only this one annotation, and only when the
state changed (``updatedAt`` aside), so a steady pod causes no API traffic. A failed patch is
retried on the next sync pass; the state is recomputed each pass, so nothing is lost.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from lightkube import AsyncClient
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from kubetune.api.contract import ADAPTER_STATE_ANNOTATION
from kubetune.serving.agent.plan import AdapterReport

log = logging.getLogger(__name__)


def state_document(
    adapters: Mapping[str, AdapterReport], *, resource_version: str, now: datetime
) -> dict[str, Any]:
    """The annotation's JSON value (pure)."""
    entries: dict[str, Any] = {}
    for name, report in sorted(adapters.items()):
        entry: dict[str, Any] = {
            "version": report.version,
            "digest": report.digest,
            "state": report.state,
            "message": report.message,
        }
        # Extension of the contract: which version answers this name right now.
        if report.serving_version is not None:
            entry["servingVersion"] = report.serving_version
        entries[name] = entry
    return {
        "configResourceVersion": resource_version,
        "adapters": entries,
        "updatedAt": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


class StateReporter:
    def __init__(self, *, client: AsyncClient, pod_name: str, namespace: str) -> None:
        self._client = client
        self._pod = pod_name
        self._namespace = namespace
        self._last: str | None = None

    async def report(self, adapters: Mapping[str, AdapterReport], *, resource_version: str) -> None:
        document = state_document(
            adapters, resource_version=resource_version, now=datetime.now(UTC)
        )
        key = json.dumps({k: v for k, v in document.items() if k != "updatedAt"}, sort_keys=True)
        if key == self._last:
            return
        patch = {"metadata": {"annotations": {ADAPTER_STATE_ANNOTATION: json.dumps(document)}}}
        try:
            await self._client.patch(
                Pod, self._pod, patch, namespace=self._namespace, patch_type=PatchType.MERGE
            )
        except Exception as err:  # any API failure is retried on the next pass
            log.warning("could not annotate pod %s/%s: %s", self._namespace, self._pod, err)
            return
        self._last = key
        log.info(
            "reported adapter state: %s",
            {n: (a.version, a.state) for n, a in sorted(adapters.items())},
        )
