"""``kubetune chat ADAPTER [PROMPT]``: ask a deployed adapter, once or interactively.

ADAPTER is an AdapterDeployment (or the adapter name it serves). The request goes to the
OpenAI-compatible API of its inference Deployment, through the first of: ``--url`` (a
port-forward or an Ingress), the API server's service proxy to the Service that selects the
Deployment's pods (works from anywhere the kubeconfig works, given ``services/proxy``), or
a ready pod's IP (works from inside the cluster network, and on the local cluster).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import click
import httpx
from rich.text import Text

from kubetune.cli.errors import CliError
from kubetune.cli.kube import ADAPTERDEPLOYMENTS, Kube
from kubetune.cli.session import Session

PATH = "/v1/chat/completions"
TIMEOUT = 300.0
UNAVAILABLE = (502, 503)
"""What the API server's service proxy answers when it has no endpoint to reach."""


@dataclass(frozen=True)
class Target:
    namespace: str
    adep: str
    model: str
    deployment: str


def resolve(kube: Kube, namespace: str, adapter: str) -> Target:
    adep = kube.get_or_none(ADAPTERDEPLOYMENTS, adapter, namespace)
    if adep is None:
        matches = [
            a
            for a in kube.list_all(ADAPTERDEPLOYMENTS, namespace)
            if (a.get("spec") or {}).get("adapterName") == adapter
        ]
        if not matches:
            raise CliError(
                f"no AdapterDeployment named {adapter} or serving adapter {adapter} in {namespace}"
            )
        adep = matches[0]
    spec = adep.get("spec") or {}
    return Target(
        namespace=namespace,
        adep=adep["metadata"]["name"],
        model=str(spec.get("adapterName") or adep["metadata"]["name"]),
        deployment=str((spec.get("target") or {}).get("deploymentName", "")),
    )


def _service_for(kube: Kube, target: Target) -> dict[str, Any]:
    deployment = kube.core("deployments", target.namespace, name=target.deployment)
    labels = ((deployment.get("spec") or {}).get("template") or {}).get("metadata", {}).get(
        "labels"
    ) or {}
    matching = [
        dict(service)
        for service in kube.core("services", target.namespace).get("items") or []
        if (selector := (service.get("spec") or {}).get("selector") or {})
        and all(labels.get(k) == v for k, v in selector.items())
    ]
    # A Deployment may also sit behind a metrics Service: prefer one with an "http" port.
    if matching:
        return min(matching, key=lambda s: not _has_http_port(s))
    raise CliError(
        f"no Service selects the pods of deployment {target.namespace}/{target.deployment}: "
        "create one, or pass --url (e.g. after kubectl port-forward)"
    )


def _has_http_port(service: dict[str, Any]) -> bool:
    return any(p.get("name") == "http" for p in (service.get("spec") or {}).get("ports") or [])


def _port(service: dict[str, Any]) -> dict[str, Any]:
    ports = (service.get("spec") or {}).get("ports") or []
    if not ports:
        raise CliError(f"service {service['metadata']['name']} has no ports")
    return dict(next((p for p in ports if p.get("name") == "http"), ports[0]))


def _pod_urls(kube: Kube, namespace: str, service: dict[str, Any]) -> list[str]:
    """http://<pod IP>:<target port> of the Service's ready pods."""
    selector = ",".join(f"{k}={v}" for k, v in service["spec"]["selector"].items())
    port = _port(service)
    target_port = port.get("targetPort", port.get("port"))
    urls = []
    for pod in kube.core("pods", namespace, selector=selector).get("items") or []:
        status = pod.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        if not ready or not status.get("podIP"):
            continue
        number = target_port
        if isinstance(target_port, str) and not target_port.isdigit():
            number = next(
                (
                    p["containerPort"]
                    for c in pod["spec"].get("containers", [])
                    for p in c.get("ports") or []
                    if p.get("name") == target_port
                ),
                None,
            )
        if number is not None:
            urls.append(f"http://{status['podIP']}:{number}")
    return urls


