"""Tokens, words and regions: the one place where positions are resolved.

Every stage (surprisal, caching, patching, probes, SAEs, interventions) asks "which tokens are word *w* /
region *r* of this condition?" through :func:`tokenize_condition`, so they all agree.

Rules:

* Each sequence starts with exactly one beginning-of-text token (:attr:`Model.bos_token_id`) at index 0; the
  sentence's own tokens follow, tokenized *without* special tokens. The first word is therefore scored as
  P(word | BOS).
* Tokenizers used here attach whitespace to the *following* token (``▁deer``, ``Ġdeer``), so a word's tokens
  carry the whitespace that precedes it. A token belongs to the word containing its last character; a
  whitespace-only token belongs to the next word.
* If a token straddles two words (possible with tokenizers that merge across spaces), the sentence is
  re-tokenized word by word (each word with its leading space) and ``per_word`` is recorded.
* A region's tokens are the tokens of the words that start in it (a region is a run of words), so
  region surprisal is always the sum of its words' surprisals. Where a region starts is set by the
  condition's spacing convention (:mod:`mechinterp.stimuli.types`): under ``"syntaxgym"`` every region
  starts a word, so this is SyntaxGym's own rule (a token belongs to the region its characters lie in, the
  space before a region going with it) and a punctuation-only region gets its punctuation's tokens; under
  ``"attach"`` a region that starts with punctuation starts mid-word, the word wins, and the region is
  empty (no tokens: it counts 0 bits in a prediction).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from mechinterp.errors import RegionError

if TYPE_CHECKING:
    from mechinterp.stimuli.types import Condition, Suite


@dataclass(frozen=True)
class TokenizedText:
    """A sentence's token ids (BOS first) with each word's and region's token span ``[start, stop)``."""

    text: str
    input_ids: tuple[int, ...]
    words: tuple[str, ...]
    word_spans: tuple[tuple[int, int], ...]
    word_regions: tuple[int, ...]
    region_spans: dict[int, tuple[int, int]]
    per_word: bool = False

    def __len__(self) -> int:
        return len(self.input_ids)

    def tokens_of_word(self, index: int) -> range:
        if not 0 <= index < len(self.words):
            raise RegionError(f"word index {index} is out of range for {self.text!r} ({len(self.words)} words)")
        return range(*self.word_spans[index])

    def tokens_of_region(self, number: int) -> range:
        if number not in self.region_spans:
            raise RegionError(f"region {number} does not exist in {self.text!r} (regions {sorted(self.region_spans)})")
        return range(*self.region_spans[number])

    def last_token_of_region(self, number: int) -> int:
        r = self.tokens_of_region(number)
        if len(r) == 0:
            raise RegionError(f"region {number} is empty in {self.text!r}")
        return r[-1]


def _word_char_spans(text: str) -> list[tuple[int, int]]:
    spans, pos = [], 0
    for w in text.split():
        start = text.index(w, pos)
        spans.append((start, start + len(w)))
        pos = start + len(w)
    return spans


def _assign(offsets: Sequence[tuple[int, int]], spans: list[tuple[int, int]], text: str) -> list[int] | None:
    """Word index for each token, or None if some token straddles two words. ``spans`` are sorted and
    disjoint, so each token's word is found by bisection (O(tokens x log words), not tokens x words)."""
    starts = [s for s, _ in spans]
    out = []
    for a, b in offsets:
        last = b - 1
        i = bisect_right(starts, last) - 1
        if i >= 0 and last < spans[i][1]:
            w = i
        else:  # whitespace-only token: the next word
            w = i + 1 if i + 1 < len(spans) else len(spans) - 1
        first_nonspace = a
        while first_nonspace < b and text[first_nonspace].isspace():
            first_nonspace += 1
        if first_nonspace < b and not (spans[w][0] <= first_nonspace < spans[w][1]):
            return None
        out.append(w)
    return out


