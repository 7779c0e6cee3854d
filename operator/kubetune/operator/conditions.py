"""metav1.Condition bookkeeping: one helper, used for every kind.

``set_condition`` returns a new list (conditions are keyed by ``type``) and only moves
``lastTransitionTime`` when the status actually flips, so replaying a reconcile changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Condition = dict[str, Any]


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event a plan asks the glue to post on the reconciled object."""

    type: str  # Normal | Warning
    reason: str
    message: str


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    *,
    type_: str,
    status: bool | str,
    reason: str,
    message: str,
    generation: int,
    now: str,
) -> list[Condition]:
    value = status if isinstance(status, str) else ("True" if status else "False")
    previous = get_condition(conditions, type_)
    transition = now
    if previous is not None and previous.get("status") == value:
        transition = previous.get("lastTransitionTime", now)
    updated: Condition = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message[:32768],
        "observedGeneration": generation,
        "lastTransitionTime": transition,
    }
    result = [updated if c.get("type") == type_ else dict(c) for c in conditions]
    if previous is None:
        result.append(updated)
    return result


def get_condition(conditions: Sequence[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def is_true(conditions: Sequence[Mapping[str, Any]], type_: str) -> bool:
    cond = get_condition(conditions, type_)
    return cond is not None and cond.get("status") == "True"
