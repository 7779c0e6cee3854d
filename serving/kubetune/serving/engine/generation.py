"""The decode loop of one request: tokens in, text deltas out, with the reason it stopped.

Text is decoded incrementally from all generated ids, so multi-byte characters split across
tokens are held back until complete, and text that could be the start of a stop string is held
back until it is known not to be one: a streamed answer is exactly the non-streamed one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from kubetune.serving.engine.model import ModelRegistry
from kubetune.serving.engine.requests import RequestError, SamplingParams

FINISH_STOP = "stop"
FINISH_LENGTH = "length"


@dataclass
class Generation:
    """Run with ``async for delta in generation.deltas()``; then read the counters."""

    registry: ModelRegistry
    model_name: str
    prompt_ids: list[int]
    params: SamplingParams
    finish_reason: str | None = None
    completion_tokens: int = 0

    def __post_init__(self) -> None:
        limit = self.registry.max_model_len
        prompt = len(self.prompt_ids)
        if not prompt:
            raise RequestError("the prompt is empty", param="prompt")
        wanted = self.params.max_tokens
        if prompt + (wanted or 1) > limit:
            raise RequestError(
                f"This model's maximum context length is {limit} tokens. However, you "
                f"requested {prompt + (wanted or 0)} tokens ({prompt} in the prompt, "
                f"{wanted or 0} in the completion). Please reduce the length of the prompt "
                "or completion.",
                param="max_tokens" if wanted else "prompt",
            )
        self.max_new_tokens = wanted if wanted is not None else limit - prompt

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    async def deltas(self) -> AsyncIterator[str]:
        """Text pieces in order; their concatenation is the whole answer."""
        tokenizer = self.registry.tokenizer
        stops = self.params.stop
        hold_for_stop = max((len(s) for s in stops), default=1) - 1
        generated: list[int] = []
        emitted = 0
        with self.registry.sequence(
            model_name=self.model_name, prompt_ids=self.prompt_ids, params=self.params
        ) as seq:
            while True:
                token = await self.registry.next_token(seq)
                if token in self.registry.eos_token_ids and not self.params.ignore_eos:
                    self.finish_reason = FINISH_STOP
                    break
                generated.append(token)
                self.completion_tokens = len(generated)
                text = str(tokenizer.decode(generated, skip_special_tokens=True))
                cut = _first_stop(text, stops, since=max(0, emitted - hold_for_stop))
                if cut is not None:
                    if cut > emitted:
                        yield text[emitted:cut]
                    self.finish_reason = FINISH_STOP
                    return
                if len(generated) >= self.max_new_tokens:
                    self.finish_reason = FINISH_LENGTH
                    break
                safe = len(text.rstrip("\ufffd")) - hold_for_stop
                if safe > emitted:
                    yield text[emitted:safe]
                    emitted = safe
        text = str(tokenizer.decode(generated, skip_special_tokens=True))
        if len(text) > emitted:
            yield text[emitted:]


def _first_stop(text: str, stops: tuple[str, ...], *, since: int) -> int | None:
    found = [i for i in (text.find(s, since) for s in stops) if i >= 0]
    return min(found) if found else None
