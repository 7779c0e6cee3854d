"""The adapter agent as a real process, against the real reference engine, the real S3 test
server and the real kube-apiserver (desired-set ConfigMap in, pod annotation out).

Covers: load and route (stable name -> versioned name, the answer is the adapter's; base model
and unknown names pass through; ``/v1/models`` lists the stable name; runtime LoRA calls are
refused on the agent port; the pod annotation reports Ready with the ConfigMap's
resourceVersion); streaming through the router; two adapters asked concurrently, each answered
by its own; a version switch and a rollback under steady client load with zero failed requests
and every answer from the version the router named; an old version unloaded only after its
in-flight stream finished; a corrupted upload (file SHA-256 mismatch) refused as Failed with a
message naming the file while the old version keeps serving; refusals reported per adapter
(manifest digest mismatch, rank above the engine's limit, other base model, unpublished uri,
invalid entry) with 503 for their names and the pod not ready; recovery after the engine is
SIGKILLed and restarted; a new replica that verifies while its engine starts and becomes ready
only once the engine holds the adapter (both in one engine outage); canary routing for the
listed pod only.
"""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import httpx

from kubetune.cluster.kubectl import Kubectl
from tests.integration.serving.serving_builders import (
    BASE_MODEL_NAME,
    Published,
    desired_json,
    entry,
)
from tests.integration.serving.serving_load import ROUTED_HEADER, LoadGenerator
from tests.integration.serving.serving_procs import (
    EngineProcess,
    create_pod,
    engine_adapters,
    pod_state,
    wait_for,
)

PROMPT = "how do I reset my password"


def ask(url: str, model: str, *, max_tokens: int = 8, chat: bool = False) -> httpx.Response:
    body: dict = {"model": model, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}
    if chat:
        body["messages"] = [{"role": "user", "content": PROMPT}]
    else:
        body["prompt"] = PROMPT
    path = "/v1/chat/completions" if chat else "/v1/completions"
    return httpx.post(f"{url}{path}", json=body, timeout=60)


def reference(engine: EngineProcess, adapter_dir: Path) -> str:
    """The adapter's answer asked of the engine directly, under a name the agent ignores."""
    name = f"ref-{uuid.uuid4().hex[:6]}"
    loaded = httpx.post(
        f"{engine.url}/v1/load_lora_adapter",
        json={"lora_name": name, "lora_path": str(adapter_dir)},
        timeout=60,
    )
    assert loaded.status_code == 200, loaded.text
    try:
        return ask(engine.url, name).json()["choices"][0]["text"]
    finally:
        httpx.post(f"{engine.url}/v1/unload_lora_adapter", json={"lora_name": name}, timeout=60)


def wait_state(
    k: Kubectl, pod: str, name: str, *, version: str, state: str, timeout: float = 60
) -> dict:
    def check() -> dict | None:
        doc = pod_state(k, pod)
        item = (doc or {}).get("adapters", {}).get(name)
        if item and item["version"] == version and item["state"] == state:
            return doc
        return None

    return wait_for(check, timeout=timeout, interval=0.2, what=f"{name} {version} {state}")


def wait_engine_holds(engine: EngineProcess, names: set[str], timeout: float = 60) -> None:
    wait_for(
        lambda: engine_adapters(engine.url) == names,
        timeout=timeout,
        interval=0.1,
        what=f"engine to hold exactly {sorted(names)}",
    )


def test_load_route_and_report(
    engine, start_agent, publish, desired, k, serving_pod, make_adapter
) -> None:
    v1 = publish("support", 11)
    rv = desired.set(desired_json(entry(v1)))
    agent = start_agent(engine.url)
    agent.wait_ready()

    answer = ask(agent.url, "support")
    assert answer.status_code == 200, answer.text
    assert answer.headers[ROUTED_HEADER] == v1.engine_name
    assert answer.json()["model"] == v1.engine_name
    assert answer.json()["choices"][0]["text"] == reference(engine, make_adapter(11))
    assert ask(agent.url, "support", chat=True).status_code == 200

    # Other names pass through untouched.
    base_direct = ask(engine.url, BASE_MODEL_NAME).json()["choices"][0]["text"]
    assert ask(agent.url, BASE_MODEL_NAME).json()["choices"][0]["text"] == base_direct
    unknown = ask(agent.url, "nope")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == "The model `nope` does not exist."

    cards = {m["id"]: m for m in httpx.get(f"{agent.url}/v1/models").json()["data"]}
    assert cards["support"]["root"] == v1.engine_name
    assert cards["support"]["parent"] == BASE_MODEL_NAME
    assert v1.engine_name in cards
    refused = httpx.post(
        f"{agent.url}/v1/load_lora_adapter", json={"lora_name": "x", "lora_path": "/tmp"}
    )
    assert refused.status_code == 403

    state = wait_state(k, serving_pod, "support", version=v1.version, state="Ready")
    assert state["configResourceVersion"] == rv
    assert state["adapters"]["support"]["digest"] == v1.digest
    assert state["adapters"]["support"]["servingVersion"] == v1.version
    assert (agent.adapter_dir / v1.engine_name / "manifest.json").is_file()


