"""The data contract between the operator, the trainer and the serving agent.

Nothing here runs; these are the names both sides agree on. The operator renders a run config
(``kubetune.api.runconfig``) into a ConfigMap; the trainer reads it, writes the objects below
under ``<output>/<run>/`` and ends with a one-line JSON termination message; the operator
reads progress and results from the object store and the pod status.

Object layout under ``<output.uri>/<run>/``::

    checkpoints/<step>/...          one folder per checkpoint
    checkpoints/<step>/COMPLETE     written last: a checkpoint without it is ignored
    progress.json                   latest ``Progress``, overwritten periodically
    metrics.jsonl                   one JSON object per logged step (append by rewrite)
    data-report.json                validation/cleaning/token statistics of the dataset
    adapter/adapter_config.json     PEFT format
    adapter/adapter_model.safetensors
    adapter/manifest.json           written LAST, never overwritten: SHA-256 per file, base
                                    model identity, dataset digests, hyperparameters,
                                    metrics, evaluation, versions
"""

from __future__ import annotations

from typing import Final

# ---------------------------------------------------------------- exit codes
# The Job's podFailurePolicy fails a run at once on EXIT_USER_ERROR (retrying cannot fix bad
# data or a bad config) and lets every other non-zero code count against backoffLimit.
EXIT_OK: Final = 0
EXIT_USER_ERROR: Final = 42
"""Bad run config, bad dataset, unsupported model or method: fix the spec and re-apply."""
EXIT_INFRA_ERROR: Final = 1
"""Anything else (object store unreachable, OOM, NCCL timeout, preemption): retried."""

# ---------------------------------------------------------------- object names
CHECKPOINTS_DIR: Final = "checkpoints"
CHECKPOINT_COMPLETE_MARKER: Final = "COMPLETE"
PROGRESS_FILE: Final = "progress.json"
METRICS_FILE: Final = "metrics.jsonl"
DATA_REPORT_FILE: Final = "data-report.json"
ADAPTER_DIR: Final = "adapter"
MANIFEST_FILE: Final = "manifest.json"
MANIFEST_SCHEMA_VERSION: Final = 1

# ---------------------------------------------------------------- pod interface
RUN_CONFIG_KEY: Final = "run-config.json"
"""Key of the run config in its ConfigMap."""
RUN_CONFIG_MOUNT: Final = "/etc/kubetune"
"""Where the ConfigMap is mounted in trainer pods."""
TERMINATION_LOG: Final = "/dev/termination-log"
TERMINATION_MESSAGE_MAX_BYTES: Final = 4096

# Termination message ``reason`` values (also used as condition reasons by the operator).
REASON_SUCCEEDED: Final = "Succeeded"
REASON_INVALID_CONFIG: Final = "InvalidConfig"
REASON_INVALID_DATASET: Final = "InvalidDataset"
REASON_INVALID_MODEL: Final = "InvalidModel"
REASON_INFRA_ERROR: Final = "InfrastructureError"
