"""Following the desired-set ConfigMap of this pod's Deployment with a Kubernetes watch.

Level-triggered: every (re)connect first reads the ConfigMap, then watches from that
resourceVersion; a dropped or expired watch simply starts over. A missing ConfigMap means "no
adapters"; a malformed one is logged and the last good set is kept, so a bad write by hand
never unloads what pods are serving.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import ConfigMap

from kubetune.api.contract import DESIRED_ADAPTERS_KEY
from kubetune.serving.agent.desired import DesiredSet, DesiredSetError, parse_desired

log = logging.getLogger(__name__)


class DesiredSetWatcher:
    def __init__(
        self,
        *,
        client: AsyncClient,
        namespace: str,
        name: str,
        on_change: Callable[[DesiredSet], None],
        on_error: Callable[[str], None] | None = None,
        retry_seconds: float = 1.0,
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._name = name
        self._on_change = on_change
        self._on_error = on_error
        self._retry = retry_seconds

    async def run(self) -> None:
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # reconnect on any watch failure
                log.warning("watch of configmap %s/%s failed: %s", self._namespace, self._name, err)
                await asyncio.sleep(self._retry)

    async def _follow(self) -> None:
        try:
            current = await self._client.get(ConfigMap, self._name, namespace=self._namespace)
        except ApiError as err:
            if err.status.code != 404:
                raise
            current = None
        since = self._publish(current)
        async for event, obj in self._client.watch(
            ConfigMap,
            namespace=self._namespace,
            fields={"metadata.name": self._name},
            resource_version=since,
        ):
            self._publish(None if event == "DELETED" else obj, deleted_version=obj)

    def _publish(
        self, cm: ConfigMap | None, *, deleted_version: ConfigMap | None = None
    ) -> str | None:
        """Hand the parsed set on; returns the resourceVersion it came from."""
        source = cm or deleted_version
        version = (source.metadata.resourceVersion if source and source.metadata else None) or ""
        text = (cm.data or {}).get(DESIRED_ADAPTERS_KEY) if cm is not None else None
        try:
            desired = parse_desired(text, resource_version=version)
        except DesiredSetError as err:
            message = f"configmap {self._namespace}/{self._name} rv {version}: {err}"
            log.error("%s; keeping the last good desired set", message)
            if self._on_error is not None:
                self._on_error(message)
            return version or None
        if desired.invalid:
            log.error("desired set has invalid entries: %s", dict(desired.invalid))
        self._on_change(desired)
        return version or None
