"""Turn cleaned examples into token ids and labels: the step between ``data`` and ``packing``.

Labels are -100 (ignored by the loss) everywhere except assistant answers (chat and
instruction formats) or the whole text (completion format). Each segment is tokenised on its
own so the answer starts on a token boundary exactly as it does when the model generates it
after the prompt. Examples longer than ``max_length`` keep their first ``max_length`` tokens;
one that loses all of its answer that way is dropped and reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubetune.trainer.chat_template import (
    DEFAULT_CHAT_TEMPLATE,
    Renderer,
    TemplateMismatchError,
    segments,
)
from kubetune.trainer.data.formats import Example, Message
from kubetune.trainer.errors import InvalidDatasetError, InvalidModelError

IGNORE_INDEX = -100


class Tokenizer(Protocol):
    """The part of a Hugging Face tokenizer this module uses."""

    bos_token_id: int | None
    eos_token_id: int | None
    chat_template: Any

    def __call__(self, text: str, *, add_special_tokens: bool) -> Any: ...

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]
    line: int
    untruncated_length: int

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class TokenizationReport:
    lengths: list[int] = field(default_factory=list)
    """Token length of every example before truncation."""
    dropped_no_target: list[int] = field(default_factory=list)
    """Lines whose answer was cut away entirely by truncation."""
    untrained_turns: int = 0
    """Earlier assistant turns the template would not let us locate (trained as context)."""


def renderer_for(tokenizer: Tokenizer) -> Renderer:
    """A render function using the tokenizer's chat template, or the documented default."""
    template = tokenizer.chat_template or DEFAULT_CHAT_TEMPLATE
    if tokenizer.eos_token_id is None:
        raise InvalidModelError(
            "the tokenizer has no eos_token, so a trained model could not learn to stop; "
            "set eos_token in tokenizer_config.json"
        )

    def render(messages: Sequence[Message], add_generation_prompt: bool) -> str:
        conversation = [{"role": m.role, "content": m.content} for m in messages]
        text = tokenizer.apply_chat_template(
            conversation,
            chat_template=template,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
        )
        return str(text)

    return render


def encode(tokenizer: Tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def tokenize_example(
    example: Example, tokenizer: Tokenizer, *, render: Renderer
) -> tuple[list[int], list[int], int]:
    """Return (input_ids, labels, untrained_turns) for one example, before truncation."""
    ids: list[int] = []
    labels: list[int] = []
    untrained = 0
    if example.text is not None:
        if tokenizer.bos_token_id is not None:
            ids.append(tokenizer.bos_token_id)
        ids.extend(encode(tokenizer, example.text))
        assert tokenizer.eos_token_id is not None  # checked by renderer_for
        ids.append(tokenizer.eos_token_id)
        labels = list(ids)
    else:
        try:
            parts, untrained = segments(example.messages, render)
        except TemplateMismatchError as err:
            raise InvalidModelError(f"line {example.line}: {err}") from err
        except Exception as err:  # jinja raises its own errors for conversations it refuses
            raise InvalidDatasetError(
                f"line {example.line}: the chat template refused this conversation: {err}"
            ) from err
        for part in parts:
            piece = encode(tokenizer, part.text)
            ids.extend(piece)
            labels.extend(piece if part.trainable else [IGNORE_INDEX] * len(piece))
    if labels:
        # Nothing in a sequence predicts its first token, and masking it keeps packed
        # neighbours from being trained to predict each other's first token.
        labels[0] = IGNORE_INDEX
    return ids, labels, untrained


def tokenize_examples(
    examples: Sequence[Example], tokenizer: Tokenizer, *, max_length: int
) -> tuple[list[TokenizedExample], TokenizationReport]:
    render = renderer_for(tokenizer)
    report = TokenizationReport()
    out: list[TokenizedExample] = []
    for example in examples:
        ids, labels, untrained = tokenize_example(example, tokenizer, render=render)
        full_length = len(ids)
        report.lengths.append(full_length)
        report.untrained_turns += untrained
        ids, labels = ids[:max_length], labels[:max_length]
        if all(label == IGNORE_INDEX for label in labels):
            report.dropped_no_target.append(example.line)
            continue
        out.append(
            TokenizedExample(
                input_ids=ids, labels=labels, line=example.line, untruncated_length=full_length
            )
        )
    return out, report


def generation_prompt(example: Example, tokenizer: Tokenizer) -> tuple[list[int], str]:
    """Prompt ids for greedy generation on a held-out chat example, and the reference answer."""
    if example.text is not None:
        raise InvalidDatasetError(
            f"line {example.line}: a test set needs chat or instruction records (a prompt "
            "and a reference answer), not plain text"
        )
    render = renderer_for(tokenizer)
    *context, answer = example.messages
    return encode(tokenizer, render(context, True)), answer.content