def _post(url: str, body: dict[str, Any], timeout: float) -> tuple[int, Any]:
    try:
        response = httpx.post(
            url.rstrip("/") + PATH, json=body, timeout=httpx.Timeout(timeout, connect=3.0)
        )
    except httpx.HTTPError as err:
        raise ConnectionError(f"{url}: {err}") from err
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text


def _reply(
    session: Session, target: Target, body: dict[str, Any], url: str | None
) -> tuple[int, Any]:
    """(HTTP status, decoded body) from the first route that reaches the engine."""
    if url:
        try:
            return _post(url, body, TIMEOUT)
        except ConnectionError as err:
            raise CliError(f"cannot reach {err}") from err
    kube = session.kube
    service = _service_for(kube, target)
    name, port = service["metadata"]["name"], _port(service)
    code, reply = kube.proxy_post(
        target.namespace, name, port.get("name") or port["port"], PATH, body, timeout=TIMEOUT
    )
    # The proxy's own refusals (no endpoints, forbidden) are API Status objects; the
    # engine's errors are OpenAI-style. Only the former mean: try the pods directly.
    if code not in UNAVAILABLE and not (isinstance(reply, dict) and reply.get("kind") == "Status"):
        return code, reply
    tried = [f"the API server's proxy to service {name} answered {code}"]
    for pod_url in _pod_urls(kube, target.namespace, service):
        try:
            return _post(pod_url, body, TIMEOUT)
        except ConnectionError as err:
            tried.append(str(err))
    raise CliError(
        f"cannot reach deployment {target.deployment}: {'; '.join(tried)}; "
        "pass --url (e.g. after kubectl port-forward)"
    )


def ask(
    session: Session,
    target: Target,
    messages: list[dict[str, str]],
    *,
    url: str | None,
    **opts: Any,
) -> str:
    code, reply = _reply(
        session, target, {"model": target.model, "messages": messages, **opts}, url
    )
    if code == 200 and isinstance(reply, dict):
        try:
            return str(reply["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError) as err:
            raise CliError(f"unexpected answer from {target.deployment}: {reply}") from err
    message = reply.get("error", reply) if isinstance(reply, dict) else reply
    if isinstance(message, dict):
        message = message.get("message", message)
    if code == 404:
        raise CliError(
            f"{target.deployment} does not serve {target.model} (yet): {message} "
            f"(`kubectl -n {target.namespace} get adep {target.adep}` shows the rollout)"
        )
    raise CliError(f"{target.deployment} answered HTTP {code}: {message}")


@click.command()
@click.argument("adapter")
@click.argument("prompt", required=False)
@click.option("--system", metavar="TEXT", help="A system message before the conversation.")
@click.option(
    "--max-tokens",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Longest answer, in tokens.",
)
@click.option(
    "--temperature",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Sampling temperature (0: greedy, the same answer every time).",
)
@click.option("--url", metavar="URL", help="OpenAI-compatible base URL (skips discovery).")
@click.pass_obj
def chat(
    session: Session,
    /,
    *,
    adapter: str,
    prompt: str | None,
    system: str | None,
    max_tokens: int,
    temperature: float,
    url: str | None,
) -> None:
    """Ask ADAPTER one PROMPT, or chat interactively when PROMPT is omitted on a terminal
    (stdin is read as the prompt when it is not a terminal)."""
    target = resolve(session.kube, session.namespace, adapter)
    messages: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    opts = {"max_tokens": max_tokens, "temperature": temperature}
    if prompt is None and not sys.stdin.isatty():
        prompt = sys.stdin.read().strip()
        if not prompt:
            raise CliError("no prompt: pass PROMPT or write it to stdin")
    if prompt is not None:
        messages.append({"role": "user", "content": prompt})
        click.echo(ask(session, target, messages, url=url, **opts))
        return
    session.err.print(
        f"chatting with {target.model} on {target.namespace}/{target.deployment}; "
        "an empty line or Ctrl-D ends"
    )
    while True:
        try:
            line = session.out.input(Text("you> ", style="bold")).strip()
        except EOFError:
            break
        if not line:
            break
        messages.append({"role": "user", "content": line})
        answer = ask(session, target, messages, url=url, **opts)
        messages.append({"role": "assistant", "content": answer})
        session.out.print(Text.assemble((f"{target.model}> ", "bold cyan"), answer))
