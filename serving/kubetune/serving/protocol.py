"""Wire shapes shared by the reference engine and the adapter agent: OpenAI/vLLM error bodies
and server-sent events.

Both programs answer errors the way vLLM does (``{"error": {"message", "type", "param",
"code"}}`` with ``code`` equal to the HTTP status), so a client, or the agent, cannot tell the
reference engine from vLLM by its errors. Pure functions; no I/O.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any, Final

SSE_DONE: Final = b"data: [DONE]\n\n"

# vLLM names error types after the HTTP status class; clients match on these strings.
_ERROR_TYPES: Final = {
    HTTPStatus.BAD_REQUEST: "BadRequestError",
    HTTPStatus.FORBIDDEN: "PermissionDeniedError",
    HTTPStatus.NOT_FOUND: "NotFoundError",
    HTTPStatus.BAD_GATEWAY: "BadGatewayError",
    HTTPStatus.SERVICE_UNAVAILABLE: "ServiceUnavailableError",
    HTTPStatus.INTERNAL_SERVER_ERROR: "InternalServerError",
}


def error_body(
    message: str,
    *,
    status: HTTPStatus | int = HTTPStatus.BAD_REQUEST,
    err_type: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """The JSON body of an error response, in vLLM's current nested shape."""
    status = HTTPStatus(status)
    return {
        "error": {
            "message": message,
            "type": err_type or _ERROR_TYPES.get(status, status.phrase.replace(" ", "") + "Error"),
            "param": param,
            "code": int(status),
        }
    }


def error_message(body: bytes | str) -> str:
    """The human message of an error body from any vLLM version (nested or flat), else the text.

    vLLM before late 2025 answered ``{"object": "error", "message": ..., "code": ...}``; newer
    releases nest it under ``error``; a route vLLM did not enable answers FastAPI's
    ``{"detail": "Not Found"}``; load/unload success answers are plain text.
    """
    text = body.decode(errors="replace") if isinstance(body, bytes) else body
    try:
        parsed = json.loads(text)
    except ValueError:
        return text.strip()
    if isinstance(parsed, dict):
        inner = parsed.get("error")
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
        if isinstance(parsed.get("message"), str):
            return str(parsed["message"])
        if isinstance(parsed.get("detail"), str):  # FastAPI's answer for an unknown route
            return str(parsed["detail"])
    return text.strip()


def sse_event(payload: dict[str, Any]) -> bytes:
    """One server-sent event carrying a JSON object, as OpenAI streams chunks."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"