def tokenize_text(
    tokenizer: Any, bos_token_id: int, text: str, regions: dict[int, tuple[int, int]] | None = None
) -> TokenizedText:
    """Tokenize ``text`` (words = whitespace-separated pieces) with optional region character spans."""
    spans = _word_char_spans(text)
    if not spans:
        raise RegionError("cannot tokenize an empty sentence")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    assign = _assign(enc["offset_mapping"], spans, text)
    per_word = assign is None or any(x < y for x, y in zip(assign[1:], assign[:-1]))
    if per_word:
        ids, assign = [], []
        for i, (s, e) in enumerate(spans):
            piece = text[s:e] if i == 0 else " " + text[s:e]
            wid = tokenizer(piece, add_special_tokens=False)["input_ids"]
            ids += wid
            assign += [i] * len(wid)
    assert assign is not None  # set above whenever the offsets could not assign tokens to words
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for t, w in enumerate(assign):  # one pass (tokens of a word are contiguous); +1: BOS at 0
        first.setdefault(w, t + 1)
        last[w] = t + 1
    word_spans = []
    for i in range(len(spans)):
        if i not in first:
            raise RegionError(f"word {i} ({text[spans[i][0]:spans[i][1]]!r}) of {text[:200]!r} got no tokens")
        word_spans.append((first[i], last[i] + 1))
    if regions is None:
        regions = {1: (0, len(text))}
    word_regions = []
    for s, _ in spans:
        reg = next((n for n, (a, b) in regions.items() if a <= s < b), None)
        if reg is None:
            raise RegionError(f"word at character {s} of {text!r} lies in no region")
        word_regions.append(reg)
    region_spans: dict[int, tuple[int, int]] = {}
    for n in regions:
        members = [word_spans[i] for i, r in enumerate(word_regions) if r == n]
        if members:
            region_spans[n] = (members[0][0], members[-1][1])
        else:  # empty region: an empty span where it would start
            a = regions[n][0]
            nxt = next((word_spans[i][0] for i, (s, _) in enumerate(spans) if s >= a), len(ids) + 1)
            region_spans[n] = (nxt, nxt)
    return TokenizedText(
        text=text,
        input_ids=(int(bos_token_id), *map(int, ids)),
        words=tuple(text[s:e] for s, e in spans),
        word_spans=tuple(word_spans),
        word_regions=tuple(word_regions),
        region_spans=region_spans,
        per_word=per_word,
    )


def context_length(model: Any) -> int | None:
    """The most tokens ``model`` takes in one sequence: its config's ``max_position_embeddings`` (or
    ``n_positions``), else the tokenizer's ``model_max_length`` when set; None when neither says."""
    cfg = getattr(getattr(model, "hf", None), "config", None)
    for name in ("max_position_embeddings", "n_positions"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(getattr(model, "tokenizer", None), "model_max_length", None)
    return value if isinstance(value, int) and 0 < value < 10**9 else None


def _too_long(model: Any, condition: "Condition") -> tuple[TokenizedText, int | None]:
    """The condition tokenized, and the model's context length if the condition is longer than it (else None)."""
    tok = tokenize_text(model.tokenizer, model.bos_token_id, condition.text, condition.region_spans)
    limit = context_length(model)
    return tok, (limit if limit is not None and len(tok.input_ids) > limit else None)


def tokenize_condition(model: Any, condition: "Condition") -> TokenizedText:
    """Tokenize one condition of an item with ``model``'s tokenizer and BOS token.

    Raises:
        RegionError: the sentence is longer than the model's context length (the limit is in the message).
            Commands refuse such a suite before their first forward pass (:func:`check_context`).
    """
    tok, limit = _too_long(model, condition)
    if limit is not None:
        raise RegionError(f"condition {condition.name!r} ({condition.text[:60]!r}...) is {len(tok.input_ids)} tokens "
                          f"long (with BOS), more than the model's context length of {limit} tokens: shorten it")
    return tok


def check_context(model: Any, suites: Iterable["Suite"]) -> None:
    """Refuse a suite that the model cannot read whole, before anything runs: every condition of every item is
    tokenized as every stage tokenizes it (:func:`tokenize_condition`), and the first one longer than the
    model's context length is named with its suite, item, condition, length and the limit (and how many
    others are too long). Every command that runs a model over suites calls this once, when it loads the
    model (``mechinterp.cli.common.get_model``; sweep and probe jobs in ``mechinterp.sweeps.execute``).

    Args:
        model: A loaded :class:`~mechinterp.models.Model` (its tokenizer, BOS token and config).
        suites: The suites the command will run the model over.

    Raises:
        RegionError: a condition is longer than the model's context length (one line, with the limit).

    Example:
        >>> check_context(load_model("gemma3-270m"), [load_suite("npz")])  # silent: every sentence fits
    """
    if context_length(model) is None:
        return
    first, n_over = None, 0
    for suite in suites:
        for item in suite.items:
            for condition in item.conditions:
                tok, limit = _too_long(model, condition)
                if limit is None:
                    continue
                n_over += 1
                if first is None:
                    first = (f"suite {suite.name!r} item {item.key} condition {condition.name!r} "
                             f"({condition.text[:40]!r}...) is {len(tok.input_ids)} tokens long (with BOS), more than "
                             f"the model's context length of {limit} tokens")
    if first is not None:
        others = f" ({n_over - 1} other condition{'s' if n_over != 2 else ''} too)" if n_over > 1 else ""
        raise RegionError(f"{first}{others}: shorten or split the sentence, or drop the item; nothing was run")
