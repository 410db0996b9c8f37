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

Every function reads the copy of the benchmark shipped with the package (:func:`mechinterp.datasets.sap_dir`,
MIT, licence and citation beside it) unless given another SAP directory in the upstream layout.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from mechinterp.datasets import sap_dir
from mechinterp.errors import ConfigError

if TYPE_CHECKING:
    from mechinterp.stimuli.types import Suite

CITATION = (
    "Huang, Arehalli, Kugemoto, Muxica, Prasad, Dillon & Linzen (2024). Large-scale benchmark yields no evidence "
    "that language model surprisal explains syntactic disambiguation difficulty. Journal of Memory and Language. "
    "doi:10.1016/j.jml.2024.104510"
)
EFFECT_COLUMNS = ["subset", "coef", "construction", "roi", "item", "source", "measure", "effect", "ci_low", "ci_high"]
COEF_TO_CONSTRUCTION = {"GPE_MVRR": "MV/RR", "GPE_NPS": "NP/S", "GPE_NPZ": "NP/Z"}
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


def named_subset(suite: "Suite") -> str | None:
    """The SAP subset a SAP item file (``items_<Subset>.csv``) names, when that subset has published human
    effects; None for any other suite (the built-in suites share constructions with SAP, not items)."""
    if not suite.name.startswith("items_"):
        return None
    name = suite.name.removeprefix("items_")
    return name if name in set(published_effects(None)["subset"]) else None


def human_subset(suite: "Suite", subset: str | None = None) -> str:
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
