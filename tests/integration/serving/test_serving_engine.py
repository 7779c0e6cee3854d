"""The reference engine as a real process (``python -m kubetune.serving.engine``).

Covers: vLLM's runtime LoRA API (plain-text success answers; 400 InvalidUserInput for a
missing field or a duplicate name; 404 NotFoundError for a non-local ``lora_path`` such as
``s3://`` or a missing folder, and for unloading an unknown name; 400 for a rank above
``--max-lora-rank`` and for weights that do not fit the base model, after which the engine
still serves); ``/v1/models`` with ``parent``/``root`` for LoRA entries; greedy answers of
each adapter and of the base model equal an independent in-process PEFT reference;
concurrent requests to different adapters each answered by their own adapter; streaming
(completions and chat) equals the non-streamed answer and ends with ``[DONE]``; stop strings
and finish reasons; refused request bodies name their field; an adapter unloaded while a
request streams from it lets that request finish, then answers 404.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import httpx
import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, LlamaForCausalLM

from tests.integration.serving.serving_builders import BASE_MODEL_NAME
from tests.integration.serving.serving_procs import EngineProcess, engine_adapters

PROMPTS = [
    [1, 10, 20, 30, 40],
    [1, 55, 66, 77],
    [1, 100, 101, 102, 103, 104],
    [1, 150, 12, 9],
]


def load(engine: EngineProcess, name: str, path: str | Path) -> httpx.Response:
    return httpx.post(
        f"{engine.url}/v1/load_lora_adapter",
        json={"lora_name": name, "lora_path": str(path)},
        timeout=60,
    )


def complete(engine_url: str, model: str, *, prompt: list[int] | str, n: int = 12) -> dict:
    response = httpx.post(
        f"{engine_url}/v1/completions",
        json={
            "model": model,
            "prompt": prompt,
            "max_tokens": n,
            "temperature": 0,
            "ignore_eos": True,
        },
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()


def reference_tokens(
    base_dir: Path, adapter_dir: Path | None, *, prompt: list[int], n: int
) -> list[int]:
    """Greedy tokens from PEFT in this process, recomputing the full sequence at every step
    (no KV cache): an implementation independent of the engine's decode loop."""
    model = LlamaForCausalLM.from_pretrained(base_dir)
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, str(adapter_dir))
    model.train(False)
    ids = list(prompt)
    with torch.inference_mode():
        for _ in range(n):
            logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1]
            ids.append(int(torch.argmax(logits)))
    return ids[len(prompt) :]


def test_runtime_lora_api(engine: EngineProcess, make_adapter, tmp_path: Path) -> None:
    good = make_adapter(1)
    assert load(engine, "a--1", good).text == "Success: LoRA adapter 'a--1' added successfully."

    cards = {m["id"]: m for m in httpx.get(f"{engine.url}/v1/models").json()["data"]}
    assert cards[BASE_MODEL_NAME]["parent"] is None
    assert cards["a--1"]["parent"] == BASE_MODEL_NAME
    assert cards["a--1"]["root"] == str(good)

    # A folder whose weights do not fit this base model: same config, wrong shapes.
    misfit = tmp_path / "misfit"
    misfit.mkdir()
    shutil.copy(good / "adapter_config.json", misfit)
    weights = load_file(good / "adapter_model.safetensors")
    save_file({k: v.repeat(2, 1) for k, v in weights.items()}, misfit / "adapter_model.safetensors")

    cases = [
        ({"lora_name": "x"}, 400, "InvalidUserInput", "Both 'lora_name' and 'lora_path'"),
        (
            {"lora_name": "a--1", "lora_path": str(good)},
            400,
            "InvalidUserInput",
            "already been loaded",
        ),
        (
            {"lora_name": "s", "lora_path": "s3://adapters/a/"},
            404,
            "NotFoundError",
            "local directory",
        ),
        (
            {"lora_name": "m", "lora_path": str(tmp_path / "nope")},
            404,
            "NotFoundError",
            "No adapter found",
        ),
        (
            {"lora_name": "big", "lora_path": str(make_adapter(2, rank=128))},
            400,
            "BadRequestError",
            "LoRA rank 128 is greater than max_lora_rank 64",
        ),
        (
            {"lora_name": "misfit", "lora_path": str(misfit)},
            400,
            "BadRequestError",
            "size mismatch",
        ),
    ]
    for body, status, err_type, text in cases:
        response = httpx.post(f"{engine.url}/v1/load_lora_adapter", json=body, timeout=60)
        assert response.status_code == status, (body, response.text)
        error = response.json()["error"]
        assert error["type"] == err_type and error["code"] == status
        assert text in error["message"], error["message"]

    # Refused loads left nothing behind: the base and the good adapter still answer.
    assert engine_adapters(engine.url) == {"a--1"}
    complete(engine.url, "a--1", prompt=PROMPTS[0])
    complete(engine.url, BASE_MODEL_NAME, prompt=PROMPTS[0])

    unload = httpx.post(f"{engine.url}/v1/unload_lora_adapter", json={"lora_name": "a--1"})
    assert unload.status_code == 200
    assert unload.text == "Success: LoRA adapter 'a--1' removed successfully."
    again = httpx.post(f"{engine.url}/v1/unload_lora_adapter", json={"lora_name": "a--1"})
    assert again.status_code == 404 and again.json()["error"]["type"] == "NotFoundError"
    gone = httpx.post(
        f"{engine.url}/v1/completions", json={"model": "a--1", "prompt": "the", "max_tokens": 2}
    )
    assert gone.status_code == 404
    assert gone.json()["error"] == {
        "message": "The model `a--1` does not exist.",
        "type": "NotFoundError",
        "param": "model",
        "code": 404,
    }


