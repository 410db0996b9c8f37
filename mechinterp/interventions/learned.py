"""The strongest collapse within a budget: an intervention learned with gradients that pushes the model to the
reading people prefer as far as a side-effect budget allows.

Two forms, each at one or several residual-stream sites (``resid_post`` of the given layers by default):

* ``steer``: a steering vector added to the activation, ``h -> h + a v``;
* ``subspace``: a learned affine map of a rank-k subspace (distributed alignment search / ReFT style):
  ``h -> h + a R^T (W R h + t - R h)`` with ``R`` a ``k x d`` matrix of orthonormal rows, ``W`` a ``k x k``
  map and ``t`` a target offset: the coordinates ``z = R h`` become ``W z + t``. It starts as no edit at all
  (``W = I``, ``t = 0``); ``W = 0`` is the interchange form that sets the subspace to ``t`` (a fit saved
  without ``W`` is read that way).

The subspace's first basis vector starts on the difference between the mean activations of the two readings'
training prefixes at the site (the other ``k - 1`` at random). Starting from no edit matters as much as the
direction: a subspace set to a constant edits every position of ordinary text, and its KL at the start
(0.46 nats per token on Gemma-3-270M at layer 6) left the fit nothing to spend on the readings. ``a`` is the
final rescale (below). Both are written on the workbench's own hooks
(:mod:`mechinterp.interventions.base`): the edits apply at the positions of the intervention's scope, on every
backend, and are removed when the ``with`` block ends.

**Training data**: only the probes package's generated unambiguous sentences of the suite's constructions
(:func:`mechinterp.probes.pipeline.disjoint_training_sets`: a sentence that shares a content word with the
evaluated suite is dropped), never the evaluated items. Each sentence is cut after its probed word (the noun
phrase for NP/Z and NP/S, the ambiguous word for LEX), which is where the exact reading estimator
(:mod:`mechinterp.readings.exact`) reads the suite's items, and the edit acts at the positions ``where`` selects
in that prefix (by default its last two words, as on the items). MV/RR sentences are not used: their probed
word is the ambiguous verb, while the estimator reads MV/RR items after the material that follows the verb, so
the diagnostic continuations do not apply there (an MV/RR-only suite is refused).

**Objective**: the exact estimator's quantity on each training prefix. With ``m_r`` the log probability mass of
reading ``r``'s diagnostic continuations (:mod:`mechinterp.readings.continuations`, each scored exactly),
``P(dispreferred) = exp(m_d) / (exp(m_d) + exp(m_p))``; the loss is the cross-entropy of the preferred reading,
``-log P(preferred) = softplus(m_d - m_p)``, averaged over a batch with as many prefixes of each reading.

**Constraint**: the mean KL divergence (nats per token) of the model's next-token distribution with the
intervention from the original's, over every position but BOS of ordinary text, Natural Stories, where the
intervention acts at every position (as in ``collapse``'s perplexity side effect): KL(original || edited) <=
``budget``. Training uses windows of some stories (``train_stories``) with a Lagrange multiplier (starting at
1 / budget) updated by dual ascent on its logarithm (by half the log of KL / budget, clipped to [-1, 2]). The budget is then enforced on *held-out* stories
(``heldout_stories``, the first ``heldout_words`` words of each, scored as one text): the edit is rescaled by
``a`` (tried at 1, raised by doubling up to ``max_scale`` while the held-out KL stays below 90% of the budget,
then ``bisect`` bisection steps), and the largest ``a`` whose held-out KL was measured within the budget is
kept. The achieved held-out KL is recorded with the fit.

Fits are seeded (initial subspace, sampling of sentences and windows) and reproducible on one machine.
A fitted :class:`LearnedIntervention` is frozen, applies itself (``with iv.apply(model): ...``) and is saved as
``learned.safetensors`` + ``learned.json`` (atomically) with its provenance: the model, budget, seed, a hash
of the training sentences and the achieved held-out KL.

Why the workbench's hooks and not a library: ``steering-vectors`` requires ``transformers<5``; ``pyvene``
(0.1.8) maps no Gemma-3 model class, needs matplotlib, plotnine and ipywidgets at import, and wraps the model
in its own hook manager, which knows neither the scopes of :mod:`.base` nor the TransformerLens and nnsight
backends.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, Sequence

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import save_file
from torch import Tensor

from mechinterp.compare.humans import NaturalStories, load_natural_stories
from mechinterp.errors import ConfigError
from mechinterp.forward import pad_batch
from mechinterp.interventions.base import (
    AllPositions,
    Conditions,
    Intervention,
    Scope,
    SiteEdit,
    TokenTable,
    Where,
    apply_interventions,
)
from mechinterp.io import atomic_dir, read_saved_tensors
from mechinterp.locate.hooks import read_sites
from mechinterp.locate.sites import Site
from mechinterp.probes.labels import readings as reading_names
from mechinterp.probes.pipeline import disjoint_training_sets
from mechinterp.probes.templates import REGION_TARGET
from mechinterp.readings.continuations import load_continuations, token_sets
from mechinterp.tokenization import tokenize_text

if TYPE_CHECKING:
    from mechinterp.models import Model
    from mechinterp.stimuli.types import Suite

Method = Literal["steer", "subspace"]
METHODS: tuple[Method, ...] = ("steer", "subspace")
TRAINED_CONSTRUCTIONS = ("NP/Z", "NP/S", "LEX")
"""Constructions whose generated sentences are cut where the estimator reads (see the module docstring)."""
TENSORS_FILE, META_FILE = "learned.safetensors", "learned.json"
FORMAT_VERSION = 1
NEAR_BUDGET = 0.9  # the rescale stops raising ``a`` once the held-out KL reaches this share of the budget


class LearnedTraining(BaseModel):
    """How a learned intervention is trained and its budget checked (the command-line options of
    ``mechinterp dose`` and the keys of a ``learned:`` spec are generated from these fields)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: int = Field(default=20, ge=0, description="optimisation steps per fit")
    lr: float = Field(default=0.05, gt=0, description="Adam learning rate (a step moves each coordinate of an "
                                                      "edit by about this share of its activations' spread)")
    prefixes: int = Field(default=8, ge=1, description="generated reading sentences per step")
    windows: int = Field(default=1, ge=1, description="Natural Stories windows per step (the KL term)")
    window: int = Field(default=24, ge=4, description="tokens per Natural Stories training window, BOS included")
    n_fit: int = Field(default=64, ge=10, description="generated sentences per reading and construction")
    train_stories: tuple[int, ...] = Field(default=(1, 2, 3, 4, 5), min_length=1)
    heldout_stories: tuple[int, ...] = Field(default=(6, 7, 8, 9, 10), min_length=1)
    train_words: int = Field(default=200, ge=10, description="words of each training story cut into windows")
    heldout_words: int = Field(default=80, ge=10, description="words of each held-out story the budget is "
                                                              "checked on")
    bisect: int = Field(default=5, ge=0, description="bisection steps of the final rescale")
    max_scale: float = Field(default=4.0, ge=1.0, description="largest rescale of the trained edit")
    seed: int = Field(default=0, ge=0)
    naturalstories: str | None = None  # a Natural Stories directory; None: the shipped copy

    def check_stories(self) -> None:
        shared = sorted(set(self.train_stories) & set(self.heldout_stories))
        if shared:
            raise ConfigError(f"stories {shared} are both training and held-out stories: the budget must be "
                              "checked on stories the intervention was not trained on")


