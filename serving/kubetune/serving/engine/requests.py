"""Parsing OpenAI ``/v1/completions`` and ``/v1/chat/completions`` bodies into typed requests.

Pure: a body goes in, a request or a ``RequestError`` naming the offending field comes out.
What the reference engine does not implement (``n > 1``, logprobs, echo, batched prompts) is
refused with a clear 400 rather than silently ignored, so a client never gets an answer that
looks right but is not what it asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

DEFAULT_COMPLETION_MAX_TOKENS: Final = 16  # OpenAI's documented default for completions


class RequestError(ValueError):
    """A request body the engine refuses; ``param`` names the field."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens and when to stop."""

    max_tokens: int | None  # None: up to the model's context length
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: no top-k cut
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class CompletionRequest:
    model: str
    prompt: str | tuple[int, ...]
    params: SamplingParams
    stream: bool = False
    include_usage: bool = False


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: tuple[ChatMessage, ...]
    params: SamplingParams
    stream: bool = False
    include_usage: bool = False


def parse_completion(body: Any) -> CompletionRequest:
    fields = _object(body)
    return CompletionRequest(
        model=_model(fields),
        prompt=_prompt(fields.get("prompt")),
        params=_sampling(fields, default_max_tokens=DEFAULT_COMPLETION_MAX_TOKENS),
        stream=_bool(fields, "stream"),
        include_usage=_include_usage(fields),
    )


def parse_chat(body: Any) -> ChatRequest:
    fields = _object(body)
    raw = fields.get("messages")
    if not isinstance(raw, list) or not raw:
        raise RequestError("messages must be a non-empty list", param="messages")
    messages = tuple(_message(i, m) for i, m in enumerate(raw))
    return ChatRequest(
        model=_model(fields),
        messages=messages,
        params=_sampling(fields, default_max_tokens=None),
        stream=_bool(fields, "stream"),
        include_usage=_include_usage(fields),
    )


# ------------------------------------------------------------------ fields


def _object(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    _refuse_unsupported(body)
    return body


def _refuse_unsupported(fields: Mapping[str, Any]) -> None:
    n = fields.get("n")
    if n is not None and n != 1:
        raise RequestError("n > 1 is not supported by the kubetune reference engine", param="n")
    for name in ("logprobs", "top_logprobs", "echo", "best_of", "tools", "response_format"):
        value = fields.get(name)
        harmless = (
            value in (None, False, [], {})
            or (name == "best_of" and value == 1)
            or (name == "response_format" and value == {"type": "text"})
        )
        if not harmless:
            raise RequestError(
                f"{name} is not supported by the kubetune reference engine", param=name
            )


def _model(fields: Mapping[str, Any]) -> str:
    model = fields.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("model must be a non-empty string", param="model")
    return model


def _prompt(prompt: Any) -> str | tuple[int, ...]:
    # A batch of exactly one prompt is the same request; real batches need n choices.
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return prompt
    if (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in prompt)
    ):
        return tuple(prompt)
    raise RequestError(
        "prompt must be a string or a list of token ids (batched prompts are not supported)",
        param="prompt",
    )


def _message(index: int, raw: Any) -> ChatMessage:
    where = f"messages[{index}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("role"), str):
        raise RequestError(f"{where} must be an object with a string role", param=where)
    content = raw.get("content")
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    elif isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise RequestError(
                    f"{where}.content: only text parts are supported", param=f"{where}.content"
                )
            parts.append(str(part.get("text", "")))
        text = "".join(parts)
    else:
        raise RequestError(f"{where}.content must be a string or a list of parts", param=where)
    return ChatMessage(role=raw["role"], content=text)


def _sampling(fields: Mapping[str, Any], *, default_max_tokens: int | None) -> SamplingParams:
    max_tokens = fields.get("max_tokens")
    if max_tokens is None:
        max_tokens = fields.get("max_completion_tokens", default_max_tokens)
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise RequestError("max_tokens must be an integer >= 1", param="max_tokens")
    temperature = _number(fields, "temperature", 1.0, low=0.0, high=2.0)
    top_p = _number(fields, "top_p", 1.0, low=0.0, high=1.0)
    if top_p == 0.0:
        raise RequestError("top_p must be in (0, 1]", param="top_p")
    top_k = fields.get("top_k", 0)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < -1:
        raise RequestError("top_k must be an integer >= -1 (-1 or 0: off)", param="top_k")
    seed = fields.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError("seed must be an integer", param="seed")
    stop = fields.get("stop")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,) if stop else ()
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = tuple(s for s in stop if s)
    else:
        raise RequestError("stop must be a string or a list of strings", param="stop")
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=max(top_k, 0),
        seed=seed,
        stop=stops,
        ignore_eos=_bool(fields, "ignore_eos"),
    )


def _number(
    fields: Mapping[str, Any], name: str, default: float, *, low: float, high: float
) -> float:
    value = fields.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise RequestError(f"{name} must be a number in [{low}, {high}]", param=name)
    return float(value)


def _bool(fields: Mapping[str, Any], name: str) -> bool:
    value = fields.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise RequestError(f"{name} must be a boolean", param=name)
    return value


def _include_usage(fields: Mapping[str, Any]) -> bool:
    options = fields.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise RequestError("stream_options must be an object", param="stream_options")
    return _bool(options, "include_usage")
