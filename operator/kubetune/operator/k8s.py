"""The only module of the operator that talks to the Kubernetes API (besides Kopf's watches).

Thin wrappers over lightkube's AsyncClient: create-if-absent, delete a superseded Job,
(un)suspend a Job, merge-patch a status subresource; for AdapterDeployments, server-side
apply of partial objects under a named field manager and delete-if-present. Every call is
counted for the requests-per-object benchmark.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.codecs import from_dict
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import ConfigMap
from lightkube.resources.rbac_authorization_v1 import Role, RoleBinding
from lightkube.types import CascadeType, PatchType

from kubetune.api import constants as c

log = logging.getLogger(__name__)

FineTuneJob = create_namespaced_resource(
    c.GROUP, c.VERSION, c.FINETUNEJOB_KIND, c.FINETUNEJOB_PLURAL
)
AdapterDeployment = create_namespaced_resource(
    c.GROUP, c.VERSION, c.ADAPTERDEPLOYMENT_KIND, c.ADAPTERDEPLOYMENT_PLURAL
)

# lightkube >= 1.0 speaks httpx2; its transport errors (timeouts, pool exhaustion) are transient.
TRANSIENT = (ApiError, httpx2.HTTPError)


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

    # ------------------------------------------------------------ serving (AdapterDeployment)

    async def apply_fields(
        self, manifest: Mapping[str, Any], *, field_manager: str
    ) -> Mapping[str, Any]:
        """Server-side apply of a partial object: ``field_manager`` owns exactly the fields in
        ``manifest`` (other managers keep theirs). Returns the object's metadata afterwards."""
        self.requests += 1
        resource = _SERVING_RESOURCES[(manifest["apiVersion"], manifest["kind"])]
        meta = manifest["metadata"]
        result = await self.client.patch(
            resource,
            meta["name"],
            dict(manifest),
            namespace=meta["namespace"],
            patch_type=PatchType.APPLY,
            field_manager=field_manager,
            force=True,
        )
        return {
            "generation": result.metadata.generation if result.metadata else None,
            "resourceVersion": result.metadata.resourceVersion if result.metadata else None,
        }

    async def delete_if_present(
        self, api_version: str, kind: str, namespace: str, name: str
    ) -> None:
        self.requests += 1
        try:
            await self.client.delete(
                _SERVING_RESOURCES[(api_version, kind)], name, namespace=namespace
            )
        except ApiError as err:
            if err.status.code != 404:
                raise


_SERVING_RESOURCES: dict[tuple[str, str], Any] = {
    ("apps/v1", "Deployment"): Deployment,
    ("v1", "ConfigMap"): ConfigMap,
    ("rbac.authorization.k8s.io/v1", "Role"): Role,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): RoleBinding,
}
