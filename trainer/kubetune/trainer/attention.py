"""Variable-length attention for packed rows: each example attends only to itself, and no
work is spent on the (masked) pairs between examples.

transformers' own packed path (``sdpa`` with position ids) builds a block-diagonal mask and
still computes attention over whole rows: quadratic in the row length, most of it masked.
This implementation, registered with transformers as ``kubetune_packed``, splits each row
at the position-id resets instead: on CUDA it calls PyTorch's flash ``varlen_attn`` with
cumulative sequence lengths; elsewhere (CPU) it runs causal SDPA on every example's slice.
So packing can put a whole micro-batch in one row with no padding at all.

Anything that is not a packed training/eval forward (a padding mask, a KV cache during
generation) falls through to transformers' standard SDPA path, unchanged. The matching mask
function returns no mask for packed input, so no row-squared mask is ever materialised.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "kubetune_packed"

_varlen_attn: Callable[..., Any] | None
try:  # PyTorch >= 2.9 ships a flash varlen kernel (CUDA only)
    from torch.nn.attention.varlen import varlen_attn as _varlen_attn
except ImportError:  # pragma: no cover - older torch
    _varlen_attn = None


def segments(position_ids: torch.Tensor) -> list[tuple[int, int]]:
    """[start, end) of every example in one row: a new example starts wherever the position
    id is not the previous one plus 1 (the rule transformers uses to detect packing)."""
    length = position_ids.shape[-1]
    if length == 0:
        return []
    steps = torch.diff(position_ids) != 1
    starts = [0, *(torch.nonzero(steps).flatten() + 1).tolist()]
    return list(zip(starts, [*starts[1:], length], strict=True))


class _Layout:
    """Where the examples are, computed once per forward: every layer receives the same
    position-id tensor, so the host sync this needs is paid once, not once per layer. The
    cache holds that tensor itself, so identity (``is``) cannot be fooled by a new tensor
    reusing freed memory."""

    tensor: torch.Tensor | None = None
    rows: list[list[tuple[int, int]]] = []
    cu_seqlens: torch.Tensor | None = None
    longest = 0

    @classmethod
    def of(cls, position_ids: torch.Tensor, batch: int) -> type[_Layout]:
        if cls.tensor is not position_ids:
            ids = position_ids.expand(batch, -1) if position_ids.shape[0] != batch else position_ids
            cls.rows = [segments(ids[row]) for row in range(batch)]
            length = ids.shape[-1]
            starts = [
                row * length + start for row, spans in enumerate(cls.rows) for start, _ in spans
            ]
            cls.cu_seqlens = torch.tensor(
                [*starts, batch * length], dtype=torch.int32, device=position_ids.device
            )
            cls.longest = max(end - start for spans in cls.rows for start, end in spans)
            cls.tensor = position_ids
        return cls


def _flash_dtype(query: torch.Tensor) -> torch.dtype | None:
    """The half-precision dtype the flash kernel can run this query in, or None.

    Under autocast, rotary embeddings can leave fp32 queries (fp32 master weights in full
    fine-tuning): they run in the autocast dtype, as SDPA would run them.
    """
    if not query.is_cuda:
        return None
    if query.dtype in (torch.float16, torch.bfloat16):
        return query.dtype
    if torch.is_autocast_enabled("cuda"):
        return torch.get_autocast_dtype("cuda")
    return None


def packed_attention(  # noqa: PLR0917 - the signature transformers calls
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Same contract as transformers' ``sdpa_attention_forward``: (B, H, L, D) in,
    (B, L, H, D) out."""
    position_ids = kwargs.get("position_ids")
    batch, heads, length, dim = query.shape
    if (
        attention_mask is not None
        or position_ids is None
        or key.shape[2] != length  # a KV cache: generation, not a packed forward
        or length < 2
        or not getattr(module, "is_causal", True)
    ):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    gqa = key.shape[1] != heads
    layout = _Layout.of(position_ids, batch)
    flash_dtype = _flash_dtype(query)
    if flash_dtype is not None and _varlen_attn is not None and dropout == 0.0:
        out = _varlen_attn(
            query.transpose(1, 2).reshape(batch * length, heads, dim).to(flash_dtype),
            key.transpose(1, 2).reshape(batch * length, key.shape[1], dim).to(flash_dtype),
            value.transpose(1, 2).reshape(batch * length, value.shape[1], dim).to(flash_dtype),
            layout.cu_seqlens,
            layout.cu_seqlens,
            layout.longest,
            layout.longest,
            scale=scaling,
            window_size=(-1, 0),  # causal
            enable_gqa=gqa,
        )
        return out.reshape(batch, length, heads, dim).to(query.dtype), None
    rows = []
    for row, spans in enumerate(layout.rows):
        pieces = [
            F.scaled_dot_product_attention(
                query[row : row + 1, :, start:end],
                key[row : row + 1, :, start:end],
                value[row : row + 1, :, start:end],
                dropout_p=dropout,
                scale=scaling,
                is_causal=True,
                enable_gqa=gqa,
            )
            for start, end in spans
        ]
        rows.append(torch.cat(pieces, dim=2))
    return torch.cat(rows, dim=0).transpose(1, 2).contiguous(), None


def packed_mask(*args: Any, **kwargs: Any) -> torch.Tensor | None:
    """No mask for packed input (the attention splits rows itself); a padding mask, when
    there is one, is built exactly as for SDPA and handled by the SDPA fallback."""
    if kwargs.get("attention_mask") is None:
        return None
    return sdpa_mask(*args, **kwargs)


AttentionInterface.register(NAME, packed_attention)
AttentionMaskInterface.register(NAME, packed_mask)
