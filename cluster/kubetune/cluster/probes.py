"""Running readiness, liveness and startup probes against a pod process (node agent I/O).

httpGet and tcpSocket target the pod IP (or ``host``) and a port number or named
containerPort; exec runs the command with the container's environment and working directory,
through the same localisation as the container itself. ``probe_loop`` applies the timing and
thresholds from ``probestate`` and reports flips through a callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from kubetune.cluster.probestate import ProbeSpec, ProbeTracker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeTarget:
    """What a probe needs to know about its container."""

    pod_ip: str
    ports: Mapping[str, int]  # named containerPorts
    env: Mapping[str, str]
    cwd: str
    localise: Callable[[Sequence[str]], list[str]]


def _port(value: Any, ports: Mapping[str, int]) -> int:
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return int(value)
    if value in ports:
        return ports[value]
    raise ValueError(f"probe port {value!r} is not a containerPort name")


async def _http(spec: ProbeSpec, h: Mapping[str, Any], target: ProbeTarget) -> tuple[bool, str]:
    scheme = str(h.get("scheme", "HTTP")).lower()
    host = h.get("host") or target.pod_ip
    port = _port(h.get("port"), target.ports)
    path = str(h.get("path") or "/")
    headers = {x["name"]: x["value"] for x in h.get("httpHeaders") or []}
    url = f"{scheme}://{host}:{port}{path if path.startswith('/') else '/' + path}"
    async with httpx.AsyncClient(verify=False, timeout=spec.timeout) as client:  # noqa: S501
        resp = await client.get(url, headers=headers)
    ok = 200 <= resp.status_code < 400
    return ok, "" if ok else f"HTTP probe failed with statuscode: {resp.status_code}"


async def _tcp(spec: ProbeSpec, h: Mapping[str, Any], target: ProbeTarget) -> tuple[bool, str]:
    host = h.get("host") or target.pod_ip
    port = _port(h.get("port"), target.ports)
    _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), spec.timeout)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, ""


async def run_probe(spec: ProbeSpec, target: ProbeTarget) -> tuple[bool, str]:
    """One probe attempt: (success, message)."""
    handler = spec.handler
    try:
        if "httpGet" in handler:
            return await _http(spec, handler["httpGet"], target)
        if "tcpSocket" in handler:
            return await _tcp(spec, handler["tcpSocket"], target)
        if "exec" in handler:
            return await _exec(list(handler["exec"].get("command") or []), spec.timeout, target)
        return False, (
            "grpc probes are not supported by the local cluster"
            if "grpc" in handler
            else "probe has no handler"
        )
    except TimeoutError:
        return False, f"probe timed out after {spec.timeout:g}s"
    except (OSError, httpx.HTTPError, ValueError) as err:
        return False, f"probe failed: {err}"


async def _exec(command: list[str], limit: float, target: ProbeTarget) -> tuple[bool, str]:
    if not command:
        return False, "exec probe without a command"
    proc = await asyncio.create_subprocess_exec(
        *target.localise(command),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=dict(target.env),
        cwd=target.cwd,
        start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), limit)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        return False, f"command timed out after {limit:g}s"
    ok = proc.returncode == 0
    text = out.decode(errors="replace").strip()[-512:]
    return ok, "" if ok else f"exit code {proc.returncode}: {text}"


async def probe_loop(
    spec: ProbeSpec,
    target: ProbeTarget,
    *,
    on_flip: Callable[[bool, str], Awaitable[None]],
    stop_when_healthy: bool = False,
) -> None:
    """Probe forever (until cancelled); ``stop_when_healthy`` ends a startup probe on success."""
    tracker = ProbeTracker.for_spec(spec)
    await asyncio.sleep(spec.initial_delay)
    while True:
        ok, message = await run_probe(spec, target)
        if tracker.observe(ok):
            await on_flip(tracker.healthy, message)
            if stop_when_healthy and tracker.healthy:
                return
        elif spec.kind == "startup" and tracker.failed_out and not tracker.healthy:
            await on_flip(False, message)
            return
        await asyncio.sleep(spec.period)
