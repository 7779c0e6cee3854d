"""The Kubernetes API as the CLI needs it: JSON over the kubeconfig's connection.

lightkube loads the kubeconfig (contexts, client certificates, tokens, exec plugins) and builds
the authenticated HTTP client; requests are plain REST paths so every object stays a dict, as
``kubectl get -o json`` prints it. Every failure a user can cause or fix becomes a ``CliError``
with one line: no kubeconfig, unreachable API server, forbidden, not found.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx2
import yaml
from lightkube.config import client_adapter
from lightkube.config.kubeconfig import DEFAULT_KUBECONFIG, KubeConfig, SingleConfig
from lightkube.core.exceptions import ConfigError

from kubetune.api.constants import GROUP, VERSION
from kubetune.cli.errors import CliError

FIELD_MANAGER = "kubetune-cli"
THROTTLE_RETRIES = 5
FINETUNEJOBS = "finetunejobs"
ADAPTERDEPLOYMENTS = "adapterdeployments"
KINDS = {FINETUNEJOBS: "finetunejob", ADAPTERDEPLOYMENTS: "adapterdeployment"}


FILE_FIELDS = {
    "cluster": ("certificate-authority",),
    "user": ("client-certificate", "client-key", "tokenFile"),
}


def _read_kubeconfig(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise CliError(f"kubeconfig {path}: cannot read it: {err}") from err
    except yaml.YAMLError as err:
        raise CliError(f"kubeconfig {path}: not valid YAML: {' '.join(str(err).split())}") from err
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise CliError(f"kubeconfig {path}: not a kubeconfig (a YAML mapping)")
    for kind, fields in FILE_FIELDS.items():
        for entry in doc.get(f"{kind}s") or []:
            body = entry.get(kind) if isinstance(entry, dict) else None
            if not isinstance(body, dict):
                continue
            for key in fields:
                value = body.get(key)
                if isinstance(value, str) and value and not Path(value).is_absolute():
                    body[key] = str(path.parent / value)  # relative to the file, as kubectl does
    return doc


def merge_kubeconfigs(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """kubectl's rules for a KUBECONFIG list: the first file to define a cluster, user or
    context name wins, and so does the first file that sets current-context (pure)."""
    merged: dict[str, Any] = {"clusters": [], "users": [], "contexts": []}
    for doc in docs:
        for section in ("clusters", "users", "contexts"):
            known = {e.get("name") for e in merged[section]}
            for entry in doc.get(section) or []:
                if isinstance(entry, dict) and entry.get("name") not in known:
                    merged[section].append(entry)
                    known.add(entry.get("name"))
        if doc.get("current-context") and "current-context" not in merged:
            merged["current-context"] = doc["current-context"]
    return merged


def load_config(kubeconfig: str | None, context: str | None) -> SingleConfig:
    """The kubeconfig to use: --kubeconfig, else $KUBECONFIG (its files merged as kubectl
    merges them), else ~/.kube/config, else the in-cluster service account."""
    if kubeconfig:
        candidates, origin = [Path(kubeconfig).expanduser()], "--kubeconfig"
    elif os.environ.get("KUBECONFIG"):
        paths = os.environ["KUBECONFIG"].split(os.pathsep)
        candidates, origin = [Path(p).expanduser() for p in paths if p], "KUBECONFIG"
    else:
        candidates, origin = [Path(DEFAULT_KUBECONFIG).expanduser()], ""
    present = [p for p in candidates if p.is_file()]
    if not present:
        if origin:
            shown = ", ".join(str(p) for p in candidates)
            raise CliError(f"kubeconfig not found: {origin} points to {shown}")
        try:
            return KubeConfig.from_service_account().get()  # type: ignore[return-value]
        except ConfigError as err:
            raise CliError(
                f"no kubeconfig: {candidates[0]} does not exist and this is not a pod; "
                "set KUBECONFIG or pass --kubeconfig"
            ) from err
    merged = merge_kubeconfigs([_read_kubeconfig(p) for p in present])
    where = ", ".join(str(p) for p in present)
    contexts = ", ".join(sorted(str(c.get("name")) for c in merged["contexts"])) or "none"
    name = context or merged.get("current-context")
    if not name:
        raise CliError(f"kubeconfig {where} sets no current-context: pass --context ({contexts})")
    try:
        config = KubeConfig.from_dict(merged, fname=present[0])
        single = config.get(context_name=name)
    except ConfigError:
        raise CliError(f"kubeconfig has no context {name!r} (contexts: {contexts})") from None
    except (KeyError, TypeError, ValueError) as err:
        raise CliError(f"kubeconfig context {name!r} refers to an undefined entry: {err}") from err
    if single is None or single.user is None:
        raise CliError(f"kubeconfig context {name!r} names no user")
    return single


def _retry_after(response: httpx2.Response) -> float:
    try:
        return min(10.0, max(0.2, float(response.headers.get("Retry-After", "1"))))
    except ValueError:
        return 1.0


class Kube:
    """One API server, one default namespace."""

    def __init__(self, config: SingleConfig, *, timeout: float = 15.0) -> None:
        self.config = config
        self.server = config.cluster.server
        self.namespace = config.namespace or "default"
        try:
            self.http = client_adapter.Client(
                config, client_adapter.ConnectionParams(timeout=httpx2.Timeout(timeout))
            )
        except (ConfigError, OSError, ValueError) as err:
            raise CliError(f"kubeconfig context {config.context_name!r}: {err}") from err

    # ------------------------------------------------------------------ plumbing

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
        what: str = "",
    ) -> dict[str, Any]:
        response = self._send(method, path, body=body, params=params, content_type=content_type)
        if response.status_code >= 400:
            raise self._error(response, what or path)
        return dict(response.json())

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
        stream: bool = False,
        timeout: httpx2.Timeout | None = None,
    ) -> httpx2.Response:
        headers = {"Accept": "application/json"}
        content = None
        if body is not None:
            headers["Content-Type"] = content_type
            content = json.dumps(body).encode()
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        for attempt in range(THROTTLE_RETRIES + 1):
            try:
                request = self.http.build_request(
                    method, path, params=clean, headers=headers, content=content, **extra
                )
                response = self.http.send(request, stream=stream)
            except httpx2.TransportError as err:
                raise CliError(f"cannot reach the Kubernetes API at {self.server}: {err}") from err
            # 429: API priority and fairness, or a resource whose storage is initialising; the
            # server says when to come back (as kubectl, retry a few times).
            if response.status_code != 429 or attempt == THROTTLE_RETRIES:
                return response
            response.close()
            time.sleep(_retry_after(response))
        raise AssertionError("unreachable")  # the loop always returns

    def _error(self, response: httpx2.Response, what: str) -> CliError:
        message = self._message(response)
        if response.status_code == 401:
            return CliError(f"the API server at {self.server} rejected our credentials: {message}")
        if response.status_code == 403:
            return CliError(f"forbidden: {message}")
        if response.status_code == 404:
            return CliError(
                f"{what} not found" + (f": {message}" if "not found" not in message else "")
            )
        return CliError(f"{what}: {message} (HTTP {response.status_code})")

    # ------------------------------------------------------------------ kubetune objects

    @staticmethod
    def _path(plural: str, namespace: str | None, name: str = "") -> str:
        base = f"/apis/{GROUP}/{VERSION}"
        path = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
        return f"{path}/{name}" if name else path

    def get(self, plural: str, name: str, namespace: str) -> dict[str, Any]:
        obj = self.get_or_none(plural, name, namespace)
        if obj is None:
            raise CliError(
                f"{KINDS[plural]} {namespace}/{name} not found "
                f"(`kubetune list -n {namespace}` shows what exists)"
            )
        return obj

    def get_or_none(self, plural: str, name: str, namespace: str) -> dict[str, Any] | None:
        response = self._send("GET", self._path(plural, namespace, name))
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise self._error(response, f"{KINDS[plural]} {namespace}/{name}")
        return dict(response.json())

    def list_all(self, plural: str, namespace: str | None) -> list[dict[str, Any]]:
        response = self._send("GET", self._path(plural, namespace))
        if response.status_code == 404:
            raise CliError(
                f"the API server at {self.server} does not know {plural}.{GROUP}: "
                "is kubetune installed (its CRDs)?"
            )
        if response.status_code >= 400:
            raise self._error(response, f"{plural} in {namespace or 'all namespaces'}")
        items = response.json().get("items") or []
        return sorted(
            (dict(i) for i in items),
            key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]),
        )

    def apply(self, obj: dict[str, Any], *, force: bool = False) -> dict[str, Any]:
        """Server-side apply under the CLI's field manager."""
        meta = obj["metadata"]
        plural = {"FineTuneJob": FINETUNEJOBS, "AdapterDeployment": ADAPTERDEPLOYMENTS}[obj["kind"]]
        path = self._path(plural, meta["namespace"], meta["name"])
        response = self._send(
            "PATCH",
            path,
            body=obj,
            params={"fieldManager": FIELD_MANAGER, "force": "true" if force else None},
            content_type="application/apply-patch+yaml",
        )
        if response.status_code == 409:
            raise CliError(
                f"{KINDS[plural]} {meta['namespace']}/{meta['name']}: fields are owned by another "
                f"manager ({self._message(response)}); pass --force to take them over"
            )
        if response.status_code == 422:
            raise CliError(f"the API server refused the manifest: {self._message(response)}")
        if response.status_code >= 400:
            raise self._error(response, f"{KINDS[plural]} {meta['namespace']}/{meta['name']}")
        return dict(response.json())

    @staticmethod
    def _message(response: httpx2.Response) -> str:
        """The API server's Status message (or the body's text), for any response, streamed
        or not."""
        response.read()
        try:
            return str(response.json().get("message") or response.text)
        except (ValueError, AttributeError):
            return response.text.strip()

    # ------------------------------------------------------------------ core objects

    def core(
        self, kind: str, namespace: str, *, name: str = "", selector: str | None = None
    ) -> Any:
        """GET /api/v1 (or apps/v1 for deployments) objects as dicts."""
        group = "apis/apps/v1" if kind == "deployments" else "api/v1"
        path = f"/{group}/namespaces/{namespace}/{kind}" + (f"/{name}" if name else "")
        return self.request(
            "GET", path, params={"labelSelector": selector}, what=f"{kind} {namespace}/{name}"
        )

    def events_for(self, namespace: str, *, kind: str, name: str) -> list[dict[str, Any]]:
        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        found = self.request(
            "GET", f"/api/v1/namespaces/{namespace}/events", params={"fieldSelector": selector}
        )
        events = [dict(e) for e in found.get("items") or []]
        return sorted(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")

    def pod_log(
        self,
        namespace: str,
        pod: str,
        *,
        container: str | None,
        follow: bool,
        tail: int | None,
    ) -> Iterator[str]:
        """The container's log, line by line (following it until the container exits)."""
        response = self._send(
            "GET",
            f"/api/v1/namespaces/{namespace}/pods/{pod}/log",
            params={
                "container": container,
                "follow": "true" if follow else None,
                "tailLines": tail,
            },
            stream=True,
            timeout=httpx2.Timeout(15.0, read=None) if follow else None,
        )
        try:
            if response.status_code >= 400:
                message = self._message(response)
                raise CliError(f"logs of pod {namespace}/{pod}: {message}")
            yield from response.iter_lines()
        except httpx2.TransportError as err:
            raise CliError(f"log stream of pod {namespace}/{pod} broke: {err}") from err
        finally:
            response.close()

    def proxy_post(
        self, namespace: str, service: str, port: str | int, path: str, body: Any, *, timeout: float
    ) -> tuple[int, Any]:
        """POST JSON to ``path`` on a Service port through the API server's service proxy:
        (status code, decoded body or text)."""
        response = self._send(
            "POST",
            f"/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy{path}",
            body=body,
            timeout=httpx2.Timeout(timeout, connect=10.0),
        )
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, response.text

    def close(self) -> None:
        self.http.close()