# ---- the fitted intervention --------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class LearnedIntervention(Intervention):
    """A learned steering vector or subspace edit at one or more sites (see the module docstring).

    Attributes:
        method: "steer" or "subspace".
        sites: the edited sites (unpositioned).
        tensors: per site, ``{"vector": [d]}`` (steer) or ``{"basis": [k, d], "map": [k, k], "target": [k]}``
            (subspace; without ``map``, the interchange form that sets the subspace to ``target``).
        scale: the final rescale ``a``.
        scope: the positions edited.
        info: provenance (model, budget, seed, training sentences hash, achieved held-out KL, ...).
    """

    method: Method
    sites: tuple[Site, ...]
    tensors: tuple[dict[str, Tensor], ...]
    scale: float
    scope: Scope
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown learned intervention method {self.method!r}: choose steer or subspace")
        if len(self.sites) != len(self.tensors) or not self.sites:
            raise ConfigError(f"a learned intervention needs one tensor set per site, got {len(self.sites)} sites "
                              f"and {len(self.tensors)} sets")
        want = [{"vector"}] if self.method == "steer" else [{"basis", "map", "target"}, {"basis", "target"}]
        for s, t in zip(self.sites, self.tensors):
            if set(t) not in want:
                raise ConfigError(f"learned {self.method} at {s}: tensors {sorted(t)}, expected "
                                  f"{' or '.join(str(sorted(w)) for w in want)}")

    @property
    def rank(self) -> int:
        return int(self.tensors[0]["basis"].shape[0]) if self.method == "subspace" else 1

    def edit_fn(self, i: int) -> Callable[[Tensor], Tensor]:
        """The edit of site ``i`` on activations ``[n, d]``."""
        t, a = self.tensors[i], self.scale
        if self.method == "steer":
            v = t["vector"]
            return lambda x: x + a * v.to(x.device, x.dtype)
        R, c, W = t["basis"], t["target"], t.get("map")

        def edit(x: Tensor) -> Tensor:
            r = R.to(x.device, x.dtype)
            z = x @ r.T
            new = c.to(x.device, x.dtype) + (z @ W.to(x.device, x.dtype).T if W is not None else 0.0)
            return x + a * ((new - z) @ r)

        return edit

    def edits(self) -> list[SiteEdit]:
        return [SiteEdit(s, self.edit_fn(i)) for i, s in enumerate(self.sites)]

    def describe(self) -> dict[str, Any]:
        keep = ("budget", "heldout_kl", "seed", "training_sha256", "model_name", "fit_seconds")
        return {"kind": "learned", "method": self.method, "sites": [str(s) for s in self.sites], "rank": self.rank,
                "scale": self.scale, **self.scope.describe(), "fit": {k: self.info[k] for k in keep if k in self.info}}

    def placed(self, scope: Scope) -> "LearnedIntervention":
        """The same edit on other positions (e.g. a loaded fit placed on a suite's sentences)."""
        return dataclasses.replace(self, scope=scope)

    def save(self, directory: str | Path) -> Path:
        """Write ``learned.safetensors`` and ``learned.json`` into ``directory`` (replaced whole, atomically).

        Args:
            directory: the directory to write.

        Returns:
            The directory.

        Example:
            >>> iv.save("out/learned/steer-0.05")
            >>> LearnedIntervention.load("out/learned/steer-0.05", model)
        """
        directory = Path(directory)
        flat = {f"{i}.{k}": v.detach().float().contiguous() for i, t in enumerate(self.tensors) for k, v in t.items()}
        meta = {"format_version": FORMAT_VERSION, "kind": "learned", "method": self.method, "scale": self.scale,
                "sites": [{"layer": s.layer, "component": s.component} for s in self.sites],
                "scope": self.scope.describe(), "info": self.info}
        with atomic_dir(directory) as tmp:
            save_file(flat, str(tmp / TENSORS_FILE), metadata={"format": "mechinterp-learned-intervention"})
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
        return directory

    @classmethod
    def load(cls, directory: str | Path, model: "Model", scope: Scope | None = None) -> "LearnedIntervention":
        """Read a saved fit for ``model`` (refused for another model's weights or width).

        Args:
            directory: a directory written by :meth:`save`.
            model: the model it will be applied to.
            scope: the positions to edit; default every position but BOS (place it on a suite with
                :meth:`placed`, as ``learned:load=DIR`` specs do).
        """
        directory = Path(directory)
        meta, flat = read_saved_tensors(directory, "learned intervention", TENSORS_FILE, META_FILE, FORMAT_VERSION)
        info = meta.get("info") or {}
        trained_on = (info.get("model") or {}).get("weights_sha256")
        if trained_on and trained_on != model.weights_sha256:
            raise ConfigError(f"learned intervention {directory} was fit on {info['model'].get('name', 'another model')} "
                              f"(weights {trained_on[:12]}), not on {model.name} ({model.weights_sha256[:12]})")
        sites = tuple(Site(int(s["layer"]), s["component"]) for s in meta["sites"])
        for s in sites:
            s.check(model)
        tensors = tuple({k.split(".", 1)[1]: v for k, v in flat.items() if k.split(".", 1)[0] == str(i)}
                        for i in range(len(sites)))
        for s, t in zip(sites, tensors):
            d = t["vector"].shape[-1] if "vector" in t else t.get("basis", torch.empty(0, 0)).shape[-1]
            if d != model.d_model:
                raise ConfigError(f"learned intervention {directory} edits {d} dimensions at {s}; {model.name} has "
                                  f"{model.d_model}")
        return cls(method=meta["method"], sites=sites, tensors=tensors, scale=float(meta["scale"]),
                   scope=scope if scope is not None else AllPositions(model.bos_token_id), info=info)


