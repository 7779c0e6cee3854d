"""Pod networking shim for Python processes on the local cluster (loaded via PYTHONPATH).

The node agent puts this folder first on ``PYTHONPATH`` of every pod process, so Python runs it
at start-up. It makes two Kubernetes idioms work although pods share the host's network:

* binding to all interfaces (``0.0.0.0``/``""``) or to loopback (``127.0.0.1``/``localhost``)
  binds to the pod's own address ``$KUBETUNE_POD_IP`` instead, so two pods can use the same port;
* connecting to ``localhost``/``127.0.0.1`` on one of the pod's declared containerPorts
  (``$KUBETUNE_POD_PORTS``) reaches the pod's own address, so sidecars find each other.

Anything else (the API server and the object store on 127.0.0.1) is untouched. Outside a pod
(no ``KUBETUNE_POD_IP``) it does nothing. Non-Python programs must bind ``$KUBETUNE_POD_IP``.
"""

from __future__ import annotations

import os
import socket
from typing import Any

_POD_IP = os.environ.get("KUBETUNE_POD_IP", "")
_PORTS = {int(p) for p in os.environ.get("KUBETUNE_POD_PORTS", "").split(",") if p.isdigit()}
_LOCAL = {"", "0.0.0.0", "127.0.0.1", "localhost"}  # noqa: S104 - rewritten, never bound


def _rewrite_bind(sock: socket.socket, address: Any) -> Any:
    if sock.family == socket.AF_INET and isinstance(address, tuple) and address[0] in _LOCAL:
        return (_POD_IP, *address[1:])
    return address


def _rewrite_connect(sock: socket.socket, address: Any) -> Any:
    if (
        sock.family == socket.AF_INET
        and isinstance(address, tuple)
        and address[0] in ("127.0.0.1", "localhost")
        and len(address) > 1
        and address[1] in _PORTS
    ):
        return (_POD_IP, *address[1:])
    return address


if _POD_IP:
    _bind = socket.socket.bind
    _connect = socket.socket.connect
    _connect_ex = socket.socket.connect_ex

    def bind(self: socket.socket, address: Any) -> None:
        _bind(self, _rewrite_bind(self, address))

    def connect(self: socket.socket, address: Any) -> None:
        _connect(self, _rewrite_connect(self, address))

    def connect_ex(self: socket.socket, address: Any) -> int:
        return _connect_ex(self, _rewrite_connect(self, address))

    # setattr: patching a C-level method is deliberate here; typing cannot express it.
    setattr(socket.socket, "bind", bind)  # noqa: B010
    setattr(socket.socket, "connect", connect)  # noqa: B010
    setattr(socket.socket, "connect_ex", connect_ex)  # noqa: B010
