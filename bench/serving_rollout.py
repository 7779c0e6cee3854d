"""Benchmark: rolling a new adapter version onto 3 serving replicas under steady client load,
kubetune's hot rollout against a restart-based rollout, measured in the same run.

    .venv/bin/python bench/serving_rollout.py [--concurrency 6] [--skip-surge]

Each replica is a real reference engine process (``python -m kubetune.serving.engine``) on a
tiny random Llama. The client load round-robins completions (every other one streamed) over
the 3 replicas and never retries. A request is failed on any non-200 answer, transport error,
error event or unfinished stream. The version that answered is identified by the answer text
(greedy decoding, each version answers differently), the same way for every rollout.

- hot: each replica also runs the kubetune agent; the rollout is one change of the desired-set
  ConfigMap on a real kube-apiserver; clients talk to the agents.
- restart: the new adapter is given at engine start (``--lora-modules support=<dir>``); each
  engine is stopped and started again with it, one at a time, while clients keep sending to
  all 3 addresses (an in-place rolling restart; nothing hides a replica while it restarts).
- surge (unless --skip-surge): the fairest restart-based rollout: for each replica a new
  engine is started beside it, added to the client's rotation once healthy, then the old one
  is taken out of rotation and stopped (a Deployment with maxSurge 1, maxUnavailable 0 and a
  readiness-gated load balancer).

Reported per rollout: time from the rollout's start until each replica, and then every
replica, answers only with the new version; requests sent and failed. Then the ratios. On
these CPU-tiny models an engine restart costs only Python imports and a tiny model load;
real engines (vLLM with an 8B model) restart in minutes, so the restart columns here are a
floor. Not a test: nothing here asserts timing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import httpx
from lightkube import Client
from lightkube.config.kubeconfig import KubeConfig
from lightkube.resources.core_v1 import Pod

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kubetune.api.contract import (  # noqa: E402
    ADAPTER_STATE_ANNOTATION,
    DESIRED_ADAPTERS_CONFIGMAP_PREFIX,
    DESIRED_ADAPTERS_KEY,
)
from kubetune.cluster.controlplane import ControlPlane  # noqa: E402
from kubetune.cluster.kubectl import Kubectl  # noqa: E402
from kubetune.cluster.objectstore import ObjectStore  # noqa: E402
from tests.integration.serving.serving_builders import (  # noqa: E402
    BASE_MODEL_NAME,
    build_lora_adapter,
    build_tiny_base,
    desired_json,
    entry,
    publish_adapter,
)
from tests.integration.serving.serving_load import LoadGenerator, Outcome  # noqa: E402
from tests.integration.serving.serving_procs import (  # noqa: E402
    AgentProcess,
    EngineProcess,
    create_pod,
    wait_for,
)

REPLICAS = 3
DEPLOYMENT = "llm-serving"
NAMESPACE = "bench-serving"
ADAPTER = "support"
PROMPT = "how do I reset my password"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------ measurement


def switch_times(
    outcomes: list[Outcome], *, urls: list[str], new_text: str, t0: float
) -> dict[str, float | None]:
    """Per replica: seconds from ``t0`` until it answered only with the new version.

    The switch moment is the start of the earliest request after which every answered request
    on that replica came from the new version (requests that failed are not answers).
    """
    result: dict[str, float | None] = {}
    for url in urls:
        answered = sorted((o for o in outcomes if o.url == url and o.ok), key=lambda o: o.started)
        switched: float | None = None
        for outcome in reversed(answered):
            if outcome.text != new_text:
                break
            switched = outcome.started
        result[url] = None if switched is None else max(0.0, switched - t0)
    return result


def summarize(
    name: str,
    outcomes: list[Outcome],
    *,
    urls: list[str],
    texts: dict[str, str],
    t0: float,
    t_end: float,
) -> dict[str, Any]:
    per_replica = switch_times(outcomes, urls=urls, new_text=texts["new"], t0=t0)
    during = [o for o in outcomes if o.started >= t0 and o.started <= t_end]
    failed = [o for o in outcomes if not o.ok]
    unknown = [o for o in outcomes if o.ok and o.text not in texts.values()]
    times = [t for t in per_replica.values() if t is not None]
    return {
        "rollout": name,
        "replicaSwitchSeconds": [
            None if per_replica[u] is None else round(per_replica[u], 2)  # type: ignore[arg-type]
            for u in urls
        ],
        "allReplicasSeconds": round(max(times), 2) if len(times) == len(urls) else None,
        "requests": len(outcomes),
        "requestsDuringRollout": len(during),
        "failed": len(failed),
        "failedDuringRollout": len([o for o in failed if t0 <= o.started <= t_end]),
        "unrecognisedAnswers": len(unknown),
        "failureSamples": sorted({(o.error or "")[:120] for o in failed})[:3],
    }


@contextlib.contextmanager
def steady_load(urls: list[str], *, concurrency: int, warmup: float) -> Iterator[LoadGenerator]:
    load = LoadGenerator(urls=urls, model=ADAPTER, prompt=PROMPT, concurrency=concurrency)
    load.start()
    try:
        time.sleep(warmup)
        yield load
    finally:
        load.stop()


# ------------------------------------------------------------------ rollouts


def hot_rollout(ctx: dict[str, Any], *, concurrency: int, settle: float) -> dict[str, Any]:
    work: Path = ctx["work"]
    k: Kubectl = ctx["k"]
    engines = [
        EngineProcess(
            model_dir=ctx["base"],
            served_name=BASE_MODEL_NAME,
            workdir=work / "hot",
            name=f"engine{i}",
        )
        for i in range(REPLICAS)
    ]
    agents: list[AgentProcess] = []
    try:
        log("hot: starting 3 engines + 3 agents (not measured)")
        for engine in engines:
            engine.start(wait=False)
        for engine in engines:
            engine.wait_healthy(timeout=600)
        set_desired(k, desired_json(entry(ctx["v1"])))
        for i, engine in enumerate(engines):
            agent = AgentProcess(
                workdir=work / "hot",
                pod_name=f"serving-{i}",
                namespace=NAMESPACE,
                deployment=DEPLOYMENT,
                engine_url=engine.url,
                kubeconfig=ctx["kubeconfig"],
                s3_env=ctx["s3_env"],
                name=f"agent{i}",
            )
            agents.append(agent.start())
        for agent in agents:
            agent.wait_ready(timeout=120)
        texts = ctx["texts"]
        urls = [a.url for a in agents]
        kube = Client(config=KubeConfig.from_file(ctx["kubeconfig"]), namespace=NAMESPACE)
        log("hot: load running; changing the desired set to v2")
        with steady_load(urls, concurrency=concurrency, warmup=3.0) as load:
            t0 = time.monotonic()
            set_desired(k, desired_json(entry(ctx["v2"])))
            annotated = wait_annotations(kube, ctx["v2"].version, t0=t0)
            wait_for(
                lambda: all_new(load.outcomes, urls, texts["new"], t0),
                timeout=300,
                interval=0.1,
                what="every replica answering with v2",
            )
            t_end = time.monotonic()
            time.sleep(settle)
        summary = summarize(
            "kubetune hot", load.outcomes, urls=urls, texts=texts, t0=t0, t_end=t_end
        )
        summary["annotationReadySeconds"] = annotated
        routed = {o.routed_to for o in load.outcomes if o.ok}
        summary["routedTo"] = sorted(r for r in routed if r)
        return summary
    finally:
        for agent in agents:
            agent.stop()
        for engine in engines:
            engine.stop()


def restart_rollout(ctx: dict[str, Any], *, concurrency: int, settle: float) -> dict[str, Any]:
    work: Path = ctx["work"]
    old_module = f"{ADAPTER}={ctx['v1_dir']}"
    new_module = f"{ADAPTER}={ctx['v2_dir']}"
    engines = [
        EngineProcess(
            model_dir=ctx["base"],
            served_name=BASE_MODEL_NAME,
            workdir=work / "restart",
            lora_modules=(old_module,),
            name=f"engine{i}",
        )
        for i in range(REPLICAS)
    ]
    try:
        log("restart: starting 3 engines with v1 at start (not measured)")
        for engine in engines:
            engine.start(wait=False)
        for engine in engines:
            engine.wait_healthy(timeout=600)
        urls = [e.url for e in engines]
        texts = ctx["texts"]
        log("restart: load running; restarting each engine with v2, one at a time")
        with steady_load(urls, concurrency=concurrency, warmup=3.0) as load:
            t0 = time.monotonic()
            for i, engine in enumerate(engines):
                engine.stop()
                engine.lora_modules = (new_module,)
                engine.start(timeout=600)
                log(f"restart: replica {i} back with v2 after {time.monotonic() - t0:.1f}s")
            wait_for(
                lambda: all_new(load.outcomes, urls, texts["new"], t0),
                timeout=300,
                interval=0.1,
                what="every replica answering with v2",
            )
            t_end = time.monotonic()
            time.sleep(settle)
        return summarize(
            "restart in place", load.outcomes, urls=urls, texts=texts, t0=t0, t_end=t_end
        )
    finally:
        for engine in engines:
            engine.stop()


def surge_rollout(ctx: dict[str, Any], *, concurrency: int, settle: float) -> dict[str, Any]:
    work: Path = ctx["work"]
    old_module = f"{ADAPTER}={ctx['v1_dir']}"
    new_module = f"{ADAPTER}={ctx['v2_dir']}"

    def engine(i: int, module: str, tag: str) -> EngineProcess:
        return EngineProcess(
            model_dir=ctx["base"],
            served_name=BASE_MODEL_NAME,
            workdir=work / "surge",
            lora_modules=(module,),
            name=f"engine{i}-{tag}",
        )

    olds = [engine(i, old_module, "v1") for i in range(REPLICAS)]
    news: list[EngineProcess] = []
    try:
        log("surge: starting 3 engines with v1 at start (not measured)")
        for proc in olds:
            proc.start(wait=False)
        for proc in olds:
            proc.wait_healthy(timeout=600)
        # The balancer's rotation: replica slot -> current address. Replaced atomically.
        slots = [p.url for p in olds]
        texts = ctx["texts"]
        # The generator reads this very list on every request, so replacing a slot reroutes.
        load = LoadGenerator(urls=slots, model=ADAPTER, prompt=PROMPT, concurrency=concurrency)
        load.start()
        log("surge: load running; surging a v2 engine per replica, then retiring the old one")
        try:
            time.sleep(3.0)
            t0 = time.monotonic()
            for i in range(REPLICAS):
                new = engine(i, new_module, "v2")
                news.append(new)
                new.start(timeout=600)
                slots[i] = new.url  # ready: in rotation; the old one is out of rotation
                time.sleep(0.5)  # let its in-flight requests finish before stopping it
                olds[i].stop()
                log(f"surge: replica {i} replaced with v2 after {time.monotonic() - t0:.1f}s")
            t_end = time.monotonic()
            time.sleep(settle)
        finally:
            load.stop()
        # Attribute every request to its replica slot, whichever process answered it.
        slot_of = {p.url: f"slot{i}" for i, p in enumerate(olds)}
        slot_of |= {p.url: f"slot{i}" for i, p in enumerate(news)}
        outcomes = [replace(o, url=slot_of.get(o.url, o.url)) for o in load.outcomes]
        return summarize(
            "restart with surge",
            outcomes,
            urls=[f"slot{i}" for i in range(REPLICAS)],
            texts=texts,
            t0=t0,
            t_end=t_end,
        )
    finally:
        for proc in olds + news:
            proc.stop()


# ------------------------------------------------------------------ helpers


def all_new(outcomes: list[Outcome], urls: list[str], new_text: str, t0: float) -> bool:
    """Each replica has answered at least 3 requests in a row with the new version."""
    for url in urls:
        latest = [o for o in outcomes if o.url == url and o.ok and o.started >= t0][-3:]
        if len(latest) < 3 or any(o.text != new_text for o in latest):
            return False
    return True


def wait_annotations(kube: Client, version: str, *, t0: float) -> list[float | None]:
    """Seconds until each pod's annotation reports the new version Ready (what the operator
    sees), polled in the background of the load."""
    seen: list[float | None] = [None] * REPLICAS

    def poll() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and None in seen:
            for i in range(REPLICAS):
                if seen[i] is not None:
                    continue
                pod = kube.get(Pod, f"serving-{i}")
                raw = (pod.metadata.annotations or {}).get(ADAPTER_STATE_ANNOTATION)
                state = json.loads(raw)["adapters"].get(ADAPTER, {}) if raw else {}
                if state.get("version") == version and state.get("state") == "Ready":
                    seen[i] = round(time.monotonic() - t0, 2)
            time.sleep(0.05)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    thread.join(310)
    return seen


def set_desired(k: Kubectl, text: str) -> None:
    k.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{DESIRED_ADAPTERS_CONFIGMAP_PREFIX}{DEPLOYMENT}"},
            "data": {DESIRED_ADAPTERS_KEY: text},
        }
    )


def reference_texts(base: Path, work: Path, v1_dir: Path, v2_dir: Path) -> dict[str, str]:
    engine = EngineProcess(
        model_dir=base,
        served_name=BASE_MODEL_NAME,
        workdir=work / "reference",
        lora_modules=(f"old={v1_dir}", f"new={v2_dir}"),
    )
    engine.start(timeout=600)
    try:
        texts = {}
        for name in ("old", "new"):
            body = {
                "model": name,
                "prompt": PROMPT,
                "max_tokens": 8,
                "temperature": 0,
                "ignore_eos": True,
            }
            texts[name] = httpx.post(f"{engine.url}/v1/completions", json=body, timeout=60).json()[
                "choices"
            ][0]["text"]
        assert texts["old"] != texts["new"], "the two versions must answer differently"
        return texts
    finally:
        engine.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--settle", type=float, default=3.0, help="load kept after the rollout")
    parser.add_argument("--skip-surge", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="kubetune-bench-serving-"))
    log(f"work folder {work}")
    try:
        with (
            ObjectStore(workdir=work / "s3", buckets=("adapters",)) as store,
            ControlPlane(workdir=work / "cp", controllers=False, scheduler=False) as cp,
        ):
            kubectl = Kubectl(cp.kubeconfig)
            kubectl.run("create", "namespace", NAMESPACE)
            k = kubectl.with_namespace(NAMESPACE)
            # No controller-manager here (nothing needs one), so no one creates this for us.
            k.run("create", "serviceaccount", "default")
            for i in range(REPLICAS):
                create_pod(k, f"serving-{i}", app=DEPLOYMENT)
            log("building the tiny base model and two adapter versions")
            base = build_tiny_base(work / "models" / BASE_MODEL_NAME)
            v1_dir = build_lora_adapter(base, work / "adapters" / "v1", seed=11)
            v2_dir = build_lora_adapter(base, work / "adapters" / "v2", seed=12)
            s3 = boto3.client(
                "s3",
                endpoint_url=store.endpoint,
                aws_access_key_id=store.access_key,
                aws_secret_access_key=store.secret_key,
                region_name=store.region,
            )
            published = {
                tag: publish_adapter(
                    s3,
                    name=ADAPTER,
                    adapter_dir=path,
                    bucket="adapters",
                    prefix=f"{ADAPTER}/run-{tag}/adapter",
                )
                for tag, path in (("v1", v1_dir), ("v2", v2_dir))
            }
            texts = reference_texts(base, work, v1_dir, v2_dir)
            ctx = {
                "work": work,
                "k": k,
                "kubeconfig": cp.kubeconfig,
                "s3_env": store.env,
                "base": base,
                "v1": published["v1"],
                "v2": published["v2"],
                "v1_dir": v1_dir,
                "v2_dir": v2_dir,
                "texts": texts,
            }
            results = [hot_rollout(ctx, concurrency=args.concurrency, settle=args.settle)]
            results.append(restart_rollout(ctx, concurrency=args.concurrency, settle=args.settle))
            if not args.skip_surge:
                results.append(surge_rollout(ctx, concurrency=args.concurrency, settle=args.settle))
        report(results)
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def report(results: list[dict[str, Any]]) -> None:
    print()
    print(
        f"{'rollout':<20} {'all replicas (s)':>16} {'per replica (s)':>24} "
        f"{'requests':>9} {'failed':>7}"
    )
    for r in results:
        per = ", ".join("-" if t is None else f"{t:.2f}" for t in r["replicaSwitchSeconds"])
        total = "-" if r["allReplicasSeconds"] is None else f"{r['allReplicasSeconds']:.2f}"
        print(f"{r['rollout']:<20} {total:>16} {per:>24} {r['requests']:>9} {r['failed']:>7}")
    hot = results[0]
    for other in results[1:]:
        if hot["allReplicasSeconds"] and other["allReplicasSeconds"]:
            ratio = other["allReplicasSeconds"] / hot["allReplicasSeconds"]
            print(
                f"ratio {other['rollout']} / kubetune hot: {ratio:.1f}x slower; failed requests "
                f"{other['failed']} vs {hot['failed']}"
            )
    print()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