# ---- training data ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReadingPrompts:
    """Generated sentences cut after their probed word, with what the objective needs.

    Attributes:
        ids: token ids of each prefix (BOS first).
        edit: positions of each prefix the intervention edits during training.
        preferred, dispreferred: per prefix, the token ids of each diagnostic continuation of the reading.
        constructions, texts, readings: where each prefix came from (``readings``: the reading its structure
            fixes).
        info: constructions used and skipped, counts and the hash of the sentences.
    """

    ids: tuple[tuple[int, ...], ...]
    edit: tuple[frozenset[int], ...]
    preferred: tuple[tuple[tuple[int, ...], ...], ...]
    dispreferred: tuple[tuple[tuple[int, ...], ...], ...]
    constructions: tuple[str, ...]
    texts: tuple[str, ...]
    readings: tuple[str, ...]
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def preferred_reading(self) -> tuple[bool, ...]:
        """Whether each sentence's structure fixes the reading people prefer."""
        return tuple(r == reading_names(c)[0] for r, c in zip(self.readings, self.constructions))

    def scope(self, model: "Model") -> TokenTable:
        """A scope that edits the training positions of each prefix, also when it runs extended by the first
        tokens of a longer continuation (and every position but BOS of other text)."""
        table: dict[tuple[int, ...], frozenset[int]] = {}
        for ids, pos, p, d in zip(self.ids, self.edit, self.preferred, self.dispreferred):
            table.setdefault(ids, pos)
            for c in (*p, *d):
                if len(c) > 1:
                    table.setdefault(ids + c[:-1], pos)
        return TokenTable(table=table, pad_token_id=model.pad_token_id, bos_token_id=model.bos_token_id,
                          unknown="all", info={"source": "generated reading sentences"})


