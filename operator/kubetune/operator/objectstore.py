"""Object-store reads of the operator: run progress, adapter manifests and dataset ETags.

Live progress reaches status this way (the operator reads ``progress.json``) rather than by
trainers patching their FineTuneJob: trainers then need no Kubernetes credentials at all, their
egress stays sealed to the object store, state survives operator restarts, and the cost is one
small GET per running run per interval. boto3 is synchronous, so calls run in a thread.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from kubetune.api import contract
from kubetune.operator.observed import AdapterView
from kubetune.operator.spec import split_s3_uri

log = logging.getLogger(__name__)

_MISSING = {"NoSuchKey", "404", "NotFound"}


class ObjectStoreUnavailableError(RuntimeError):
    """A transient storage error; the reconcile is retried on the next tick."""


@lru_cache(maxsize=32)
def _client(endpoint: str, region: str) -> Any:
    config = botocore.config.Config(
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=15,
        s3={"addressing_style": "path"},
    )
    return boto3.client("s3", endpoint_url=endpoint or None, region_name=region, config=config)


@contextmanager
def _reading(uri: str) -> Iterator[None]:
    """Translate storage errors: a missing object is the caller's None, the rest transient."""
    try:
        yield
    except botocore.exceptions.ClientError as err:
        if err.response.get("Error", {}).get("Code") in _MISSING:
            raise _NotFoundError from err
        raise ObjectStoreUnavailableError(f"reading {uri}: {err}") from err
    except botocore.exceptions.BotoCoreError as err:
        raise ObjectStoreUnavailableError(f"reading {uri}: {err}") from err


class _NotFoundError(Exception):
    pass


def _get(endpoint: str, region: str, uri: str) -> bytes | None:
    bucket, key = split_s3_uri(uri)
    try:
        with _reading(uri):
            body = _client(endpoint, region).get_object(Bucket=bucket, Key=key)["Body"]
            return bytes(body.read())
    except _NotFoundError:
        return None


def _etag(endpoint: str, region: str, uri: str) -> str | None:
    bucket, key = split_s3_uri(uri)
    try:
        with _reading(uri):
            return str(_client(endpoint, region).head_object(Bucket=bucket, Key=key)["ETag"])
    except _NotFoundError:
        return None


def parse_adapter(uri: str, raw: bytes) -> AdapterView | None:
    """An AdapterView from manifest bytes, or None when they are not a kubetune manifest."""
    try:
        manifest = json.loads(raw)
    except json.JSONDecodeError:
        return None
    if not isinstance(manifest, dict) or manifest.get("kind") != contract.MANIFEST_KIND:
        return None
    metrics = {
        k: float(v)
        for k, v in (manifest.get("metrics") or {}).items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    return AdapterView(
        uri=uri.rsplit("/", 1)[0] + "/",
        digest="sha256:" + hashlib.sha256(raw).hexdigest(),
        metrics=metrics,
        published_at=str(manifest.get("createdAt", "")),
    )


class ObjectStoreReader:
    def __init__(self, *, endpoint: str, region: str) -> None:
        self.endpoint = endpoint
        self.region = region
        self.requests = 0

    def warm_up(self) -> None:
        _client(self.endpoint, self.region)

    async def progress(self, uri: str, *, endpoint: str = "") -> dict[str, Any] | None:
        self.requests += 1
        raw = await asyncio.to_thread(_get, endpoint or self.endpoint, self.region, uri)
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
        except json.JSONDecodeError:
            log.warning("ignoring unreadable progress at %s", uri)
            return None
        return doc if isinstance(doc, dict) else None

    async def adapter(self, uri: str, *, endpoint: str = "") -> AdapterView | None:
        self.requests += 1
        raw = await asyncio.to_thread(_get, endpoint or self.endpoint, self.region, uri)
        return parse_adapter(uri, raw) if raw is not None else None

    async def etag(self, uri: str, *, endpoint: str = "") -> str | None:
        self.requests += 1
        return await asyncio.to_thread(_etag, endpoint or self.endpoint, self.region, uri)


def utcnow() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
