"""Feature cards, offline: where a feature fires in the training text and in the stimuli, its activation along
an example sentence, the cosine of its decoder direction with probe directions, and the tokens its decoder
direction promotes directly.

Training-text contexts come from the SAE's ``top_examples.parquet`` when the corpus it was trained on is in
the cache with the same content hash, else from a fresh scan of ``n_docs`` corpus documents.
Probe directions are optional: probe artifact directories (``mechinterp.probes.ProbeArtifact``), ``.npy``
/ ``.safetensors`` files holding one vector, or vectors given directly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file

from mechinterp.errors import ConfigError
from mechinterp.locate.activations import collect_rows, collect_tokens
from mechinterp.saes.activations import corpus_activations
from mechinterp.saes.corpus import DEFAULT_SOURCES, load_corpus
from mechinterp.saes.examples import EXAMPLES_FILE, context, top_examples
from mechinterp.saes.load import LoadedSAE
from mechinterp.stimuli.types import Suite
from mechinterp.tables import read_table
from mechinterp.tokenization import TokenizedText, tokenize_condition, tokenize_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CardConfig:
    n_top: int = 15
    n_docs: int = 3000  # corpus documents scanned when the SAE has no usable stored examples
    sources: tuple[str, ...] | None = None  # corpus sources (default: the SAE's training sources)
    context_size: int | None = None  # default: the SAE's training context size (64)
    n_top_tokens: int = 12


@dataclass(frozen=True)
class FeatureCard:
    feature: int
    stats: dict[str, Any]
    contexts: pd.DataFrame  # source, rank, activation, where, left, token, right
    sentence: str
    sentence_tokens: list[str]
    sentence_acts: list[float]
    probe_cosines: pd.DataFrame | None
    top_tokens: pd.DataFrame | None


# ---- probe directions -------------------------------------------------------------------------------
def probe_direction(spec: Any) -> tuple[str, torch.Tensor, str | None]:
    """(label, vector, site label or None) for a probe artifact directory, a .npy/.safetensors file or a vector."""
    if isinstance(spec, (torch.Tensor, np.ndarray)):
        return "vector", torch.as_tensor(np.asarray(spec), dtype=torch.float32).flatten(), None
    path = Path(str(spec)).expanduser()
    if path.is_dir():
        try:
            from mechinterp.probes import ProbeArtifact
        except ImportError as exc:
            raise ConfigError(f"{path} is a directory, but mechinterp.probes (ProbeArtifact) is not available to "
                              "read it; pass the direction as a .npy or .safetensors file instead") from exc
        art = ProbeArtifact.load(path)
        site = getattr(art, "site", None)
        return path.name, torch.as_tensor(np.asarray(art.direction), dtype=torch.float32).flatten(), (
            str(site) if site is not None else None)
    if not path.exists():
        raise ConfigError(f"probe {path} does not exist (give a probe artifact directory or a .npy/.safetensors vector)")
    if path.suffix == ".npy":
        v = torch.as_tensor(np.load(path), dtype=torch.float32)
    elif path.suffix == ".safetensors":
        tensors = load_file(str(path))
        if len(tensors) != 1:
            raise ConfigError(f"probe {path} holds {len(tensors)} tensors ({', '.join(tensors)}); give a file with one")
        v = next(iter(tensors.values())).to(torch.float32)
    else:
        raise ConfigError(f"probe {path}: unknown format (use a probe artifact directory, .npy or .safetensors; "
                          "pickled .pt files are not read)")
    if v.ndim != 1 and not (v.ndim == 2 and 1 in v.shape):
        raise ConfigError(f"probe {path} holds shape {tuple(v.shape)}, not one vector")
    return path.stem, v.flatten(), None


def probe_cosines(sae: LoadedSAE, feature: int, probes: Sequence[Any]) -> pd.DataFrame:
    """Cosine similarity of the feature's decoder direction with each probe direction."""
    d = sae.decoder_directions[feature]
    rows = []
    for spec in probes:
        label, v, site = probe_direction(spec)
        if v.numel() != d.numel():
            raise ConfigError(f"probe {label} has {v.numel()} dimensions, the SAE decoder has {d.numel()}")
        cos = float(torch.nn.functional.cosine_similarity(d, v, dim=0))
        rows.append({"probe": label, "probe_site": site, "sae_site": sae.hook_name, "cosine": cos,
                     "same_site": (site is None) or (site == str(sae.site))})
    return pd.DataFrame(rows)


