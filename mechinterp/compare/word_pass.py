"""One forward pass per batch that gives, for every word of every sequence, everything the word predictors
read from the model: the token scores behind surprisal and entropy, activations at each word's last token, and
how much chosen heads attend from each word's first token to a given span of key tokens.

Sequences are sorted by length and right-padded (as :func:`mechinterp.surprisal.token_scores` does), the
activations are read with :func:`mechinterp.locate.hooks.read_sites` and the attention probabilities with
:func:`mechinterp.locate.attention.read_attention`, both context managers entered around the one ``model.hf``
forward pass of each batch, so no hook outlives its batch (also when the pass raises).

The same pass also scores continuations after word prefixes (``branches``: the reading estimator's
diagnostic continuations after every word, :mod:`mechinterp.compare.belief`). For a causal model the logits
at a word's last token are the next-token logits after the prefix that ends with that word, so a one-token
continuation, and the first token of a longer one, is read off the sentence's own pass. The later tokens of a
multi-token continuation ``c`` are scored in a second pass over ``c[:-1]`` only, on top of the sentence's
key/value cache with the cache positions after the prefix masked out (position ids continue the prefix).
Continuation contexts are deduplicated: one row per prefix and distinct ``c[:-1]``, and a context that starts
another context of the same prefix is read off that longer row. log P(c | prefix) = sum_j log P(c_j | prefix,
c_<j) is the same chain rule :func:`mechinterp.readings.exact.reading_masses` computes with one padded pass
per prefix; the values agree to float rounding (tests/test_compare_predictors.py).
"""

from __future__ import annotations

import copy
import dataclasses
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch

