"""Human garden-path effects from the SAP Benchmark (Huang et al. 2024, JML; doi 10.1016/j.jml.2024.104510).

Three sources, all returned as tidy tables with the same columns (:data:`EFFECT_COLUMNS`):

* :func:`published_effects` — the paper's headline table per construction and ROI (upstream
  ``effects/summary_by_construction_ms.csv``);
* :func:`read_effect_table` / :func:`load_sap_effects` — the upstream posterior effect tables
  (``effects/<spr|logrt>/<Subset>/by_construction*.csv`` and ``by_item*.csv``);
* :func:`load_sap_trials` and :func:`trial_effects` — trial-level reading times (the public NP/Z + agreement
  file) and simple empirical effects computed from them (difference of mean RTs, participant bootstrap).

ROI 0 is the disambiguating word, ROI 1 and 2 the two words after it. Effects are ambiguous minus unambiguous
reading time in ms (``measure="spr"``) or log ms (``"logrt"``).

Item files and effect tables name things differently: the ClassicGP file's constructions (NP/Z, NP/S, MV/RR)
are the coefficients GPE_NPZ, GPE_NPS, GPE_MVRR, while the long-layout files name one construction per file
(RelativeClause, AttachmentAmbiguity, Agreement) and several conditions, and the effect tables one coefficient
per contrast of two conditions (RC, GPE_high, GPE_low, Agr). :data:`SAP_CONTRASTS` is the one mapping from a
subset's item-file construction and conditions to its coefficients, each with the evidence in the shipped files
for it; :func:`sap_contrast_suite` rewrites a long-layout item file into one ambiguous/unambiguous pair per item
and coefficient (the harder condition as "ambiguous"), so that garden-path effects, ``mechinterp fit`` and the
human comparison read it like ClassicGP.

Every function reads the copy of the benchmark shipped with the package (:func:`mechinterp.datasets.sap_dir`,
MIT, licence and citation beside it) unless given another SAP directory in the upstream layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from mechinterp.datasets import sap_dir
from mechinterp.errors import ConfigError, SuiteError
from mechinterp.stimuli.types import Ambiguity, Item, Suite

CITATION = (
    "Huang, Arehalli, Kugemoto, Muxica, Prasad, Dillon & Linzen (2024). Large-scale benchmark yields no evidence "
    "that language model surprisal explains syntactic disambiguation difficulty. Journal of Memory and Language. "
    "doi:10.1016/j.jml.2024.104510"
)
EFFECT_COLUMNS = ["subset", "coef", "construction", "roi", "item", "source", "measure", "effect", "ci_low", "ci_high"]


@dataclass(frozen=True)
class SapContrast:
    """One coefficient of the SAP effect tables as a contrast of two conditions of an item file.

    Attributes:
        subset: the SAP subset (``items_<subset>.csv``, ``effects/<measure>/<subset>/``).
        construction: the items' construction as :func:`mechinterp.stimuli.load_suite` reads the item file.
        coef: the coefficient of the effect tables (``coef`` column).
        harder: the condition whose reading time the effect adds (becomes "ambiguous").
        baseline: the condition the effect is measured against (becomes "unambiguous").
        why: the evidence in the shipped files for this pairing.
    """

    subset: str
    construction: str
    coef: str
    harder: str
    baseline: str
    why: str


#: Every SAP subset with published human effects: item-file construction and conditions -> coefficient.
SAP_CONTRASTS: tuple[SapContrast, ...] = (
    *(SapContrast("ClassicGP", cons, coef, "ambiguous", "unambiguous",
                  f"items_ClassicGP.csv condition {label}_UAMB gives the construction and pairs an ambiguous with an "
                  f"unambiguous sentence; by_item_unamb.csv names the baseline unamb{label}")
      for cons, coef, label in (("MV/RR", "GPE_MVRR", "MVRR"), ("NP/S", "GPE_NPS", "NPS"), ("NP/Z", "GPE_NPZ", "NPZ"))),
    SapContrast("RelativeClause", "RelativeClause", "RC", "RC_Obj", "RC_Subj",
                "items_RelativeClause.csv has two conditions per item, RC_Subj and RC_Obj, with targetPosition at the "
                "embedded verb in both; the paper's by-item GPT-2-only predictions at ROI 0 "
                "(effects/spr/correlation/df_pointestimate_RC.csv) correlate r = +0.70 over items with GPT-2 "
                "surprisal (surprisal_gpt2/items_RelativeClause.gpt2.csv) of RC_Obj minus RC_Subj at that word "
                "(-0.70 the other way round): the object relative is the harder condition"),
    SapContrast("AttachmentAmbiguity", "AttachmentAmbiguity", "GPE_high", "AttachHigh", "AttachMulti",
                "items_AttachmentAmbiguity.csv has three conditions per item: AttachMulti (both nouns singular, the "
                "agreeing verb at disambPosition allows either attachment), AttachHigh and AttachLow (the verb "
                "agrees with the high / the low noun only); two coefficients share one reference, whose reading "
                "times by_item_multi.csv gives (as by_item_unamb.csv does for ClassicGP); GPT-2-only predictions "
                "for GPE_high at ROI 0 (df_pointestimate_AA.csv) correlate r = +0.58 with surprisal of AttachHigh "
                "minus AttachMulti"),
    SapContrast("AttachmentAmbiguity", "AttachmentAmbiguity", "GPE_low", "AttachLow", "AttachMulti",
                "as GPE_high, with the low noun: GPT-2-only predictions for GPE_low correlate best with surprisal "
                "of AttachLow minus AttachMulti (r = +0.44 at ROI 2; ROI 0 and 1 are near zero for every pairing)"),
    SapContrast("Agreement", "Agreement", "Agr", "UNAGREE", "AGREE",
                "items_Agreement.csv pairs UNAGREE ('the schedules deserves') with AGREE ('the schedule deserves'); "
                "in the trial-level file (trials/npz_agreement_trials.csv.gz, Type AGREE) every UNAGREE sentence is "
                "AMBIG=Amb and every AGREE sentence Unamb, and by_item_Agreed.csv gives the AGREE reading times"),
)
COEF_TO_CONSTRUCTION = {c.coef: c.construction for c in SAP_CONTRASTS if c.subset == "ClassicGP"}
SOURCES = {"": "human", "_gpt2": "gpt2", "_lstm": "lstm", "_nosurp": "no_surprisal", "_unamb": "human_unambiguous_rt"}
Measure = Literal["spr", "logrt"]


def construction_of_coef(coef: str) -> str:
    """The package's construction name for a SAP coefficient (GPE_NPZ -> NP/Z); others are kept."""
    c = str(coef)
    if c in COEF_TO_CONSTRUCTION:
        return COEF_TO_CONSTRUCTION[c]
    if c.startswith("unamb"):  # by_item_unamb.csv: unambiguous reading times, e.g. unambMVRR
        return COEF_TO_CONSTRUCTION.get("GPE_" + c[len("unamb"):], c)
    return c


