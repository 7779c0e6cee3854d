"""Stage the base model and the datasets onto local disk, with SHA-256 digests and progress.

The first step of a run after the config is read. ``s3://`` inputs are downloaded into the
work directory (``$KUBETUNE_WORK_DIR``, default ``/tmp/kubetune``); a file already there from
an earlier attempt in the same pod is reused when its recorded ETag and size still match.
Mounted inputs (``pvc://``, absolute paths) are read in place. Pickle-format weights are never
downloaded: the trainer only loads safetensors.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from kubetune.trainer.errors import InvalidDatasetError, InvalidModelError
from kubetune.trainer.storage import NotFoundError, ObjectInfo, Store, sha256_file

log = logging.getLogger(__name__)

SKIPPED_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf", ".onnx")
"""Weight formats the trainer refuses to load (pickle) or cannot use; not worth the transfer."""
SKIPPED_FOLDERS = ("original/", ".cache/")
SIDECAR_SUFFIX = ".kubetune.json"
PROGRESS_INTERVAL_S = 10.0


@dataclass(frozen=True)
class StagedFile:
    uri: str
    path: Path
    sha256: str
    size: int


@dataclass
class StagedModel:
    uri: str
    path: Path
    files: dict[str, StagedFile] = field(default_factory=dict)
    """Relative path -> digest, for every staged file (empty digests for in-place weights)."""


class _Progress:
    """Logs transferred bytes at most every ``PROGRESS_INTERVAL_S`` seconds."""

    def __init__(self, what: str, total: int) -> None:
        self.what, self.total, self.done = what, total, 0
        self.started = self.last = time.monotonic()

    def __call__(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self.last >= PROGRESS_INTERVAL_S:
            self.last = now
            rate = self.done / max(now - self.started, 1e-6) / 1e6
            log.info(
                "staging %s: %.0f / %.0f MB (%.0f MB/s)",
                self.what,
                self.done / 1e6,
                self.total / 1e6,
                rate,
            )


def stage_file(store: Store, uri: str, *, dest: Path) -> StagedFile:
    """Make ``uri`` available locally; raises ``NotFoundError`` when it does not exist."""
    local = store.local_path(uri)
    if local is not None:
        if not local.is_file():
            raise NotFoundError(uri)
        return StagedFile(uri, local, sha256_file(local), local.stat().st_size)
    info = store.head(uri)
    return _download(store, info, dest=dest, progress=_Progress(uri, info.size))


def stage_model(store: Store, uri: str, *, dest: Path, allow_code: bool) -> StagedModel:
    """Stage a Hugging Face model folder; raises ``InvalidModelError`` when it is not one."""
    local = store.local_path(uri)
    if local is not None:
        if not (local / "config.json").is_file():
            raise InvalidModelError(f"base model {uri}: no config.json in {local}")
        files = {
            "config.json": StagedFile(
                uri,
                local / "config.json",
                sha256_file(local / "config.json"),
                (local / "config.json").stat().st_size,
            )
        }
        return StagedModel(uri, local, files)

    objects = [o for o in store.list(uri) if _wanted(o.relative, allow_code=allow_code)]
    if not any(o.relative == "config.json" for o in objects):
        raise InvalidModelError(f"base model {uri}: no config.json under this prefix")
    progress = _Progress(uri, sum(o.size for o in objects))
    staged = StagedModel(uri, dest)
    began = time.monotonic()
    for info in objects:
        staged.files[info.relative] = _download(
            store, info, dest=dest / info.relative, progress=progress
        )
    log.info(
        "staged %s: %d files, %.1f MB in %.1fs",
        uri,
        len(objects),
        progress.total / 1e6,
        time.monotonic() - began,
    )
    return staged


def _wanted(relative: str, *, allow_code: bool) -> bool:
    if relative.startswith(SKIPPED_FOLDERS) or relative.endswith(SKIPPED_SUFFIXES):
        return False
    # Remote code is only fetched when the run config allows executing it.
    return allow_code or not relative.endswith(".py")


def _download(store: Store, info: ObjectInfo, *, dest: Path, progress: _Progress) -> StagedFile:
    sidecar = dest.with_name(dest.name + SIDECAR_SUFFIX)
    if dest.is_file() and sidecar.is_file():
        try:
            record = json.loads(sidecar.read_text())
        except ValueError:
            record = {}
        if (
            record.get("etag") == info.etag
            and record.get("size") == info.size == dest.stat().st_size
            and record.get("sha256")
        ):
            progress(info.size)
            return StagedFile(info.uri, dest, str(record["sha256"]), info.size)
    store.download_file(info.uri, dest, progress=progress)
    digest = sha256_file(dest)
    sidecar.write_text(json.dumps({"etag": info.etag, "size": info.size, "sha256": digest}))
    return StagedFile(info.uri, dest, digest, info.size)


def stage_dataset(store: Store, uri: str, *, dest: Path, role: str) -> StagedFile:
    try:
        return stage_file(store, uri, dest=dest)
    except NotFoundError as err:
        raise InvalidDatasetError(f"{role} data {uri} does not exist") from err
