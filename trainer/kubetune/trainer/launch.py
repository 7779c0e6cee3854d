"""Start one worker process per GPU (or per requested CPU process) and report for all of them.

When the run config asks for more than one process and we are not already a torchrun worker,
the entry point becomes a small launcher: it runs ``torch.distributed.run`` with this same
module as the worker, gives every worker its own termination file, and afterwards turns the
workers' outcomes into the pod's single termination message and exit code. torchrun alone
would exit 1 for any failure, losing the user-error exit code the Job's podFailurePolicy
needs. Multi-node runs take the rendezvous from ``MASTER_ADDR``/``MASTER_PORT`` and the node
rank from ``NODE_RANK`` or the Indexed Job's ``JOB_COMPLETION_INDEX``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from kubetune.api import contract
from kubetune.api.runconfig import RunConfig
from kubetune.trainer import termination

log = logging.getLogger(__name__)

WORKER_TERMINATION_DIR_ENV = "KUBETUNE_WORKER_TERMINATION_DIR"
DEFAULT_MASTER_PORT = "29500"


def needs_launch(config: RunConfig) -> bool:
    world = config.distributed.nodes * config.distributed.processes_per_node
    return world > 1 and "LOCAL_RANK" not in os.environ


def torchrun_argv(config: RunConfig, *, config_path: str) -> list[str]:
    nodes = config.distributed.nodes
    argv = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={config.distributed.processes_per_node}",
    ]
    if nodes == 1:
        argv.append("--standalone")
    else:
        node_rank = os.environ.get("NODE_RANK") or os.environ.get("JOB_COMPLETION_INDEX") or "0"
        master = os.environ.get("MASTER_ADDR")
        if not master:
            raise RuntimeError("multi-node training needs MASTER_ADDR (the first pod's address)")
        argv += [
            f"--nnodes={nodes}",
            f"--node-rank={node_rank}",
            f"--master-addr={master}",
            f"--master-port={os.environ.get('MASTER_PORT', DEFAULT_MASTER_PORT)}",
        ]
    return [*argv, "-m", "kubetune.trainer", "--config", config_path]


def combine(outcomes: dict[int, dict[str, Any]], *, returncode: int) -> tuple[int, dict[str, Any]]:
    """The pod's (exit code, termination document) from the workers' documents (pure).

    A user error anywhere wins (retrying cannot fix it); success needs torchrun's exit 0 and
    rank 0's success document; anything else is an infrastructure failure.
    """
    for rank in sorted(outcomes):
        doc = outcomes[rank]
        if doc.get("status") == "failed" and doc.get("reason") != contract.REASON_INFRA_ERROR:
            return contract.EXIT_USER_ERROR, doc
    first = outcomes.get(min(outcomes)) if outcomes else None
    if returncode == 0 and first is not None and first.get("status") == "succeeded":
        return contract.EXIT_OK, first
    for rank in sorted(outcomes):
        if outcomes[rank].get("status") == "failed":
            return contract.EXIT_INFRA_ERROR, outcomes[rank]
    return contract.EXIT_INFRA_ERROR, termination.failed(
        contract.REASON_INFRA_ERROR, f"worker processes failed (torchrun exit {returncode})"
    )


def launch(config: RunConfig, *, config_path: str) -> tuple[int, dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="kubetune-workers-") as folder:
        env = {**os.environ, WORKER_TERMINATION_DIR_ENV: folder}
        argv = torchrun_argv(config, config_path=config_path)
        log.info("starting %s", " ".join(argv[2:]))
        child = subprocess.Popen(argv, env=env)

        def forward(signum: int, _frame: Any) -> None:
            # Preemption: let torchrun pass SIGTERM on so workers checkpoint and exit.
            child.send_signal(signum)

        previous = signal.signal(signal.SIGTERM, forward)
        try:
            returncode = child.wait()
        finally:
            signal.signal(signal.SIGTERM, previous)
        outcomes = {}
        for path in Path(folder).glob("rank-*.json"):
            try:
                outcomes[int(path.stem.split("-", 1)[1])] = json.loads(path.read_text())
            except (ValueError, OSError):
                continue
    return combine(outcomes, returncode=returncode)


def worker_termination_path() -> Path | None:
    """Where this process writes its termination message; None when it should not write."""
    folder = os.environ.get(WORKER_TERMINATION_DIR_ENV)
    if folder:
        return Path(folder) / f"rank-{os.environ.get('RANK', '0')}.json"
    if os.environ.get("LOCAL_RANK", "0") != "0":
        return None  # under a bare torchrun, the node's first process speaks for the pod
    return termination.default_path()
