"""A small results directory for a first look at the explorer (and for its tests): every kind of result the
pages read, computed with small settings through the same public functions the CLI commands use.

    mechinterp explore --model smollm2-135m --demo out/explore-demo     (a few minutes on a laptop)

Layout under ``root``::

    words.parquet, effects.parquet       surprisal and item effects (mechinterp surprisal / effects)
    patch.parquet                        exact patching, no heads (mechinterp patch)
    sweeps/demo/                         a probe sweep's results store with probe artifacts (mechinterp sweep)
    sae/                                 a small TopK SAE trained on the built-in template corpus (mechinterp sae train)
    collapse.parquet (+ .effects, .side_effects)   one intervention (mechinterp collapse)
    link.json, compare.parquet           a surprisal-to-ms link on part of Natural Stories and the comparison
                                         with the SAP human effects (only when the corpus directory is given)

Each table has its provenance JSON beside it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from mechinterp.compare.humans import (
    load_natural_stories,
    noise_ceiling,
    published_effects,
)
from mechinterp.compare.likeness import compare
from mechinterp.compare.linking import fit_natural_stories
from mechinterp.effects import garden_path_effects
from mechinterp.errors import ConfigError
from mechinterp.interventions.collapse import run_collapse
from mechinterp.interventions.spec import build, parse_spec
from mechinterp.locate.patching import PatchConfig, parse_sweep, patch_suite
from mechinterp.provenance import Provenance
from mechinterp.saes.corpus import template_corpus
from mechinterp.saes.train import TrainConfig, train_sae
from mechinterp.stimuli import Suite, load_suite
from mechinterp.surprisal import suite_surprisal
from mechinterp.sweeps import run_sweep
from mechinterp.tables import write_table

log = logging.getLogger(__name__)
DONE = ".demo-complete.json"


@dataclass(frozen=True)
class DemoSettings:
    """How small the demo is."""

    suite: str = "npz"
    n_items: int = 3
    probe_layers: str | Sequence[int] = "every 2"
    probe_per_class: int = 20
    sae_layer: int | None = None  # default: the middle layer
    sae_width: int = 64
    sae_k: int = 4
    sae_tokens: int = 2048
    sae_steps: int = 30
    intervention: str = "truncate-k3=truncate:k=3"
    ns_words_per_story: int = 60
    ns_stories: tuple[int, ...] = (1, 2)
    seed: int = 0


def first_items(suite: Any, n_items: int, per_construction: bool = False) -> Any:
    """The suite cut to its first ``n_items`` items (of each construction, with ``per_construction``).

    Args:
        suite: A :class:`mechinterp.stimuli.Suite`.
        n_items: How many items to keep (at least 1).
        per_construction: Keep the first ``n_items`` of every construction instead of of the whole suite.

    Returns:
        A new suite with the same name, annotations and source, and fewer items.

    Example:
        >>> first_items(load_suite("sap:ClassicGP"), 2, per_construction=True).constructions
        ['MV/RR', 'NP/S', 'NP/Z']
    """
    if n_items < 1:
        raise ConfigError(f"n_items must be at least 1, got {n_items}")
    seen: dict[str, int] = {}
    items = []
    for it in suite.items:
        key = suite.construction_of(it) if per_construction else ""
        if seen.get(key, 0) < n_items:
            seen[key] = seen.get(key, 0) + 1
            items.append(it)
    return Suite(name=suite.name, meta=suite.meta, region_meta=suite.region_meta, predictions=suite.predictions,
                 items=tuple(items), ambiguity=suite.ambiguity, source=suite.source)


def small_link(model: Any, corpus: Any, stories: Sequence[int], words_per_story: int) -> Any:
    """A surprisal-to-ms link fitted quickly on part of Natural Stories (word length and position as the
    other predictors, short scoring windows).

    Args:
        model: A loaded :class:`mechinterp.models.Model`.
        corpus: The Natural Stories corpus (:func:`mechinterp.compare.humans.load_natural_stories`).
        stories: Story numbers to fit on.
        words_per_story: The first N words of each story.

    Returns:
        The :class:`mechinterp.compare.linking.LinkingFit`.

    Example:
        >>> fit = small_link(model, load_natural_stories(), (1, 2), 60)
    """
    sub = corpus.subset(list(stories), words_per_story)
    fit, _ = fit_natural_stories(model, sub, features="length_position", window_words=60, context_words=20)
    return fit


def _prov(command: str, model: Any, suite: Any, config: dict[str, Any]) -> Any:
    return Provenance(command=command, config=config, model=model.identity(),
                      suite=suite.identity() if suite is not None else None, seed=config.get("seed"))


def _sweep_toml(model_name: str, settings: DemoSettings) -> str:
    layers = settings.probe_layers
    layers_toml = json.dumps(layers if isinstance(layers, str) else list(layers))
    return "\n".join([
        "[sweep]", 'name = "demo"', "figures = false", "",
        "[grid]", f"models = [{json.dumps(model_name)}]", f"suites = [{json.dumps(settings.suite)}]",
        f"seeds = [{settings.seed}]", "",
        "[sites]", f"layers = {layers_toml}", 'components = ["resid_post"]', "",
        "[probe]", f"n_per_class = {settings.probe_per_class}", "folds = 2", "control = false",
        "random_directions = 0", "baselines = false", "transfer = false", "bootstrap = 100", "",
    ])


def build_demo(model: Any, root: str | Path, settings: DemoSettings = DemoSettings(),
               naturalstories: str | Path | None = None, force: bool = False) -> Path:
    """Write the demo results for ``model`` under ``root`` (skipped when a complete demo for the same model
    and settings is already there, unless ``force``)."""
    root = Path(root)
    stamp = {"model": model.weights_sha256, "settings": repr(settings), "naturalstories": str(naturalstories)}
    done = root / DONE
    if not force and done.exists():
        try:
            if json.loads(done.read_text()) == stamp:
                return root
        except (OSError, json.JSONDecodeError):
            pass
    root.mkdir(parents=True, exist_ok=True)
    suite = first_items(load_suite(settings.suite), settings.n_items)
    cfg = {"n_items": settings.n_items, "seed": settings.seed}

    log.info("demo: surprisal and effects")
    words = suite_surprisal(model, suite, show_progress=False)
    write_table(words, root / "words.parquet", _prov("surprisal", model, suite, cfg))
    write_table(garden_path_effects(words, suite), root / "effects.parquet", _prov("effects", model, suite, cfg))

    log.info("demo: patching")
    sites = parse_sweep(None, model, suite, heads=False)
    patch = patch_suite(model, suite, sites, PatchConfig(), exact=True)
    write_table(patch, root / "patch.parquet", _prov("patch", model, suite, cfg))

    log.info("demo: probe sweep")
    sweep_file = root / "demo_sweep.toml"
    sweep_file.write_text(_sweep_toml(model.name, settings))
    outcome = run_sweep(sweep_file, store=root / "sweeps" / "demo", show_progress=False)
    if outcome.failed:
        raise ConfigError(f"the demo probe sweep failed: {outcome.failed}")

    log.info("demo: SAE")
    layer = settings.sae_layer if settings.sae_layer is not None else model.n_layers // 2
    tc = TrainConfig(layer=layer, d_sae=settings.sae_width, k=settings.sae_k, n_tokens=settings.sae_tokens,
                     n_holdout_tokens=256, steps=settings.sae_steps, batch_size=min(256, settings.sae_tokens),
                     lr_warm_up_steps=min(5, settings.sae_steps), dead_feature_window=max(1, settings.sae_steps // 2),
                     context_size=32, holdout_fraction=0.2, sources=("templates",), seed=settings.seed)
    corpus = template_corpus(max(400, settings.sae_tokens // 4), settings.seed)  # ~10 tokens a sentence
    train_sae(model, corpus, tc, root / "sae", n_ce_docs=16, n_examples=5)

    log.info("demo: collapse")
    spec = parse_spec(settings.intervention)
    res = run_collapse(model, suite, {spec.name: build(model, spec, suite)})
    prov = _prov("collapse", model, suite, {**cfg, "intervention": settings.intervention})
    write_table(res.words, root / "collapse.parquet", prov)
    write_table(res.effects, root / "collapse.effects.parquet", prov)
    write_table(res.side_effects, root / "collapse.side_effects.parquet", prov)

    if naturalstories is not None and Path(naturalstories).is_dir():
        log.info("demo: linking fit and comparison")
        fit = small_link(model, load_natural_stories(naturalstories), settings.ns_stories, settings.ns_words_per_story)
        fit.save(root / "link.json")
        cmp = compare(res.words, suite, fit, published_effects(), ceiling=noise_ceiling(),
                      side_effects=res.side_effects, n_boot=200, seed=settings.seed)
        write_table(cmp.table(), root / "compare.parquet", _prov("compare", model, suite, cfg))
    done.write_text(json.dumps(stamp))
    return root

