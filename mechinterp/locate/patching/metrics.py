"""Patching metrics, measured on the sentence that is run, always on its target (region or word).

A metric is any callable ``metric(logprobs, spec) -> Tensor[batch]`` (as in TransformerLens, one number per
row of the batch): ``logprobs`` are the log-softmax next-token distributions ``[batch, reads, vocab]`` at the
positions that predict the target's tokens (``spec.reads``; the first one predicts its first token), ``spec``
the :class:`MetricSpec` (``spec.target_ids``: the target's token ids). The named ones:

* :func:`surprisal` (``"surprisal"``): surprisal of the target (the disambiguating word), the sum over its
  tokens of ``-log2 p(token | prefix)``, bits.
* :func:`logprob_diff` (``"logprob_diff"``): ``log2 P(target | prefix) - log2 P(alternative | prefix)``, where
  the alternative is a one-token continuation consistent with the other (preferred, garden-path) reading
  (defaults per construction in :data:`DEFAULT_ALTERNATIVES`), bits.
* :func:`logit_diff` ``(good, bad)``: the logit difference of two one-token words in place of the target.
* :func:`surprisal_of` ``(word)``: the surprisal (bits) of a one-token word in place of the target.

A metric with a ``bind(tokenizer)`` method (``logit_diff``, ``surprisal_of``) is bound to the model's tokenizer
before use.

Example:
    >>> import mechinterp as mi
    >>> model, suite = mi.load_model("gemma3-270m"), mi.load_suite("npz").head(2)
    >>> site = "resid_pre@3:region=np/last"
    >>> table = mi.patch(model, suite, site, metric=mi.metrics.logit_diff("ran", ","))
    >>> def top_logprob(logprobs, spec):  # any callable: one number per row of the batch
    ...     return logprobs[:, 0].max(dim=-1).values
    >>> table = mi.patch(model, suite, site, metric=top_logprob)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.errors import ConfigError
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
    fn: "MetricFn | None" = None  # a custom metric (already bound); None = the named metric ``name``

    @property
    def reads(self) -> list[int]:
        """Positions whose next-token distribution is needed."""
        return [t - 1 for t in self.targets]

    @property
    def length(self) -> int:
        """Tokens the forward pass needs (everything after the last read position is irrelevant)."""
        return self.targets[-1]

    def from_logprobs(self, logp: Float[Tensor, "batch reads vocab"]) -> Float[Tensor, "batch"]:
        fn = self.fn if self.fn is not None else NAMED[self.name]
        return fn(logp, self)


MetricFn = Callable[[Float[Tensor, "batch reads vocab"], MetricSpec], Float[Tensor, "batch"]]


def _target_logprob(logp: Tensor, spec: MetricSpec) -> Tensor:
    idx = torch.tensor(spec.target_ids, device=logp.device)
    return logp.gather(-1, idx[None, :, None].expand(logp.shape[0], -1, 1)).squeeze(-1).sum(-1)


def surprisal(logp: Float[Tensor, "batch reads vocab"], spec: MetricSpec) -> Float[Tensor, "batch"]:
    """Surprisal of the target in bits: ``-sum_t log2 p(target token t | prefix)``.

    Args:
        logp: log-softmax distributions at ``spec.reads``.
        spec: the target (``spec.target_ids``).

    Returns:
        One value per row of the batch.

    Example:
        >>> mi.patch(model, suite, "resid_pre@*:region=ambiguous/last", metric=mi.metrics.surprisal)
    """
    return -_target_logprob(logp, spec) / LN2


def logprob_diff(logp: Float[Tensor, "batch reads vocab"], spec: MetricSpec) -> Float[Tensor, "batch"]:
    """``log2 P(target | prefix) - log2 P(alternative | prefix)`` in bits (``spec.alt_id``: the alternative).

    Args:
        logp: log-softmax distributions at ``spec.reads``.
        spec: the target and the alternative token (set from ``PatchConfig.alternative`` or
            :data:`DEFAULT_ALTERNATIVES`).

    Returns:
        One value per row of the batch.

    Example:
        >>> mi.patch(model, suite, sites, metric=mi.metrics.logprob_diff)
    """
    if spec.alt_id is None:
        raise ConfigError("logprob_diff needs an alternative continuation token (spec.alt_id)")
    return (_target_logprob(logp, spec) - logp[:, 0, spec.alt_id]) / LN2


#: The named metrics, by the name :class:`~mechinterp.locate.patching.plan.PatchConfig` and the CLI use.
NAMED: dict[str, MetricFn] = {"surprisal": surprisal, "logprob_diff": logprob_diff}


def one_token(tokenizer: Any, word: str) -> int:
    """The id of ``word`` as one token (a leading space is added unless the word starts with punctuation)."""
    text = word if word[:1].isspace() or not word[:1].isalnum() else " " + word
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ConfigError(f"{word!r} is {len(ids)} tokens for this tokenizer: a word metric needs a one-token word")
    return int(ids[0])


@dataclass(frozen=True)
class logit_diff:  # noqa: N801  (a metric factory, used like a function: mi.metrics.logit_diff("ran", ","))
    """The metric ``logit[good] - logit[bad]`` at the position where the target starts (natural-log units: a
    logit difference equals the log-probability difference), two one-token words.

    Args:
        good: the word whose logit counts positively (e.g. the disambiguating word, ``"ran"``).
        bad: the word it is compared with (e.g. ``","``, the garden-path continuation).

    Returns:
        A metric callable ``metric(logprobs, spec) -> Tensor[batch]`` (bound to a tokenizer by the patcher).

    Example:
        >>> mi.patch_pair(model, "While the man hunted, the deer ran", "While the man hunted the deer ran",
        ...               [mi.Site(3, "resid_pre", mi.TokenPos(5))], metric=mi.metrics.logit_diff("ran", ","))
    """

    good: str
    bad: str

    @property
    def __name__(self) -> str:
        return f"logit_diff({self.good!r},{self.bad!r})"

    def bind(self, tokenizer: Any) -> MetricFn:
        g, b = one_token(tokenizer, self.good), one_token(tokenizer, self.bad)

        def metric(logp: Tensor, spec: MetricSpec) -> Tensor:
            return logp[:, 0, g] - logp[:, 0, b]

        metric.__name__ = self.__name__
        return metric


@dataclass(frozen=True)
class surprisal_of:  # noqa: N801  (a metric factory, used like a function)
    """The metric ``-log2 P(word | prefix)``, bits, for a one-token ``word`` in place of the target.

    Args:
        word: the word scored at the position where the target starts.

    Returns:
        A metric callable ``metric(logprobs, spec) -> Tensor[batch]`` (bound to a tokenizer by the patcher).

    Example:
        >>> mi.patch(model, suite, sites, metric=mi.metrics.surprisal_of(","))
    """

    word: str

    @property
    def __name__(self) -> str:
        return f"surprisal_of({self.word!r})"

    def bind(self, tokenizer: Any) -> MetricFn:
        w = one_token(tokenizer, self.word)

        def metric(logp: Tensor, spec: MetricSpec) -> Tensor:
            return -logp[:, 0, w] / LN2

        metric.__name__ = self.__name__
        return metric


def is_callable_metric(metric: Any) -> bool:
    """A metric given as a callable (or a factory's result with ``bind``), not by name."""
    return not isinstance(metric, str) and (callable(metric) or hasattr(metric, "bind"))


def metric_name(metric: Any) -> str:
    """How a metric is named in result tables: its name, or the callable's ``__name__``."""
    return metric if isinstance(metric, str) else str(getattr(metric, "__name__", type(metric).__name__))


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
