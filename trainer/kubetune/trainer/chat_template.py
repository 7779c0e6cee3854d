"""Render conversations with a chat template and find the spans the model learns from.

The tokenizer's own chat template is used when it has one. Otherwise ``DEFAULT_CHAT_TEMPLATE``
applies (documented in docs/trainer.md)::

    <bos><|system|>\\n{system}<eos>\\n<|user|>\\n{question}<eos>\\n<|assistant|>\\n{answer}<eos>

Assistant spans are found template-agnostically: the text of an assistant turn is what
``render(messages[:i+1])`` adds to ``render(messages[:i], add_generation_prompt=True)``. Each
span ends with the template's end-of-turn text, so the model learns to stop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kubetune.trainer.data.formats import Message

DEFAULT_CHAT_TEMPLATE = (
    "{{ bos_token if bos_token else '' }}"
    "{% for message in messages %}"
    "{% if not loop.first %}{{ '\\n' }}{% endif %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + (eos_token if eos_token else '') }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "{{ '\\n<|assistant|>\\n' if messages else '<|assistant|>\\n' }}"
    "{% endif %}"
)
"""Used only when the base model's tokenizer has no chat template of its own."""

Renderer = Callable[[Sequence[Message], bool], str]
"""``render(messages, add_generation_prompt) -> text``."""


class TemplateMismatchError(ValueError):
    """The template does not render the last assistant turn as an extension of its prompt."""


@dataclass(frozen=True)
class Segment:
    text: str
    trainable: bool


def segments(messages: Sequence[Message], render: Renderer) -> tuple[list[Segment], int]:
    """Split a rendered conversation into trainable (assistant) and context segments.

    Returns the segments and the number of earlier assistant turns that had to be treated as
    context because the template renders history differently from a fresh prompt (some
    templates strip reasoning from past turns); the last turn is always trained or an error
    is raised.
    """
    full = render(messages, False)
    out: list[Segment] = []
    position = 0
    untrained = 0
    last_assistant = max(i for i, m in enumerate(messages) if m.role == "assistant")
    for index, message in enumerate(messages):
        if message.role != "assistant":
            continue
        prompt = render(messages[:index], True)
        upto = render(messages[: index + 1], False)
        consistent = (
            full.startswith(upto)
            and upto.startswith(prompt)
            and len(prompt) >= position
            and len(upto) > len(prompt)
        )
        if not consistent:
            if index == last_assistant:
                raise TemplateMismatchError(
                    "the chat template does not render the assistant's answer as a continuation "
                    "of the generation prompt, so the answer tokens cannot be located"
                )
            untrained += 1
            continue
        if len(prompt) > position:
            out.append(Segment(full[position : len(prompt)], trainable=False))
        out.append(Segment(full[len(prompt) : len(upto)], trainable=True))
        position = len(upto)
    if position < len(full):
        out.append(Segment(full[position:], trainable=False))
    return out, untrained
