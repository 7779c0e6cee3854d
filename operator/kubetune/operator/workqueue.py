"""A coalescing work queue of object keys, as controller-runtime's: events only mark a key
dirty, a fixed set of workers reconcile the latest state.

Why: Kopf runs one worker task per object that awaits the handler. When handlers reconcile
inline, a burst of thousands of events leaves thousands of workers waiting for a reconcile
slot, each holding its event body. With the queue, a handler returns at once (the body is
released) and a key waits as a tuple. Guarantees: a key is queued at most once; it is never
processed by two workers at a time; a key added while it is being processed is processed again
afterwards, so the last event is never lost (the worker reads the latest state then).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
log = logging.getLogger(__name__)


class WorkQueue(Generic[K]):
    def __init__(self) -> None:
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._queued: set[K] = set()
        self._active: set[K] = set()
        self._again: set[K] = set()

    def add(self, key: K) -> None:
        if key in self._active:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    async def get(self) -> K:
        key = await self._queue.get()
        self._queued.discard(key)
        self._active.add(key)
        return key

    def done(self, key: K) -> None:
        self._active.discard(key)
        if key in self._again:
            self._again.discard(key)
            self.add(key)

    def __len__(self) -> int:
        """Keys waiting (not counting those being processed)."""
        return len(self._queued)


async def work(queue: WorkQueue[K], process: Callable[[K], Awaitable[None]]) -> None:
    """One worker: forever take a key and process it. ``process`` handles its own errors; an
    unexpected one is logged and the key is not lost (its next event or resync adds it)."""
    while True:
        key = await queue.get()
        try:
            await process(key)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reconcile of %s failed unexpectedly", key)
        finally:
            queue.done(key)
