"""The only module of the operator that talks to the Kubernetes API (besides Kopf's watches).

Thin wrappers over lightkube's AsyncClient: create-if-absent, delete a superseded Job,
(un)suspend a Job, merge-patch a status subresource. Every call is counted for the
requests-per-object benchmark.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx
from lightkube import ApiError, AsyncClient
from lightkube.codecs import from_dict
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.batch_v1 import Job
from lightkube.types import CascadeType, PatchType

from kubetune.api import constants as c

log = logging.getLogger(__name__)

FineTuneJob = create_namespaced_resource(
    c.GROUP, c.VERSION, c.FINETUNEJOB_KIND, c.FINETUNEJOB_PLURAL
)
AdapterDeployment = create_namespaced_resource(
    c.GROUP, c.VERSION, c.ADAPTERDEPLOYMENT_KIND, c.ADAPTERDEPLOYMENT_PLURAL
)

TRANSIENT = (ApiError, httpx.HTTPError)


class Kube:
    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.requests = 0

    async def create_if_absent(self, manifest: Mapping[str, Any]) -> bool:
        """Create ``manifest``; False when it already exists (a replayed reconcile)."""
        self.requests += 1
        try:
            await self.client.create(from_dict(dict(manifest)), field_manager=c.FIELD_MANAGER)
        except ApiError as err:
            if err.status.code == 409:
                return False
            raise
        return True

    async def apply(self, manifest: Mapping[str, Any]) -> None:
        """Server-side apply under the operator's field manager."""
        self.requests += 1
        await self.client.apply(
            from_dict(dict(manifest)), field_manager=c.FIELD_MANAGER, force=True
        )

    async def delete_job(self, namespace: str, name: str) -> None:
        self.requests += 1
        try:
            await self.client.delete(Job, name, namespace=namespace, cascade=CascadeType.BACKGROUND)
        except ApiError as err:
            if err.status.code != 404:
                raise

    async def set_job_suspend(self, namespace: str, name: str, suspend: bool) -> None:
        self.requests += 1
        await self.client.patch(
            Job,
            name,
            {"spec": {"suspend": suspend}},
            namespace=namespace,
            patch_type=PatchType.MERGE,
        )

    async def patch_status(
        self, resource: Any, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> None:
        self.requests += 1
        await self.client.patch(
            resource.Status,
            name,
            {"status": dict(patch)},
            namespace=namespace,
            patch_type=PatchType.MERGE,
        )