@lru_cache(maxsize=1)
def _published() -> pd.DataFrame:
    wide = pd.read_csv(sap_dir() / "effects" / "summary_by_construction_ms.csv")
    rows = []
    for _, r in wide.iterrows():
        base = {"subset": r["subset"], "coef": r["coef"], "construction": construction_of_coef(r["coef"]),
                "roi": int(r["ROI"]),
                "item": pd.NA, "measure": "spr"}
        rows.append({**base, "source": "human", "effect": r["human_empirical"], "ci_low": r["human_lower95"],
                     "ci_high": r["human_upper95"]})
        for col, src in (("gpt2_predicted", "gpt2"), ("lstm_predicted", "lstm"),
                         ("no_surprisal_baseline_predicted", "no_surprisal")):
            rows.append({**base, "source": src, "effect": r[col], "ci_low": np.nan, "ci_high": np.nan})
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)


def published_effects(subset: str | None = "ClassicGP", source: str | None = "human") -> pd.DataFrame:
    """The SAP Benchmark's published effects per construction and ROI (ms; 95% credible intervals for humans).

    ``subset``: ClassicGP, RelativeClause, AttachmentAmbiguity, Agreement, or None for all. ``source``: human,
    gpt2, lstm, no_surprisal (the paper's predictions, without intervals), or None for all."""
    df = _published()
    for col, val in (("subset", subset), ("source", source)):
        if val is not None:
            known = sorted(df[col].unique())
            if val not in known:
                raise ConfigError(f"published SAP effects have no {col} {val!r} (known: {', '.join(known)})")
            df = df[df[col] == val]
    return df.reset_index(drop=True).copy()  # pyright: ignore[reportReturnType]  # pandas stubs type this frame expression as DataFrame | Series


