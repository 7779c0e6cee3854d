"""Find the native binaries (etcd, kube-*, kubectl, helm) that ``hack/build-binaries.sh`` built.

Search order: ``KUBETUNE_ASSETS``, ``KUBEBUILDER_ASSETS`` (prebuilt, e.g. envtest assets),
then the version-keyed build cache ``${KUBETUNE_CACHE:-~/.cache/kubetune}/bin/current``.
"""

from __future__ import annotations

import os
from pathlib import Path


class BinaryNotFoundError(FileNotFoundError):
    """A required binary is missing; the message says how to get it."""


def cache_dir() -> Path:
    return Path(os.environ.get("KUBETUNE_CACHE", Path.home() / ".cache" / "kubetune"))


def search_dirs() -> list[Path]:
    dirs = [
        Path(os.environ[v]) for v in ("KUBETUNE_ASSETS", "KUBEBUILDER_ASSETS") if os.environ.get(v)
    ]
    dirs.append(cache_dir() / "bin" / "current")
    return dirs


def find_binary(name: str) -> Path:
    for directory in search_dirs():
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    searched = ", ".join(str(d) for d in search_dirs())
    raise BinaryNotFoundError(
        f"{name} not found in {searched}. Run `hack/build-binaries.sh` (or `make binaries`) "
        f"to build it, or point KUBETUNE_ASSETS at a folder of prebuilt binaries."
    )
