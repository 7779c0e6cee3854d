"""Fixtures of the serving integration tests: a tiny base model and LoRA adapters built once per
session, the real reference engine (one process per session, cleaned between tests), adapters
published to the real S3 test server, the Pod and desired-set ConfigMap an agent works with on
the real kube-apiserver, and agent processes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from kubetune.api.contract import (
    DEPLOYMENT_LABEL,
    DESIRED_ADAPTERS_CONFIGMAP_PREFIX,
    DESIRED_ADAPTERS_KEY,
)
from kubetune.cluster.controlplane import ControlPlane
from kubetune.cluster.kubectl import Kubectl
from kubetune.cluster.objectstore import ObjectStore
from tests.integration.serving.serving_builders import (
    BASE_MODEL_NAME,
    Published,
    build_lora_adapter,
    build_tiny_base,
    publish_adapter,
)
from tests.integration.serving.serving_procs import AgentProcess, EngineProcess, create_pod

DEPLOYMENT = "llm-serving"


@pytest.fixture(scope="session")
def serving_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serving")


@pytest.fixture(scope="session")
def tiny_base(serving_workdir: Path) -> Path:
    return build_tiny_base(serving_workdir / "base" / BASE_MODEL_NAME)


@pytest.fixture(scope="session")
def make_adapter(tiny_base: Path, serving_workdir: Path) -> Callable[..., Path]:
    """``make_adapter(seed, rank=8)``: a PEFT LoRA folder, built once per (seed, rank)."""
    built: dict[tuple[int, int], Path] = {}

    def make(seed: int, *, rank: int = 8) -> Path:
        key = (seed, rank)
        if key not in built:
            out = serving_workdir / "adapters" / f"seed{seed}-r{rank}"
            built[key] = build_lora_adapter(tiny_base, out, seed=seed, rank=rank, alpha=2 * rank)
        return built[key]

    return make


@pytest.fixture(scope="session")
def engine_process(tiny_base: Path, serving_workdir: Path) -> Iterator[EngineProcess]:
    proc = EngineProcess(
        model_dir=tiny_base, served_name=BASE_MODEL_NAME, workdir=serving_workdir / "engine"
    )
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def engine(engine_process: EngineProcess) -> EngineProcess:
    """The session engine, running and with no adapter loaded (a test may have left some)."""
    if not engine_process.healthy():
        engine_process.stop()
        engine_process.start()
    models = httpx.get(f"{engine_process.url}/v1/models", timeout=10).json()["data"]
    for card in models:
        if card.get("parent"):
            httpx.post(
                f"{engine_process.url}/v1/unload_lora_adapter",
                json={"lora_name": card["id"]},
                timeout=30,
            )
    return engine_process


@pytest.fixture
def s3(s3_env: ObjectStore) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=s3_env.endpoint,
        aws_access_key_id=s3_env.access_key,
        aws_secret_access_key=s3_env.secret_key,
        region_name=s3_env.region,
    )


@pytest.fixture
def publish(s3: Any, make_adapter: Callable[..., Path]) -> Callable[..., Published]:
    """``publish(name, seed, rank=8, corrupt=None, base_model_name=...)`` under a fresh run."""

    def do(
        name: str,
        seed: int,
        *,
        rank: int = 8,
        corrupt: str | None = None,
        base_model_name: str = BASE_MODEL_NAME,
    ) -> Published:
        return publish_adapter(
            s3,
            name=name,
            adapter_dir=make_adapter(seed, rank=rank),
            bucket="adapters",
            prefix=f"{name}/run-{uuid.uuid4().hex[:8]}/adapter",
            base_model_name=base_model_name,
            corrupt=corrupt,
        )

    return do


@pytest.fixture
def serving_pod(k: Kubectl) -> str:
    """A Pod object for the agent to annotate; no scheduler or kubelet ever acts on it."""
    return create_pod(k, "serving-0", app=DEPLOYMENT)


class Desired:
    """Writes the desired-set ConfigMap as the AdapterDeployment controller will."""

    def __init__(self, k: Kubectl, deployment: str) -> None:
        self.k = k
        self.name = f"{DESIRED_ADAPTERS_CONFIGMAP_PREFIX}{deployment}"
        self.deployment = deployment

    def set(self, text: str) -> str:
        """Apply ``desired.json``; returns the ConfigMap's new resourceVersion."""
        self.k.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": self.name, "labels": {DEPLOYMENT_LABEL: self.deployment}},
                "data": {DESIRED_ADAPTERS_KEY: text},
            }
        )
        return str(self.k.get("configmap", self.name)["metadata"]["resourceVersion"])


@pytest.fixture
def desired(k: Kubectl) -> Desired:
    return Desired(k, DEPLOYMENT)


@pytest.fixture
def start_agent(
    control_plane: ControlPlane,
    s3_env: ObjectStore,
    namespace: str,
    serving_pod: str,
    tmp_path: Path,
) -> Iterator[Callable[..., AgentProcess]]:
    """``start_agent(engine_url, **AgentProcess kwargs)``; every agent is stopped afterwards."""
    agents: list[AgentProcess] = []

    def start(engine_url: str, **kwargs: Any) -> AgentProcess:
        kwargs.setdefault("pod_name", serving_pod)
        agent = AgentProcess(
            workdir=tmp_path,
            namespace=namespace,
            deployment=DEPLOYMENT,
            engine_url=engine_url,
            kubeconfig=control_plane.kubeconfig,
            s3_env=s3_env.env,
            name=f"agent{len(agents)}",
            **kwargs,
        )
        agents.append(agent)
        return agent.start()

    yield start
    for agent in agents:
        agent.stop()