def _edit_positions(word_spans: Sequence[tuple[int, int]], end: int, target: tuple[int, int], where: Where,
                    n_words: int) -> frozenset[int]:
    if where == "ambiguous_region":
        return frozenset(range(*target))
    if where == "prefix":
        return frozenset(range(1, end))
    words = [span for span in word_spans if span[1] <= end]
    first = words[-n_words:][0][0]
    return frozenset(range(first, end))


def reading_prompts(model: "Model", suite: "Suite", n_fit: int = 64, seed: int = 0,
                    where: Where = "pre_disambiguator", n_words: int = 2) -> ReadingPrompts:
    """The training prefixes of a learned intervention for ``suite``'s constructions (module docstring).

    Args:
        model: gives the tokenizer.
        suite: the evaluated suite (its constructions; sentences sharing a content word with it are dropped).
        n_fit: generated sentences per reading and construction (before dropping).
        seed: generator seed.
        where, n_words: which positions of each prefix are edited (as for the suite's items).

    Raises:
        ConfigError: if no construction of ``suite`` can be trained on.
    """
    sets_all = load_continuations()
    ids, edit, pref, disp, cons, texts, reads = [], [], [], [], [], [], []
    used: dict[str, int] = {}
    skipped: dict[str, str] = {}
    for c, ts in disjoint_training_sets(suite, n_fit, seed).items():
        if c not in TRAINED_CONSTRUCTIONS:
            skipped[c] = "its generated sentences end at the ambiguous verb, not where the estimator reads"
            continue
        if c not in sets_all:
            skipped[c] = "the continuation file has no sets for it"
            continue
        p_name, d_name = reading_names(c)
        sets = token_sets(model.tokenizer, sets_all[c])
        p_ids = tuple(t for _, t in sets[p_name])
        d_ids = tuple(t for _, t in sets[d_name])
        for s in ts.sentences:
            tt = tokenize_text(model.tokenizer, model.bos_token_id, s.text, s.regions)
            target = tt.region_spans[REGION_TARGET]
            end = target[1]
            ids.append(tuple(tt.input_ids[:end]))
            edit.append(_edit_positions(tt.word_spans, end, target, where, n_words))
            pref.append(p_ids)
            disp.append(d_ids)
            cons.append(c)
            texts.append(s.text)
            reads.append(s.reading)
        used[c] = len(ts)
    if not ids:
        raise ConfigError(f"suite {suite.name!r} ({', '.join(suite.constructions)}): the learned intervention trains "
                          f"on generated {', '.join(TRAINED_CONSTRUCTIONS)} sentences and none of them is in the suite "
                          f"({'; '.join(f'{k}: {v}' for k, v in skipped.items())})")
    record = [[c, t, r] for c, t, r in zip(cons, texts, reads)]
    sha = hashlib.sha256(json.dumps(record).encode()).hexdigest()
    info = {"constructions": used, "skipped": skipped, "n_sentences": len(ids), "n_fit": n_fit, "seed": seed,
            "where": where, "n_words": n_words, "training_sha256": sha}
    return ReadingPrompts(tuple(ids), tuple(edit), tuple(pref), tuple(disp), tuple(cons), tuple(texts), tuple(reads),
                          info)


