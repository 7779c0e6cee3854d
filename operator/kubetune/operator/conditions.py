"""metav1.Condition bookkeeping: one helper, used for every kind.

``set_condition`` returns a new list (conditions are keyed by ``type``) and only moves
``lastTransitionTime`` when the status actually flips, so replaying a reconcile changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Condition = dict[str, Any]


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
    result: list[Condition] = []
    found = False
    for cond in conditions:
        if cond.get("type") != type_:
            result.append(dict(cond))
            continue
        found = True
        transition = cond.get("lastTransitionTime", now) if cond.get("status") == value else now
        result.append(
            {
                "type": type_,
                "status": value,
                "reason": reason,
                "message": message[:32768],
                "observedGeneration": generation,
                "lastTransitionTime": transition,
            }
        )
    if not found:
        result.append(
            {
                "type": type_,
                "status": value,
                "reason": reason,
                "message": message[:32768],
                "observedGeneration": generation,
                "lastTransitionTime": now,
            }
        )
    return result


def get_condition(conditions: Sequence[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def is_true(conditions: Sequence[Mapping[str, Any]], type_: str) -> bool:
    cond = get_condition(conditions, type_)
    return cond is not None and cond.get("status") == "True"
