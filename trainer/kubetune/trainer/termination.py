"""The one-line JSON termination message the operator surfaces in FineTuneJob status.

Kubernetes keeps at most ``TERMINATION_MESSAGE_MAX_BYTES`` of it, so ``render`` shortens the
free-text ``message`` (never the structured fields) until the line fits. Pure except ``write``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kubetune.api import contract

_ELLIPSIS = " ..."


def _line(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def render(doc: dict[str, Any], *, limit: int = contract.TERMINATION_MESSAGE_MAX_BYTES) -> str:
    """``doc`` as compact one-line JSON of at most ``limit`` UTF-8 bytes."""
    line = _line(doc)
    if len(line.encode()) <= limit:
        return line
    message = str(doc.get("message", ""))

    def fits(chars: int) -> bool:
        return len(_line({**doc, "message": message[:chars] + _ELLIPSIS}).encode()) <= limit

    # The longest prefix of the message that fits (binary search over characters).
    low, high = 0, len(message)
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    if fits(low):
        return _line({**doc, "message": message[:low] + _ELLIPSIS})
    # The structured fields alone are too big: keep what the operator needs most.
    return _line({"status": doc.get("status"), "reason": doc.get("reason"), "message": "truncated"})


def failed(reason: str, message: str) -> dict[str, Any]:
    return {"status": "failed", "reason": reason, "message": message}


def succeeded(
    *, adapter_uri: str, digest: str, metrics: dict[str, Any], message: str = ""
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "status": "succeeded",
        "reason": contract.REASON_SUCCEEDED,
        "adapterUri": adapter_uri,
        "digest": digest,
        "metrics": metrics,
    }
    if message:
        doc["message"] = message
    return doc


def default_path() -> Path:
    return Path(os.environ.get("KUBETUNE_TERMINATION_LOG") or contract.TERMINATION_LOG)


def write(doc: dict[str, Any], path: Path | None = None) -> None:
    """Write the message; a missing termination-log mount must not hide the real outcome."""
    target = path or default_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(doc) + "\n", encoding="utf-8")
    except OSError:
        pass
