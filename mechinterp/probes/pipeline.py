"""One probe run: a model, a suite, layers x components, settings and a seed -> tidy tables and artifacts.

Steps (each construction in the suite that has a generator, see :mod:`mechinterp.probes.templates`):

1. Generate the unambiguous training sentences of every construction (seeded) and drop those that share a
   content word with the suite under test (:mod:`mechinterp.probes.lexical`).
2. Read activations at the target word and at the two baseline positions (:mod:`.activations`).
3. Per site: grouped held-out accuracy; control task, the task on the same random split, and selectivity;
   random-direction baseline; lexical baselines at the word before the target and the first token, and the
   margin over them; transfer of the probe to the other constructions' training sentences.
4. Fit the probe on all training sentences, save it as a :class:`ProbeArtifact`, and read the suite's
   ambiguous region in both conditions (:mod:`.readout`).

Tables: ``metrics`` (one row per construction x site x measure), ``readout`` (one row per item x condition x
site), ``verdicts`` (one row per construction x site), ``training`` (the sentences used, one row each),
``confounds`` (shallow-rule diagnostics per construction).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from mechinterp.errors import ConfigError
from mechinterp.locate.sites import RegionPos, Site
from mechinterp.probes import activations as acts_mod
from mechinterp.probes.artifact import ProbeArtifact
from mechinterp.probes.confounds import cue_report
from mechinterp.probes.evaluate import (
    Estimate,
    accuracy,
    paired_difference,
    selectivity,
)
from mechinterp.probes.labels import canonical, readings, transfer_kind
from mechinterp.probes.lexical import suite_content_words
from mechinterp.probes.readout import DecisionRule, verdict_row
from mechinterp.probes.templates import TrainingSet, generate, supported_constructions
from mechinterp.probes.train import (
    ProbeSettings,
    check_disjoint,
    control_labels,
    cross_val_proba,
    fit_full,
    grouped_folds,
    lexical_groups,
    random_direction_proba,
    random_folds,
)
from mechinterp.progress import progress


@dataclass(frozen=True)
class ProbeResult:
    metrics: pd.DataFrame
    readout: pd.DataFrame
    verdicts: pd.DataFrame
    training: pd.DataFrame
    confounds: pd.DataFrame
    artifacts: dict[str, ProbeArtifact] = field(default_factory=dict)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"metrics": self.metrics, "readout": self.readout, "verdicts": self.verdicts,
                "training": self.training, "confounds": self.confounds}


def artifact_key(construction: str, layer: int, component: str) -> str:
    return f"{construction.replace('/', '')}/{component}-L{layer:02d}"


def suite_constructions(suite: Any) -> list[str]:
    known = set(supported_constructions())
    cons = [canonical(c) for c in suite.constructions]
    out = [c for c in dict.fromkeys(cons) if c in known]
    if not out:
        raise ConfigError(
            f"suite {suite.name!r} has constructions {', '.join(suite.constructions)}; probes need one of "
            f"{', '.join(sorted(known))}"
        )
    return out


def training_sets(suite: Any, settings: ProbeSettings, seed: int, constructions: Sequence[str]) -> dict[str, tuple[TrainingSet, TrainingSet]]:
    """(generated, kept) per construction: kept shares no content word with ``suite``."""
    words = suite_content_words(suite)
    out = {}
    for c in constructions:
        full = generate(c, settings.n_per_class, seed)
        out[c] = (full, full.without_words(words, min_per_class=max(10, settings.folds * 2)))
    return out


def disjoint_training_sets(suite: Any, n_per_class: int = 150, seed: int = 0,
                           min_per_class: int = 10) -> dict[str, TrainingSet]:
    """Per construction of ``suite`` that the templates support: the generated sentences that share no content
    word with ``suite`` (what interventions and SAE reading features are fit on)."""
    words = suite_content_words(suite)
    return {c: generate(c, n_per_class, seed).without_words(words, min_per_class=min_per_class)
            for c in suite_constructions(suite)}


def _rows_of(full: TrainingSet, kept: TrainingSet) -> np.ndarray:
    pos = {s.text: i for i, s in enumerate(full.sentences)}
    return np.array([pos[s.text] for s in kept.sentences])


def run_probes(
    model: Any,
    suite: Any,
    layers: Sequence[int],
    components: Sequence[str] = ("resid_post",),
    settings: ProbeSettings = ProbeSettings(),
    seed: int = 0,
    backend: str = "hf",
    batch_size: int = 32,
    rule: DecisionRule | None = None,
    show_progress: bool = True,
) -> ProbeResult:
    """Train and evaluate reading probes for every construction of ``suite`` (see the module docstring)."""
    rule = rule or DecisionRule(min_accuracy=settings.min_accuracy)
    layers = acts_mod.check_layers(model, layers)
    components = list(dict.fromkeys(components))
    mine = suite_constructions(suite)
    others = [c for c in supported_constructions() if c not in mine] if settings.transfer else []
    sets = training_sets(suite, settings, seed, mine + others)
    positions = ("target", *acts_mod.BASELINE_POSITIONS) if settings.baselines else ("target",)

    X: dict[str, dict] = {}
    for c, (full, kept) in sets.items():
        # every construction at every position: the same (memoised) read serves every suite of a sweep
        got = acts_mod.collect_training(model, full, layers, components, settings.which, positions, backend, batch_size)
        rows = _rows_of(full, kept)
        X[c] = {k: v[rows] for k, v in got.items()}

    base = {"model": model.name, "suite": suite.name, "seed": seed, "C": settings.C,
            "n_per_class": settings.n_per_class, "which": settings.which}
    metric_rows: list[dict] = []
    readout_rows: list[dict] = []
    verdict_rows: list[dict] = []
    artifacts: dict[str, ProbeArtifact] = {}
    nb = settings.bootstrap

    def add(c: str, L: int, comp: str, pos: str, measure: str, est: Estimate, **extra: Any) -> None:
        metric_rows.append({**base, "construction": c, "layer": L, "component": comp, "position": pos,
                            "measure": measure, **est.as_dict(), "target_construction": extra.pop("target", c),
                            "transfer_kind": extra.pop("kind", "same"), **extra})

    for c in mine:
        full, ts = sets[c]
        y = np.array(ts.labels)
        lexical = [s.lexical for s in ts.sentences]
        groups = lexical_groups(lexical)
        folds_g = grouped_folds(groups, settings.folds, seed)
        check_disjoint(folds_g, lexical)
        folds_r = random_folds(y, settings.folds, seed)
        ctrl_y = control_labels(ts.targets, y, seed)
        pref, other = readings(c)
        stim_rows, stim_X = acts_mod.collect_stimuli(model, suite, c, layers, components, settings.which, backend, batch_size)
        grid = [(L, comp) for L in layers for comp in components]
        for L, comp in progress(grid, desc=f"{model.name} {suite.name} {c}", disable=not show_progress):
            Xt = X[c][(L, comp, "target")]
            p_g = cross_val_proba(Xt, y, folds_g, settings.C, settings.max_iter)
            acc = accuracy(p_g, y, groups, nb, seed)
            add(c, L, comp, "target", "accuracy", acc)
            site_metrics = {"accuracy": acc.as_dict()}
            if settings.control:
                p_r = cross_val_proba(Xt, y, folds_r, settings.C, settings.max_iter)
                p_c = cross_val_proba(Xt, ctrl_y, folds_r, settings.C, settings.max_iter)
                add(c, L, comp, "target", "accuracy_random_split", accuracy(p_r, y, groups, nb, seed))
                add(c, L, comp, "target", "control_accuracy", accuracy(p_c, ctrl_y, groups, nb, seed))
                sel = selectivity(p_r, y, p_c, ctrl_y, groups, nb, seed)
                add(c, L, comp, "target", "selectivity", sel)
                site_metrics["selectivity"] = sel.as_dict()
            if settings.random_directions:
                P = random_direction_proba(Xt, y, folds_g, settings.random_directions, seed)
                add(c, L, comp, "target", "random_direction_accuracy", accuracy(P, y, groups, nb, seed))
            if settings.baselines:
                for pos in acts_mod.BASELINE_POSITIONS:
                    p_b = cross_val_proba(X[c][(L, comp, pos)], y, folds_g, settings.C, settings.max_iter)
                    add(c, L, comp, pos, "accuracy", accuracy(p_b, y, groups, nb, seed))
                    margin = paired_difference(p_g, y, p_b, y, groups, nb, seed)
                    add(c, L, comp, "target", f"margin_over_{pos}", margin)
                    site_metrics[f"margin_over_{pos}"] = margin.as_dict()
            fit = fit_full(Xt, y, settings.C, settings.max_iter)
            art = ProbeArtifact(
                coef=torch.tensor(fit.coef, dtype=torch.float32), intercept=fit.intercept,
                mean=torch.tensor(fit.mean, dtype=torch.float32), scale=torch.tensor(fit.scale, dtype=torch.float32),
                site=_site(L, comp, settings.which), construction=c, readings=(pref, other),
                model=model.identity(), suite=suite.identity(),
                training={
                    "generator": "mechinterp.probes.templates", "seed": seed, "n": len(ts),
                    "n_dropped_for_overlap": len(ts.dropped), "position": "region 3 (target) of each sentence",
                    "texts": [s.text for s in ts.sentences], "labels": ts.labels,
                    "groups": [int(g) for g in groups],
                },
                metrics=site_metrics, settings=settings.model_dump(),
            )
            artifacts[artifact_key(c, L, comp)] = art
            for c2 in others + [x for x in mine if x != c]:
                _, ts2 = sets[c2]
                y2 = np.array(ts2.labels)
                p2 = art.predict_proba(X[c2][(L, comp, "target")]).double().numpy()
                g2 = lexical_groups([s.lexical for s in ts2.sentences])
                add(c, L, comp, "target", "transfer_accuracy", accuracy(p2, y2, g2, nb, seed),
                    target=c2, kind=transfer_kind(c, c2))
            # readout on the suite
            p_s = art.predict_proba(stim_X[(L, comp)]).double().numpy()
            for r, p in zip(stim_rows, p_s):
                readout_rows.append({**base, "construction": c, "layer": L, "component": comp, **r,
                                     "p_preferred": float(p), "preferred_reading": pref, "other_reading": other})
            amb_mask = np.array([bool(r["ambiguous"]) for r in stim_rows])
            items = np.array([r["item"] for r in stim_rows])
            anchor_pref = float(p_g[y == 1].mean())
            anchor_other = float(p_g[y == 0].mean())
            v = verdict_row(p_s[amb_mask], p_s[~amb_mask], items[amb_mask], items[~amb_mask], anchor_pref,
                            anchor_other, acc.ci_low, pref, other, nb, seed, rule)
            verdict_rows.append({**base, "construction": c, "layer": L, "component": comp,
                                 "accuracy": acc.value, "accuracy_low": acc.ci_low, "accuracy_high": acc.ci_high,
                                 "preferred_reading": pref, "other_reading": other, **v})

    training = pd.concat(
        [kept.frame().assign(used=True) for _, kept in sets.values()]
        + [pd.DataFrame({"text": list(kept.dropped), "construction": c, "used": False}) for c, (_, kept) in sets.items()],
        ignore_index=True,
    ).assign(model=model.name, suite=suite.name, seed=seed)
    confounds = pd.concat([cue_report(kept) for _, kept in sets.values()], ignore_index=True).assign(
        suite=suite.name, seed=seed)
    return ProbeResult(
        metrics=pd.DataFrame(metric_rows), readout=pd.DataFrame(readout_rows), verdicts=pd.DataFrame(verdict_rows),
        training=training, confounds=confounds, artifacts=artifacts,
    )


def _site(layer: int, component: str, which: str):
    return Site(layer, component, RegionPos("ambiguous", which))  # pyright: ignore[reportArgumentType]  # component and which are validated by Site and RegionPos