def noise_ceiling(path: str | Path | None = None) -> pd.DataFrame:
    """Split-half reliability of the by-item human effects (columns coef, construction, roi, split_half_r):
    from the shipped benchmark, or from an upstream ``noiseceiling_summary.csv`` (or a SAP root directory) at
    ``path``."""
    path = Path(path) if path is not None else sap_dir()
    if path.is_dir():
        path = path / "effects" / "noiseceiling_summary.csv"
    df = _read_csv(path)
    if "ROI" not in df.columns:
        raise ConfigError(f"{path} is not a SAP noise-ceiling table (expected a ROI column and one column per coefficient)")
    long = df.melt(id_vars="ROI", var_name="coef", value_name="split_half_r").rename(columns={"ROI": "roi"})
    long["roi"] = long["roi"].astype(int)
    long.insert(1, "construction", long["coef"].map(construction_of_coef))
    return long[["coef", "construction", "roi", "split_half_r"]]  # pyright: ignore[reportReturnType]  # pandas stubs type this frame expression as DataFrame | Series


def _read_csv(path: Path, **kw) -> pd.DataFrame:
    if not path.exists():
        raise ConfigError(f"SAP data file {path} does not exist")
    try:
        return pd.read_csv(path, **kw)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise ConfigError(f"{path} is not a readable CSV file: {exc}") from exc


def sap_contrast_suite(suite: Suite, subset: str | None = None) -> Suite:
    """A SAP long-layout item file as one ambiguous/unambiguous pair per item and coefficient (:data:`SAP_CONTRASTS`).

    Each item of ``suite`` whose construction a contrast of ``subset`` names becomes one item per contrast:
    construction = the coefficient's construction name (:func:`construction_of_coef`: RC, GPE_high, GPE_low,
    Agr), the same item number, conditions "ambiguous" (the contrast's harder condition) and "unambiguous" (its
    baseline), and an ambiguity annotation whose disambiguating region is the item file's critical word (region
    2, the SAP's ROI 0). A suite that already pairs ambiguous and unambiguous versions (ClassicGP, the built-in
    suites) is returned unchanged.

    Args:
        suite: the suite (e.g. ``load_suite("sap:RelativeClause")``).
        subset: the SAP subset; default the one the file names (``items_<Subset>``).

    Returns:
        The paired suite.

    Raises:
        SuiteError: an item lacks a condition its contrast needs.

    Example:
        >>> from mechinterp.stimuli import load_suite
        >>> paired = sap_contrast_suite(load_suite("sap:AttachmentAmbiguity"))
        >>> paired.constructions, len(paired.items)
        (['GPE_high', 'GPE_low'], 48)
    """
    if suite.ambiguity is not None:
        return suite
    subset = subset or suite.name.removeprefix("items_")
    contrasts = [c for c in SAP_CONTRASTS if c.subset == subset]
    if not contrasts:
        return suite
    items = []
    for it in suite.items:
        for c in contrasts:
            if it.construction != c.construction:
                continue
            names = [x.name for x in it.conditions]
            if c.harder not in names or c.baseline not in names:
                raise SuiteError(f"suite {suite.name!r}, item {it.key}: coefficient {c.coef} contrasts conditions "
                                 f"{c.harder} and {c.baseline}, the item has {names}")
            items.append(Item(number=it.number, construction=construction_of_coef(c.coef),
                              provenance=f"{it.provenance or suite.name}: {c.coef} = {c.harder} - {c.baseline}",
                              conditions=(it.condition(c.harder).model_copy(update={"name": "ambiguous", "ambiguous": True}),
                                          it.condition(c.baseline).model_copy(update={"name": "unambiguous",
                                                                                      "ambiguous": False}))))
    if not items:
        return suite
    cons = sorted({it.construction for it in items if it.construction})
    return suite.model_copy(update={
        "items": tuple(items),
        "ambiguity": Ambiguity(construction=cons[0] if len(cons) == 1 else "mixed", disambiguating_region=2),
    })


def item_file_construction(construction: str) -> str:
    """The item-file construction a coefficient's construction comes from (GPE_high -> AttachmentAmbiguity, RC ->
    RelativeClause, NP/Z -> NP/Z); other names are kept. Contrasts of the same item file item (GPE_high and
    GPE_low share the AttachMulti sentence) belong together when items are resampled or split into folds.

    Example:
        >>> item_file_construction("GPE_low"), item_file_construction("NP/Z")
        ('AttachmentAmbiguity', 'NP/Z')
    """
    return next((c.construction for c in SAP_CONTRASTS if construction_of_coef(c.coef) == construction), construction)


def named_subset(suite: Suite) -> str | None:
    """The SAP subset a SAP item file (``items_<Subset>.csv``) names, when that subset has published human
    effects; None for any other suite (the built-in suites share constructions with SAP, not items)."""
    if not suite.name.startswith("items_"):
        return None
    name = suite.name.removeprefix("items_")
    return name if name in set(published_effects(None)["subset"]) else None


