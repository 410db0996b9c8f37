"""A memory-limited control: every word scored with only the last ``k`` tokens before it as context (plus
BOS), after Kuribayashi et al. (2022, "Context limitations make neural language models more human-like").

Not a hook: it changes what each word is conditioned on. For a word whose tokens are ``[a, b)`` in a
sequence (BOS at 0), the model reads ``[BOS] + ids[max(1, a - k) : b]`` and the word's surprisal is the sum
of its tokens' surprisals at the end of that window (so the second subword of a word also sees the first,
and the word's own tokens never count against ``k``). With ``k`` at least the sentence length every window
is the full prefix and the result equals ordinary surprisal (tested). Entropy is that of the distribution
the word's first token is drawn from, under the truncated context. Only leading-whitespace word
probabilities are supported (the ``whitespace="leading"`` convention of :mod:`mechinterp.surprisal`).

Windows are left-padded and batched, each distinct window is scored once (the two versions of an item share
most of theirs), the window's last token is not fed (nothing it predicts is needed), and with the plain HF
backend only the logits of the positions that predict the word are computed (``logits_to_keep``), which
matters for Gemma's 262k-token unembedding.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd
import torch

from mechinterp.errors import ConfigError
from mechinterp.forward import logits, pad_batch
from mechinterp.locate.hooks import forward_pre_hook
from mechinterp.progress import progress
from mechinterp.surprisal import (
    SurprisalConfig,
    sentence_word_table,
    suite_sequences,
    suite_word_table,
)
from mechinterp.tokenization import tokenize_text

if TYPE_CHECKING:
    from mechinterp.models import Model
    from mechinterp.stimuli.types import Suite
    from mechinterp.surprisal import SurprisalConfig
    from mechinterp.tokenization import TokenizedText

LOG2E = 1.0 / math.log(2.0)


@dataclass(frozen=True)
class Truncation:
    """Score each word with only the previous ``k`` tokens (and BOS) as context."""

    k: int

    def __post_init__(self) -> None:
        if self.k < 0:
            raise ConfigError(f"truncation needs k >= 0 context tokens, got {self.k}")

    def describe(self) -> dict[str, Any]:
        return {"kind": "truncate", "k": self.k}

    @property
    def label(self) -> str:
        return f"truncate k={self.k}"


def _windows(tt: "TokenizedText", k: int) -> list[tuple[list[int], int]]:
    ids = list(tt.input_ids)
    out = []
    for a, b in tt.word_spans:
        start = max(1, a - k)
        out.append(([ids[0], *ids[start:b]], b - a))
    return out


def _contiguous_input(_module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    """A forward pre-hook: the unembedding's input made contiguous. ``logits_to_keep`` slices the last positions
    of a batch, a strided view, and ``linear`` on a strided 3-d input falls back to a batched matmul against
    the weight expanded per row (for Gemma's 262k-token unembedding, ten times slower on a CPU)."""
    if args and isinstance(args[0], torch.Tensor) and not args[0].is_contiguous():
        return (args[0].contiguous(), *args[1:]), kwargs
    return None


@torch.no_grad()
def _keep_logits(model: "Model", batch, keep: int, backend: str) -> torch.Tensor:
    if backend == "hf":
        head = model.hf.get_output_embeddings()
        try:
            with forward_pre_hook(head, _contiguous_input) if head is not None else nullcontext():
                return model.hf(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                position_ids=batch.position_ids, use_cache=False, logits_to_keep=keep).logits
        except TypeError:  # an architecture without logits_to_keep
            pass

    return logits(model, batch, backend)[:, -keep:]  # pyright: ignore[reportArgumentType]  # backend is validated by logits


def truncated_word_scores(model: "Model", seqs: Sequence["TokenizedText"], k: int,
                          config: "SurprisalConfig | None" = None, batch_size: int = 64,
                          show_progress: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """(surprisal_bits, entropy_bits) per word of each sequence, each word with ``k`` context tokens."""
    config = config or SurprisalConfig()
    if config.whitespace != "leading":
        raise ConfigError("context truncation supports whitespace='leading' word probabilities only")
    where: dict[tuple[tuple[int, ...], int], list[tuple[int, int]]] = {}  # (window, n) -> (seq, word) scored by it
    for s, tt in enumerate(seqs):
        for w, (ids, n) in enumerate(_windows(tt, k)):
            where.setdefault((tuple(ids), n), []).append((s, w))
    jobs = sorted(where, key=lambda job: len(job[0]))  # each distinct window once, shortest first
    surp = [np.full(len(tt.words), np.nan) for tt in seqs]
    ent = [np.full(len(tt.words), np.nan) for tt in seqs]
    starts = list(range(0, len(jobs), batch_size))
    for start in progress(starts, desc=f"truncated surprisal k={k}", disable=not show_progress):
        rows = jobs[start : start + batch_size]
        # the window without its last token: its last n positions predict the word's n tokens
        batch = pad_batch([list(ids[:-1]) for ids, _ in rows], model.pad_token_id, "left", model.device)
        keep = max(n for _, n in rows)
        lg = _keep_logits(model, batch, keep, config.backend).float()
        lse = torch.logsumexp(lg, dim=-1)
        for j, (ids, n) in enumerate(rows):
            pred = torch.arange(keep - n, keep)  # local indices of the positions predicting the word
            tgt = torch.tensor(ids[len(ids) - n :], device=lg.device)
            lp = lg[j, pred].gather(-1, tgt[:, None]).squeeze(-1) - lse[j, pred]
            first = keep - n
            p = torch.softmax(lg[j, first], dim=-1)
            bits = float(-lp.sum().double()) * LOG2E
            h = float((lse[j, first] - (p * lg[j, first]).sum()).double()) * LOG2E
            for s, w in where[(ids, n)]:
                surp[s][w], ent[s][w] = bits, h
    return list(zip(surp, ent))


def truncated_suite_surprisal(model: "Model", suite: "Suite", k: int, config: "SurprisalConfig | None" = None,
                              batch_size: int = 64) -> pd.DataFrame:
    """:func:`mechinterp.surprisal.suite_surprisal` with each word's context cut to ``k`` tokens."""
    keys, tts = suite_sequences(model, suite)
    return suite_word_table(suite, keys, tts, truncated_word_scores(model, tts, k, config, batch_size))


def truncated_sentence_surprisal(model: "Model", texts: Sequence[str], k: int,
                                 config: "SurprisalConfig | None" = None, batch_size: int = 64) -> pd.DataFrame:
    """:func:`mechinterp.surprisal.sentence_surprisal` with each word's context cut to ``k`` tokens."""
    tts = [tokenize_text(model.tokenizer, model.bos_token_id, t) for t in texts]
    return sentence_word_table(tts, truncated_word_scores(model, tts, k, config, batch_size))
