"""Waiting for a condition on a cluster: one helper for tests, the e2e suite and the demo."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeoutError(AssertionError):
    """The condition did not hold in time; an AssertionError so pytest reports it as one."""


def eventually(
    probe: Callable[[], T | None],
    *,
    timeout: float = 60.0,
    what: str = "",
    interval: float = 0.25,
) -> T:
    """Call ``probe`` until it returns something truthy and return that; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise WaitTimeoutError(
        f"timed out after {timeout:.0f}s waiting for {what or probe}; last={last!r}"
    )