def human_subset(suite: Suite, subset: str | None = None) -> str:
    """The SAP subset whose published human effects a suite is compared with, checked before any model runs.

    Args:
        suite: The suite to compare (a SAP item file ``items_<Subset>.csv`` names its subset; any other suite is
            compared with ClassicGP, whose constructions NP/S, NP/Z and MV/RR the built-in suites share).
        subset: A subset to use instead of the one the suite names.

    Returns:
        The subset's name.

    Raises:
        ConfigError: the subset has no published human effect for one of the suite's constructions (one line
            naming the constructions and what each subset covers).

    Example:
        >>> from mechinterp.stimuli import load_suite
        >>> human_subset(load_suite("sap:ClassicGP")), human_subset(load_suite("npz"))
        ('ClassicGP', 'ClassicGP')
    """
    published = published_effects(None)
    if subset is None:
        subset = named_subset(suite) or "ClassicGP"
    have = published_effects(subset)
    missing = sorted(set(suite.constructions) - set(have["construction"]))
    if missing:
        covers = "; ".join(f"{k}: {', '.join(sorted(set(g['construction'])))}" for k, g in published.groupby("subset"))
        raise ConfigError(f"suite {suite.name!r}: the SAP human data (subset {subset}) have no effects for its "
                          f"constructions {missing}; published constructions per subset: {covers}")
    return subset


def read_effect_table(path: str | Path, subset: str | None = None, source: str | None = None,
                      measure: Measure | None = None) -> pd.DataFrame:
    """Read one upstream posterior effect table (``by_construction*.csv`` or ``by_item*.csv``) into the tidy
    layout. ``subset``/``source``/``measure`` default to what the file's path says
    (``effects/<measure>/<subset>/by_item_<source>.csv``)."""
    path = Path(path)
    df = _read_csv(path)
    need = {"coef", "mean", "lower", "upper"}
    if not need <= set(df.columns) or not ({"ROI", "roi"} & set(df.columns)):
        raise ConfigError(
            f"{path} is not a SAP effect table: expected columns coef, ROI, mean, lower, upper (and item for "
            f"by-item tables); found {sorted(map(str, df.columns))}"
        )
    stem = path.stem
    suffix = stem.removeprefix("by_item").removeprefix("by_construction").removesuffix("_logadd").removesuffix("_log")
    src = source or SOURCES.get(suffix, suffix.lstrip("_") or "human")
    msr = measure or ("logrt" if "logrt" in path.parts else "spr")
    sub = subset or (path.parent.name if path.parent.name not in ("", ".") else "unknown")
    roi = df["ROI"] if "ROI" in df.columns else df["roi"]
    out = pd.DataFrame({
        "subset": sub, "coef": df["coef"].astype(str), "construction": df["coef"].map(construction_of_coef),
        "roi": pd.to_numeric(roi, errors="coerce").astype("Int64"),
        "item": pd.to_numeric(df["item"], errors="coerce").astype("Int64") if "item" in df.columns else pd.NA,
        "source": src, "measure": msr, "effect": df["mean"].astype(float),
        "ci_low": df["lower"].astype(float), "ci_high": df["upper"].astype(float),
    })
    return out[out["roi"].notna()].reset_index(drop=True)[EFFECT_COLUMNS]  # pyright: ignore[reportReturnType]  # pandas stubs type this frame expression as DataFrame | Series


def load_sap_effects(root: str | Path | None = None, subset: str = "ClassicGP", level: Literal["construction", "item"] = "item",
                     source: str = "human", measure: Measure = "spr") -> pd.DataFrame:
    """Upstream effect tables from a SAP Benchmark directory ``root`` (the folder holding ``effects/``), e.g.
    the human by-item garden-path effects: ``load_sap_effects(None, "ClassicGP", "item")`` (None: the shipped
    copy)."""
    root = Path(root) if root is not None else sap_dir()
    if not (root / "effects").is_dir():
        raise ConfigError(f"{root} is not a SAP Benchmark directory: it has no effects/ folder")
    suffix = {v: k for k, v in SOURCES.items()}.get(source)
    if suffix is None:
        raise ConfigError(f"unknown SAP source {source!r}: choose one of {', '.join(SOURCES.values())}")
    folder = root / "effects" / measure / subset
    if not folder.is_dir():
        known = sorted(p.name for p in (root / "effects" / measure).glob("*") if p.is_dir())
        raise ConfigError(f"SAP effects have no subset {subset!r} under {folder.parent} (subsets: {', '.join(known)})")
    name = f"by_{level}{suffix}"
    candidates = [folder / f"{name}.csv"]
    if measure == "logrt":
        candidates += [folder / f"{name}_log.csv", folder / f"{name}_logadd.csv"]
    for cand in candidates:
        if cand.exists():
            return read_effect_table(cand, subset=subset, source=source, measure=measure)
    raise ConfigError(f"no {level}-level {source} effect table in {folder} (looked for {', '.join(c.name for c in candidates)})")


