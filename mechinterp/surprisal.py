"""Word- and region-level surprisal (bits) and next-word entropy from any loaded model.

Definitions (see :mod:`mechinterp.tokenization` for how words map to tokens):

* **Word surprisal** is ``-log2 P(word | preceding words)``, the sum of the word's subword
  surprisals. Every sentence starts with one beginning-of-text token, so the first word gets
  ``-log2 P(word_1 | BOS)``; it is a real number, not left out, but it is not comparable to the others
  (it has no sentence context), and garden-path analyses never use it.
* **Whitespace** (``whitespace=``): with ``"leading"`` (the default, and what the SAP Benchmark's GPT-2
  surprisals use) a word's tokens carry the whitespace that begins it (``▁deer``), so P(word) is the
  probability of " deer". With ``"trailing"`` the correction of Pimentel & Meister (2024; also Oh &
  Schuler 2024) is applied: P(word) = P(tokens) · P(next token begins a word | ..., word) /
  P(token begins a word | ...), i.e. the word owns the whitespace that ends it, and probability mass of
  continuations like "deer" → "deers" is not credited to "deer". The first word has no denominator.
  Tokens that begin a word are those whose piece starts with a whitespace marker, plus end-of-text tokens.
* **Entropy** is the entropy (bits) of the next-token distribution at the word's onset, i.e. of the
  distribution the word's first subword is drawn from (the exact next-*word* entropy is intractable).

Results are the same whether sentences are scored alone or batched, padded on either side, and on every
backend (``tests/test_surprisal.py`` checks all of these).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import numpy as np
import pandas as pd
import torch

from mechinterp.forward import Batch, PaddingSide, batches, logits, pad_batch
from mechinterp.models import Backend, Model
from mechinterp.progress import progress
from mechinterp.stimuli.types import Condition, Item, Suite
from mechinterp.tokenization import TokenizedText, tokenize_condition, tokenize_text

LOG2E = 1.0 / math.log(2.0)
WORD_COLUMNS = [
    "suite", "construction", "item", "condition", "ambiguous", "region", "region_name", "word_index",
    "word", "n_tokens", "surprisal_bits", "entropy_bits",
]


@dataclass(frozen=True)
class SurprisalConfig:
    backend: Backend = "hf"
    batch_size: int = 16
    padding_side: PaddingSide = "right"
    whitespace: Literal["leading", "trailing"] = "leading"


@dataclass(frozen=True)
class TokenScores:
    """Per-token scores of one sequence (index 0 is BOS and holds NaN)."""

    logprob: np.ndarray  # natural log p(token_t | tokens_<t)
    entropy: np.ndarray  # nats, of the distribution that token_t is drawn from
    bow_logprob: np.ndarray | None  # log P(token at t begins a word | tokens_<t), t = 0..len (len+1 values)


_WS_MARKERS = ("▁", "Ġ", "Ċ", "ĉ", " ", "\n", "\t", "<0x0A>", "<0x20>", "<0x09>")


@functools.lru_cache(maxsize=8)
def _bow_mask(tokenizer) -> torch.Tensor:
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    mask = torch.tensor([bool(p) and str(p).startswith(_WS_MARKERS) for p in pieces])
    for tid in (tokenizer.eos_token_id, getattr(tokenizer, "eot_token_id", None)):
        if tid is not None:
            mask[int(tid)] = True
    return mask


def _logz_and_entropy(lg: torch.Tensor, rows_per_chunk: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """log Z and the entropy (nats) of softmax(lg) over the last axis, with one exp over the vocabulary
    (it dominates the cost beyond the forward pass for a 262k-token vocabulary). Positions are processed a
    few at a time so that each chunk's temporaries stay in the CPU cache (3x faster than one pass over a
    [batch, seq, 262k] tensor, and no second tensor of that size)."""
    flat = lg.reshape(-1, lg.shape[-1])
    if lg.device.type != "cpu":  # an accelerator prefers one large kernel
        rows_per_chunk = max(1, flat.shape[0])
    lse = torch.empty(flat.shape[0], dtype=lg.dtype, device=lg.device)
    ent = torch.empty_like(lse)
    for i in range(0, flat.shape[0], rows_per_chunk):
        x = flat[i : i + rows_per_chunk]
        mx = x.amax(-1, keepdim=True)
        e = x - mx
        e.exp_()
        z = e.sum(-1)
        lz = z.log() + mx[:, 0]
        lse[i : i + rows_per_chunk] = lz
        ent[i : i + rows_per_chunk] = lz - torch.linalg.vecdot(e, x) / z
    return lse.reshape(lg.shape[:-1]), ent.reshape(lg.shape[:-1])


def batch_token_scores(lg: torch.Tensor, batch: Batch, bow: torch.Tensor | None = None) -> list[TokenScores]:
    """The :class:`TokenScores` of each row of one padded batch from its logits.

    Args:
        lg: float32 next-token logits ``[batch, seq, vocab]`` of ``batch`` (e.g. :func:`mechinterp.forward.logits`).
        batch: the padded batch the logits belong to.
        bow: the tokenizer's beginning-of-word mask (:func:`bow_mask`) for the ``"trailing"`` whitespace
            correction, or None.

    Returns:
        One :class:`TokenScores` per row of ``batch``, in batch order.

    Example:
        >>> b = pad_batch([tt.input_ids], model.pad_token_id, "right", model.device)
        >>> (ts,) = batch_token_scores(logits(model, b), b)
    """
    lse, ent = _logz_and_entropy(lg)
    tgt = lg[:, :-1].gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1) - lse[:, :-1]
    bow_all = None
    if bow is not None:
        m = bow[: lg.shape[-1]].to(lg.device)
        bow_all = (torch.logsumexp(lg[..., m], dim=-1) - lse).double().cpu().numpy()
    tgt_np, ent_np = tgt.double().cpu().numpy(), ent.double().cpu().numpy()
    out = []
    for j in range(len(batch.lengths)):
        a, n = batch.offsets[j], batch.lengths[j]
        bow_lp = None
        if bow_all is not None:  # index t: P(token t begins a word | tokens < t), for t = 1..n
            bow_lp = np.concatenate([[np.nan], bow_all[j, a : a + n]])
        out.append(TokenScores(
            logprob=np.concatenate([[np.nan], tgt_np[j, a : a + n - 1]]),
            entropy=np.concatenate([[np.nan], ent_np[j, a : a + n - 1]]),
            bow_logprob=bow_lp,
        ))
    return out


def bow_mask(model: Model, config: SurprisalConfig) -> torch.Tensor | None:
    """The beginning-of-word token mask that ``config``'s whitespace handling needs (None for ``"leading"``)."""
    return _bow_mask(model.tokenizer) if config.whitespace == "trailing" else None


