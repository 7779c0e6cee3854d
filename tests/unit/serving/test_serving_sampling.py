"""Token picking in the reference engine (``kubetune.serving.engine.sampling``).

Covers: temperature 0 is argmax; top-k 1 and a tiny top-p leave only the best token; a seeded
generator makes sampling reproducible; sampling at a high temperature does reach other tokens.
"""

from __future__ import annotations

import torch

from kubetune.serving.engine.requests import SamplingParams
from kubetune.serving.engine.sampling import pick_token

LOGITS = torch.tensor([0.1, 2.0, 1.9, -3.0, 0.5])


def params(**kw: object) -> SamplingParams:
    return SamplingParams(max_tokens=1, **kw)  # type: ignore[arg-type]


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_greedy_and_cuts_pick_the_best_token() -> None:
    assert pick_token(LOGITS, params=params(temperature=0.0), generator=None) == 1
    for cut in (params(top_k=1), params(top_p=0.01)):
        picks = {pick_token(LOGITS, params=cut, generator=seeded(s)) for s in range(20)}
        assert picks == {1}


def test_seeded_sampling_is_reproducible_and_varied() -> None:
    hot = params(temperature=2.0)
    runs = [
        [pick_token(LOGITS, params=hot, generator=g) for _ in range(20)]
        for g in (seeded(7), seeded(7))
    ]
    assert runs[0] == runs[1]
    generator = seeded(3)
    picks = {pick_token(LOGITS, params=hot, generator=generator) for _ in range(200)}
    assert len(picks) >= 3
    top2 = {pick_token(LOGITS, params=params(top_k=2), generator=generator) for _ in range(200)}
    assert top2 == {1, 2}
