"""One site's activations over corpus documents, every token but BOS, remembering where each came from.

The model runs only up to the site's layer (``mechinterp.locate.activations.collect_tokens`` stops the forward pass
there), so Gemma's 262k-token unembedding is never computed. Each row keeps the index of its document and
its token position, which is what max-activating-example lists need to show a context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from jaxtyping import Float, Int

from mechinterp.errors import ConfigError
from mechinterp.locate.activations import collect_tokens
from mechinterp.progress import progress
from mechinterp.saes.corpus import Corpus
from mechinterp.tokenization import TokenizedText, tokenize_text


@dataclass(frozen=True)
class TokenActivations:
    """Activations of one site, one row per token (BOS left out), with each token's origin."""

    acts: Float[torch.Tensor, "n d"]
    doc: Int[torch.Tensor, " n"]  # index into corpus.documents
    pos: Int[torch.Tensor, " n"]  # position in the document's token sequence (BOS is 0, so >= 1)
    token_id: Int[torch.Tensor, " n"]

    def __len__(self) -> int:
        return int(self.acts.shape[0])

    @property
    def n_docs(self) -> int:
        return int(torch.unique(self.doc).numel())


def doc_sequence(model: Any, text: str, context_size: int) -> TokenizedText:
    """BOS + the document's tokens, cut at a word boundary so that at most ``context_size`` tokens remain."""
    seq = tokenize_text(model.tokenizer, model.bos_token_id, text)
    if len(seq) <= context_size:
        return seq
    keep = [i for i, (_, stop) in enumerate(seq.word_spans) if stop <= context_size]
    if not keep:  # one enormous word: keep its first tokens only
        ids = seq.input_ids[:context_size]
        return TokenizedText(text=text, input_ids=ids, words=(text,), word_spans=((1, len(ids)),),
                             word_regions=(1,), region_spans={1: (1, len(ids))})
    return tokenize_text(model.tokenizer, model.bos_token_id, " ".join(seq.words[: keep[-1] + 1]))


def corpus_activations(
    model: Any,
    corpus: Corpus,
    doc_indices: Sequence[int],
    layer: int,
    component: str,
    n_tokens: int | None,
    context_size: int = 64,
    batch_size: int = 32,
    chunk_docs: int = 256,
    desc: str = "activations",
) -> TokenActivations:
    """Activations of ``layer``/``component`` for documents taken in the order of ``doc_indices`` until
    ``n_tokens`` tokens (BOS excluded) are collected (raises if the documents run out first); ``None``
    takes every token of every document."""
    if n_tokens is not None and n_tokens < 1:
        raise ConfigError(f"n_tokens must be positive, got {n_tokens}")
    acts: list[torch.Tensor] = []
    docs: list[torch.Tensor] = []
    poss: list[torch.Tensor] = []
    toks: list[torch.Tensor] = []
    have = 0
    bar = progress(range(0, len(doc_indices), chunk_docs), desc=desc)
    for start in bar:
        chunk = list(doc_indices[start : start + chunk_docs])
        seqs = [doc_sequence(model, corpus.documents[i].text, context_size) for i in chunk]
        order = sorted(range(len(chunk)), key=lambda j: len(seqs[j]))  # similar lengths share a batch
        chunk, seqs = [chunk[j] for j in order], [seqs[j] for j in order]
        a = collect_tokens(model, seqs, layer, component, batch_size=batch_size, skip_bos=True)
        lengths = [len(s) - 1 for s in seqs]
        if a.shape[0] != sum(lengths):
            raise RuntimeError(f"collect_tokens returned {a.shape[0]} rows for {sum(lengths)} non-BOS tokens")
        acts.append(a.detach().float())
        docs.append(torch.repeat_interleave(torch.tensor(chunk, dtype=torch.long), torch.tensor(lengths)))
        poss.append(torch.cat([torch.arange(1, n + 1) for n in lengths]))
        toks.append(torch.tensor([t for s in seqs for t in s.input_ids[1:]], dtype=torch.long))
        have += a.shape[0]
        if n_tokens is not None and have >= n_tokens:
            break
    if n_tokens is None:
        n_tokens = have
    if have < n_tokens or have == 0:
        raise ConfigError(
            f"the {len(doc_indices)} documents available hold only {have} tokens at context size {context_size}, "
            f"fewer than the {n_tokens} asked for: ask for fewer tokens or use a larger corpus")
    return TokenActivations(
        acts=torch.cat(acts)[:n_tokens], doc=torch.cat(docs)[:n_tokens], pos=torch.cat(poss)[:n_tokens],
        token_id=torch.cat(toks)[:n_tokens],
    )
