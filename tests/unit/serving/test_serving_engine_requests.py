"""The reference engine's pure request handling and the shared wire shapes.

Covers: OpenAI completion and chat bodies parsed into typed requests (defaults, prompt forms,
text parts, stream options); refused bodies name their field; load/unload bodies and adapter
folder checks answer like vLLM (400 InvalidUserInput, 404 NotFoundError for non-local paths,
400 for rank above the limit, not-LoRA configs and pickle-only weights); error bodies in
vLLM's nested shape, and messages read back from every shape vLLM has used.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubetune.serving.engine.adapters import (
    AdapterRequestError,
    inspect_adapter_folder,
    parse_load_request,
    parse_unload_request,
)
from kubetune.serving.engine.requests import (
    DEFAULT_COMPLETION_MAX_TOKENS,
    RequestError,
    parse_chat,
    parse_completion,
)
from kubetune.serving.protocol import error_body, error_message, sse_event


def test_completion_defaults_and_prompt_forms() -> None:
    parsed = parse_completion({"model": "m", "prompt": "hi"})
    assert parsed.params.max_tokens == DEFAULT_COMPLETION_MAX_TOKENS
    assert parsed.params.temperature == 1.0 and not parsed.params.greedy
    assert parse_completion({"model": "m", "prompt": ["hi"]}).prompt == "hi"
    assert parse_completion({"model": "m", "prompt": [1, 2, 3]}).prompt == (1, 2, 3)
    assert parse_completion({"model": "m", "prompt": [[1, 2]]}).prompt == (1, 2)
    streamed = parse_completion(
        {
            "model": "m",
            "prompt": "x",
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": 0,
            "stop": "end",
            "seed": 3,
            "top_k": -1,
        }
    )
    assert streamed.stream and streamed.include_usage and streamed.params.greedy
    assert streamed.params.stop == ("end",) and streamed.params.top_k == 0


def test_chat_messages() -> None:
    parsed = parse_chat(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": None},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                },
            ],
            "max_completion_tokens": 5,
        }
    )
    assert [(m.role, m.content) for m in parsed.messages] == [("system", ""), ("user", "ab")]
    assert parsed.params.max_tokens == 5


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([], None),
        ({"prompt": "x"}, "model"),
        ({"model": "m", "prompt": "x", "n": 3}, "n"),
        ({"model": "m", "prompt": "x", "echo": True}, "echo"),
        ({"model": "m", "prompt": ["a", "b"]}, "prompt"),
        ({"model": "m", "prompt": [1, -2]}, "prompt"),
        ({"model": "m", "prompt": "x", "max_tokens": 0}, "max_tokens"),
        ({"model": "m", "prompt": "x", "top_p": 0}, "top_p"),
        ({"model": "m", "prompt": "x", "temperature": "hot"}, "temperature"),
        ({"model": "m", "prompt": "x", "stop": [1]}, "stop"),
        ({"model": "m", "prompt": "x", "stream": "yes"}, "stream"),
        ({"model": "m", "prompt": "x", "seed": 1.5}, "seed"),
    ],
)
def test_refused_completion_bodies(body: object, param: str | None) -> None:
    with pytest.raises(RequestError) as err:
        parse_completion(body)
    assert err.value.param == param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "messages": "hi"}, "messages"),
        ({"model": "m", "messages": [{"content": "x"}]}, "messages[0]"),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content",
        ),
        (
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function"}],
            },
            "tools",
        ),
    ],
)
def test_refused_chat_bodies(body: object, param: str) -> None:
    with pytest.raises(RequestError) as err:
        parse_chat(body)
    assert err.value.param == param


def test_load_and_unload_bodies() -> None:
    assert parse_load_request({"lora_name": "a", "lora_path": "/x"}) == ("a", "/x")
    assert parse_unload_request({"lora_name": "a"}) == "a"
    for body in ({"lora_name": "a"}, {"lora_path": "/x"}, [], {"lora_name": "", "lora_path": "/x"}):
        with pytest.raises(AdapterRequestError) as err:
            parse_load_request(body)
        assert (err.value.status, err.value.err_type) == (400, "InvalidUserInput")
    with pytest.raises(AdapterRequestError):
        parse_unload_request({})


def adapter(tmp_path: Path, config: object, *, weights: str = "adapter_model.safetensors") -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "adapter_config.json").write_text(json.dumps(config) if config is not None else "{")
    (tmp_path / weights).write_bytes(b"x")
    return tmp_path


LORA = {"peft_type": "LORA", "r": 8}


@pytest.mark.parametrize(
    ("make", "status", "message"),
    [
        (lambda p: adapter(p, LORA), None, None),
        (lambda p: "s3://adapters/x/", 404, "must be a local directory"),
        (lambda p: p / "missing", 404, "No adapter found"),
        (
            lambda p: adapter(p, {**LORA, "r": 128}),
            400,
            "LoRA rank 128 is greater than max_lora_rank 64.",
        ),
        (lambda p: adapter(p, {"peft_type": "PREFIX_TUNING"}), 400, "only LoRA adapters"),
        (lambda p: adapter(p, None), 400, "is not JSON"),
        (lambda p: adapter(p, LORA, weights="adapter_model.bin"), 400, "pickle formats"),
    ],
)
def test_adapter_folder_checks(
    tmp_path: Path, make, status: int | None, message: str | None
) -> None:
    path = str(make(tmp_path / "adapter"))
    if status is None:
        assert inspect_adapter_folder(path, max_lora_rank=64).rank == 8
        return
    with pytest.raises(AdapterRequestError) as err:
        inspect_adapter_folder(path, max_lora_rank=64)
    assert err.value.status == status
    assert message in err.value.message


def test_error_shapes() -> None:
    assert error_body("gone", status=404, param="model") == {
        "error": {"message": "gone", "type": "NotFoundError", "param": "model", "code": 404}
    }
    assert error_body("x", status=503)["error"]["type"] == "ServiceUnavailableError"
    nested = json.dumps(error_body("nested one"))
    flat = json.dumps({"object": "error", "message": "flat one", "type": "x", "code": 400})
    assert error_message(nested) == "nested one"
    assert error_message(flat.encode()) == "flat one"
    assert error_message('{"detail": "Not Found"}') == "Not Found"
    assert error_message("Success: LoRA adapter 'a' added successfully.\n").startswith("Success")
    assert sse_event({"a": 1}) == b'data: {"a":1}\n\n'