@torch.no_grad()
def token_scores(
    model: Model,
    seqs: Sequence[TokenizedText],
    config: SurprisalConfig = SurprisalConfig(),
    on_batch: Callable[[int], None] | None = None,
) -> list[TokenScores]:
    """Score every token of every sequence. Sequences are sorted by length into batches (less padding);
    ``on_batch(n)`` is called after each batch of ``n`` sequences (for progress bars)."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out: list[TokenScores | None] = [None] * len(seqs)
    bow = bow_mask(model, config)
    for idx in batches(len(order), config.batch_size):
        rows = [order[i] for i in idx]
        b = pad_batch([seqs[r].input_ids for r in rows], model.pad_token_id, config.padding_side, model.device)
        for r, ts in zip(rows, batch_token_scores(logits(model, b, config.backend), b, bow)):
            out[r] = ts
        if on_batch is not None:
            on_batch(len(rows))
    return out  # pyright: ignore[reportReturnType]  # every slot is filled by the loop above


def word_scores(tt: TokenizedText, ts: TokenScores, whitespace: str = "leading") -> tuple[np.ndarray, np.ndarray]:
    """(surprisal_bits, entropy_bits) for each word of one sequence."""
    surp = np.empty(len(tt.words))
    ent = np.empty(len(tt.words))
    for w, (a, b) in enumerate(tt.word_spans):
        lp = ts.logprob[a:b].sum()
        if whitespace == "trailing":
            assert ts.bow_logprob is not None
            lp += ts.bow_logprob[b]
            if w > 0:
                lp -= ts.bow_logprob[a]
        surp[w] = -lp * LOG2E
        ent[w] = ts.entropy[a] * LOG2E
    return surp, ent


WordScores = tuple[np.ndarray, np.ndarray]  # per word: surprisal (bits), entropy at its onset (bits)


def suite_sequences(model: Model, suite: Suite) -> tuple[list[tuple[Item, Condition]], list[TokenizedText]]:
    """Every (item, condition) of ``suite`` in order, and its tokenized sentence."""
    keys, tts = [], []
    for it in suite.items:
        for c in it.conditions:
            keys.append((it, c))
            tts.append(tokenize_condition(model, c))
    return keys, tts


def suite_word_table(suite: Suite, keys: Sequence[tuple[Item, Condition]], tts: Sequence[TokenizedText],
                     scores: Sequence[WordScores]) -> pd.DataFrame:
    """The per-word table (columns :data:`WORD_COLUMNS`) of a suite's sentences from their word scores; the
    one builder for every way of scoring words (full context, truncated context, under interventions)."""
    rows = []
    for (it, c), tt, (surp, ent) in zip(keys, tts, scores):
        for w, word in enumerate(tt.words):
            a, b = tt.word_spans[w]
            reg = tt.word_regions[w]
            rows.append({
                "suite": suite.name, "construction": suite.construction_of(it), "item": it.number,
                "condition": c.name, "ambiguous": c.ambiguous, "region": reg,
                "region_name": suite.region_meta.get(reg, str(reg)), "word_index": w, "word": word,
                "n_tokens": b - a, "surprisal_bits": surp[w], "entropy_bits": ent[w],
            })
    return pd.DataFrame(rows, columns=WORD_COLUMNS)


def sentence_word_table(tts: Sequence[TokenizedText], scores: Sequence[WordScores]) -> pd.DataFrame:
    """The per-word table of free sentences: one row per sentence and word."""
    rows = []
    for s, (tt, (surp, ent)) in enumerate(zip(tts, scores)):
        for w, word in enumerate(tt.words):
            a, b = tt.word_spans[w]
            rows.append({"sentence": s, "word_index": w, "word": word, "n_tokens": b - a,
                         "surprisal_bits": surp[w], "entropy_bits": ent[w]})
    return pd.DataFrame(rows)


def sentence_surprisal(
    model: Model, texts: Sequence[str], config: SurprisalConfig = SurprisalConfig()
) -> pd.DataFrame:
    """Per-word surprisal of free sentences.

    Args:
        model: the model.
        texts: sentences (words are whitespace-separated).
        config: see :class:`SurprisalConfig`.

    Returns:
        One row per sentence and word (``surprisal_bits``, ``entropy_bits``).

    Example:
        >>> import mechinterp as mi
        >>> model = mi.load_model("gemma3-270m")
        >>> words = mi.sentence_surprisal(model, ["While the man hunted the deer ran into the woods."])
        >>> words[["word", "surprisal_bits"]]
    """
    tts = [tokenize_text(model.tokenizer, model.bos_token_id, t) for t in texts]
    scores = token_scores(model, tts, config)
    return sentence_word_table(tts, [word_scores(tt, ts, config.whitespace) for tt, ts in zip(tts, scores)])


def suite_surprisal(
    model: Model, suite: Suite, config: SurprisalConfig = SurprisalConfig(), show_progress: bool = True
) -> pd.DataFrame:
    """Per-word surprisal and entropy (bits) of every condition of ``suite``.

    Args:
        model: the model.
        suite: the suite.
        config: batching, backend and whitespace handling (:class:`SurprisalConfig`).
        show_progress: print a progress bar.

    Returns:
        One row per item × condition × word (columns :data:`WORD_COLUMNS`).

    Example:
        >>> import mechinterp as mi
        >>> model = mi.load_model("gemma3-270m")
        >>> words = mi.suite_surprisal(model, mi.load_suite("npz").head(4))
        >>> words.groupby(["item", "condition"])["surprisal_bits"].sum()
    """
    keys, tts = suite_sequences(model, suite)
    with progress(None, desc=f"surprisal {suite.name}", disable=not show_progress, total=len(tts)) as bar:  # pyright: ignore[reportGeneralTypeIssues]  # progress() returns a tqdm bar, which is a context manager
        scores = token_scores(model, tts, config, on_batch=bar.update)
    return suite_word_table(suite, keys, tts, [word_scores(tt, ts, config.whitespace) for tt, ts in zip(tts, scores)])


def region_surprisal(words: pd.DataFrame) -> pd.DataFrame:
    """Sum word surprisal within regions: one row per item × condition × region."""
    keys = ["suite", "construction", "item", "condition", "region", "region_name"]
    return (
        words.groupby(keys, sort=False, dropna=False)
        .agg(surprisal_bits=("surprisal_bits", "sum"), n_words=("word", "size"), n_tokens=("n_tokens", "sum"))
        .reset_index()
    )