# ---- contexts ------------------------------------------------------------------------------------------
def _training_contexts(model: Any, sae: LoadedSAE, feature: int, cfg: CardConfig) -> pd.DataFrame:
    trained_on = [s["name"] for s in (sae.training.get("corpus") or {}).get("sources", [])]
    sources = tuple(cfg.sources or trained_on or DEFAULT_SOURCES)
    ctx = cfg.context_size or int(sae.training.get("provenance", {}).get("config", {}).get("context_size", 64))
    corpus = load_corpus(sources)
    ex = None
    stored = sae.path / EXAMPLES_FILE if sae.path else None
    if stored is not None and stored.exists() and (sae.training.get("corpus") or {}).get("sha256") == corpus.sha256:
        ex = read_table(stored)
        where = "training text (stored top examples)"
    if ex is None:
        rng = np.random.default_rng(0)
        idx = rng.permutation(len(corpus))[: cfg.n_docs].tolist()
        acts = corpus_activations(model, corpus, idx, sae.layer, sae.component, n_tokens=None, context_size=ctx,
                                  desc="corpus scan")
        ex = top_examples(sae, acts, n_top=cfg.n_top)
        where = f"training text (scan of {len(idx)} documents)"
    ex = ex[ex["feature"] == feature].sort_values("activation", ascending=False).head(cfg.n_top)
    rows = []
    for rank, (_, r) in enumerate(ex.iterrows(), start=1):
        left, tok, right = context(model, corpus.documents[int(r["doc"])].text, int(r["pos"]), ctx)
        rows.append({"source": "training", "rank": rank, "activation": float(r["activation"]),
                     "where": f"{where}: doc {int(r['doc'])}", "left": left, "token": tok, "right": right})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class StimulusScan:
    """Feature activations at every stimulus token (BOS left out): ``index`` has one row per token (suite,
    item, condition, seq, pos) aligned with the rows of ``acts`` [n_tokens, d_sae]."""

    index: pd.DataFrame
    acts: np.ndarray
    seqs: list[TokenizedText]
    texts: list[str]


def stimulus_activations(model: Any, sae: LoadedSAE, suites: Sequence[Suite], batch_size: int = 16) -> StimulusScan:
    """Scan every condition of every item of ``suites`` (one forward pass per batch, stopped at the site)."""
    seqs: list[TokenizedText] = []
    meta: list[dict[str, Any]] = []
    for suite in suites:
        for it in suite.items:
            for c in it.conditions:
                seqs.append(tokenize_condition(model, c))
                meta.append({"suite": suite.name, "item": it.key, "condition": c.name, "text": c.text})
    if not seqs:
        raise ConfigError("no stimuli to scan")
    site = sae.site
    got = collect_rows(model, seqs, [site], batch_size=batch_size)
    x, rows = got.tensors[site], got.rows[site]
    keep = rows[:, 1] != 0  # BOS left out
    x, rows = x[keep], rows[keep]
    with torch.no_grad():
        f = sae.encode(x.float())
    index = pd.DataFrame({"seq": rows[:, 0].numpy(), "pos": rows[:, 1].numpy()})
    for key in ("suite", "item", "condition"):
        index[key] = [meta[i][key] for i in index["seq"]]
    return StimulusScan(index=index, acts=f.numpy(), seqs=seqs, texts=[m["text"] for m in meta])


