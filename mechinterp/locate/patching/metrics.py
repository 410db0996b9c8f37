"""Patching metrics (bits), measured on the sentence that is run, always on its target region.

* ``surprisal``: surprisal of the disambiguating word, the sum over its tokens of ``-log2 p(token | prefix)``.
* ``logprob_diff``: ``log2 P(disambiguating word | prefix) - log2 P(alternative | prefix)``, where the
  alternative is a one-token continuation consistent with the other (preferred, garden-path) reading
  (defaults per construction in :data:`DEFAULT_ALTERNATIVES`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.locate.hooks import base_model

if TYPE_CHECKING:
    from mechinterp.models import Model

MetricName = Literal["surprisal", "logprob_diff"]
LN2 = math.log(2.0)

#: One-token continuations consistent with the preferred (garden-path) reading, per construction.
DEFAULT_ALTERNATIVES: dict[str, str] = {"NP/Z": ",", "NP/S": ".", "MV/RR": "."}


@dataclass(frozen=True)
class MetricSpec:
    """What the metric reads from one base sentence: the target tokens and, for logprob_diff, the
    alternative token at the target's onset."""

    name: MetricName
    targets: tuple[int, ...]  # token positions scored
    target_ids: tuple[int, ...]
    alt_id: int | None = None

    @property
    def reads(self) -> list[int]:
        """Positions whose next-token distribution is needed."""
        return [t - 1 for t in self.targets]

    @property
    def length(self) -> int:
        """Tokens the forward pass needs (everything after the last read position is irrelevant)."""
        return self.targets[-1]

    def from_logprobs(self, logp: Float[Tensor, "batch reads vocab"]) -> Float[Tensor, "batch"]:
        idx = torch.tensor(self.target_ids, device=logp.device)
        tgt = logp.gather(-1, idx[None, :, None].expand(logp.shape[0], -1, 1)).squeeze(-1).sum(-1)
        if self.name == "surprisal":
            return -tgt / LN2
        return (tgt - logp[:, 0, self.alt_id]) / LN2


def lm_logits(model: "Model", hidden: Float[Tensor, "... d"]) -> Float[Tensor, "... vocab"]:
    """The LM head on final (already normed) hidden states, with the model's logit soft-capping if any."""
    out = model.hf.get_output_embeddings()(hidden)
    cap = getattr(model.hf.config, "final_logit_softcapping", None)
    if cap:
        out = torch.tanh(out / cap) * cap
    return out


def metric_from_hidden(model: "Model", hidden: Float[Tensor, "batch seq d"], spec: MetricSpec) -> Float[Tensor, "batch"]:
    lg = lm_logits(model, hidden[:, spec.reads]).float()
    return spec.from_logprobs(torch.log_softmax(lg, -1))


def metric_from_logits(logits_: Float[Tensor, "batch seq vocab"], spec: MetricSpec) -> Float[Tensor, "batch"]:
    return spec.from_logprobs(torch.log_softmax(logits_[:, spec.reads].float(), -1))


@torch.no_grad()
def unpatched_metric(model: "Model", ids: Sequence[int], spec: MetricSpec) -> float:
    """The metric of a sentence run without any patch (only up to the last token the metric reads)."""
    x = torch.tensor([list(ids[: spec.length])], device=model.device)
    hidden = base_model(model)(input_ids=x, use_cache=False).last_hidden_state
    return float(metric_from_hidden(model, hidden, spec)[0])
