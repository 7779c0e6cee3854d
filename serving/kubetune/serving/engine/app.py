"""HTTP routes of the reference engine: the OpenAI API plus vLLM's runtime LoRA endpoints.

``/v1/models``, ``/v1/completions`` and ``/v1/chat/completions`` (with ``stream`` as
server-sent events ending in ``data: [DONE]``), ``/v1/load_lora_adapter`` and
``/v1/unload_lora_adapter`` with vLLM's bodies, plain-text success answers and error codes, and
``/health``. The model itself lives in ``ModelRegistry``; this module only translates HTTP.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from kubetune.serving.engine.adapters import (
    AdapterRequestError,
    inspect_adapter_folder,
    parse_load_request,
    parse_unload_request,
)
from kubetune.serving.engine.generation import Generation
from kubetune.serving.engine.model import AdapterGoneError, ModelRegistry, UnknownModelError
from kubetune.serving.engine.requests import (
    ChatRequest,
    CompletionRequest,
    RequestError,
    parse_chat,
    parse_completion,
)
from kubetune.serving.protocol import SSE_DONE, error_body, sse_event

log = logging.getLogger(__name__)


def create_app(
    load_registry: Callable[[], ModelRegistry],
    *,
    static_adapters: tuple[tuple[str, str], ...] = (),
) -> Starlette:
    """The engine app; ``load_registry`` runs at startup, before the port accepts requests."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        registry = load_registry()
        for name, path in static_adapters:
            folder = inspect_adapter_folder(path, max_lora_rank=registry.max_lora_rank)
            await registry.load_adapter(name, folder)
        app.state.registry = registry
        yield
        registry.close()

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/load_lora_adapter", load_lora_adapter, methods=["POST"]),
            Route("/v1/unload_lora_adapter", unload_lora_adapter, methods=["POST"]),
        ],
        lifespan=lifespan,
        exception_handlers={Exception: _internal_error},
    )


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s", request.url.path, exc_info=exc)
    return _error(f"internal error: {exc}", HTTPStatus.INTERNAL_SERVER_ERROR)


