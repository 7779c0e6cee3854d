"""Build micro-batches from tokenised examples: padding-free packing, or padding.

Packing places whole examples into rows of at most ``capacity`` tokens: as few rows as
first-fit-decreasing needs, balanced so the rows are about equally long. Inside a row
``position_ids`` restart at 0 for every example and no attention mask is passed:
transformers then detects the packed layout from the position ids and keeps each example's
attention inside its own tokens (this needs ``use_cache=False``; with a cache the detection
is skipped). Rows are only padded up to the longest row of the batch; that tail is its own
segment with labels -100, so no real token ever attends to it.

``pad`` is the classic alternative (one example per row, right padding, attention mask) used
when packing is off, for generation, and by the benchmark baseline. Pure: lists in, lists
out; ``to_tensors`` makes the model inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

IGNORE_INDEX = -100


class Tokenized(Protocol):
    """Anything with token ids and labels (``tokenization.TokenizedExample``)."""

    @property
    def input_ids(self) -> list[int]: ...

    @property
    def labels(self) -> list[int]: ...


@dataclass(frozen=True)
class Batch:
    input_ids: list[list[int]]
    labels: list[list[int]]
    position_ids: list[list[int]]
    attention_mask: list[list[int]] | None
    real_tokens: int
    """Tokens of real examples (no padding): what tokens/s counts."""
    label_tokens: int
    """Tokens the loss is computed on."""
    examples: int

    @property
    def padded_tokens(self) -> int:
        return sum(len(row) for row in self.input_ids)


def assign_rows(sizes: Sequence[int], *, capacity: int) -> list[list[int]]:
    """Indices per row: the fewest rows first-fit-decreasing needs, then balanced.

    Rows are padded to the longest one, so with the row count fixed the best layout makes
    rows equally long: longest first, each onto the currently shortest row with room. When
    that does not fit (or is no better), the first-fit layout is kept.
    """
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i], i))
    for index in order:
        if sizes[index] > capacity:
            raise ValueError(
                f"example of {sizes[index]} tokens exceeds the row capacity {capacity}"
            )
    first_fit: list[list[int]] = []
    loads: list[int] = []
    for index in order:
        slot = next((r for r, load in enumerate(loads) if load + sizes[index] <= capacity), None)
        if slot is None:
            first_fit.append([])
            loads.append(0)
            slot = len(loads) - 1
        first_fit[slot].append(index)
        loads[slot] += sizes[index]
    balanced: list[list[int]] = [[] for _ in first_fit]
    balanced_loads = [0] * len(first_fit)
    for index in order:
        fits = [r for r, load in enumerate(balanced_loads) if load + sizes[index] <= capacity]
        if not fits:
            return first_fit
        slot = min(fits, key=lambda r: (balanced_loads[r], r))
        balanced[slot].append(index)
        balanced_loads[slot] += sizes[index]
    return balanced if max(balanced_loads, default=0) < max(loads, default=0) else first_fit


def pack(examples: Sequence[Tokenized], *, capacity: int, pad_id: int) -> Batch:
    """Pack whole examples into rows of at most ``capacity`` tokens (see ``assign_rows``)."""
    rows = assign_rows([len(e.input_ids) for e in examples], capacity=capacity)
    width = max((sum(len(examples[i].input_ids) for i in row) for row in rows), default=0)
    ids_rows: list[list[int]] = []
    label_rows: list[list[int]] = []
    position_rows: list[list[int]] = []
    for members in rows:
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for index in members:
            example = examples[index]
            ids.extend(example.input_ids)
            labels.extend(example.labels)
            positions.extend(range(len(example.input_ids)))
        tail = width - len(ids)
        ids.extend([pad_id] * tail)
        labels.extend([IGNORE_INDEX] * tail)
        positions.extend(range(tail))  # a separate segment: restarts at 0
        ids_rows.append(ids)
        label_rows.append(labels)
        position_rows.append(positions)
    return Batch(
        input_ids=ids_rows,
        labels=label_rows,
        position_ids=position_rows,
        attention_mask=None,
        real_tokens=sum(len(e.input_ids) for e in examples),
        label_tokens=_count_labels(label_rows),
        examples=len(examples),
    )


def pad(examples: Sequence[Tokenized], *, pad_id: int) -> Batch:
    """One example per row, right-padded to the longest, with an attention mask."""
    width = max((len(e.input_ids) for e in examples), default=0)
    ids_rows, label_rows, position_rows, mask_rows = [], [], [], []
    for example in examples:
        size = len(example.input_ids)
        tail = width - size
        ids_rows.append(list(example.input_ids) + [pad_id] * tail)
        label_rows.append(list(example.labels) + [IGNORE_INDEX] * tail)
        position_rows.append(list(range(width)))
        mask_rows.append([1] * size + [0] * tail)
    return Batch(
        input_ids=ids_rows,
        labels=label_rows,
        position_ids=position_rows,
        attention_mask=mask_rows,
        real_tokens=sum(len(e.input_ids) for e in examples),
        label_tokens=_count_labels(label_rows),
        examples=len(examples),
    )


def make_batch(
    examples: Sequence[Tokenized], *, packing: bool, capacity: int, pad_id: int
) -> Batch:
    return (
        pack(examples, capacity=capacity, pad_id=pad_id)
        if packing
        else pad(examples, pad_id=pad_id)
    )


def to_tensors(batch: Batch, device: torch.device) -> dict[str, torch.Tensor]:
    tensors = {
        "input_ids": torch.tensor(batch.input_ids, dtype=torch.long),
        "labels": torch.tensor(batch.labels, dtype=torch.long),
        "position_ids": torch.tensor(batch.position_ids, dtype=torch.long),
    }
    if batch.attention_mask is not None:
        tensors["attention_mask"] = torch.tensor(batch.attention_mask, dtype=torch.long)
    return {name: t.to(device, non_blocking=True) for name, t in tensors.items()}


def _count_labels(rows: list[list[int]]) -> int:
    # Column 0 has no predecessor, so only labels from column 1 on are ever scored.
    return sum(1 for row in rows for label in row[1:] if label != IGNORE_INDEX)
