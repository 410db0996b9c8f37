"""Batched forward passes on any backend, with padding that never changes a sequence's result.

A batch is padded on the right (default) or the left with an attention mask; position ids are derived
from the mask so that a left-padded row's real tokens keep positions 0, 1, 2, ... (the bug nnsight issue 672
describes for GPT-2 is exactly a missing position correction). Right padding is exact for causal models by
construction: pads come after every real token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Literal, Sequence

import torch
from jaxtyping import Float, Int

from mechinterp.models import Backend, Model

PaddingSide = Literal["right", "left"]


@dataclass(frozen=True)
class Batch:
    input_ids: Int[torch.Tensor, "batch seq"]
    attention_mask: Int[torch.Tensor, "batch seq"]
    position_ids: Int[torch.Tensor, "batch seq"]
    offsets: tuple[int, ...]  # index in the padded row of each sequence's token 0
    lengths: tuple[int, ...]

    def row_slice(self, i: int) -> slice:
        return slice(self.offsets[i], self.offsets[i] + self.lengths[i])


def pad_batch(
    seqs: Sequence[Sequence[int]], pad_id: int, side: PaddingSide = "right", device: str | torch.device = "cpu"
) -> Batch:
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    offsets = []
    for i, s in enumerate(seqs):
        off = 0 if side == "right" else n - len(s)
        ids[i, off : off + len(s)] = torch.tensor(list(s), dtype=torch.long)
        mask[i, off : off + len(s)] = 1
        offsets.append(off)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return Batch(ids.to(device), mask.to(device), pos.to(device), tuple(offsets), tuple(len(s) for s in seqs))


def batches(n: int, batch_size: int) -> Iterator[range]:
    for start in range(0, n, batch_size):
        yield range(start, min(n, start + batch_size))


@torch.no_grad()
def logits(model: Model, batch: Batch, backend: Backend = "hf") -> Float[torch.Tensor, "batch seq vocab"]:
    """Next-token logits for a padded batch on the chosen backend (all three share one set of weights), in
    float32 whatever the model's dtype (so every log-softmax and log-sum-exp downstream is float32)."""
    kw = dict(attention_mask=batch.attention_mask, position_ids=batch.position_ids)
    if backend == "hf":
        return model.hf(input_ids=batch.input_ids, use_cache=False, **kw).logits.float()
    if backend == "transformer_lens":
        return model.tl(batch.input_ids, return_type="logits", use_cache=False, **kw).float()
    if backend == "nnsight":
        box: dict[str, torch.Tensor] = {}
        with model.nnsight.trace({"input_ids": batch.input_ids, **kw}, use_cache=False):
            box["logits"] = model.nnsight.output.logits.save()
        return box["logits"].float()
    raise ValueError(f"unknown backend {backend!r}: choose one of hf, transformer_lens, nnsight")


def next_token_stats(
    logits_: Float[torch.Tensor, "batch seq vocab"], input_ids: Int[torch.Tensor, "batch seq"]
) -> tuple[Float[torch.Tensor, "batch seq"], Float[torch.Tensor, "batch seq"]]:
    """For each position t >= 1: log p(token_t | tokens_<t) (nats), and the entropy (nats) of that
    next-token distribution. Position 0 gets NaN (nothing predicts the first token)."""
    lg = logits_[:, :-1].float()
    lse = torch.logsumexp(lg, dim=-1)
    tgt = lg.gather(-1, input_ids[:, 1:, None]).squeeze(-1) - lse
    p = torch.exp(lg - lse[..., None])
    ent = lse - (p * lg).sum(-1)
    nan = torch.full_like(tgt[:, :1], float("nan"))
    return torch.cat([nan, tgt], 1), torch.cat([nan, ent], 1)