def test_answers_match_an_independent_peft_reference(
    engine: EngineProcess, make_adapter, tiny_base: Path
) -> None:
    adapters = {"a--1": make_adapter(1), "b--2": make_adapter(2)}
    for name, path in adapters.items():
        assert load(engine, name, path).status_code == 200
    tokenizer_decode = _decoder(tiny_base)
    answers = {}
    for model, path in [(BASE_MODEL_NAME, None), *adapters.items()]:
        expected = tokenizer_decode(reference_tokens(tiny_base, path, prompt=PROMPTS[0], n=12))
        got = complete(engine.url, model, prompt=PROMPTS[0])["choices"][0]["text"]
        assert got == expected, model
        answers[model] = got
    # Each adapter really changes the answer.
    assert len(set(answers.values())) == 3, answers


def test_concurrent_requests_are_answered_by_their_own_adapter(
    engine: EngineProcess, make_adapter
) -> None:
    for name, seed in [("a--1", 1), ("b--2", 2)]:
        assert load(engine, name, make_adapter(seed)).status_code == 200
    models = [BASE_MODEL_NAME, "a--1", "b--2"]
    sequential = {
        (m, i): complete(engine.url, m, prompt=p)["choices"][0]["text"]
        for m in models
        for i, p in enumerate(PROMPTS)
    }
    assert len({sequential[(m, 0)] for m in models}) == 3

    async def fire() -> dict[tuple[str, int], str]:
        async with httpx.AsyncClient(base_url=engine.url, timeout=120) as client:

            async def one(model: str, i: int) -> tuple[tuple[str, int], str]:
                response = await client.post(
                    "/v1/completions",
                    json={
                        "model": model,
                        "prompt": PROMPTS[i],
                        "max_tokens": 12,
                        "temperature": 0,
                        "ignore_eos": True,
                    },
                )
                assert response.status_code == 200, response.text
                return (model, i), response.json()["choices"][0]["text"]

            jobs = [one(m, i) for _ in range(2) for i in range(len(PROMPTS)) for m in models]
            return dict(await asyncio.gather(*jobs))

    assert asyncio.run(fire()) == sequential


def sse_events(response: httpx.Response) -> list[str]:
    return [
        line.removeprefix("data: ")
        for line in response.text.split("\n\n")
        if line.startswith("data: ")
    ]