def test_streaming_through_the_router(engine, start_agent, publish, desired) -> None:
    v1 = publish("support", 11)
    desired.set(desired_json(entry(v1)))
    agent = start_agent(engine.url)
    agent.wait_ready()
    whole = ask(agent.url, "support", max_tokens=16).json()["choices"][0]["text"]
    body = {
        "model": "support",
        "prompt": PROMPT,
        "max_tokens": 16,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
    }
    events: list[str] = []
    with httpx.stream("POST", f"{agent.url}/v1/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers[ROUTED_HEADER] == v1.engine_name
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len(chunks) > 3
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_two_adapters_concurrently_through_the_router(
    engine, start_agent, publish, desired, make_adapter
) -> None:
    alpha, beta = publish("alpha", 21), publish("beta", 22)
    desired.set(desired_json(entry(alpha), entry(beta)))
    agent = start_agent(engine.url)
    agent.wait_ready()
    expected = {
        "alpha": reference(engine, make_adapter(21)),
        "beta": reference(engine, make_adapter(22)),
    }
    assert expected["alpha"] != expected["beta"]
    versions = {"alpha": alpha.engine_name, "beta": beta.engine_name}
    results: dict[int, tuple[str, httpx.Response]] = {}

    def one(i: int) -> None:
        model = "alpha" if i % 2 else "beta"
        results[i] = (model, ask(agent.url, model))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for model, response in results.values():
        assert response.status_code == 200
        assert response.headers[ROUTED_HEADER] == versions[model]
        assert response.json()["choices"][0]["text"] == expected[model]


def test_switch_and_rollback_under_load_lose_no_request(
    engine, start_agent, publish, desired, k, serving_pod, make_adapter
) -> None:
    v1, v2 = publish("support", 11), publish("support", 12)
    desired.set(desired_json(entry(v1)))
    agent = start_agent(engine.url)
    agent.wait_ready()
    expected = {
        v1.engine_name: reference(engine, make_adapter(11)),
        v2.engine_name: reference(engine, make_adapter(12)),
    }
    assert len(set(expected.values())) == 2
    load = LoadGenerator(urls=[agent.url], model="support", concurrency=4).start()
    try:
        wait_for(lambda: len(load.outcomes) >= 10, timeout=60, what="load on v1")
        desired.set(desired_json(entry(v2)))
        wait_state(k, serving_pod, "support", version=v2.version, state="Ready")
        wait_engine_holds(engine, {v2.engine_name})
        seen = len(load.outcomes)
        wait_for(lambda: len(load.outcomes) >= seen + 10, timeout=60, what="load on v2")
        # Rollback is one more change of the desired set.
        rollback_rv = desired.set(desired_json(entry(v1)))
        state = wait_state(k, serving_pod, "support", version=v1.version, state="Ready")
        wait_engine_holds(engine, {v1.engine_name})
        seen = len(load.outcomes)
        wait_for(lambda: len(load.outcomes) >= seen + 10, timeout=60, what="load after rollback")
    finally:
        outcomes = load.stop()
    assert [o for o in outcomes if not o.ok] == []
    for outcome in outcomes:
        assert outcome.text == expected[outcome.routed_to], outcome
    order = [o.routed_to for o in sorted(outcomes, key=lambda o: o.started)]
    first_v2 = order.index(v2.engine_name)
    assert v1.engine_name in order[first_v2:]  # served again after the rollback
    assert state["configResourceVersion"] == rollback_rv


def test_old_version_is_unloaded_only_after_its_stream_finished(
    engine, start_agent, publish, desired
) -> None:
    v1, v2 = publish("support", 11), publish("support", 12)
    desired.set(desired_json(entry(v1)))
    agent = start_agent(engine.url)
    agent.wait_ready()
    body = {
        "model": "support",
        "prompt": PROMPT,
        "max_tokens": 2000,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    first_chunk = threading.Event()
    result: dict = {}

    def stream() -> None:
        pieces, finish, errors = [], None, []
        with httpx.stream("POST", f"{agent.url}/v1/completions", json=body, timeout=300) as r:
            result["routed"] = r.headers.get(ROUTED_HEADER)
            for line in r.iter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk = json.loads(line[6:])
                errors += [chunk] if "error" in chunk else []
                pieces += [c["text"] for c in chunk.get("choices", [])]
                finish = (chunk.get("choices") or [{}])[0].get("finish_reason") or finish
                result["usage"] = chunk.get("usage") or result.get("usage")
                first_chunk.set()
        result.update(text="".join(pieces), finish=finish, errors=errors)

    reader = threading.Thread(target=stream)
    reader.start()
    assert first_chunk.wait(60)
    desired.set(desired_json(entry(v2)))

    def draining() -> dict | None:
        if "finish" in result:
            raise AssertionError("the stream ended before the switch was seen draining")
        status = agent.status()
        if status["draining"] == {v1.engine_name: 1}:
            return status
        return None

    status = wait_for(draining, timeout=120, interval=0.05, what="v1 draining")
    assert status["routes"] == {"support": v2.engine_name}
    assert v1.engine_name in engine_adapters(engine.url)  # still loaded under the stream
    reader.join(300)
    assert result["routed"] == v1.engine_name
    assert result["errors"] == [] and result["finish"] == "length"
    assert result["usage"]["completion_tokens"] == 2000
    wait_engine_holds(engine, {v2.engine_name})


def test_corrupted_version_is_refused_while_the_old_one_serves(
    engine, start_agent, publish, desired, k, serving_pod
) -> None:
    v1 = publish("support", 11)
    v2 = publish("support", 12, corrupt="adapter_model.safetensors")
    desired.set(desired_json(entry(v1)))
    agent = start_agent(engine.url)
    agent.wait_ready()
    load = LoadGenerator(urls=[agent.url], model="support", concurrency=2).start()
    try:
        desired.set(desired_json(entry(v2)))
        state = wait_state(k, serving_pod, "support", version=v2.version, state="Failed")
        seen = len(load.outcomes)
        wait_for(lambda: len(load.outcomes) >= seen + 10, timeout=60, what="load after refusal")
    finally:
        outcomes = load.stop()
    item = state["adapters"]["support"]
    assert "adapter_model.safetensors: SHA-256" in item["message"]
    assert "does not match the manifest" in item["message"]
    assert item["message"].endswith(f"still serving version {v1.version}")
    assert item["servingVersion"] == v1.version
    assert [o for o in outcomes if not o.ok] == []
    assert {o.routed_to for o in outcomes} == {v1.engine_name}
    assert agent.ready()
    assert engine_adapters(engine.url) == {v1.engine_name}
    assert sorted(p.name for p in agent.adapter_dir.iterdir()) == [v1.engine_name]


def test_refusals_are_reported_per_adapter(
    engine, start_agent, publish, desired, k, serving_pod
) -> None:
    good = publish("good", 33)
    tampered = publish("wrongdigest", 34)
    other_digest = "sha256:" + "ab" * 32
    tampered = Published(name=tampered.name, uri=tampered.uri, digest=other_digest)
    big = publish("bigrank", 31, rank=128)
    other_base = publish("otherbase", 32, base_model_name="llama-3.1-8b-instruct")
    missing = Published(
        name="unpublished",
        uri="s3://adapters/unpublished/run-0/adapter/",
        digest="sha256:" + "cd" * 32,
    )
    broken = {
        "name": "broken",
        "active": {"version": "xyz", "uri": "s3://a/b/", "digest": "sha256:1"},
    }
    desired.set(
        desired_json(
            entry(good), entry(tampered), entry(big), entry(other_base), entry(missing), broken
        )
    )
    agent = start_agent(engine.url, base_model_name=BASE_MODEL_NAME)

    expected = {
        "wrongdigest": f"digest mismatch: the desired set pins {other_digest}",
        "bigrank": "LoRA rank 128 is greater than the engine's max LoRA rank 64",
        "otherbase": "base model mismatch: the adapter was trained on 'llama-3.1-8b-instruct' but "
        "this engine serves 'tiny-llama'",
        "unpublished": "manifest.json does not exist",
        "broken": "invalid entry: adapters[5].active.digest must be 'sha256:'",
    }

    def all_reported() -> dict | None:
        doc = pod_state(k, serving_pod) or {}
        adapters = doc.get("adapters", {})
        done = adapters.get("good", {}).get("state") == "Ready" and all(
            adapters.get(n, {}).get("state") == "Failed" for n in expected
        )
        return adapters if done else None

    adapters = wait_for(all_reported, timeout=60, interval=0.2, what="every adapter reported")
    for name, text in expected.items():
        assert text in adapters[name]["message"], (name, adapters[name]["message"])
        assert "servingVersion" not in adapters[name]
    assert ask(agent.url, "good").status_code == 200
    refused = ask(agent.url, "bigrank")
    assert refused.status_code == 503
    assert "LoRA rank 128" in refused.json()["error"]["message"]
    readiness = httpx.get(f"{agent.url}/kubetune/ready")
    assert readiness.status_code == 503
    assert "bigrank" in readiness.json()["reason"]
    assert engine_adapters(engine.url) == {good.engine_name}


def test_engine_restart_is_recovered_and_a_new_replica_catches_up_first(
    engine, start_agent, publish, desired, k, serving_pod
) -> None:
    """One engine outage serves two stories: the running replica's engine is SIGKILLed and
    comes back empty, and a new replica's agent starts while that engine is still starting."""
    v1 = publish("support", 11)
    desired.set(desired_json(entry(v1)))
    old = start_agent(engine.url)
    old.wait_ready()
    expected = ask(old.url, "support").json()["choices"][0]["text"]

    engine.kill()
    wait_for(lambda: not old.ready(), timeout=30, what="agent to notice the engine is gone")
    assert ask(old.url, "support").status_code == 502

    new_pod = create_pod(k, "serving-1", app="llm-serving")
    new = start_agent(engine.url, pod_name=new_pod)

    def waiting() -> dict | None:
        status = new.status()
        message = status["adapters"].get("support", {}).get("message", "")
        return status if message == "waiting for the engine to answer" else None

    wait_for(waiting, timeout=60, what="the new agent waiting for its engine")
    wait_for(
        (new.adapter_dir / v1.engine_name / "manifest.json").is_file,
        timeout=60,
        what="the new replica to download and verify while the engine starts",
    )
    assert not new.ready()
    assert pod_state(k, new_pod)["adapters"]["support"]["state"] == "Loading"

    engine.start(wait=False)
    observations: list[tuple[bool, bool, bool]] = []

    def both_ready() -> bool:
        ready_old, ready_new = old.ready(), new.ready()
        loaded = engine.healthy() and v1.engine_name in engine_adapters(engine.url)
        observations.append((ready_old, ready_new, loaded))
        return ready_old and ready_new

    wait_for(both_ready, timeout=180, interval=0.1, what="both replicas ready again")
    assert observations[0] == (False, False, False)
    # Neither replica said ready while the engine did not hold the adapter.
    assert not any((a or b) and not loaded for a, b, loaded in observations[:-1])
    assert engine_adapters(engine.url) == {v1.engine_name}
    for agent in (old, new):
        answer = ask(agent.url, "support")
        assert answer.headers[ROUTED_HEADER] == v1.engine_name
        assert answer.json()["choices"][0]["text"] == expected
    for pod in (serving_pod, new_pod):
        wait_state(k, pod, "support", version=v1.version, state="Ready")


def test_canary_routes_only_the_listed_pod(
    engine, start_agent, publish, desired, k, serving_pod
) -> None:
    v1, v2 = publish("support", 11), publish("support", 12)
    desired.set(desired_json(entry(v1, canary=v2, pods=(serving_pod,))))
    agent = start_agent(engine.url)
    agent.wait_ready()
    wait_state(k, serving_pod, "support", version=v2.version, state="Ready")
    assert ask(agent.url, "support").headers[ROUTED_HEADER] == v2.engine_name
    desired.set(desired_json(entry(v1, canary=v2, pods=("serving-1",))))
    wait_state(k, serving_pod, "support", version=v1.version, state="Ready")
    wait_engine_holds(engine, {v1.engine_name})
    assert ask(agent.url, "support").headers[ROUTED_HEADER] == v1.engine_name
