"""Entry point: ``python -m kubetune.trainer --config /etc/kubetune/run-config.json``.

Reads and validates the run config, runs the training (or, for multi-process runs, launches
the workers), and always ends with a one-line JSON termination message and a documented exit
code: 0 success (also when the run was already published), 42 user error (bad config, data or
model: fix the spec), 1 anything else (the Job retries). Offline mode is forced before any
Hugging Face library is imported.
"""

from __future__ import annotations

import os

# Before any Hugging Face import: nothing in a trainer pod may reach for a model hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from kubetune.api import contract
from kubetune.api.runconfig import RunConfig, RunConfigError
from kubetune.trainer import launch, published, termination
from kubetune.trainer.errors import UserError

log = logging.getLogger("kubetune.trainer")


def _setup_logging() -> None:
    rank = os.environ.get("RANK", "0")
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s [rank {rank}] %(name)s: %(message)s",
    )
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3", "httpx", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _load_config(path: str) -> RunConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise UserError(
            contract.REASON_INVALID_CONFIG, f"cannot read run config {path}: {err}"
        ) from err
    try:
        return RunConfig.from_json(text)
    except RunConfigError as err:
        raise UserError(contract.REASON_INVALID_CONFIG, str(err)) from err


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubetune.trainer", description=__doc__)
    parser.add_argument(
        "--config", default=f"{contract.RUN_CONFIG_MOUNT}/{contract.RUN_CONFIG_KEY}"
    )
    args = parser.parse_args(argv)
    _setup_logging()
    target = launch.worker_termination_path()
    doc: dict[str, Any]
    try:
        config = _load_config(args.config)
        existing = published.existing_document(config)
        if existing is not None:
            log.info("run %s is already published; nothing to do", config.run)
            if target is not None:
                termination.write(existing, target)
            return contract.EXIT_OK
        if launch.needs_launch(config):
            code, doc = launch.launch(config, config_path=args.config)
            termination.write(doc, target)
            return code
        from kubetune.trainer.loop import StopFlag  # noqa: PLC0415 - imports torch
        from kubetune.trainer.run import execute  # noqa: PLC0415

        StopFlag.install()
        doc = execute(config)
        code = contract.EXIT_OK
        log.info("done: %s", termination.render(doc))
    except UserError as err:
        log.error("%s: %s", err.reason, err.message)
        doc, code = termination.failed(err.reason, err.message), contract.EXIT_USER_ERROR
    except Exception as err:
        log.exception("infrastructure error")
        doc = termination.failed(contract.REASON_INFRA_ERROR, f"{type(err).__name__}: {err}")
        code = contract.EXIT_INFRA_ERROR
    if target is not None:
        termination.write(doc, target)
    return code


if __name__ == "__main__":
    sys.exit(main())
