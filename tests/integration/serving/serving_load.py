"""A steady client load for the serving tests and the rollout benchmark: concurrent workers
sending OpenAI requests (every other one streamed), recording every outcome.

Runs its own event loop in a thread so a test can change the cluster while the load goes on.
A request counts as failed on any non-200 answer, transport error, error event inside a
stream, or a stream that does not end with ``[DONE]``. No retries: a failure is a failure.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from dataclasses import dataclass, field

import httpx

ROUTED_HEADER = "x-kubetune-routed-to"


@dataclass(frozen=True)
class Outcome:
    url: str
    started: float
    ended: float
    ok: bool
    stream: bool
    text: str = ""
    routed_to: str | None = None
    error: str | None = None


@dataclass
class LoadGenerator:
    urls: list[str]
    model: str
    prompt: str = "how do I reset my password"
    max_tokens: int = 8
    concurrency: int = 4
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._turn = itertools.count()

    def start(self) -> LoadGenerator:
        self._thread.start()
        return self

    def stop(self) -> list[Outcome]:
        self._stop.set()
        self._thread.join(timeout=120)
        return list(self.outcomes)

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    async def _main(self) -> None:
        limits = httpx.Limits(max_connections=self.concurrency * 2)
        async with httpx.AsyncClient(timeout=httpx.Timeout(60, connect=5), limits=limits) as client:
            await asyncio.gather(*(self._worker(client) for _ in range(self.concurrency)))

    async def _worker(self, client: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            turn = next(self._turn)
            url = self.urls[turn % len(self.urls)]
            self.outcomes.append(await self._one(client, url, stream=turn % 2 == 1))

    async def _one(self, client: httpx.AsyncClient, url: str, *, stream: bool) -> Outcome:
        body = {
            "model": self.model,
            "prompt": self.prompt,
            "max_tokens": self.max_tokens,
            "temperature": 0,
            "ignore_eos": True,
            "stream": stream,
        }
        started = time.monotonic()

        def outcome(ok: bool, **kw: object) -> Outcome:
            return Outcome(
                url=url, started=started, ended=time.monotonic(), ok=ok, stream=stream, **kw
            )  # type: ignore[arg-type]

        try:
            async with client.stream("POST", f"{url}/v1/completions", json=body) as response:
                raw = (await response.aread()).decode()
                routed = response.headers.get(ROUTED_HEADER)
                if response.status_code != 200:
                    return outcome(
                        False, routed_to=routed, error=f"{response.status_code}: {raw[:200]}"
                    )
        except httpx.HTTPError as err:
            return outcome(False, error=repr(err))
        if not stream:
            return outcome(True, text=json.loads(raw)["choices"][0]["text"], routed_to=routed)
        events = [e.removeprefix("data: ") for e in raw.split("\n\n") if e.startswith("data: ")]
        if not events or events[-1] != "[DONE]":
            return outcome(False, routed_to=routed, error=f"stream not finished: {raw[-200:]}")
        chunks = [json.loads(e) for e in events[:-1]]
        errors = [c for c in chunks if "error" in c]
        if errors:
            return outcome(False, routed_to=routed, error=str(errors[0]))
        text = "".join(c["choices"][0]["text"] for c in chunks if c.get("choices"))
        return outcome(True, text=text, routed_to=routed)
