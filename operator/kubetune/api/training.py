"""What in a FineTuneJob spec is *trained* (and so starts a new run when it changes), shared by
the operator (run identity) and the CLI (what ``kubetune submit`` tells the user). Pure."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

OPERATIONAL_FIELDS = frozenset({"suspend", "queueName", "retrain"})
"""Fields that change how a run is operated, not what it trains: toggling them never starts
a new run."""


def training_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in OPERATIONAL_FIELDS}


def spec_hash(spec: Mapping[str, Any]) -> str:
    canonical = json.dumps(training_spec(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
