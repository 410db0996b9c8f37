"""Activations labelled by reading (or condition): the data erasers, clamps and SAE feature choices are fit on.

A first source is a stimulus suite: every token that a scope selects (e.g. the two words before the
disambiguating word) in each condition, labelled by its condition (``ambiguous`` / ``unambiguous``). Mind
docs/science.md: in a minimal pair this label is carried by the cue as much as by a reading. Fit on a suite other
than the one evaluated (the built-in suites share no verbs or nouns with the SAP items) so that the
intervention is not tuned to the test items. Any other labelled data (for instance the varied unambiguous
sentences of the probes package) can be wrapped in :class:`Labelled` directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Sequence

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.errors import ConfigError
from mechinterp.interventions.base import Where, positions_of
from mechinterp.locate.activations import collect_rows
from mechinterp.probes.activations import collect_training
from mechinterp.probes.pipeline import disjoint_training_sets
from mechinterp.tokenization import tokenize_condition

if TYPE_CHECKING:
    from mechinterp.locate.sites import Site
    from mechinterp.models import Backend, Model
    from mechinterp.stimuli.types import Suite

LabelKind = Literal["condition"]


@dataclass(frozen=True)
class Labelled:
    """Rows of activations at one or more sites (same rows for every site), each with a class label and the
    item it came from."""

    x: dict["Site", Float[Tensor, "n d"]]
    labels: tuple[str, ...]
    groups: tuple[str, ...]
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.labels)
        if len(self.groups) != n:
            raise ConfigError(f"labelled activations: {len(self.groups)} groups for {n} labels")
        for s, t in self.x.items():
            if t.ndim != 2 or t.shape[0] != n:
                raise ConfigError(f"labelled activations at {s}: shape {tuple(t.shape)} does not match {n} labels")
        if len(self.classes) < 2:
            raise ConfigError(f"labelled activations need at least two classes, got {self.classes}")

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.labels)))

    def y(self) -> np.ndarray:
        """Class index of each row (in :attr:`classes` order)."""
        idx = {c: i for i, c in enumerate(self.classes)}
        return np.array([idx[label] for label in self.labels])

    def at(self, site: "Site") -> Float[Tensor, "n d"]:
        site = site.unpositioned
        if site not in self.x:
            raise ConfigError(f"no labelled activations at {site} (have {', '.join(map(str, self.x))})")
        return self.x[site]

    def of_class(self, site: "Site", cls: str) -> Float[Tensor, "m d"]:
        if cls not in self.classes:
            raise ConfigError(f"unknown class {cls!r}: the labels are {', '.join(self.classes)}")
        mask = torch.tensor([label == cls for label in self.labels])
        return self.at(site)[mask]


def suite_activations(model: "Model", suites: Sequence["Suite"], sites: Sequence["Site"], where: Where = "pre_disambiguator",
                      n_words: int = 2, label: LabelKind = "condition", backend: "Backend" = "hf",
                      batch_size: int = 16) -> Labelled:
    """Activations at ``sites`` (their positions are ignored) of the tokens ``where`` selects in every
    condition of ``suites``, labelled by condition.

    Args:
        model: The model.
        suites: Suites whose conditions say whether they are ambiguous.
        sites: Where to read (layer and component; the position comes from ``where``).
        where: ``pre_disambiguator`` (the ``n_words`` words before the disambiguating region),
            ``ambiguous_region`` or ``prefix`` (every token before the disambiguating region).
        n_words: Words before the disambiguator, for ``pre_disambiguator``.
        label: What labels a row: ``condition`` (``ambiguous`` / ``unambiguous``).
        backend: The forward backend (same numbers on each).
        batch_size: Sequences per forward pass.

    Returns:
        A :class:`Labelled`: ``x[site]`` (one row per selected token), ``labels`` and ``groups`` (the item each
        row comes from, for grouped cross-validation).

    Example:
        >>> import mechinterp as mi
        >>> model, site = mi.load_model("gemma3-270m"), mi.Site(6, "resid_post")
        >>> acts = mi.suite_activations(model, [mi.load_suite("npz").head(4)], [site])
        >>> acts.x[site].shape[0] == len(acts.labels), acts.classes
        (True, ('ambiguous', 'unambiguous'))
    """
    if label != "condition":
        raise ConfigError(f"unknown label kind {label!r}: suites give 'condition' labels")
    seqs, labels_seq, groups_seq, keep = [], [], [], []
    for suite in suites:
        for it in suite.items:
            for c in it.conditions:
                if c.ambiguous is None:
                    raise ConfigError(f"suite {suite.name!r} item {it.key} condition {c.name!r} does not say whether "
                                      "it is ambiguous, so it cannot be labelled")
                tt = tokenize_condition(model, c)
                seqs.append(tt)
                labels_seq.append("ambiguous" if c.ambiguous else "unambiguous")
                groups_seq.append(f"{suite.name}:{it.key}")
                keep.append(set(positions_of(tt, suite, where, n_words)))
    plain = list(dict.fromkeys(s.unpositioned for s in sites))
    got = collect_rows(model, seqs, plain, backend=backend, batch_size=batch_size)
    rows = got.rows[plain[0]]
    sel = torch.tensor([t in keep[int(s)] for s, t in rows.tolist()], dtype=torch.bool)
    seq_of = rows[sel, 0].tolist()
    x = {s: got.tensors[s][sel] for s in plain}
    return Labelled(
        x=x, labels=tuple(labels_seq[i] for i in seq_of), groups=tuple(groups_seq[i] for i in seq_of),
        info={"source": "suite", "suites": [s.name for s in suites], "suite_sha256": [s.sha256 for s in suites],
              "where": where, "n_words": n_words, "label": label, "n_sequences": len(seqs), "n_rows": int(sel.sum())},
    )


READINGS_SOURCE = "readings"
"""``fit=readings``: fit on generated unambiguous sentences labelled by reading, not on minimal pairs."""


def reading_activations(model: "Model", suite: "Suite", sites: Sequence["Site"], n_per_class: int = 150,
                        seed: int = 0, backend: "Backend" = "hf", batch_size: int = 32) -> Labelled:
    """Activations at ``sites`` of the probed word of the probes package's generated training sentences for
    each construction of ``suite``, labelled ``preferred`` / ``dispreferred`` by the reading the sentence's
    structure fixes (see ``mechinterp/probes/README.md``).

    Unlike :func:`suite_activations`, the label is not carried by a cue before the probed word (docs/science.md):
    both readings use every cue word, and a sentence that shares a content word with ``suite`` is dropped,
    so the intervention is never fit on the test items' words. Constructions are pooled, so one eraser or
    direction serves a suite of several constructions (class 1 of each is the reading people prefer)."""
    plain = list(dict.fromkeys(s.unpositioned for s in sites))
    layers = sorted({s.layer for s in plain})
    comps = sorted({s.component for s in plain})
    xs: dict[Any, list[np.ndarray]] = {s: [] for s in plain}
    labels: list[str] = []
    groups: list[str] = []
    per_cons: dict[str, int] = {}
    for c, ts in disjoint_training_sets(suite, n_per_class, seed).items():
        got = collect_training(model, ts, layers, comps, positions=("target",), backend=backend,
                               batch_size=batch_size)
        for s in plain:
            xs[s].append(got[(s.layer, s.component, "target")])
        labels += ["preferred" if lab == 1 else "dispreferred" for lab in ts.labels]
        groups += [f"{c}:{g}" for g in ts.groups]
        per_cons[c] = len(ts)
    x = {s: torch.from_numpy(np.concatenate(v)).float() for s, v in xs.items()}
    return Labelled(
        x=x, labels=tuple(labels), groups=tuple(groups),
        info={"source": READINGS_SOURCE, "constructions": per_cons, "n_per_class": n_per_class, "seed": seed,
              "label": "reading (preferred/dispreferred)", "n_rows": len(labels)},
    )
