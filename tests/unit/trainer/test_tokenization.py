"""Tokenisation and loss masks (``kubetune.trainer.tokenization`` and ``.chat_template``).

Covers: labels are -100 everywhere except assistant answers, including every assistant turn
of a multi-turn conversation, and each answer ends with the end-of-turn token; the first
label is always masked; completion records train on all text; the documented default template
when a tokenizer has none; truncation keeps the head and drops examples that lose their
whole answer; a template that does not render answers after the generation prompt is
refused with a clear error; generation prompts end where the answer starts.
"""

from __future__ import annotations

from typing import Any

import pytest

from kubetune.trainer.chat_template import segments
from kubetune.trainer.data.formats import Example, Message
from kubetune.trainer.errors import InvalidModelError
from kubetune.trainer.tokenization import (
    IGNORE_INDEX,
    generation_prompt,
    renderer_for,
    tokenize_examples,
)


def chat(*turns: tuple[str, str], line: int = 1) -> Example:
    return Example(line=line, messages=tuple(Message(r, c) for r, c in turns))


def trained_text(tokenizer: Any, ids: list[int], labels: list[int]) -> list[str]:
    """Decoded runs of consecutive trained tokens."""
    runs: list[list[int]] = []
    previous = False
    for token, label in zip(ids, labels, strict=True):
        trained = label != IGNORE_INDEX
        if trained and not previous:
            runs.append([])
        if trained:
            runs[-1].append(token)
        previous = trained
    return [tokenizer.decode(run) for run in runs]


def test_only_assistant_answers_are_trained(tokenizer: Any) -> None:
    example = chat(
        ("system", "Be kind."),
        ("user", "How do I reset my LH-200 router?"),
        ("assistant", "Hold the reset button for 10 seconds."),
        ("user", "Thanks! How long does that usually take?"),
        ("assistant", "About two minutes."),
    )
    (tokenized,), report = tokenize_examples([example], tokenizer, max_length=512)
    assert tokenized.labels[0] == IGNORE_INDEX
    assert trained_text(tokenizer, tokenized.input_ids, tokenized.labels) == [
        "Hold the reset button for 10 seconds.<|im_end|>\n",
        "About two minutes.<|im_end|>\n",
    ]
    assert report.lengths == [len(tokenized.input_ids)] and report.untrained_turns == 0
    # The whole sequence is exactly the rendered conversation.
    rendered = tokenizer.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in example.messages], tokenize=False
    )
    assert tokenizer.decode(tokenized.input_ids) == rendered


def test_completion_records_train_on_everything_but_the_first_token(tokenizer: Any) -> None:
    (tokenized,), _ = tokenize_examples(
        [Example(line=1, text="Lumen plans have no data cap.")], tokenizer, max_length=64
    )
    assert tokenized.input_ids[0] == tokenizer.bos_token_id
    assert tokenized.input_ids[-1] == tokenizer.eos_token_id
    assert tokenized.labels[0] == IGNORE_INDEX
    assert tokenized.labels[1:] == tokenized.input_ids[1:]


def test_default_template_applies_without_one(tokenizer: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(tokenizer, "chat_template", None)
    render = renderer_for(tokenizer)
    text = render([Message("user", "Q?"), Message("assistant", "A.")], False)
    assert text == "<s><|user|>\nQ?<|im_end|>\n<|assistant|>\nA.<|im_end|>"
    assert render([Message("user", "Q?")], True) == "<s><|user|>\nQ?<|im_end|>\n<|assistant|>\n"
    (tokenized,), _ = tokenize_examples(
        [chat(("user", "Q?"), ("assistant", "A."))], tokenizer, max_length=64
    )
    assert trained_text(tokenizer, tokenized.input_ids, tokenized.labels) == ["A.<|im_end|>"]


def test_truncation_keeps_the_head_and_drops_answerless_examples(tokenizer: Any) -> None:
    long_question = "word " * 200
    examples = [
        chat(("user", "Short?"), ("assistant", "Yes, a long answer " * 10), line=1),
        chat(("user", long_question), ("assistant", "Lost."), line=2),
    ]
    kept, report = tokenize_examples(examples, tokenizer, max_length=20)
    assert [k.line for k in kept] == [1]
    assert len(kept[0].input_ids) == 20 and kept[0].untruncated_length > 20
    assert report.dropped_no_target == [2]
    assert all(length > 20 for length in report.lengths)


def test_a_template_that_rewrites_history_is_refused(tokenizer: Any, monkeypatch: Any) -> None:
    # This template prints the answer before the prompt marker: no span can be located.
    weird = (
        "{% for m in messages %}{{ m['content'] }}|{% endfor %}"
        "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
    )
    monkeypatch.setattr(tokenizer, "chat_template", weird)
    with pytest.raises(InvalidModelError, match="line 4: the chat template does not render"):
        tokenize_examples(
            [chat(("user", "Q"), ("assistant", "A"), line=4)], tokenizer, max_length=64
        )


def test_segments_skip_unlocatable_earlier_turns() -> None:
    # A renderer that drops earlier answers from history (as reasoning templates do).
    def render(messages: Any, add_generation_prompt: bool) -> str:
        parts = []
        for index, m in enumerate(messages):
            last = index == len(messages) - 1
            content = m.content if m.role != "assistant" or last else "..."
            parts.append(f"[{m.role}]{content}")
        return "".join(parts) + ("[assistant]" if add_generation_prompt else "")

    msgs = [
        Message("user", "a"),
        Message("assistant", "b"),
        Message("user", "c"),
        Message("assistant", "d"),
    ]
    parts, untrained = segments(msgs, render)
    assert untrained == 1
    assert [p.text for p in parts if p.trainable] == ["d"]


def test_generation_prompt_stops_where_the_answer_starts(tokenizer: Any) -> None:
    ids, reference = generation_prompt(
        chat(("user", "Hours?"), ("assistant", "7am-11pm.")), tokenizer
    )
    assert reference == "7am-11pm."
    assert tokenizer.decode(ids).endswith("<|im_start|>assistant\n")