TRIAL_COLUMNS = ["participant", "construction", "item", "condition", "ambiguous", "roi", "word_position", "word",
                 "sentence", "rt", "correct"]


def load_sap_trials(path: str | Path | None = None) -> pd.DataFrame:
    """Trial-level self-paced reading times (upstream ``trials/*.csv.gz``): one row per participant x item x ROI
    word, columns :data:`TRIAL_COLUMNS` (``construction`` from the upstream ``Type``, ``ambiguous`` from
    ``AMBIG``, ``rt`` in ms). ``path``: a trial file or SAP directory; None for the shipped copy."""
    path = Path(path) if path is not None else sap_dir()
    if path.is_dir():
        path = path / "trials" / "npz_agreement_trials.csv.gz"
    df = _read_csv(path, low_memory=False)
    need = {"participant", "Type", "item", "ROI", "RT", "AMBIG", "EachWord", "WordPosition", "Sentence"}
    missing = need - set(df.columns)
    if missing:
        raise ConfigError(f"{path} is not a SAP trial table: missing columns {sorted(missing)}")
    amb = df["AMBIG"].astype(str).str.lower()
    if not amb.isin(["amb", "unamb"]).all():
        bad = sorted(set(df.loc[~amb.isin(["amb", "unamb"]), "AMBIG"].astype(str)))[:5]
        raise ConfigError(f"{path}: AMBIG must be Amb or Unamb, found {bad}")
    cons = df["Type"].astype(str).map(lambda t: {"NPZ": "NP/Z", "NPS": "NP/S", "MVRR": "MV/RR", "AGREE": "Agr"}.get(t, t))
    return pd.DataFrame({  # pyright: ignore[reportReturnType]  # pandas stubs type this frame expression as DataFrame | Series
        "participant": df["participant"].astype(str), "construction": cons, "item": df["item"].astype(int),
        "condition": np.where(amb == "amb", "ambiguous", "unambiguous"), "ambiguous": amb == "amb",
        "roi": df["ROI"].astype(int), "word_position": df["WordPosition"].astype(int),
        "word": df["EachWord"].astype(str), "sentence": df["Sentence"].astype(str), "rt": df["RT"].astype(float),
        "correct": df["correct"].astype("Int64") if "correct" in df.columns else pd.NA,
    })[TRIAL_COLUMNS]


def trial_effects(trials: pd.DataFrame, by: tuple[str, ...] = ("construction", "roi"), n_boot: int = 1000,
                  seed: int = 0, max_rt: float = 3000.0) -> pd.DataFrame:
    """Empirical garden-path effects from trials: mean RT (ambiguous) - mean RT (unambiguous) per group, with a
    95% bootstrap interval resampling participants. RTs above ``max_rt`` ms are dropped. This is a plain
    difference of means, not the paper's mixed model, so it differs somewhat from the published posteriors."""
    t = trials[trials["rt"] <= max_rt]
    rng = np.random.default_rng(seed)
    parts = t["participant"].unique()
    rows = []
    for key, g in t.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        # per participant: sums and counts per condition, so resampled participants combine exactly
        agg = g.groupby(["participant", "ambiguous"])["rt"].agg(["sum", "count"]).unstack("ambiguous", fill_value=0)
        agg = agg.reindex(parts, fill_value=0)
        s_a, n_a = agg[("sum", True)].to_numpy(), agg[("count", True)].to_numpy()
        s_u, n_u = agg[("sum", False)].to_numpy(), agg[("count", False)].to_numpy()
        est = s_a.sum() / n_a.sum() - s_u.sum() / n_u.sum()
        idx = rng.integers(0, len(parts), size=(n_boot, len(parts)))
        boots = s_a[idx].sum(1) / np.maximum(n_a[idx].sum(1), 1) - s_u[idx].sum(1) / np.maximum(n_u[idx].sum(1), 1)
        rows.append({**dict(zip(by, key)), "effect_ms": float(est), "ci_low": float(np.quantile(boots, 0.025)),
                     "ci_high": float(np.quantile(boots, 0.975)), "n_trials": int(len(g)),
                     "n_participants": int(g["participant"].nunique())})
    return pd.DataFrame(rows)
