"""What one invocation knows: global options, the consoles, and lazily opened connections.

Commands that never touch the cluster (``data``) never load a kubeconfig; the object store is
opened only by commands that read or write it, with the endpoint they resolved.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from kubetune.cli.kube import Kube, load_config
from kubetune.cli.store import Store

PIPE_WIDTH = 200
"""Columns when writing to a pipe or file (rich would assume 80 and squeeze tables)."""


def _console(*, stderr: bool) -> Console:
    """Messages never hard-wrap (a URI stays on one line). Strings are never parsed as markup
    (a dataset line or a status message may contain ``[brackets]``) nor auto-highlighted:
    styles come only from ``Text`` objects. Tables fit the width."""
    options: dict[str, Any] = {"stderr": stderr, "soft_wrap": True, "highlight": False}
    console = Console(markup=False, **options)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(markup=False, width=PIPE_WIDTH, **options)
    return console


@dataclass
class Session:
    kubeconfig: str | None = None
    context: str | None = None
    namespace_flag: str | None = None
    s3_endpoint: str | None = None
    out: Console = field(default_factory=lambda: _console(stderr=False))
    err: Console = field(default_factory=lambda: _console(stderr=True))
    _kube: Kube | None = None
    _stores: dict[str, Store] = field(default_factory=dict)

    @property
    def kube(self) -> Kube:
        if self._kube is None:
            self._kube = Kube(load_config(self.kubeconfig, self.context))
        return self._kube

    @property
    def namespace(self) -> str:
        """--namespace, else the kubeconfig context's namespace, else ``default``."""
        return self.namespace_flag or self.kube.namespace

    def store(self, spec: dict[str, Any] | None = None) -> Store:
        """The object store: --s3-endpoint, else AWS_ENDPOINT_URL, else spec.storage.endpoint."""
        storage = (spec or {}).get("storage") or {}
        endpoint = (
            self.s3_endpoint
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
            or storage.get("endpoint")
            or ""
        )
        if endpoint not in self._stores:
            self._stores[endpoint] = Store(endpoint=endpoint or None, region=storage.get("region"))
        return self._stores[endpoint]

    def close(self) -> None:
        if self._kube is not None:
            self._kube.close()
