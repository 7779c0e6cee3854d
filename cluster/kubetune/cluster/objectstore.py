"""A real S3-compatible object store as a local process, for tests, the local cluster and
the demo.

We run versitygw (an S3 gateway over a local directory, built from the Go module proxy by
``hack/build-binaries.sh``): a real S3 server process that speaks SigV4, multipart uploads and
conditional writes (``If-None-Match: *``), with a small dependency tree that builds in about a
minute. Buckets are folders under ``<workdir>/data``.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from kubetune.cluster.binaries import find_binary
from kubetune.cluster.controlplane import free_port
from kubetune.cluster.process import ManagedProcess

log = logging.getLogger(__name__)

DEFAULT_REGION = "us-east-1"


class ObjectStoreError(RuntimeError):
    """The object store failed to start; the message carries its log tail."""


@dataclass
class ObjectStore:
    """``with ObjectStore(workdir=...) as s3:`` then use ``s3.env`` for boto3/AWS CLI."""

    workdir: Path
    buckets: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 0
    access_key: str = field(default_factory=lambda: "kt" + secrets.token_hex(8))
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    region: str = DEFAULT_REGION
    startup_timeout: float = 30.0

    def __post_init__(self) -> None:
        self.workdir = self.workdir.resolve()
        self._proc: ManagedProcess | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that point boto3 and the AWS CLI at this store."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def start(self) -> ObjectStore:
        began = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for bucket in self.buckets:
            (self.data_dir / bucket).mkdir(exist_ok=True)
        if not self.port:
            self.port = free_port(self.host)
        self._proc = ManagedProcess(
            name="versitygw",
            argv=[
                str(find_binary("versitygw")),
                f"--port={self.host}:{self.port}",
                f"--region={self.region}",
                "posix",
                str(self.data_dir),
            ],
            # Root credentials via the environment keep them out of `ps` output.
            env={
                **os.environ,
                "ROOT_ACCESS_KEY": self.access_key,
                "ROOT_SECRET_KEY": self.secret_key,
            },
            log_path=self.workdir / "versitygw.log",
        )
        self._proc.start()
        self._wait_listening()
        log.info("object store up in %.1fs at %s", time.monotonic() - began, self.endpoint)
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
            self._proc = None

    def __enter__(self) -> ObjectStore:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_listening(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                raise ObjectStoreError(f"versitygw exited with {code}:\n{self._proc.tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise ObjectStoreError(f"versitygw not listening on {self.endpoint}")
