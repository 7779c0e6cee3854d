"""Evaluation after (and during) training: loss and perplexity on the validation split, and
greedy-decoding answer metrics on an optional held-out test set.

Eval loss is computed on every process's shard and summed across processes. Generation runs on
rank 0 only. For adapters the same numbers are also measured with the adapter switched off,
so the manifest shows what the adapter changed (and promotion gates can require improvement).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from kubetune.trainer import runtime as rt
from kubetune.trainer.data.formats import Example
from kubetune.trainer.metrics import match_rates, perplexity
from kubetune.trainer.objective import CausalLMObjective
from kubetune.trainer.packing import make_batch, to_tensors
from kubetune.trainer.tokenization import TokenizedExample, generation_prompt

log = logging.getLogger(__name__)

SAMPLE_OUTPUTS = 5
"""Generated answers kept in the manifest, so a reviewer can read a few."""


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager[Any]:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def adapter_disabled(model: Any) -> Iterator[None]:
    """Run the base model by switching a PEFT adapter off (no-op for full fine-tuning)."""
    disable = getattr(model, "disable_adapter", None)
    if disable is None:
        yield
        return
    with disable():
        yield


@torch.no_grad()
def eval_loss(
    objective: CausalLMObjective,
    examples: Sequence[TokenizedExample],
    *,
    runtime: rt.Runtime,
    batch_size: int,
    packing: bool,
    capacity: int,
    pad_id: int,
    dtype: torch.dtype,
) -> dict[str, float] | None:
    """Mean token loss and perplexity over all processes' shards; None without data."""
    was_training = objective.training
    objective.eval()
    mine = examples[runtime.rank :: runtime.world_size]
    totals = torch.zeros(2, dtype=torch.float64, device=runtime.device)
    for start in range(0, len(mine), batch_size):
        batch = make_batch(
            mine[start : start + batch_size], packing=packing, capacity=capacity, pad_id=pad_id
        )
        with autocast(runtime.device, dtype):
            loss_sum = objective(**to_tensors(batch, runtime.device))
        totals[0] += loss_sum.double()
        totals[1] += batch.label_tokens
    rt.all_reduce_sum(runtime, totals)
    objective.train(was_training)
    if totals[1].item() == 0:
        return None
    loss = float(totals[0].item() / totals[1].item())
    return {"evalLoss": loss, "perplexity": perplexity(loss)}


@torch.no_grad()
def generate_answers(
    model: Any,
    tokenizer: Any,
    *,
    examples: Sequence[Example],
    device: torch.device,
    dtype: torch.dtype,
    max_new_tokens: int,
) -> list[tuple[str, str, str]]:
    """Greedy answers: (question, prediction, reference) per test example."""
    was_training = model.training
    model.eval()
    out = []
    for example in examples:
        ids, reference = generation_prompt(example, tokenizer)
        inputs = torch.tensor([ids], device=device)
        with autocast(device, dtype):
            generated = model.generate(
                input_ids=inputs,
                attention_mask=torch.ones_like(inputs),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                use_cache=True,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        prediction = tokenizer.decode(generated[0, len(ids) :], skip_special_tokens=True)
        question = next((m.content for m in reversed(example.messages) if m.role == "user"), "")
        out.append((question, prediction.strip(), reference))
    model.train(was_training)
    return out


def generation_metrics(
    model: Any,
    tokenizer: Any,
    *,
    examples: Sequence[Example],
    device: torch.device,
    dtype: torch.dtype,
    max_new_tokens: int,
) -> tuple[dict[str, float], list[tuple[str, str, str]]]:
    answers = generate_answers(
        model,
        tokenizer,
        examples=examples,
        device=device,
        dtype=dtype,
        max_new_tokens=max_new_tokens,
    )
    return match_rates([(p, r) for _, p, r in answers]), answers


def samples_section(answers: Sequence[tuple[str, str, str]]) -> list[dict[str, str]]:
    return [
        {"question": q, "prediction": p, "reference": r} for q, p, r in answers[:SAMPLE_OUTPUTS]
    ]
