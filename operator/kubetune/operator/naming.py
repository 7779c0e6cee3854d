"""Deterministic names of everything a FineTuneJob run owns.

A run is identified by its name: ``<job>-g<generation>`` (plus ``-r<n>`` for the n-th retrain
of the same generation after a dataset change). The Job, its run-config ConfigMap and its
headless Service derive from it, so a restarted operator finds (or refuses to duplicate)
exactly the objects it created before. Names stay within the 63-character label limit.
"""

from __future__ import annotations

import hashlib
import re

MAX_NAME = 63
# Job names become pod label values (job-name) and, for Indexed Jobs, pod hostnames
# "<job>-<index>": keep room for the index suffix and our own suffixes.
_MAX_RUN = 52


def _shorten(name: str, limit: int) -> str:
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{name[: limit - 7].rstrip('-')}-{digest}"


def run_name(job_name: str, generation: int, retrain: int = 0) -> str:
    suffix = f"-g{generation}" + (f"-r{retrain}" if retrain else "")
    return _shorten(job_name, _MAX_RUN - len(suffix)) + suffix


_RUN_RE = re.compile(r"-g(?P<gen>\d+)(-r(?P<retrain>\d+))?$")


def retrain_index(run: str) -> int:
    """The ``-r<n>`` counter of a run name (0 for the first run of a generation)."""
    match = _RUN_RE.search(run)
    return int(match.group("retrain") or 0) if match else 0


def job_name(run: str) -> str:
    return run


def config_map_name(run: str) -> str:
    return f"{run}-config"


def service_name(run: str) -> str:
    return run


TRAINER_NETWORK_POLICY = "kubetune-trainer"
