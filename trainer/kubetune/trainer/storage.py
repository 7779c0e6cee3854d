"""Read and write run inputs and outputs by URI: ``s3://``, ``pvc://`` or an absolute path.

``s3://bucket/key`` goes through boto3 (endpoint from the run config, else boto3's own
resolution, which honours ``AWS_ENDPOINT_URL``; credentials from the environment).
``pvc://claim/path`` is a volume the operator mounted at ``$KUBETUNE_PVC_ROOT/claim``
(default ``/mnt/pvc``); absolute paths are used as they are (tests, local runs).

Missing objects raise ``NotFoundError`` so callers can decide whether that is the user's fault; any
other storage failure becomes ``InfraError`` (retried by the Job).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune.api.runconfig import StorageConfig
from kubetune.trainer.errors import InfraError

DEFAULT_PVC_ROOT = "/mnt/pvc"
CHUNK = 1 << 20


class NotFoundError(Exception):
    """The object or file does not exist."""


@dataclass(frozen=True)
class Location:
    scheme: str
    """``s3`` or ``file``."""
    bucket: str
    key: str
    """Object key (s3) or absolute filesystem path (file)."""


@dataclass(frozen=True)
class ObjectInfo:
    uri: str
    relative: str
    """Path below the listed prefix, with '/' separators."""
    size: int
    etag: str = ""


def parse_uri(uri: str, *, pvc_root: str | None = None) -> Location:
    if uri.startswith("s3://"):
        bucket, _, key = uri[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError(f"{uri!r} has no bucket")
        return Location("s3", bucket, key)
    if uri.startswith("pvc://"):
        claim, _, rest = uri[len("pvc://") :].partition("/")
        if not claim:
            raise ValueError(f"{uri!r} has no claim name")
        root = pvc_root or os.environ.get("KUBETUNE_PVC_ROOT") or DEFAULT_PVC_ROOT
        path = str(Path(root) / claim / rest)
        return Location("file", "", path + ("/" if uri.endswith("/") else ""))
    if uri.startswith("/"):
        return Location("file", "", uri)
    raise ValueError(f"{uri!r} is not an s3://, pvc:// or absolute path")


def join(prefix: str, *parts: str) -> str:
    """Join URI parts with single slashes; a trailing slash on the last part is kept."""
    out = prefix.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    if parts and parts[-1].endswith("/"):
        out += "/"
    return out


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Store:
    """One object for every URI kind; the S3 client is created on first use."""

    def __init__(self, config: StorageConfig | None = None, *, pvc_root: str | None = None):
        self._config = config or StorageConfig()
        self._pvc_root = pvc_root
        self._client: Any = None

    # ------------------------------------------------------------------ public

    def read_bytes(self, uri: str) -> bytes:
        loc = self._parse(uri)
        if loc.scheme == "file":
            try:
                return Path(loc.key).read_bytes()
            except FileNotFoundError as err:
                raise NotFoundError(uri) from err
        with self._s3_errors(uri):
            response = self._s3().get_object(Bucket=loc.bucket, Key=loc.key)
            return bytes(response["Body"].read())

    def read_bytes_or_none(self, uri: str) -> bytes | None:
        try:
            return self.read_bytes(uri)
        except NotFoundError:
            return None

    def write_bytes(self, uri: str, data: bytes, *, if_absent: bool = False) -> bool:
        """Write ``data``; with ``if_absent`` refuse (return False) when the object exists."""
        loc = self._parse(uri)
        if loc.scheme == "file":
            return _write_local(Path(loc.key), data, if_absent=if_absent)
        extra = {"IfNoneMatch": "*"} if if_absent else {}
        try:
            with self._s3_errors(uri):
                self._s3().put_object(Bucket=loc.bucket, Key=loc.key, Body=data, **extra)
        except _PreconditionFailedError:
            return False
        return True

    def upload_file(self, path: Path, uri: str) -> None:
        loc = self._parse(uri)
        if loc.scheme == "file":
            target = Path(loc.key)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            shutil.copyfile(path, tmp)
            tmp.replace(target)
            return
        with self._s3_errors(uri):
            self._s3().upload_file(str(path), loc.bucket, loc.key)

    def download_file(
        self, uri: str, path: Path, *, progress: Callable[[int], None] | None = None
    ) -> None:
        """Copy one object to ``path`` atomically (a temporary name, then rename)."""
        loc = self._parse(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
        try:
            if loc.scheme == "file":
                try:
                    shutil.copyfile(loc.key, tmp)
                except FileNotFoundError as err:
                    raise NotFoundError(uri) from err
                if progress:
                    progress(tmp.stat().st_size)
            else:
                with self._s3_errors(uri):
                    self._s3().download_file(loc.bucket, loc.key, str(tmp), Callback=progress)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)

    def head(self, uri: str) -> ObjectInfo:
        loc = self._parse(uri)
        if loc.scheme == "file":
            try:
                stat = Path(loc.key).stat()
            except FileNotFoundError as err:
                raise NotFoundError(uri) from err
            if not Path(loc.key).is_file():
                raise NotFoundError(uri)
            return ObjectInfo(uri, Path(loc.key).name, stat.st_size, f"{stat.st_mtime_ns}")
        with self._s3_errors(uri):
            response = self._s3().head_object(Bucket=loc.bucket, Key=loc.key)
        return ObjectInfo(
            uri, loc.key.rsplit("/", 1)[-1], int(response["ContentLength"]), response["ETag"]
        )

    def list(self, prefix_uri: str) -> list[ObjectInfo]:
        """Every object below ``prefix_uri`` (treated as a folder), sorted by relative path."""
        loc = self._parse(prefix_uri)
        base = prefix_uri if prefix_uri.endswith("/") else prefix_uri + "/"
        if loc.scheme == "file":
            root = Path(loc.key)
            if not root.is_dir():
                return []
            found = []
            for path in sorted(root.rglob("*")):
                if path.is_file() and not path.name.endswith((".tmp", ".part")):
                    relative = path.relative_to(root).as_posix()
                    stat = path.stat()
                    found.append(
                        ObjectInfo(base + relative, relative, stat.st_size, f"{stat.st_mtime_ns}")
                    )
            return found
        prefix = loc.key if not loc.key or loc.key.endswith("/") else loc.key + "/"
        objects: list[ObjectInfo] = []
        with self._s3_errors(prefix_uri):
            paginator = self._s3().get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=loc.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    relative = item["Key"][len(prefix) :]
                    if relative:
                        objects.append(
                            ObjectInfo(
                                base + relative, relative, item["Size"], item.get("ETag", "")
                            )
                        )
        return sorted(objects, key=lambda o: o.relative)

    def delete_prefix(self, prefix_uri: str) -> None:
        loc = self._parse(prefix_uri)
        if loc.scheme == "file":
            shutil.rmtree(loc.key, ignore_errors=True)
            return
        keys = [self._parse(o.uri).key for o in self.list(prefix_uri)]
        with self._s3_errors(prefix_uri):
            for start in range(0, len(keys), 1000):
                chunk = [{"Key": key} for key in keys[start : start + 1000]]
                self._s3().delete_objects(Bucket=loc.bucket, Delete={"Objects": chunk})

    def exists(self, uri: str) -> bool:
        try:
            self.head(uri)
        except NotFoundError:
            return False
        return True

    def local_path(self, uri: str) -> Path | None:
        """The filesystem path of a ``pvc://`` or absolute URI (no copy needed), else None."""
        loc = self._parse(uri)
        return Path(loc.key) if loc.scheme == "file" else None

    # ------------------------------------------------------------------ internals

    def _parse(self, uri: str) -> Location:
        return parse_uri(uri, pvc_root=self._pvc_root)

    def _s3(self) -> Any:
        if self._client is None:
            import boto3  # noqa: PLC0415 - only S3 runs need it
            from botocore.config import Config  # noqa: PLC0415

            self._client = boto3.client(
                "s3",
                endpoint_url=self._config.endpoint or None,
                region_name=self._config.region or None,
                config=Config(
                    s3={"addressing_style": self._config.addressing_style or "path"},
                    retries={"max_attempts": 8, "mode": "standard"},
                    connect_timeout=10,
                    read_timeout=120,
                ),
            )
        return self._client

    @contextlib.contextmanager
    def _s3_errors(self, uri: str) -> Iterator[None]:
        import botocore.exceptions  # noqa: PLC0415

        try:
            yield
        except botocore.exceptions.ClientError as err:
            error = err.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFoundError", "NoSuchBucket"):
                raise NotFoundError(uri) from err
            if code in ("PreconditionFailed", "412"):
                raise _PreconditionFailedError(uri) from err
            raise InfraError(
                f"object store refused {uri}: {code} {error.get('Message', '')}"
            ) from err
        except botocore.exceptions.BotoCoreError as err:
            raise InfraError(f"object store unreachable for {uri}: {err}") from err


class _PreconditionFailedError(Exception):
    pass


def _write_local(path: Path, data: bytes, *, if_absent: bool) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    try:
        if if_absent:
            # link() fails if the target exists: an atomic create-if-absent on POSIX.
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
        else:
            Path(tmp).replace(path)
            return True
    finally:
        Path(tmp).unlink(missing_ok=True)
    return True
