"""Padding-free packing (``kubetune.trainer.packing``) and the training objective.

Covers: the row layout of packed batches (fewest rows, balanced lengths; position ids restart at
0 per example; no attention mask; the row tail is its own masked segment) and of padded
batches; real/label token counts that never include padding; THE packing guarantee on the
real tiny Llama: logits of examples packed into one row equal the logits of each example run
on its own, and the negative control: with position ids that do not restart, they differ;
the objective's selective-head loss equals transformers' own loss on the same batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch

from kubetune.trainer.objective import CausalLMObjective
from kubetune.trainer.packing import IGNORE_INDEX, pack, pad, to_tensors


@dataclass
class Ex:
    input_ids: list[int]
    labels: list[int]


def ex(*ids: int, trained_from: int = 1) -> Ex:
    return Ex(list(ids), [IGNORE_INDEX] * trained_from + list(ids[trained_from:]))


PAD = 0


@pytest.mark.parametrize(
    ("sizes", "capacity", "rows"),
    [
        ([3, 3, 3], 9, [[0, 1, 2]]),
        ([3, 3, 3], 6, [[0, 1], [2]]),
        ([5, 2, 4, 1], 6, [[0, 3], [2, 1]]),  # longest first
        ([4, 3, 3, 2], 8, [[0, 3], [1, 2]]),  # balanced 6+6, where first fit gives 7+5
        ([6], 6, [[0]]),
    ],
)
def test_pack_layout(sizes: list[int], capacity: int, rows: list[list[int]]) -> None:
    examples = [ex(*range(10 * i + 1, 10 * i + 1 + n)) for i, n in enumerate(sizes)]
    batch = pack(examples, capacity=capacity, pad_id=PAD)
    width = max(sum(sizes[i] for i in row) for row in rows)
    expected_ids = []
    expected_positions = []
    for row in rows:
        ids = [t for i in row for t in examples[i].input_ids]
        positions = [p for i in row for p in range(sizes[i])]
        tail = width - len(ids)
        expected_ids.append(ids + [PAD] * tail)
        expected_positions.append(positions + list(range(tail)))
    assert batch.input_ids == expected_ids
    assert batch.position_ids == expected_positions
    assert batch.attention_mask is None
    assert batch.real_tokens == sum(sizes)
    assert batch.label_tokens == sum(n - 1 for n in sizes)
    assert batch.padded_tokens == width * len(rows)


def test_pack_refuses_an_example_longer_than_a_row() -> None:
    with pytest.raises(ValueError, match="exceeds the row capacity"):
        pack([ex(1, 2, 3)], capacity=2, pad_id=PAD)


def test_pad_layout_and_counts() -> None:
    batch = pad([ex(1, 2, 3), ex(4, 5, trained_from=2)], pad_id=PAD)
    assert batch.input_ids == [[1, 2, 3], [4, 5, PAD]]
    assert batch.attention_mask == [[1, 1, 1], [1, 1, 0]]
    assert batch.labels == [[IGNORE_INDEX, 2, 3], [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]]
    assert (batch.real_tokens, batch.label_tokens, batch.padded_tokens) == (5, 2, 6)


def sample_examples(tokenizer: Any) -> list[Ex]:
    texts = [
        "How do I reset my LH-200 router?",
        "Is there an outage in Arden?",
        "Chat and phone support are open every day, 7am to 11pm.",
    ]
    return [ex(*tokenizer(t, add_special_tokens=True)["input_ids"]) for t in texts]


def test_packed_logits_equal_separate_logits(tiny_model: Any, tokenizer: Any) -> None:
    examples = sample_examples(tokenizer)
    batch = pack(examples, capacity=512, pad_id=tokenizer.pad_token_id)
    assert len(batch.input_ids) == 1  # all three share one row
    tensors = to_tensors(batch, torch.device("cpu"))
    with torch.no_grad():
        packed = tiny_model(
            input_ids=tensors["input_ids"], position_ids=tensors["position_ids"], use_cache=False
        ).logits[0]
        offset = 0
        for example in sorted(examples, key=lambda e: -len(e.input_ids)):
            alone = tiny_model(input_ids=torch.tensor([example.input_ids]), use_cache=False).logits[
                0
            ]
            size = len(example.input_ids)
            torch.testing.assert_close(packed[offset : offset + size], alone, atol=1e-5, rtol=1e-4)
            offset += size


def test_without_position_resets_documents_leak_into_each_other(
    tiny_model: Any, tokenizer: Any
) -> None:
    examples = sample_examples(tokenizer)
    batch = pack(examples, capacity=512, pad_id=tokenizer.pad_token_id)
    ids = torch.tensor(batch.input_ids)
    continuing = torch.arange(ids.shape[1]).unsqueeze(0)
    with torch.no_grad():
        leaked = tiny_model(input_ids=ids, position_ids=continuing, use_cache=False).logits[0]
        first = sorted(examples, key=lambda e: -len(e.input_ids))
        size0, size1 = len(first[0].input_ids), len(first[1].input_ids)
        alone = tiny_model(input_ids=torch.tensor([first[1].input_ids]), use_cache=False).logits[0]
    # The first document is unaffected (causality); the second attended to the first.
    difference = (leaked[size0 : size0 + size1] - alone).abs().max().item()
    assert difference > 1e-3


@pytest.mark.parametrize("packing", [True, False])
def test_objective_matches_transformers_loss(
    tiny_model: Any, tokenizer: Any, packing: bool
) -> None:
    examples = sample_examples(tokenizer)
    batch = (
        pack(examples, capacity=512, pad_id=tokenizer.pad_token_id)
        if packing
        else pad(examples, pad_id=tokenizer.pad_token_id)
    )
    tensors = to_tensors(batch, torch.device("cpu"))
    objective = CausalLMObjective(tiny_model)
    with torch.no_grad():
        summed = objective(**tensors)
        reference = tiny_model(**tensors, use_cache=False).loss  # mean over scored tokens
    torch.testing.assert_close(summed / batch.label_tokens, reference, atol=1e-5, rtol=1e-5)
