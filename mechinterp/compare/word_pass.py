"""One forward pass per batch that gives, for every word of every sequence, everything the word predictors
read from the model: the token scores behind surprisal and entropy, activations at each word's last token, and
how much chosen heads attend from each word's first token to a given span of key tokens.

Sequences are sorted by length and right-padded (as :func:`mechinterp.surprisal.token_scores` does), the
activations are read with :func:`mechinterp.locate.hooks.read_sites` and the attention probabilities with
:func:`mechinterp.locate.attention.read_attention`, both context managers entered around the one ``model.hf``
forward pass of each batch, so no hook outlives its batch (also when the pass raises).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from mechinterp.errors import ConfigError
from mechinterp.forward import batches, logits, pad_batch
from mechinterp.locate.attention import Head, read_attention
from mechinterp.locate.hooks import read_sites
from mechinterp.locate.sites import Site
from mechinterp.surprisal import TokenScores, batch_token_scores
from mechinterp.tokenization import TokenizedText

if TYPE_CHECKING:
    from mechinterp.models import Model


@dataclass(frozen=True)
class WordStates:
    """What one forward pass gave for one sequence.

    Attributes:
        scores: per-token log-probabilities and entropies (:class:`~mechinterp.surprisal.TokenScores`).
        states: site -> float32 ``[n_words, d_model]``, the activation at each word's last token.
        routing: head -> ``[n_words]``, attention from each word's first token summed over the key span
            (NaN for every word when the sequence has no key span).
    """

    scores: TokenScores
    states: dict[Site, np.ndarray]
    routing: dict[Head, np.ndarray]


@torch.no_grad()
def word_pass(model: "Model", seqs: Sequence[TokenizedText], sites: Sequence[Site] = (), heads: Sequence[Head] = (),
              key_spans: Sequence[range | None] | None = None, batch_size: int = 16,
              bow: torch.Tensor | None = None) -> list[WordStates]:
    """Run every sequence once and read its words (see the module docstring).

    Args:
        model: the model (HF backend).
        seqs: tokenized sentences (:mod:`mechinterp.tokenization`).
        sites: unpositioned sites whose activations to keep at each word's last token.
        heads: heads whose attention to the key span to measure.
        key_spans: for each sequence, the token indices attended to (e.g. its ambiguous region); None or an
            empty range gives NaN.
        batch_size: sequences per forward pass.
        bow: beginning-of-word mask for the trailing-whitespace correction (:func:`~mechinterp.surprisal.bow_mask`).

    Returns:
        One :class:`WordStates` per sequence, in order.

    Example:
        >>> tts = [tokenize_text(model.tokenizer, model.bos_token_id, "While the man hunted the deer ran.")]
        >>> ws = word_pass(model, tts, [Site(1, "resid_post")], [Head(1, 0)], [range(5, 7)])
        >>> ws[0].states[Site(1, "resid_post")].shape  # [n_words, d_model]
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    spans = list(key_spans) if key_spans is not None else [None] * len(seqs)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out: list[WordStates | None] = [None] * len(seqs)
    for idx in batches(len(order), batch_size):
        rows = [order[i] for i in idx]
        b = pad_batch([seqs[r].input_ids for r in rows], model.pad_token_id, "right", model.device)
        with ExitStack() as stack:
            caps = stack.enter_context(read_sites(model, list(sites))) if sites else {}
            att = stack.enter_context(read_attention(model, heads)) if heads else {}
            lg = logits(model, b, "hf")
        scores = batch_token_scores(lg, b, bow)
        del lg
        for j, r in enumerate(rows):
            tt, off = seqs[r], b.offsets[j]
            last = torch.tensor([off + e - 1 for _, e in tt.word_spans], device=model.device)
            first = [off + s for s, _ in tt.word_spans]
            states = {s: caps[s].value[j, last].float().cpu().numpy() for s in sites}
            routing = {}
            span = spans[r]
            for h in heads:
                if span is None or len(span) == 0:
                    routing[h] = np.full(len(tt.words), np.nan)
                    continue
                w = att[h][-1][j]  # [query, key]
                keys = torch.arange(span.start, span.stop, device=w.device) + off
                routing[h] = w[torch.tensor(first, device=w.device)][:, keys].sum(-1).double().cpu().numpy()
            out[r] = WordStates(scores[j], states, routing)
    return out  # pyright: ignore[reportReturnType]  # every slot is filled by the loop above
