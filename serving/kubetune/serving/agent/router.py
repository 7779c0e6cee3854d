"""The agent's HTTP front: the OpenAI API on the pod's Service port, proxied to the engine with
stable adapter names rewritten to their routed version, plus the agent's own endpoints.

- ``POST`` bodies with a ``model`` field are resolved through ``RoutingState``: a stable name
  becomes its versioned engine name, a name that has no loaded version yet gets a 503 with
  the reason, any other name is passed through untouched. Responses (streams included) are
  relayed byte for byte as the engine sends them, so server-sent events keep their pacing.
- Each routed request is counted in ``InFlight`` from routing until its last byte has been
  relayed or the client went away, which is what lets a version drain before it is unloaded.
- ``GET /v1/models`` is the engine's list plus one entry per stable name.
- ``/v1/load_lora_adapter`` and ``/v1/unload_lora_adapter`` are refused: adapters on this
  port are managed by the agent alone.
- ``/kubetune/ready`` (readiness probe), ``/kubetune/live``, ``/kubetune/status``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, Final

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from kubetune.serving.agent.inflight import InFlight
from kubetune.serving.agent.routing import RoutingState
from kubetune.serving.protocol import error_body

log = logging.getLogger(__name__)

ROUTED_HEADER: Final = "x-kubetune-routed-to"
_HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
_METHODS: Final = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]


def create_router_app(
    *,
    engine: httpx.AsyncClient,
    routing: RoutingState,
    inflight: InFlight,
    status: Callable[[], dict[str, Any]] | None = None,
) -> Starlette:
    """``engine`` is an ``AsyncClient`` whose base_url is the engine."""

    async def ready(request: Request) -> JSONResponse:
        code = HTTPStatus.OK if routing.ready else HTTPStatus.SERVICE_UNAVAILABLE
        return JSONResponse({"ready": routing.ready, "reason": routing.ready_reason}, code)

    async def live(request: Request) -> Response:
        return Response(status_code=HTTPStatus.OK)

    async def status_page(request: Request) -> JSONResponse:
        return JSONResponse(status() if status else {})

    async def managed_only(request: Request) -> JSONResponse:
        return _error(
            "adapters on this endpoint are managed by the kubetune agent; change the "
            "AdapterDeployment instead",
            HTTPStatus.FORBIDDEN,
        )

    async def models(request: Request) -> Response:
        try:
            upstream = await engine.get("/v1/models")
        except httpx.HTTPError as err:
            return _error(f"the engine is not answering: {err!r}", HTTPStatus.BAD_GATEWAY)
        if upstream.status_code != HTTPStatus.OK:
            return Response(upstream.content, upstream.status_code, _copy_headers(upstream))
        listing = upstream.json()
        cards = listing.get("data", [])
        by_id = {c.get("id"): c for c in cards}
        for name, version in sorted(routing.routes.items()):
            versioned = by_id.get(version, {})
            cards.append(
                {
                    "id": name,
                    "object": "model",
                    "created": versioned.get("created", 0),
                    "owned_by": "kubetune",
                    "root": version,  # the versioned adapter that answers this name now
                    "parent": versioned.get("parent") or routing.base_model,
                    "max_model_len": None,
                    "permission": [],
                }
            )
        return JSONResponse({"object": "list", "data": cards})

    async def proxy(request: Request) -> Response:
        body = await request.body()
        tracked: str | None = None
        routed_to: str | None = None
        if request.method == "POST" and body:
            payload = _json_object(body)
            model = payload.get("model") if payload is not None else None
            if isinstance(model, str):
                resolution = routing.resolve(model)
                if resolution.unavailable is not None:
                    return _error(resolution.unavailable, HTTPStatus.SERVICE_UNAVAILABLE)
                if resolution.engine_model != model and payload is not None:
                    payload["model"] = resolution.engine_model
                    body = json.dumps(payload).encode()
                tracked = resolution.tracked
                routed_to = resolution.engine_model
        # Counted before the first await, so the sync loop never sees this version idle.
        if tracked is not None:
            inflight.acquire(tracked)
        release = _Once(lambda: inflight.release(tracked) if tracked is not None else None)
        upstream_request = engine.build_request(
            request.method,
            request.url.path,
            params=request.query_params,
            headers=_forward_headers(request),
            content=body,
        )
        try:
            upstream = await engine.send(upstream_request, stream=True)
        except httpx.HTTPError as err:
            release()
            return _error(f"the engine is not answering: {err!r}", HTTPStatus.BAD_GATEWAY)
        headers = _copy_headers(upstream)
        if routed_to is not None:
            headers[ROUTED_HEADER] = routed_to
        return _RelayedStream(
            upstream,
            status_code=upstream.status_code,
            headers=headers,
            on_close=release,
        )

    return Starlette(
        routes=[
            Route("/kubetune/ready", ready, methods=["GET"]),
            Route("/kubetune/live", live, methods=["GET"]),
            Route("/kubetune/status", status_page, methods=["GET"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/load_lora_adapter", managed_only, methods=["POST"]),
            Route("/v1/unload_lora_adapter", managed_only, methods=["POST"]),
            Route("/{path:path}", proxy, methods=_METHODS),
        ]
    )


class _Once:
    """Runs its function at most once, whichever way the response ends."""

    def __init__(self, fn: Callable[[], object]) -> None:
        self._fn: Callable[[], object] | None = fn

    def __call__(self) -> None:
        fn, self._fn = self._fn, None
        if fn is not None:
            fn()


class _RelayedStream(StreamingResponse):
    """The engine's response relayed chunk by chunk; closes upstream and releases the
    in-flight count when the ASGI call ends: finished, failed or client gone."""

    def __init__(
        self,
        upstream: httpx.Response,
        *,
        status_code: int,
        headers: dict[str, str],
        on_close: Callable[[], None],
    ) -> None:
        super().__init__(
            upstream.aiter_raw(),
            status_code=status_code,
            headers=headers,
            background=BackgroundTask(upstream.aclose),
        )
        self._upstream = upstream
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()
            await self._upstream.aclose()


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _forward_headers(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}


def _copy_headers(upstream: httpx.Response) -> dict[str, str]:
    # The body is relayed raw (still encoded), so content-encoding stays; the length is
    # recomputed by the server for the relayed stream.
    return {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}


def _error(message: str, status: HTTPStatus) -> JSONResponse:
    return JSONResponse(error_body(message, status=status), status_code=status)
