"""Per-example attention for packed rows (``kubetune.trainer.attention``).

Covers: example boundaries from position-id resets; on the tiny Llama, a packed row run with
``kubetune_packed`` gives each example exactly the logits it gets alone, the same logits and
the same gradients as transformers' own SDPA packing; padded batches (attention mask) and
generation (KV cache) are unchanged because they fall back to SDPA; no mask is built for
packed input; on CUDA (skipped without one), the flash varlen kernel matches SDPA forward and
backward in bf16.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM

from kubetune.trainer import attention
from kubetune.trainer.objective import CausalLMObjective
from kubetune.trainer.packing import IGNORE_INDEX, pack, pad, to_tensors

CPU = torch.device("cpu")


class Ex:
    def __init__(self, ids: list[int]) -> None:
        self.input_ids = ids
        self.labels = [IGNORE_INDEX, *ids[1:]]


@pytest.mark.parametrize(
    ("positions", "spans"),
    [
        ([0, 1, 2, 0, 1, 0], [(0, 3), (3, 5), (5, 6)]),
        ([0, 1, 2, 3], [(0, 4)]),
        ([5, 6, 0, 1], [(0, 2), (2, 4)]),
        ([0], [(0, 1)]),
    ],
)
def test_segments(positions: list[int], spans: list[tuple[int, int]]) -> None:
    assert attention.segments(torch.tensor(positions)) == spans


def load(path: Path, implementation: str) -> Any:
    model = AutoModelForCausalLM.from_pretrained(
        str(path), local_files_only=True, attn_implementation=implementation
    )
    return model.eval()


def examples(tokenizer: Any) -> list[Ex]:
    texts = [
        "How do I reset my LH-200 router?",
        "Is there an outage in Arden?",
        "Chat and phone support are open every day, 7am to 11pm.",
    ]
    return [Ex(tokenizer(t)["input_ids"]) for t in texts]


def test_packed_row_equals_separate_runs_and_sdpa(tiny_model_dir: Path, tokenizer: Any) -> None:
    packed_model = load(tiny_model_dir, attention.NAME)
    sdpa_model = load(tiny_model_dir, "sdpa")
    items = examples(tokenizer)
    batch = pack(items, capacity=4096, pad_id=tokenizer.pad_token_id)
    tensors = to_tensors(batch, CPU)
    inputs = {"input_ids": tensors["input_ids"], "position_ids": tensors["position_ids"]}
    with torch.no_grad():
        ours = packed_model(**inputs, use_cache=False).logits[0]
        theirs = sdpa_model(**inputs, use_cache=False).logits[0]
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
        offset = 0
        for item in sorted(items, key=lambda e: -len(e.input_ids)):
            alone = sdpa_model(input_ids=torch.tensor([item.input_ids]), use_cache=False).logits[0]
            size = len(item.input_ids)
            torch.testing.assert_close(ours[offset : offset + size], alone, atol=1e-5, rtol=1e-4)
            offset += size

    for model in (packed_model, sdpa_model):
        CausalLMObjective(model)(**tensors).backward()
    for (name, ours_p), (_, theirs_p) in zip(
        packed_model.named_parameters(), sdpa_model.named_parameters(), strict=True
    ):
        torch.testing.assert_close(ours_p.grad, theirs_p.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_masks_and_caches_fall_back_to_sdpa(tiny_model_dir: Path, tokenizer: Any) -> None:
    packed_model = load(tiny_model_dir, attention.NAME)
    sdpa_model = load(tiny_model_dir, "sdpa")
    tensors = to_tensors(pad(examples(tokenizer), pad_id=tokenizer.pad_token_id), CPU)
    inputs = {"input_ids": tensors["input_ids"], "attention_mask": tensors["attention_mask"]}
    with torch.no_grad():
        ours = packed_model(**inputs, use_cache=False).logits
        theirs = sdpa_model(**inputs, use_cache=False).logits
    real = tensors["attention_mask"].bool()
    torch.testing.assert_close(ours[real], theirs[real])
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Is there a data cap?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    assert torch.equal(
        packed_model.generate(**prompt, max_new_tokens=8, do_sample=False),
        sdpa_model.generate(**prompt, max_new_tokens=8, do_sample=False),
    )


def test_no_mask_is_built_for_packed_input() -> None:
    assert attention.packed_mask(batch_size=1, q_length=4096, kv_length=4096) is None
    padded = attention.packed_mask(
        batch_size=1, q_length=3, kv_length=3, attention_mask=torch.tensor([[1, 1, 0]])
    )
    assert padded is not None and padded.shape == (1, 1, 3, 3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_flash_varlen_matches_sdpa_on_cuda(tiny_model_dir: Path, tokenizer: Any) -> None:
    device = torch.device("cuda")
    packed_model = load(tiny_model_dir, attention.NAME).to(device, torch.bfloat16)
    sdpa_model = load(tiny_model_dir, "sdpa").to(device, torch.bfloat16)
    tensors = to_tensors(pack(examples(tokenizer), capacity=4096, pad_id=0), device)
    losses = []
    for model in (packed_model, sdpa_model):
        loss = CausalLMObjective(model)(**tensors)
        loss.backward()
        losses.append(loss.detach().float())
    torch.testing.assert_close(losses[0], losses[1], atol=0.05, rtol=0.01)
    grad_a = torch.cat([p.grad.float().flatten() for p in packed_model.parameters()])
    grad_b = torch.cat([p.grad.float().flatten() for p in sdpa_model.parameters()])
    assert torch.nn.functional.cosine_similarity(grad_a, grad_b, dim=0) > 0.99
