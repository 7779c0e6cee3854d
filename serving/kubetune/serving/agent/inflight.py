"""Counting requests in flight per engine-side adapter version, so a version is unloaded only
after the last request that was routed to it has finished (including its stream).

Single-threaded (the agent's event loop): routing a request and counting it happen in the same
step, so no request can be routed to a version between "drained" and "unload".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable


class InFlight:
    def __init__(self, on_idle: Callable[[str], None] | None = None) -> None:
        self._counts: Counter[str] = Counter()
        self.on_idle = on_idle

    def acquire(self, name: str) -> None:
        self._counts[name] += 1

    def release(self, name: str) -> None:
        self._counts[name] -= 1
        if self._counts[name] <= 0:
            del self._counts[name]
            if self.on_idle is not None:
                self.on_idle(name)

    def count(self, name: str) -> int:
        return self._counts.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        return dict(self._counts)