def _stimulus_contexts(model: Any, stim: StimulusScan, feature: int, n_top: int) -> pd.DataFrame:
    acts = stim.acts[:, feature]
    order = np.argsort(-acts)[:n_top]
    dec = model.tokenizer.decode
    rows = []
    for rank, i in enumerate(order, start=1):
        if acts[i] <= 0:
            break
        r = stim.index.iloc[int(i)]
        ids = stim.seqs[int(r["seq"])].input_ids
        p = int(r["pos"])
        rows.append({"source": "stimuli", "rank": rank, "activation": float(acts[i]),
                     "where": f"{r['suite']} item {r['item']} ({r['condition']})",
                     "left": dec(list(ids[1:p])), "token": dec([ids[p]]), "right": dec(list(ids[p + 1 :]))})
    return pd.DataFrame(rows)


def sentence_activations(model: Any, sae: LoadedSAE, text: str, feature: int) -> tuple[list[str], list[float]]:
    """The feature's activation at each token of ``text`` (BOS left out)."""
    seq = tokenize_text(model.tokenizer, model.bos_token_id, text)
    x = collect_tokens(model, [seq], sae.layer, sae.component)  # pyright: ignore[reportArgumentType]  # the SAE's component is a Component
    with torch.no_grad():
        f = sae.encode(x.float())[:, feature]
    toks = [model.tokenizer.decode([t]) for t in seq.input_ids[1:]]
    return toks, [float(v) for v in f]


def top_promoted_tokens(model: Any, sae: LoadedSAE, feature: int, n: int = 12) -> pd.DataFrame | None:
    """Tokens whose unembedding aligns most (and least) with the decoder direction (direct path only)."""
    head = model.hf.get_output_embeddings()
    if head is None:
        return None
    with torch.no_grad():
        scores = head.weight.float() @ sae.decoder_directions[feature]
    top = torch.topk(scores, n)
    bottom = torch.topk(-scores, n)
    dec = model.tokenizer.decode
    return pd.DataFrame({
        "promoted": [dec([int(i)]) for i in top.indices], "score": top.values.numpy(),
        "suppressed": [dec([int(i)]) for i in bottom.indices], "score_suppressed": (-bottom.values).numpy(),
    })


def build_card(
    model: Any, sae: LoadedSAE, feature: int, suites: Sequence[Suite], probes: Sequence[Any] = (),
    sentence: str | None = None, cfg: CardConfig = CardConfig(), stimuli: StimulusScan | None = None,
) -> FeatureCard:
    """Everything on one feature's card. ``stimuli`` (from :func:`stimulus_activations`) can be passed in
    to share one scan between several cards."""
    if not 0 <= feature < sae.d_sae:
        raise ConfigError(f"feature {feature} is out of range: the SAE has features 0-{sae.d_sae - 1}")
    sae.check_model(model)
    stim = stimuli if stimuli is not None else stimulus_activations(model, sae, suites)
    contexts = pd.concat([_training_contexts(model, sae, feature, cfg),
                          _stimulus_contexts(model, stim, feature, cfg.n_top)], ignore_index=True)
    if sentence is None:
        acts = stim.acts[:, feature]
        sentence = stim.texts[int(stim.index.iloc[int(np.argmax(acts))]["seq"])]
    toks, vals = sentence_activations(model, sae, sentence, feature)
    q = sae.quality() or {}
    density = q.get("log10_density")
    stim_acts = stim.acts[:, feature]
    stats = {
        "SAE": str(sae.path), "site": sae.hook_name, "feature": feature,
        "decoder norm": float(sae.sae.W_dec[feature].norm()),
        "held-out firing frequency": (10 ** density[feature]) if density and density[feature] > -10 else 0.0,
        "fraction of stimulus tokens where it fires": float((stim_acts > 0).mean()),
        "max activation on stimuli": float(stim_acts.max()),
    }
    return FeatureCard(
        feature=feature, stats=stats, contexts=contexts.assign(feature=feature), sentence=sentence,
        sentence_tokens=toks, sentence_acts=vals,
        probe_cosines=probe_cosines(sae, feature, probes) if probes else None,
        top_tokens=top_promoted_tokens(model, sae, feature, cfg.n_top_tokens),
    )