@pytest.mark.parametrize("chat", [False, True], ids=["completions", "chat"])
def test_streaming_equals_the_whole_answer(engine: EngineProcess, make_adapter, chat: bool) -> None:
    assert load(engine, "a--1", make_adapter(1)).status_code == 200
    if chat:
        path, body = (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "reset my password"}]},
        )
    else:
        path, body = "/v1/completions", {"prompt": "reset my password"}
    body |= {"model": "a--1", "max_tokens": 10, "temperature": 0, "ignore_eos": True}
    whole = httpx.post(f"{engine.url}{path}", json=body, timeout=60).json()
    streamed = httpx.post(
        f"{engine.url}{path}",
        json={**body, "stream": True, "stream_options": {"include_usage": True}},
        timeout=60,
    )
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = sse_events(streamed)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[-1]["usage"] == whole["usage"] and chunks[-1]["choices"] == []
    content_chunks = [c for c in chunks if c["choices"]]
    if chat:
        assert content_chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in content_chunks)
        expected = whole["choices"][0]["message"]["content"]
        assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    else:
        text = "".join(c["choices"][0]["text"] for c in content_chunks)
        expected = whole["choices"][0]["text"]
    assert text == expected
    assert len(content_chunks) > 3  # really streamed, not one blob
    assert content_chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all(c["model"] == "a--1" for c in chunks)


def test_stop_strings_and_finish_reasons(engine: EngineProcess) -> None:
    body = {
        "model": BASE_MODEL_NAME,
        "prompt": "the red cat",
        "max_tokens": 20,
        "temperature": 0,
        "ignore_eos": True,
    }
    full = httpx.post(f"{engine.url}/v1/completions", json=body).json()["choices"][0]
    assert full["finish_reason"] == "length"
    words = full["text"].split()
    stop_word = words[3]
    cut = httpx.post(f"{engine.url}/v1/completions", json={**body, "stop": [stop_word]}).json()
    choice = cut["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert stop_word not in choice["text"]
    assert full["text"].startswith(choice["text"])
    streamed = httpx.post(
        f"{engine.url}/v1/completions", json={**body, "stop": stop_word, "stream": True}
    )
    chunks = [json.loads(e) for e in sse_events(streamed)[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == choice["text"]


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("/v1/completions", {"prompt": "hi"}, 400, "model"),
        ("/v1/completions", {"model": BASE_MODEL_NAME, "prompt": "hi", "n": 2}, 400, "n"),
        (
            "/v1/completions",
            {"model": BASE_MODEL_NAME, "prompt": "hi", "max_tokens": 10**6},
            400,
            "max_tokens",
        ),
        ("/v1/completions", {"model": BASE_MODEL_NAME, "prompt": ["a", "b"]}, 400, "prompt"),
        (
            "/v1/completions",
            {"model": BASE_MODEL_NAME, "prompt": "hi", "temperature": -1},
            400,
            "temperature",
        ),
        ("/v1/completions", {"model": "nope", "prompt": "hi"}, 404, "model"),
        ("/v1/chat/completions", {"model": BASE_MODEL_NAME, "messages": []}, 400, "messages"),
        (
            "/v1/chat/completions",
            {
                "model": BASE_MODEL_NAME,
                "messages": [{"role": "user", "content": "x"}],
                "logprobs": True,
            },
            400,
            "logprobs",
        ),
    ],
)
def test_refused_requests_name_the_field(
    engine: EngineProcess, path: str, body: dict, status: int, param: str
) -> None:
    response = httpx.post(f"{engine.url}{path}", json=body, timeout=30)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param


def test_unload_lets_a_streaming_request_finish(engine: EngineProcess, make_adapter) -> None:
    assert load(engine, "a--1", make_adapter(1)).status_code == 200
    body = {
        "model": "a--1",
        "prompt": "the",
        "max_tokens": 1000,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    pieces: list[str] = []
    usage = None
    with httpx.stream("POST", f"{engine.url}/v1/completions", json=body, timeout=120) as response:
        lines = response.iter_lines()
        for line in lines:
            if line.startswith("data: {"):
                pieces.append(json.loads(line[6:])["choices"][0]["text"])
                break
        unload = httpx.post(f"{engine.url}/v1/unload_lora_adapter", json={"lora_name": "a--1"})
        assert unload.status_code == 200
        assert "a--1" not in engine_adapters(engine.url)
        refused = httpx.post(f"{engine.url}/v1/completions", json={**body, "stream": False})
        assert refused.status_code == 404
        finish = None
        for line in lines:
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                assert "error" not in chunk, chunk
                usage = chunk.get("usage") or usage
                for choice in chunk["choices"]:
                    pieces.append(choice["text"])
                    finish = choice["finish_reason"] or finish
    assert finish == "length"
    assert usage["completion_tokens"] == 1000


def _decoder(base_dir: Path):
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    return lambda ids: tokenizer.decode(ids, skip_special_tokens=True)
