"""Staging an adapter version into the pod's shared adapter volume: download from S3 into a
private folder, verify, then rename it into place under its versioned name.

Blocking (boto3); the sync loop runs ``stage`` in a worker thread. Because the final folder
only ever appears by an atomic rename of a verified folder, the engine can never be pointed at
a half-written or unverified adapter, and a crash mid-download leaves only a ``.staging-*``
folder that the next start removes. An existing folder is re-verified, not trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import uuid
from pathlib import Path
from typing import Any, Final

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from kubetune.api.contract import MANIFEST_FILE
from kubetune.serving.adapter_config import ADAPTER_CONFIG_FILE
from kubetune.serving.agent.desired import VersionRef, split_engine_name
from kubetune.serving.agent.verify import (
    AdapterLimits,
    VerificationError,
    check_adapter_config,
    check_file,
    check_manifest,
    verify_folder,
)

log = logging.getLogger(__name__)

STAGING_PREFIX: Final = ".staging-"
_CHUNK: Final = 1 << 20
_MISSING: Final = {"NoSuchKey", "404", "NotFound"}


def s3_client() -> Any:
    """A boto3 S3 client from the standard AWS_* environment (endpoint, keys, region).

    boto3 >= 1.36 adds CRC checksums by default, which several S3-compatible stores reject;
    integrity is ours to check anyway (the manifest's SHA-256), so only send them when required.
    """
    return boto3.client(
        "s3",
        config=Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 3, "mode": "standard"},
        ),
    )


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``(bucket, key prefix ending in /)`` of ``s3://bucket/prefix/``."""
    rest = uri.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


class AdapterStager:
    def __init__(self, *, s3: Any, adapter_dir: Path, limits: AdapterLimits) -> None:
        self.s3 = s3
        self.adapter_dir = adapter_dir
        self.limits = limits

    def version_dir(self, engine_name: str) -> Path:
        return self.adapter_dir / engine_name

    def clean_leftovers(self) -> None:
        """Remove staging folders an earlier agent process left behind."""
        self.adapter_dir.mkdir(parents=True, exist_ok=True)
        for path in self.adapter_dir.glob(f"{STAGING_PREFIX}*"):
            shutil.rmtree(path, ignore_errors=True)

    def on_disk(self) -> frozenset[str]:
        """Versioned folders present in the adapter volume."""
        if not self.adapter_dir.is_dir():
            return frozenset()
        return frozenset(
            p.name for p in self.adapter_dir.iterdir() if p.is_dir() and split_engine_name(p.name)
        )

    def delete(self, engine_name: str) -> None:
        shutil.rmtree(self.version_dir(engine_name), ignore_errors=True)

    def stage(self, ref: VersionRef) -> Path:
        """The verified folder of ``ref``; raises ``VerificationError`` on any mismatch."""
        final = self.version_dir(ref.engine_name)
        if final.is_dir():
            try:
                verify_folder(final, expected_digest=ref.digest, limits=self.limits)
                return final
            except VerificationError as err:
                # The volume outlives the agent; a damaged copy is fetched again, not trusted.
                log.warning("re-downloading %s: local copy failed verification: %s", final, err)
                shutil.rmtree(final, ignore_errors=True)
        self.adapter_dir.mkdir(parents=True, exist_ok=True)
        staging = self.adapter_dir / f"{STAGING_PREFIX}{ref.engine_name}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            self._download_verified(ref, staging)
            staging.rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("staged %s from %s", ref.engine_name, ref.uri)
        return final

    def _download_verified(self, ref: VersionRef, staging: Path) -> None:
        bucket, prefix = split_s3_uri(ref.uri)
        manifest_uri = f"s3://{bucket}/{prefix}{MANIFEST_FILE}"
        manifest_bytes = self._get_bytes(bucket, prefix + MANIFEST_FILE, uri=manifest_uri)
        manifest = check_manifest(manifest_bytes, expected_digest=ref.digest, source=manifest_uri)
        for name in manifest.files:
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            sha256, size = self._download(
                bucket, prefix + name, target, uri=f"s3://{bucket}/{prefix}{name}"
            )
            check_file(name, sha256=sha256, size=size, manifest=manifest)
        (staging / MANIFEST_FILE).write_bytes(manifest_bytes)
        try:
            config = json.loads((staging / ADAPTER_CONFIG_FILE).read_text())
        except ValueError as err:
            raise VerificationError(f"{ADAPTER_CONFIG_FILE} is not JSON: {err}") from None
        check_adapter_config(config, manifest=manifest, limits=self.limits)

    def _get_bytes(self, bucket: str, key: str, *, uri: str) -> bytes:
        try:
            body = self.s3.get_object(Bucket=bucket, Key=key)["Body"]
        except ClientError as err:
            if _missing(err):
                raise VerificationError(
                    f"{uri} does not exist: an adapter without a manifest is not published "
                    "(check the uri, or wait for the trainer to finish)"
                ) from None
            raise
        data: bytes = body.read()
        return data

    def _download(self, bucket: str, key: str, target: Path, *, uri: str) -> tuple[str, int]:
        try:
            body = self.s3.get_object(Bucket=bucket, Key=key)["Body"]
        except ClientError as err:
            if _missing(err):
                raise VerificationError(f"{uri} is listed in the manifest but missing") from None
            raise
        digest = hashlib.sha256()
        size = 0
        with target.open("wb") as out:
            for chunk in body.iter_chunks(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        return digest.hexdigest(), size


def _missing(err: ClientError) -> bool:
    return str(err.response.get("Error", {}).get("Code")) in _MISSING
