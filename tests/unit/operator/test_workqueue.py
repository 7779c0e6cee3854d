"""The operator's coalescing work queue: each key queued once, never processed twice at a
time, and re-processed when it changed during processing."""

from __future__ import annotations

import asyncio

import pytest

from kubetune.operator.workqueue import WorkQueue, work

pytestmark = pytest.mark.unit


def test_a_burst_of_events_for_one_key_is_one_item() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        for key in ["a", "b", "a", "a", "b", "c"]:
            queue.add(key)
        assert len(queue) == 3
        assert [await queue.get() for _ in range(3)] == ["a", "b", "c"]

    asyncio.run(scenario())


def test_a_key_changed_while_processed_is_processed_again_never_concurrently() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        running: set[str] = set()
        seen: list[str] = []
        overlap = False
        release = asyncio.Event()

        async def process(key: str) -> None:
            nonlocal overlap
            overlap = overlap or key in running
            running.add(key)
            seen.append(key)
            await release.wait()
            running.discard(key)

        workers = [asyncio.create_task(work(queue, process)) for _ in range(4)]
        queue.add("a")
        await asyncio.sleep(0.01)
        queue.add("a")  # an event while "a" is being reconciled...
        queue.add("a")  # ...and another: one more pass, not two
        await asyncio.sleep(0.01)
        assert seen == ["a"] and len(queue) == 0
        release.set()
        await asyncio.sleep(0.05)
        assert seen == ["a", "a"]
        assert not overlap
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    asyncio.run(scenario())


def test_a_failing_reconcile_does_not_stop_the_worker() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        seen: list[str] = []

        async def process(key: str) -> None:
            seen.append(key)
            if key == "bad":
                raise RuntimeError("boom")

        worker = asyncio.create_task(work(queue, process))
        queue.add("bad")
        queue.add("good")
        await asyncio.sleep(0.05)
        assert seen == ["bad", "good"]
        queue.add("bad")  # done() ran despite the error: the key can be queued again
        await asyncio.sleep(0.05)
        assert seen == ["bad", "good", "bad"]
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)

    asyncio.run(scenario())
