"""Has this run already been published? Checked first, before anything heavy is imported.

A run whose ``adapter/manifest.json`` exists is finished for good: the trainer reports the
existing adapter (exit 0) and never trains or writes again. Needs only the object store.
"""

from __future__ import annotations

import json
from typing import Any

from kubetune.api import contract
from kubetune.api.runconfig import RunConfig
from kubetune.trainer import manifest, termination
from kubetune.trainer.storage import Store, join


def adapter_uri(config: RunConfig) -> str:
    return join(config.run_uri, contract.ADAPTER_DIR) + "/"


def existing_document(config: RunConfig, store: Store | None = None) -> dict[str, Any] | None:
    """The success document of an earlier attempt's publication, or None."""
    uri = adapter_uri(config)
    body = (store or Store(config.storage)).read_bytes_or_none(join(uri, contract.MANIFEST_FILE))
    return None if body is None else document(body, uri)


def document(body: bytes, uri: str) -> dict[str, Any]:
    try:
        metrics = json.loads(body).get("metrics", {})
    except ValueError:
        metrics = {}
    return termination.succeeded(
        adapter_uri=uri,
        digest=manifest.digest(body),
        metrics=metrics,
        message="already published by an earlier attempt; nothing was overwritten",
    )