from mechinterp.errors import ConfigError
from mechinterp.forward import Batch, batches, logits, pad_batch
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
        continuations: (word index, continuation token ids) -> natural-log P(continuation | the sequence up
            to and including that word), for the ``branches`` asked for.
    """

    scores: TokenScores
    states: dict[Site, np.ndarray]
    routing: dict[Head, np.ndarray]
    continuations: dict[tuple[int, tuple[int, ...]], float] = dataclasses.field(default_factory=dict)


Branches = Mapping[int, Sequence[tuple[int, ...]]]  # word index -> continuation token sequences after that word

#: Continuation rows per pass of the multi-token scoring (each carries a copy of its sentence's cache).
BRANCH_ROWS = 64


def context_rows(branches: Branches, ends: Sequence[int]) -> tuple[list[tuple[int, tuple[int, ...]]],
                                                                   dict[tuple[int, tuple[int, ...]], int]]:
    """The rows (prefix end, context) of the multi-token pass and, for every continuation, which row reads it.

    A continuation ``c`` of two tokens or more needs the next-token distributions after ``prefix + c[:j]`` for
    ``j = 1 .. len(c)-1``: a row over the context ``c[:-1]``. Contexts that start a longer context of the same
    prefix share that longer row.
    """
    rows: list[tuple[int, tuple[int, ...]]] = []
    where: dict[tuple[int, tuple[int, ...]], int] = {}
    for w, conts in branches.items():
        ctxs = sorted({c[:-1] for c in conts if len(c) > 1}, key=len, reverse=True)
        mine: list[int] = []
        for ctx in ctxs:
            host = next((r for r in mine if rows[r][1][: len(ctx)] == ctx), None)
            if host is None:
                host = len(rows)
                rows.append((ends[w], ctx))
                mine.append(host)
            for c in conts:
                if len(c) > 1 and c[:-1] == ctx:
                    where[(w, c)] = host
    return rows, where


def _score_branches(model: "Model", b: Batch, lg: torch.Tensor, cache: Any, rows: Sequence[int],
                    seqs: Sequence[TokenizedText], branches: Sequence[Branches | None]
                    ) -> list[dict[tuple[int, tuple[int, ...]], float]]:
    """log P(continuation | prefix) for the branches of every row of one batch (see the module docstring)."""
    out: list[dict[tuple[int, tuple[int, ...]], float]] = []
    multi: list[tuple[int, int, tuple[int, ...]]] = []  # (batch row, prefix end, context)
    readers: dict[int, list[tuple[int, tuple[int, tuple[int, ...]]]]] = {}  # multi row -> (batch row, (w, c))
    for j, r in enumerate(rows):
        br = branches[r] or {}
        tt, off = seqs[r], b.offsets[j]
        ends = [e for _, e in tt.word_spans]
        got: dict[tuple[int, tuple[int, ...]], float] = {}
        words = sorted(br)
        if words:
            pos = torch.tensor([off + ends[w] - 1 for w in words], device=lg.device)
            lp = torch.log_softmax(lg[j, pos], dim=-1)
            for k, w in enumerate(words):
                for c in br[w]:
                    got[(w, c)] = float(lp[k, c[0]])
        ctx_rows, where = context_rows(br, ends)
        for wc, host in where.items():
            readers.setdefault(len(multi) + host, []).append((j, wc))
        multi += [(j, end, ctx) for end, ctx in ctx_rows]
        out.append(got)
    n_cache = b.input_ids.shape[1]
    for chunk in batches(len(multi), BRANCH_ROWS):
        sel = [multi[m] for m in chunk]
        width = max(len(ctx) for _, _, ctx in sel)
        ids = torch.full((len(sel), width), model.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(sel), n_cache + width), dtype=torch.long)
        pos = torch.zeros((len(sel), width), dtype=torch.long)
        for i, (_, end, ctx) in enumerate(sel):
            ids[i, : len(ctx)] = torch.tensor(ctx)
            mask[i, :end] = 1
            mask[i, n_cache : n_cache + len(ctx)] = 1
            pos[i] = end + torch.arange(width)
        kv = copy.deepcopy(cache)  # the pass appends the rows' keys and values to the cache it is given
        kv.batch_select_indices(torch.tensor([j for j, _, _ in sel], device=b.input_ids.device))
        lp2 = torch.log_softmax(model.hf(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                                         position_ids=pos.to(model.device), past_key_values=kv,
                                         use_cache=True).logits.float(), dim=-1)
        del kv
        for i, m in enumerate(chunk):
            for j, (w, c) in readers.get(m, []):
                out[j][(w, c)] += float(sum(lp2[i, t - 1, c[t]] for t in range(1, len(c))))
    return out


@torch.no_grad()
def word_pass(model: "Model", seqs: Sequence[TokenizedText], sites: Sequence[Site] = (), heads: Sequence[Head] = (),
              key_spans: Sequence[range | None] | None = None, batch_size: int = 16,
              bow: torch.Tensor | None = None, branches: Sequence[Branches | None] | None = None
              ) -> list[WordStates]:
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
        branches: for each sequence, word index -> continuation token sequences to score after that word
            (None: none); the results land in :attr:`WordStates.continuations`.

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
    branch_list = list(branches) if branches is not None else [None] * len(seqs)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out: list[WordStates | None] = [None] * len(seqs)
    for idx in batches(len(order), batch_size):
        rows = [order[i] for i in idx]
        b = pad_batch([seqs[r].input_ids for r in rows], model.pad_token_id, "right", model.device)
        branched = any(branch_list[r] for r in rows)
        with ExitStack() as stack:
            caps = stack.enter_context(read_sites(model, list(sites))) if sites else {}
            att = stack.enter_context(read_attention(model, heads)) if heads else {}
            if branched:
                res = model.hf(input_ids=b.input_ids, attention_mask=b.attention_mask, position_ids=b.position_ids,
                               use_cache=True)
                lg, cache = res.logits.float(), res.past_key_values
            else:
                lg, cache = logits(model, b, "hf"), None
        scores = batch_token_scores(lg, b, bow)
        conts = _score_branches(model, b, lg, cache, rows, seqs, branch_list) if branched else [{} for _ in rows]
        del lg, cache
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
                if not att[h]:
                    raise ConfigError(f"no attention weights of {h} were recorded: the model's attention modules "
                                      "are wrapped (a TransformerLens bridge was built over this model); read routing "
                                      "on a copy of its own: load_model(..., cached=False)")
                w = att[h][-1][j]  # [query, key]
                keys = torch.arange(span.start, span.stop, device=w.device) + off
                routing[h] = w[torch.tensor(first, device=w.device)][:, keys].sum(-1).double().cpu().numpy()
            out[r] = WordStates(scores[j], states, routing, conts[j])
    return out  # pyright: ignore[reportReturnType]  # every slot is filled by the loop above