def reading_logits(model: "Model", prompts: ReadingPrompts, idx: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Log mass (nats) of the preferred and the dispreferred continuations after each prefix in ``idx``, exactly
    (a continuation of several tokens by the chain rule), differentiable through whatever hooks are on.

    The prefixes (and prefix + continuation[:-1] for longer continuations) run left-padded in one batch; only
    the last logits are projected onto the vocabulary, and every continuation token's log probability is
    gathered in one indexing operation.
    """
    seqs: list[tuple[int, ...]] = []
    rows, cols, toks, owner = [], [], [], []  # one entry per continuation token; owner = continuation number
    groups: list[list[int]] = []  # per (prefix, reading): its continuation numbers
    n_cont = 0
    spans: list[tuple[int, int, tuple[int, ...]]] = []  # (row, length, tokens) per continuation
    for i in idx:
        row = len(seqs)
        seqs.append(prompts.ids[i])
        for conts in (prompts.preferred[i], prompts.dispreferred[i]):
            group = []
            for c in conts:
                if len(c) == 1:
                    spans.append((row, 1, c))
                else:
                    spans.append((len(seqs), len(c), c))
                    seqs.append(prompts.ids[i] + c[:-1])
                group.append(n_cont)
                n_cont += 1
            groups.append(group)
    keep = max(n for _, n, _ in spans)
    for k, (r, n, c) in enumerate(spans):
        for j in range(n):
            rows.append(r)
            cols.append(keep - n + j)
            toks.append(c[j])
            owner.append(k)
    b = pad_batch(seqs, model.pad_token_id, "left", device=model.device)
    out = model.hf(input_ids=b.input_ids, attention_mask=b.attention_mask, position_ids=b.position_ids,
                   use_cache=False, logits_to_keep=keep).logits.float()  # [rows, keep, vocab]
    dev = out.device
    r_t, c_t = torch.tensor(rows, device=dev), torch.tensor(cols, device=dev)
    vals = out[r_t, c_t, torch.tensor(toks, device=dev)] - torch.logsumexp(out, dim=-1)[r_t, c_t]
    per_cont = torch.zeros(n_cont + 1, device=dev).index_add(0, torch.tensor(owner, device=dev), vals)
    per_cont[n_cont] = -math.inf  # padding slot of the group matrix
    width = max(len(g) for g in groups)
    mat = torch.tensor([g + [n_cont] * (width - len(g)) for g in groups], device=dev)
    mass = torch.logsumexp(per_cont[mat], dim=1).view(len(idx), 2)
    return mass[:, 0], mass[:, 1]


# ---- the KL term --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KLText:
    """Token sequences of ordinary text (BOS first) and, optionally, the original model's next-token log
    probabilities on them (``reference``, cached for the held-out check)."""

    seqs: tuple[tuple[int, ...], ...]
    reference: tuple[Tensor, ...] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        return sum(len(s) - 1 for s in self.seqs)


def _story_ids(model: "Model", corpus: NaturalStories, story: int, words: int) -> tuple[int, ...]:
    text = " ".join(corpus.story_words(story)["word"].head(words))
    return tokenize_text(model.tokenizer, model.bos_token_id, text).input_ids


def training_windows(model: "Model", corpus: NaturalStories, stories: Sequence[int], words: int, window: int) -> KLText:
    """The first ``words`` words of each story, cut into windows of ``window - 1`` tokens, each after BOS."""
    seqs = []
    for s in stories:
        ids = _story_ids(model, corpus, s, words)[1:]
        for a in range(0, len(ids) - 1, window - 1):
            piece = ids[a:a + window - 1]
            if len(piece) >= 2:
                seqs.append((model.bos_token_id, *piece))
    return KLText(tuple(seqs), None, {"stories": list(stories), "words_per_story": words, "window": window})


@torch.no_grad()
def heldout_text(model: "Model", corpus: NaturalStories, stories: Sequence[int], words: int) -> KLText:
    """The first ``words`` words of each held-out story as one text, with the original model's log probabilities
    (float32, ``[len, vocab]`` per story) cached for the budget check."""
    seqs = tuple(_story_ids(model, corpus, s, words) for s in stories)
    ref = tuple(_logprobs(model, [s])[0] for s in seqs)
    return KLText(seqs, ref, {"stories": list(stories), "words_per_story": words})


def _logprobs(model: "Model", seqs: Sequence[tuple[int, ...]]) -> list[Tensor]:
    b = pad_batch(seqs, model.pad_token_id, "right", device=model.device)
    out = model.hf(input_ids=b.input_ids, attention_mask=b.attention_mask, position_ids=b.position_ids,
                   use_cache=False).logits
    lp = torch.log_softmax(out.float(), dim=-1)
    return [lp[i, : len(s)] for i, s in enumerate(seqs)]


def kl_terms(reference: Sequence[Tensor], edited: Sequence[Tensor]) -> Tensor:
    """Sum over the positions 1.. of every sequence of KL(reference || edited) of the next-token distributions
    (log probabilities ``[len, vocab]``; position 0, BOS, is never edited)."""
    total = reference[0].new_zeros(())
    for p, q in zip(reference, edited):
        p, q = p[1:], q[1:]
        total = total + (p.exp() * (p - q)).sum()
    return total


def mean_kl(model: "Model", text: KLText, intervention: Intervention | None, batch_size: int = 2) -> float:
    """Mean KL (nats per token, every position but BOS) of ``model`` under ``intervention`` from the original
    on ``text`` (its cached reference, or the original model run here)."""
    total, n = 0.0, 0
    with torch.no_grad():
        for a in range(0, len(text.seqs), batch_size):
            seqs = text.seqs[a:a + batch_size]
            ref = list(text.reference[a:a + batch_size]) if text.reference is not None else _logprobs(model, seqs)
            with apply_interventions(model, [intervention] if intervention is not None else []):
                got = _logprobs(model, seqs)
            total += float(kl_terms(ref, got))
            n += sum(len(s) - 1 for s in seqs)
    return total / max(n, 1)


# ---- fitting ------------------------------------------------------------------------------------------------
@contextmanager
def frozen_weights(model: "Model") -> Iterator[None]:
    """Gradients on, but none for the model's own weights, inside the block (restored after)."""
    params = list(model.hf.parameters())
    before = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        with torch.enable_grad():
            yield
    finally:
        for p, r in zip(params, before):
            p.requires_grad_(r)


@torch.no_grad()
def _site_stats(model: "Model", prompts: ReadingPrompts, sites: Sequence[Site], n: int = 64
                ) -> tuple[list[float], list[Tensor]]:
    """Mean activation norm and the activations at the edited positions of up to ``n`` prefixes, per site."""
    acts = _edited_activations(model, prompts, sites, list(range(min(n, len(prompts)))))
    return [float(x.norm(dim=-1).mean()) for x in acts], acts


@torch.no_grad()
def _reading_difference(model: "Model", prompts: ReadingPrompts, sites: Sequence[Site], n: int = 64
                        ) -> list[Tensor] | None:
    """Per site, the mean activation at the edited positions of up to ``n / 2`` preferred-reading prefixes
    minus that of as many dispreferred-reading ones; None when the prompts hold one reading only."""
    pref = [i for i, p in enumerate(prompts.preferred_reading) if p][: n // 2]
    disp = [i for i, p in enumerate(prompts.preferred_reading) if not p][: n // 2]
    if not pref or not disp:
        return None
    a, b = _edited_activations(model, prompts, sites, pref), _edited_activations(model, prompts, sites, disp)
    return [x.mean(0) - y.mean(0) for x, y in zip(a, b)]


def _edited_activations(model: "Model", prompts: ReadingPrompts, sites: Sequence[Site], idx: list[int]
                        ) -> list[Tensor]:
    """The activations at the edited positions of the prefixes ``idx``, per site (float32, one row a position)."""
    seqs = [prompts.ids[i] for i in idx]
    b = pad_batch(seqs, model.pad_token_id, "left", device=model.device)
    with read_sites(model, list(sites)) as caps:
        model.hf(input_ids=b.input_ids, attention_mask=b.attention_mask, position_ids=b.position_ids, use_cache=False,
                 logits_to_keep=1)
    mask = torch.zeros(b.input_ids.shape, dtype=torch.bool)
    for r, i in enumerate(idx):
        for p in prompts.edit[i]:
            mask[r, b.offsets[r] + p] = True
    return [caps[s].value[mask.to(caps[s].value.device)].float() for s in sites]


@dataclass
class _Params:
    """The free parameters of a fit, each coordinate in units of the spread of the activations it edits (so
    that an Adam step of ``lr`` moves every coordinate by about ``lr`` of its standard deviation, whether or not
    the site has outlier dimensions): steer ``u`` (vector = units * u, ``units`` the per-dimension standard
    deviation at the edited positions); subspace ``A`` (basis = orthonormalised columns of A, transposed),
    ``M`` (the map W) and ``tau`` (target = units * tau, ``units`` the standard deviation of each subspace
    coordinate at the start)."""

    method: Method
    units: list[Tensor]
    u: list[Tensor] = field(default_factory=list)
    A: list[Tensor] = field(default_factory=list)
    tau: list[Tensor] = field(default_factory=list)
    M: list[Tensor] = field(default_factory=list)

    def leaves(self) -> list[Tensor]:
        return self.u + self.A + self.tau + self.M

    def tensors(self) -> tuple[dict[str, Tensor], ...]:
        if self.method == "steer":
            return tuple({"vector": n * u} for n, u in zip(self.units, self.u))
        out = []
        for n, A, tau, M in zip(self.units, self.A, self.tau, self.M):
            Q, _ = torch.linalg.qr(A)
            out.append({"basis": Q.T, "map": M, "target": n * tau})
        return tuple(out)


def _spread(x: Tensor) -> Tensor:
    """Per-column standard deviation, floored at a thousandth of the mean one (no zero units)."""
    sd = x.std(0) if x.shape[0] > 1 else x.abs().mean(0)
    return sd.clamp_min(1e-3 * float(sd.mean()) + 1e-12)


def _init_params(method: Method, acts: list[Tensor], d: int, rank: int, seed: int,
                 init: "LearnedIntervention | None", directions: list[Tensor] | None = None) -> _Params:
    g = torch.Generator().manual_seed(seed)
    p = _Params(method, [])
    for i, x in enumerate(acts):
        if method == "steer":
            unit = _spread(x)
            start = init.scale * init.tensors[i]["vector"] / unit if init is not None else torch.zeros(d)
            p.units.append(unit)
            p.u.append(start.detach().clone().float().requires_grad_(True))
            continue
        if init is not None:
            A = init.tensors[i]["basis"].T.detach().clone().float()
            Q = A
        else:
            A = torch.randn(d, rank, generator=g)
            if directions is not None and float(directions[i].norm()) > 0:
                # the first basis vector starts on the readings' difference of means (the rest at random)
                A[:, 0] = directions[i].float().cpu() / directions[i].norm() * math.sqrt(d)
            Q, _ = torch.linalg.qr(A)
        proj = x @ Q
        unit = _spread(proj)
        # the target starts where the fit at the previous budget left it, or at the mean of the activations
        tau = (init.tensors[i]["target"].float() if init is not None else torch.zeros(rank)) / unit
        M = (init.tensors[i].get("map", torch.zeros(rank, rank)).float() if init is not None else torch.eye(rank))
        p.units.append(unit)
        p.A.append(A.requires_grad_(True))
        p.tau.append(tau.detach().clone().requires_grad_(True))
        p.M.append(M.detach().clone().requires_grad_(True))
    return p


def _rescale(model: "Model", iv: LearnedIntervention, heldout: KLText, budget: float, bisect: int,
             max_scale: float, log: Callable[[str], Any] | None) -> tuple[float, float, list[tuple[float, float]]]:
    """The largest scale whose held-out KL was measured within ``budget`` (module docstring), its KL and every
    (scale, KL) tried."""
    tried: list[tuple[float, float]] = []

    def kl(a: float) -> float:
        k = mean_kl(model, heldout, dataclasses.replace(iv, scale=a))
        tried.append((a, k))
        if log:
            log(f"  rescale {a:.3f}: held-out KL {k:.4f} (budget {budget})")
        return k

    lo, lo_kl, hi = 0.0, 0.0, None
    a = 1.0
    k = kl(a)
    if k <= budget:
        lo, lo_kl = a, k
        while k < NEAR_BUDGET * budget and a < max_scale:
            a = min(2 * a, max_scale)
            k = kl(a)
            if k > budget:
                hi = a
                break
            lo, lo_kl = a, k
    else:
        hi = a
    if hi is not None:
        for _ in range(bisect):
            mid = (lo + hi) / 2
            k = kl(mid)
            if k <= budget:
                lo, lo_kl = mid, k
                if k >= NEAR_BUDGET * budget:
                    break
            else:
                hi = mid
    return lo, lo_kl, tried


def fit_learned(model: "Model", suite: "Suite", method: Method, sites: Sequence[Site], budget: float,
                rank: int = 1, where: Where = "pre_disambiguator", n_words: int = 2, conditions: Conditions = "all",
                training: LearnedTraining = LearnedTraining(), corpus: NaturalStories | None = None,
                heldout: KLText | None = None, init: LearnedIntervention | None = None,
                log: Callable[[str], Any] | None = None) -> LearnedIntervention:
    """Fit the strongest collapse toward the preferred reading within a KL budget (module docstring).

    Args:
        model: the model (its weights are not changed).
        suite: the evaluated suite: gives the constructions to train on, the words training sentences must not
            share, and the sentences the fitted edit is placed on (``where``, ``n_words``, ``conditions``).
        method: "steer" (a vector per site) or "subspace" (a rank-``rank`` subspace set to a learned target).
        sites: where to edit (typically ``Site(L, "resid_post")`` for a few layers).
        budget: the largest mean KL (nats per token) from the original model on held-out Natural Stories text.
        rank: the subspace's dimension (``subspace`` only).
        where, n_words, conditions: the positions edited (as for the other interventions).
        training: steps, learning rate, batch sizes, stories and the rescale (:class:`LearnedTraining`).
        corpus: Natural Stories (default: ``training.naturalstories`` or the shipped copy).
        heldout: a precomputed :func:`heldout_text` (to share between fits; must match ``training``).
        init: a fitted intervention to start from (a warm start, e.g. the fit at a smaller budget).
        log: progress messages.

    Returns:
        A frozen :class:`LearnedIntervention` placed on ``suite``; ``info`` holds its provenance.

    Example:
        >>> iv = fit_learned(model, load_suite("npz"), "steer", [Site(6, "resid_post")], budget=0.05)
        >>> with iv.apply(model):
        ...     readings = mi.reading_probabilities(model, suite)
    """
    t0 = time.perf_counter()
    if budget <= 0 or not math.isfinite(budget):
        raise ConfigError(f"the KL budget must be a positive number of nats per token, got {budget}")
    if method not in METHODS:
        raise ConfigError(f"unknown learned intervention method {method!r}: choose steer or subspace")
    if not sites:
        raise ConfigError("a learned intervention needs at least one site (layers=...)")
    for s in sites:
        s.check(model)
    if method == "subspace" and not 1 <= rank <= model.d_model:
        raise ConfigError(f"subspace rank {rank} must lie in 1-{model.d_model} (the model's width)")
    if init is not None and (init.method != method or [str(s) for s in init.sites] != [str(s) for s in sites]
                             or init.rank != (rank if method == "subspace" else 1)):
        raise ConfigError("a warm start must have the same method, sites and rank as the fit")
    training.check_stories()
    corpus = corpus if corpus is not None else load_natural_stories(training.naturalstories)
    for s in (*training.train_stories, *training.heldout_stories):
        corpus.story_words(s)  # an unknown story is refused by name
    sites = [s.unpositioned for s in sites]
    prompts = reading_prompts(model, suite, training.n_fit, training.seed, where, n_words)
    windows = training_windows(model, corpus, training.train_stories, training.train_words, training.window)
    if heldout is None:
        heldout = heldout_text(model, corpus, training.heldout_stories, training.heldout_words)
    elif heldout.info.get("stories") != list(training.heldout_stories):
        raise ConfigError(f"the held-out text covers stories {heldout.info.get('stories')}, the training settings "
                          f"name {list(training.heldout_stories)}")
    train_scope = prompts.scope(model)
    norms, acts = _site_stats(model, prompts, sites)
    directions = _reading_difference(model, prompts, sites) if method == "subspace" and init is None else None
    params = _init_params(method, acts, model.d_model, rank, training.seed, init, directions)
    rng = np.random.default_rng(training.seed)
    # each step takes sentences of both readings in equal numbers (from a shuffled queue per reading)
    pools = [[i for i, p in enumerate(prompts.preferred_reading) if p == want] for want in (True, False)]
    pools = [pool for pool in pools if pool]
    queues: list[list[int]] = [[] for _ in pools]
    shares = [training.prefixes // len(pools) + (k < training.prefixes % len(pools)) for k in range(len(pools))]
    order_w: list[int] = []
    history: list[dict[str, float]] = []
    log_lam = math.log(1.0 / budget)  # a KL at the budget costs as much as a nat of cross-entropy
    with frozen_weights(model):
        opt = torch.optim.Adam(params.leaves(), lr=training.lr)
        for step in range(training.steps):
            idx = []
            for pool, queue, n in zip(pools, queues, shares):
                while len(queue) < n:
                    queue += [pool[j] for j in rng.permutation(len(pool))]
                idx += queue[:n]
                del queue[:n]
            if len(order_w) < training.windows:
                order_w += rng.permutation(len(windows.seqs)).tolist()
            widx, order_w = order_w[:training.windows], order_w[training.windows:]
            wseqs = [windows.seqs[i] for i in widx]
            with torch.no_grad():
                ref = _logprobs(model, wseqs)
            iv = LearnedIntervention(method, tuple(sites), params.tensors(), 1.0, train_scope)
            with apply_interventions(model, [iv]):
                m_p, m_d = reading_logits(model, prompts, idx)
                got = _logprobs(model, wseqs)
            ce = torch.nn.functional.softplus(m_d - m_p).mean()
            kl = kl_terms(ref, got) / sum(len(s) - 1 for s in wseqs)
            lam = math.exp(log_lam)
            loss = ce + lam * kl
            opt.zero_grad()
            loss.backward()
            opt.step()
            k = float(kl.detach())
            p_disp = float(torch.sigmoid(m_d - m_p).mean().detach())
            history.append({"step": step, "cross_entropy": float(ce.detach()), "p_dispreferred": p_disp, "train_kl": k,
                            "lambda": lam})
            log_lam = float(np.clip(log_lam + 0.5 * np.clip(math.log(max(k, 1e-12) / budget), -1.0, 2.0), -15, 15))
            if log and (step % 10 == 0 or step == training.steps - 1):
                log(f"  step {step}: P(dispreferred) {p_disp:.3f}, train KL {k:.4f}, lambda {lam:.3g}")
    final = tuple({k: v.detach().clone() for k, v in t.items()} for t in params.tensors())
    placed = TokenTable.from_suites(model, [suite], where, n_words, conditions, unknown="all")
    iv = LearnedIntervention(method, tuple(sites), final, 1.0, placed)
    scale, kl_heldout, tried = _rescale(model, iv, heldout, budget, training.bisect, training.max_scale, log)
    info = {
        "model": model.identity(), "model_name": model.name, "method": method, "sites": [str(s) for s in sites],
        "rank": rank if method == "subspace" else 1, "budget": budget, "seed": training.seed,
        "training_sha256": prompts.info["training_sha256"], "training_sentences": prompts.info,
        "heldout_kl": kl_heldout, "heldout": {**heldout.info, "n_tokens": heldout.n_tokens}, "scale": scale,
        "rescale_tried": tried, "train_windows": {**windows.info, "n_windows": len(windows.seqs)},
        "training": training.model_dump(mode="json"), "activation_norms": norms,
        "warm_start": (init.info.get("budget") if init is not None else None),
        "history": history, "fit_seconds": time.perf_counter() - t0, "suite": suite.identity(),
        "kl": "mean KL(original || edited), nats per token, every position but BOS",
    }
    if log:
        log(f"  fitted learned {method} at {', '.join(map(str, sites))}: scale {scale:.3f}, held-out KL "
            f"{kl_heldout:.4f} <= {budget} ({info['fit_seconds']:.0f} s)")
    return dataclasses.replace(iv, scale=scale, info=info)
