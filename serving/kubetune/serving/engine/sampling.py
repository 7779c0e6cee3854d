"""Picking the next token from a row of logits: greedy, or temperature / top-k / top-p.

Runs on the model thread right after the forward pass, so the logits never cross threads.
"""

from __future__ import annotations

import torch

from kubetune.serving.engine.requests import SamplingParams


def pick_token(
    logits: torch.Tensor, *, params: SamplingParams, generator: torch.Generator | None
) -> int:
    """The next token id from ``logits`` (1-D, vocabulary-sized)."""
    if params.greedy:
        return int(torch.argmax(logits).item())
    scores = logits.float() / params.temperature
    if params.top_k > 0 and params.top_k < scores.numel():
        kth = torch.topk(scores, params.top_k).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (always at least the top token).
        outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= params.top_p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
        probs = probs / probs.sum()
    return int(torch.multinomial(probs, 1, generator=generator).item())