def _registry(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.app.state.registry
    return registry


def _error(
    message: str, status: HTTPStatus, *, err_type: str | None = None, param: str | None = None
) -> JSONResponse:
    return JSONResponse(
        error_body(message, status=status, err_type=err_type, param=param), status_code=status
    )


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError as err:
        raise RequestError(f"the request body is not valid JSON: {err}") from None


# ------------------------------------------------------------------ health and models


async def health(request: Request) -> Response:
    return Response(status_code=HTTPStatus.OK)


async def list_models(request: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": _registry(request).model_cards()})


# ------------------------------------------------------------------ runtime LoRA


async def load_lora_adapter(request: Request) -> Response:
    registry = _registry(request)
    try:
        name, path = parse_load_request(await _json(request))
        if registry.is_loaded(name):
            raise AdapterRequestError(
                f"The lora adapter '{name}' has already been loaded.", err_type="InvalidUserInput"
            )
        folder = inspect_adapter_folder(path, max_lora_rank=registry.max_lora_rank)
        await registry.load_adapter(name, folder)
    except AdapterRequestError as err:
        log.warning("refused to load adapter: %s", err.message)
        return _error(err.message, err.status, err_type=err.err_type)
    except RequestError as err:
        return _error(err.message, HTTPStatus.BAD_REQUEST, err_type="InvalidUserInput")
    return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")


async def unload_lora_adapter(request: Request) -> Response:
    try:
        name = parse_unload_request(await _json(request))
        await _registry(request).unload_adapter(name)
    except AdapterRequestError as err:
        return _error(err.message, err.status, err_type=err.err_type)
    except RequestError as err:
        return _error(err.message, HTTPStatus.BAD_REQUEST, err_type="InvalidUserInput")
    return PlainTextResponse(f"Success: LoRA adapter '{name}' removed successfully.")


# ------------------------------------------------------------------ generation


async def completions(request: Request) -> Response:
    try:
        parsed = parse_completion(await _json(request))
        registry = _registry(request)
        _check_model(registry, parsed.model)
        if isinstance(parsed.prompt, str):
            prompt_ids = registry.tokenizer.encode(parsed.prompt, add_special_tokens=True)
        else:
            prompt_ids = list(parsed.prompt)
        generation = Generation(
            registry=registry, model_name=parsed.model, prompt_ids=prompt_ids, params=parsed.params
        )
    except RequestError as err:
        return _error(err.message, HTTPStatus.BAD_REQUEST, param=err.param)
    except UnknownModelError as err:
        return _model_not_found(str(err))
    if parsed.stream:
        return _stream(_completion_events(parsed, generation))
    return await _complete(parsed, generation, chat=False)


async def chat_completions(request: Request) -> Response:
    try:
        parsed = parse_chat(await _json(request))
        registry = _registry(request)
        _check_model(registry, parsed.model)
        prompt_ids = _chat_prompt_ids(registry, parsed)
        generation = Generation(
            registry=registry, model_name=parsed.model, prompt_ids=prompt_ids, params=parsed.params
        )
    except RequestError as err:
        return _error(err.message, HTTPStatus.BAD_REQUEST, param=err.param)
    except UnknownModelError as err:
        return _model_not_found(str(err))
    if parsed.stream:
        return _stream(_chat_events(parsed, generation))
    return await _complete(parsed, generation, chat=True)


def _check_model(registry: ModelRegistry, name: str) -> None:
    if name != registry.served_name and not registry.is_loaded(name):
        raise UnknownModelError(name)


def _model_not_found(name: str) -> JSONResponse:
    return _error(
        f"The model `{name}` does not exist.",
        HTTPStatus.NOT_FOUND,
        err_type="NotFoundError",
        param="model",
    )


def _chat_prompt_ids(registry: ModelRegistry, parsed: ChatRequest) -> list[int]:
    tokenizer = registry.tokenizer
    if not getattr(tokenizer, "chat_template", None):
        raise RequestError(
            "the model's tokenizer has no chat template; use /v1/completions instead"
        )
    messages = [{"role": m.role, "content": m.content} for m in parsed.messages]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    # The template already carries any BOS token; adding special tokens again would double it.
    return list(tokenizer.encode(str(text), add_special_tokens=False))


def _usage(generation: Generation) -> dict[str, int]:
    return {
        "prompt_tokens": generation.prompt_tokens,
        "completion_tokens": generation.completion_tokens,
        "total_tokens": generation.prompt_tokens + generation.completion_tokens,
    }


async def _complete(
    parsed: CompletionRequest | ChatRequest, generation: Generation, *, chat: bool
) -> JSONResponse:
    try:
        text = "".join([piece async for piece in generation.deltas()])
    except (UnknownModelError, AdapterGoneError) as err:
        return _error(f"generation stopped: {err}", HTTPStatus.NOT_FOUND, err_type="NotFoundError")
    created = int(time.time())
    if chat:
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": generation.finish_reason,
        }
        ident, kind = f"chatcmpl-{uuid.uuid4().hex}", "chat.completion"
    else:
        choice = {
            "index": 0,
            "text": text,
            "logprobs": None,
            "finish_reason": generation.finish_reason,
            "stop_reason": None,
        }
        ident, kind = f"cmpl-{uuid.uuid4().hex}", "text_completion"
    return JSONResponse(
        {
            "id": ident,
            "object": kind,
            "created": created,
            "model": parsed.model,
            "choices": [choice],
            "usage": _usage(generation),
        }
    )


def _stream(events: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _completion_events(
    parsed: CompletionRequest, generation: Generation
) -> AsyncIterator[bytes]:
    base = {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": parsed.model,
    }

    def chunk(text: str, finish: str | None) -> bytes:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        return sse_event({**base, "choices": [choice]})

    async for piece in _guarded(generation, chunk_text=lambda t: chunk(t, None)):
        yield piece
    if generation.finish_reason is not None:
        yield chunk("", generation.finish_reason)
        if parsed.include_usage:
            yield sse_event({**base, "choices": [], "usage": _usage(generation)})
    yield SSE_DONE


async def _chat_events(parsed: ChatRequest, generation: Generation) -> AsyncIterator[bytes]:
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": parsed.model,
    }

    def chunk(delta: dict[str, str], finish: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse_event({**base, "choices": [choice]})

    yield chunk({"role": "assistant", "content": ""}, None)
    async for piece in _guarded(generation, chunk_text=lambda t: chunk({"content": t}, None)):
        yield piece
    if generation.finish_reason is not None:
        yield chunk({}, generation.finish_reason)
        if parsed.include_usage:
            yield sse_event({**base, "choices": [], "usage": _usage(generation)})
    yield SSE_DONE


async def _guarded(
    generation: Generation, *, chunk_text: Callable[[str], bytes]
) -> AsyncIterator[bytes]:
    """Chunks of text; an error after the stream began becomes an error event, as in vLLM."""
    try:
        async for text in generation.deltas():
            yield chunk_text(text)
    except (UnknownModelError, AdapterGoneError) as err:
        yield sse_event(error_body(f"generation stopped: {err}", status=HTTPStatus.NOT_FOUND))
    except Exception as err:
        log.exception("generation failed")
        yield sse_event(
            error_body(f"generation failed: {err}", status=HTTPStatus.INTERNAL_SERVER_ERROR)
        )
