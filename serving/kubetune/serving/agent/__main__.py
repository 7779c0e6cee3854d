"""Entry point of the adapter agent sidecar: ``python -m kubetune.serving.agent``.

Reads its configuration from the environment (``agent.config``), then runs three things on one
event loop until SIGTERM: the OpenAI-compatible router on ``KUBETUNE_LISTEN``, the watch of the
desired-set ConfigMap, and the sync loop. Kubernetes credentials come from the pod's service
account (or ``KUBECONFIG`` outside a cluster); S3 credentials from the standard ``AWS_*``
variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys

import httpx
import uvicorn
from lightkube import AsyncClient

from kubetune.serving.agent.config import AgentConfig, ConfigError, load_config
from kubetune.serving.agent.download import AdapterStager, s3_client
from kubetune.serving.agent.engine_client import EngineClient
from kubetune.serving.agent.inflight import InFlight
from kubetune.serving.agent.reporter import StateReporter
from kubetune.serving.agent.router import create_router_app
from kubetune.serving.agent.routing import RoutingState
from kubetune.serving.agent.sync import AdapterSync
from kubetune.serving.agent.verify import AdapterLimits
from kubetune.serving.agent.watch import DesiredSetWatcher

log = logging.getLogger("kubetune.serving.agent")

FIELD_MANAGER = "kubetune-agent"


async def run(config: AgentConfig) -> None:
    kube = AsyncClient(field_manager=FIELD_MANAGER)
    engine = EngineClient(config.engine_url)
    # No read timeout on the proxy: a long generation streams for as long as it takes.
    proxy_http = httpx.AsyncClient(
        base_url=config.engine_url,
        timeout=httpx.Timeout(None, connect=5.0),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=200),
    )
    routing = RoutingState()
    inflight = InFlight()
    stager = AdapterStager(
        s3=s3_client(),
        adapter_dir=config.adapter_dir,
        limits=AdapterLimits(
            max_lora_rank=config.max_lora_rank, base_model_name=config.base_model_name
        ),
    )
    sync = AdapterSync(
        config=config,
        engine=engine,
        stager=stager,
        routing=routing,
        inflight=inflight,
        reporter=StateReporter(client=kube, pod_name=config.pod_name, namespace=config.namespace),
    )
    # A drained version is unloaded on the next pass, which its last request triggers.
    inflight.on_idle = sync.poke
    watcher = DesiredSetWatcher(
        client=kube,
        namespace=config.namespace,
        name=config.configmap_name,
        on_change=sync.set_desired,
        on_error=sync.set_desired_error,
    )
    app = create_router_app(
        engine=proxy_http, routing=routing, inflight=inflight, status=sync.status
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.listen_host,
            port=config.listen_port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=30,
        )
    )
    log.info(
        "agent for %s/%s (deployment %s) listening on %s:%d, engine %s (%s)",
        config.namespace,
        config.pod_name,
        config.deployment,
        config.listen_host,
        config.listen_port,
        config.engine_url,
        config.engine,
    )
    background = [
        asyncio.create_task(sync.run(), name="sync"),
        asyncio.create_task(watcher.run(), name="watch"),
    ]
    try:
        await server.serve()
    finally:
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await proxy_http.aclose()
        await engine.aclose()
        await kube.close()


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("KUBETUNE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The per-request lines of the HTTP clients would drown the agent's own.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    try:
        config = load_config(os.environ)
    except ConfigError as err:
        print(f"kubetune agent: {err}", file=sys.stderr)
        sys.exit(2)
    asyncio.run(run(config))


if __name__ == "__main__":
    main()
