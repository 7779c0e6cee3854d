"""The object store as the CLI needs it: read run files, list adapter manifests, upload data.

Credentials come from the standard AWS chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE``, ...). The endpoint is ``--s3-endpoint``, else ``AWS_ENDPOINT_URL``, else the
``spec.storage.endpoint`` of the object at hand. Failures become one-line ``CliError``s naming
the endpoint and the URI; a timeout is short so an unreachable store is reported quickly.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from kubetune.cli.errors import CliError

MISSING = ("NoSuchKey", "404", "NotFound")


def split_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    if not uri.startswith("s3://"):
        raise CliError(f"not an s3:// URI: {uri}")
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise CliError(f"no bucket in {uri}")
    return bucket, key


def join(prefix: str, *parts: str) -> str:
    out = prefix.rstrip("/")
    for part in parts:
        out += "/" + part.strip("/")
    return out


class Store:
    def __init__(self, *, endpoint: str | None, region: str | None = None) -> None:
        self.endpoint = endpoint
        self._where = endpoint or "the default AWS endpoint"
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint or None,
            region_name=region or None,
            config=Config(
                connect_timeout=5,
                read_timeout=30,
                retries={"max_attempts": 2, "mode": "standard"},
                s3={"addressing_style": "path"},
            ),
        )

    def _fail(self, err: Exception, uri: str) -> CliError:
        if isinstance(err, NoCredentialsError):
            return CliError(
                "no object-store credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(or AWS_PROFILE)"
            )
        if isinstance(err, ClientError):
            code = str(err.response.get("Error", {}).get("Code", ""))
            message = err.response.get("Error", {}).get("Message", "") or code
            if code == "NoSuchBucket":
                return CliError(
                    f"{uri}: bucket {split_uri(uri)[0]} does not exist on {self._where}"
                )
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
                return CliError(f"{uri}: access denied by {self._where} ({message})")
            return CliError(f"{uri}: {message} ({code})")
        return CliError(f"cannot reach the object store at {self._where}: {err}")

    def read(self, uri: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""
        bucket, key = split_uri(uri)
        try:
            return bytes(self._client.get_object(Bucket=bucket, Key=key)["Body"].read())
        except ClientError as err:
            if str(err.response.get("Error", {}).get("Code")) in MISSING:
                return None
            raise self._fail(err, uri) from err
        except BotoCoreError as err:
            raise self._fail(err, uri) from err

    def exists(self, uri: str) -> bool:
        bucket, key = split_uri(uri)
        try:
            self._client.head_object(Bucket=bucket, Key=key)
        except ClientError as err:
            if str(err.response.get("Error", {}).get("Code")) in MISSING:
                return False
            raise self._fail(err, uri) from err
        except BotoCoreError as err:
            raise self._fail(err, uri) from err
        return True

    def folders(self, prefix_uri: str) -> Iterator[str]:
        """The "folders" right under ``prefix_uri`` (a trailing slash is implied), as s3:// URIs
        ending in a slash: one listing per level instead of every object below."""
        bucket, prefix = split_uri(prefix_uri.rstrip("/") + "/")
        prefix = prefix.lstrip("/")
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix, Delimiter="/"
            )
            for page in pages:
                for common in page.get("CommonPrefixes") or []:
                    yield f"s3://{bucket}/{common['Prefix']}"
        except (ClientError, BotoCoreError) as err:
            raise self._fail(err, prefix_uri) from err

    def upload(self, path: Path, uri: str) -> None:
        bucket, key = split_uri(uri)
        try:
            self._client.upload_file(str(path), bucket, key)
        except (ClientError, BotoCoreError) as err:
            raise self._fail(err, uri) from err
        except S3UploadFailedError as err:  # the transfer manager's wrapper of a ClientError
            raise CliError(f"uploading {path} to {uri} failed: {err}") from err
