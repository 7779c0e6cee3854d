"""A small async Kubernetes REST client for the node agent (httpx, plain dicts).

The agent handles pods as JSON documents (its status logic is pure functions over dicts), so
a typed client would only add conversions. This speaks exactly what the agent needs: get,
list, watch, create, patch (merge, strategic, apply), delete and subresources, authenticated
from a kubeconfig (client certificate or bearer token, files or inline data).
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}
WATCH_SECONDS = 290


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(f"{status} {reason}: {message}".strip())
        self.status = status
        self.reason = reason
        self.message = message


class WatchExpiredError(ApiError):
    """410 Gone: the resourceVersion is too old; relist."""


def _material(entry: Mapping[str, Any], key: str, base: Path, scratch: Path) -> str | None:
    """A file path for ``key`` (e.g. client-certificate) or its ``-data`` variant."""
    if entry.get(key):
        path = Path(str(entry[key]))
        return str(path if path.is_absolute() else base / path)
    data = entry.get(f"{key}-data")
    if data:
        target = scratch / key
        target.write_bytes(base64.b64decode(data))
        target.chmod(0o600)
        return str(target)
    return None


class KubeApi:
    """``async with KubeApi.from_kubeconfig(path) as api: await api.get("/api/v1/nodes")``."""

    def __init__(
        self, *, server: str, ssl_context: ssl.SSLContext, token: str | None = None
    ) -> None:
        self.server = server.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(
            base_url=self.server,
            verify=ssl_context,
            headers=headers,
            timeout=httpx.Timeout(30.0),
        )

    @classmethod
    def from_kubeconfig(cls, path: Path) -> KubeApi:
        config = yaml.safe_load(path.read_text())
        context_name = config.get("current-context")
        context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        base = path.resolve().parent
        with tempfile.TemporaryDirectory(prefix="kubetune-kubeapi-") as tmp:
            scratch = Path(tmp)
            ca = _material(cluster, "certificate-authority", base, scratch)
            ctx = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
            cert = _material(user, "client-certificate", base, scratch)
            key = _material(user, "client-key", base, scratch)
            if cert and key:
                ctx.load_cert_chain(cert, key)
        token = user.get("token")
        if not token and user.get("tokenFile"):
            token = Path(user["tokenFile"]).read_text().strip()
        return cls(server=cluster["server"], ssl_context=ctx, token=token)

    async def __aenter__(self) -> KubeApi:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        content = None
        headers = {}
        if body is not None:
            content = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        resp = await self._client.request(
            method, path, params=params, content=content, headers=headers
        )
        if resp.status_code >= 400:
            raise _error(resp.status_code, resp.text)
        return dict(resp.json()) if resp.content else {}

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        return await self.request("GET", path, params=params)

    async def get_or_none(self, path: str) -> dict[str, Any] | None:
        try:
            return await self.get(path)
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    async def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path, body=body)

    async def patch(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        kind: str = "merge",
        field_manager: str = "",
        force: bool = False,
    ) -> dict[str, Any]:
        params = {}
        if field_manager:
            params["fieldManager"] = field_manager
        if force:
            params["force"] = "true"
        return await self.request(
            "PATCH", path, params=params, body=body, content_type=PATCH_TYPES[kind]
        )

    async def delete(
        self, path: str, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """Delete; None when the object is already gone."""
        try:
            return await self.request("DELETE", path, body=body)
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    async def watch(
        self, path: str, *, resource_version: str, params: Mapping[str, str] | None = None
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Yield (type, object) until the server ends the watch; 410 raises WatchExpiredError."""
        query = {
            **(params or {}),
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        timeout = httpx.Timeout(30.0, read=WATCH_SECONDS + 30.0)
        async with self._client.stream("GET", path, params=query, timeout=timeout) as resp:
            if resp.status_code >= 400:
                raise _error(resp.status_code, (await resp.aread()).decode(errors="replace"))
            async for line in resp.aiter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type", ""), event.get("object") or {}
                if kind == "ERROR":
                    raise _error(int(obj.get("code") or 500), json.dumps(obj))
                yield kind, obj


def _error(status: int, text: str) -> ApiError:
    message, reason = text, ""
    try:
        data = json.loads(text)
        message, reason = str(data.get("message", text)), str(data.get("reason", ""))
    except (json.JSONDecodeError, AttributeError):
        pass
    if status == 410:
        return WatchExpiredError(status, message, reason)
    return ApiError(status, message, reason)


def pod_path(namespace: str, name: str, sub: str = "") -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{name}" + (f"/{sub}" if sub else "")


def env_kubeconfig() -> Path:
    """The kubeconfig named by $KUBECONFIG (first entry), else ~/.kube/config."""
    raw = os.environ.get("KUBECONFIG", "")
    first = raw.split(os.pathsep)[0] if raw else ""
    return Path(first) if first else Path.home() / ".kube" / "config"
