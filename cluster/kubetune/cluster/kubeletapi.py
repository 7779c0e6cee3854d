"""The part of the kubelet API the local cluster serves: container logs, so ``kubectl logs``
(and every client of the ``pods/log`` subresource, such as ``kubetune logs``) works.

The API server proxies ``GET /api/v1/namespaces/<ns>/pods/<pod>/log`` to
``https://<node InternalIP>:<daemonEndpoints.kubeletEndpoint.Port>/containerLogs/<ns>/<pod>/<c>``.
The node agent serves that path over TLS from the files the pod workers write (see
``podlogs``): the server certificate is signed by the cluster CA, which the API server checks
(``--kubelet-certificate-authority``), and clients must present a certificate signed by the
same CA (the API server's ``--kubelet-client-certificate``). Query parameters honoured:
``follow``, ``previous``, ``tailLines``, ``limitBytes``; others are accepted and ignored.

Runs in a thread next to the agent's event loop: log streaming is blocking file I/O.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from kubetune.cluster.podlogs import LogNotFoundError, find_log

log = logging.getLogger(__name__)

FOLLOW_POLL_SECONDS = 0.2
HANDSHAKE_TIMEOUT_SECONDS = 10.0
CHUNK = 64 * 1024

IsRunning = Callable[[str, str, str], bool]
"""``is_running(namespace, pod, container)``: whether that container's process is alive."""


@dataclass(frozen=True)
class KubeletTls:
    cert: Path
    key: Path
    client_ca: Path


@dataclass(frozen=True)
class LogRequest:
    namespace: str
    pod: str
    container: str | None
    follow: bool = False
    previous: bool = False
    tail_lines: int | None = None
    limit_bytes: int | None = None


class BadRequestError(ValueError):
    pass


def parse_log_request(target: str) -> LogRequest:
    """``/containerLogs/<ns>/<pod>[/<container>]?...`` -> ``LogRequest`` (pure)."""
    url = urlsplit(target)
    parts = [unquote(p) for p in url.path.split("/") if p]
    if len(parts) not in (3, 4) or parts[0] != "containerLogs":
        raise BadRequestError(f"unsupported path {url.path}")
    query = {k: v[-1] for k, v in parse_qs(url.query).items()}

    def flag(name: str) -> bool:
        return query.get(name, "false").lower() in ("true", "1")

    def number(name: str) -> int | None:
        raw = query.get(name)
        if raw is None:
            return None
        try:
            value = int(raw)
        except ValueError as err:
            raise BadRequestError(f"{name} must be an integer, got {raw!r}") from err
        if value < 0:
            raise BadRequestError(f"{name} must not be negative")
        return value

    return LogRequest(
        namespace=parts[1],
        pod=parts[2],
        container=parts[3] if len(parts) == 4 else None,
        follow=flag("follow"),
        previous=flag("previous"),
        tail_lines=number("tailLines"),
        limit_bytes=number("limitBytes"),
    )


def initial_chunk(data: bytes, *, tail_lines: int | None, limit_bytes: int | None) -> bytes:
    """What to send first: the last ``tail_lines`` lines, capped at ``limit_bytes`` (pure)."""
    if tail_lines is not None:
        lines = data.splitlines(keepends=True)
        data = b"".join(lines[-tail_lines:]) if tail_lines else b""
    if limit_bytes is not None:
        data = data[:limit_bytes]
    return data


class _TlsServer(ThreadingHTTPServer):
    """Accepts plain TCP and does the TLS handshake in the connection's own thread, with a
    timeout: a client that connects and stays silent cannot stall the accept loop."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        context: ssl.SSLContext,
    ) -> None:
        super().__init__(address, handler)
        self.context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(HANDSHAKE_TIMEOUT_SECONDS)
        try:
            secured = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as err:
            log.debug("kubelet API: TLS handshake with %s failed: %s", client_address, err)
            return
        secured.settimeout(None)
        try:
            super().finish_request(secured, client_address)
        finally:
            with contextlib.suppress(OSError):
                secured.close()


class KubeletApi:
    """A TLS HTTP server for ``/containerLogs`` and ``/healthz`` on ``host``."""

    def __init__(
        self, *, logs_dir: Path, tls: KubeletTls, is_running: IsRunning, host: str = "127.0.0.1"
    ) -> None:
        self.logs_dir = logs_dir
        self.is_running = is_running
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tls.client_ca))
        context.load_cert_chain(str(tls.cert), str(tls.key))
        context.verify_mode = ssl.CERT_REQUIRED
        self._server = _TlsServer((host, 0), self._handler_class(), context=context)
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="kubelet-api", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> KubeletApi:
        self._thread.start()
        log.info("kubelet API (container logs) on https://127.0.0.1:%d", self.port)
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def find(self, request: LogRequest) -> Path:
        """The log file the request names (``LogNotFoundError`` when there is none)."""
        return find_log(
            self.logs_dir,
            namespace=request.namespace,
            name=request.pod,
            container=request.container,
            previous=request.previous,
        )

    def stream(self, request: LogRequest, path: Path, write: Callable[[bytes], None]) -> None:
        """Write the log at ``path``; with ``follow``, keep writing until the container exits."""
        container = path.parent.name
        with path.open("rb") as f:
            first = initial_chunk(
                f.read(), tail_lines=request.tail_lines, limit_bytes=request.limit_bytes
            )
            write(first)
            if not request.follow or request.previous:
                return
            sent = len(first)
            while not self._stopping.is_set():
                running = self.is_running(request.namespace, request.pod, container)
                data = f.read(CHUNK)
                if data:
                    if request.limit_bytes is not None:
                        data = data[: max(0, request.limit_bytes - sent)]
                        if not data:
                            return
                    write(data)
                    sent += len(data)
                    continue
                if not running or self._newer_instance(path):
                    return
                time.sleep(FOLLOW_POLL_SECONDS)

    @staticmethod
    def _newer_instance(path: Path) -> bool:
        restart = int(path.stem)
        return path.with_name(f"{restart + 1}.log").exists()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 60  # reading the request, and each write of a stream

            def do_GET(self) -> None:
                if self.path == "/healthz":
                    self._reply(HTTPStatus.OK, b"ok")
                    return
                try:
                    request = parse_log_request(self.path)
                    # Resolve the file before the status line, so a missing log is a 404.
                    path = api.find(request)
                except BadRequestError as err:
                    self._reply(HTTPStatus.BAD_REQUEST, str(err).encode())
                    return
                except LogNotFoundError as err:
                    # As the kubelet: a missing previous instance is the caller's mistake (400,
                    # whose message the API server passes on); anything else is not there yet.
                    status = HTTPStatus.BAD_REQUEST if request.previous else HTTPStatus.NOT_FOUND
                    self._reply(status, str(err).encode())
                    return
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    api.stream(request, path, self._chunk)
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                self.close_connection = True

            def _chunk(self, data: bytes) -> None:
                if data:
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()

            def _reply(self, status: HTTPStatus, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("kubelet API: " + format, *args)

        return Handler
