"""Hook interventions (LEACE erasure, probe-direction clamp), their scopes, composition and specs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import assert_no_hooks, hook_snapshot
from mechinterp.errors import ConfigError
from mechinterp.interventions.base import AllPositions, TokenTable, apply_interventions, positions_of
from mechinterp.interventions.clamp import fit_clamp
from mechinterp.interventions.compose import compose, intervene, sentence_surprisal_under, suite_surprisal_under
from mechinterp.interventions.erasure import fit_erasure
from mechinterp.interventions.labelled import Labelled, suite_activations
from mechinterp.interventions.spec import build, parse_spec
from mechinterp.interventions.truncation import Truncation
from mechinterp.locate.sites import Site
from mechinterp.stimuli import load_suite
from mechinterp.surprisal import SurprisalConfig, suite_surprisal
from mechinterp.tokenization import tokenize_condition

BACKENDS = ("hf", "transformer_lens", "nnsight")


@pytest.fixture(scope="module")
def npz6():
    s = load_suite("npz")
    return s.head(6)


@pytest.fixture(scope="module")
def fitted(tiny_model, npz6):
    sites = [Site(0, "resid_post"), Site(1, "resid_post")]
    data = suite_activations(tiny_model, [npz6], sites)
    scope = TokenTable.from_suites(tiny_model, [npz6])
    return {
        "data": data, "scope": scope,
        "erasure": fit_erasure(data, sites, scope),
        "clamp": fit_clamp(data, sites[1], "ambiguous", scope, shift=1.0),
    }


def test_positions_and_token_table(tiny_model, npz6):
    it = npz6.items[0]
    amb = tokenize_condition(tiny_model, it.condition("ambiguous"))
    pos = positions_of(amb, npz6, "pre_disambiguator", 2)
    assert len(it.condition("ambiguous").region_words(4)) == 2  # the noun phrase: the two words before "ran"
    assert pos == list(amb.tokens_of_region(4))
    assert positions_of(amb, npz6, "pre_disambiguator", 1) == list(range(*amb.word_spans[amb.word_regions.index(5) - 1]))
    assert positions_of(amb, npz6, "ambiguous_region") == list(amb.tokens_of_region(4))
    assert positions_of(amb, npz6, "prefix") == list(range(1, amb.tokens_of_region(5)[0]))
    table = TokenTable.from_suites(tiny_model, [npz6], conditions="ambiguous", unknown="none")
    ids = list(amb.input_ids)
    pad = tiny_model.pad_token_id
    right = torch.tensor([ids + [pad, pad]])
    left = torch.tensor([[pad, pad] + ids])
    m_r, m_l = table.mask(right)[0], table.mask(left)[0]
    assert m_r.nonzero().flatten().tolist() == sorted(pos)
    assert m_l.nonzero().flatten().tolist() == [p + 2 for p in sorted(pos)]
    unamb = tokenize_condition(tiny_model, it.condition("unambiguous"))
    assert not table.mask(torch.tensor([list(unamb.input_ids)])).any()  # known, but not an ambiguous condition
    unknown = torch.tensor([[tiny_model.bos_token_id, 11, 12, 13]])
    assert not table.mask(unknown).any()
    everywhere = TokenTable(table.table, pad, tiny_model.bos_token_id, unknown="all")
    assert everywhere.mask(unknown)[0].tolist() == [False, True, True, True]
    with pytest.raises(ConfigError, match="does not know"):
        TokenTable(table.table, pad, tiny_model.bos_token_id, unknown="error").mask(unknown)


def test_leace_leaves_chance_linear_information(fitted):
    """After LEACE, a cross-validated linear probe cannot tell the classes apart (before, it can)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    data, er = fitted["data"], fitted["erasure"]
    site = Site(1, "resid_post")
    x, y = data.at(site), data.y()
    before = cross_val_score(LogisticRegression(max_iter=2000), x.numpy(), y, cv=4).mean()
    erased = er.erase(site, x)
    after = cross_val_score(LogisticRegression(max_iter=2000), erased.numpy(), y, cv=4).mean()
    assert before > 0.8
    assert after < 0.65
    # the class means coincide after erasure (the LEACE guarantee)
    e = erased.double()
    yt = torch.as_tensor(y)
    torch.testing.assert_close(e[yt == 0].mean(0), e[yt == 1].mean(0), atol=1e-6, rtol=0)


def test_leace_on_planted_concept():
    """A concept planted along a random direction is unreadable after erasure; other structure survives."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    g = torch.Generator().manual_seed(0)
    n, d = 400, 16
    y = torch.randint(0, 2, (n,), generator=g)
    other = torch.randint(0, 2, (n,), generator=g)
    u, v = torch.randn(d, generator=g), torch.randn(d, generator=g)
    x = torch.randn(n, d, generator=g) + 3 * y[:, None] * u + 3 * other[:, None] * v
    data = Labelled({Site(0, "resid_post"): x}, tuple("ab"[i] for i in y), tuple(map(str, range(n))))
    er = fit_erasure(data, [Site(0, "resid_post")], AllPositions(0))
    xe = er.erase(Site(0, "resid_post"), x)
    acc = cross_val_score(LogisticRegression(max_iter=2000), xe.numpy(), y.numpy(), cv=5).mean()
    keep = cross_val_score(LogisticRegression(max_iter=2000), xe.numpy(), other.numpy(), cv=5).mean()
    assert acc < 0.6 and keep > 0.9


def _resid(model, suite, site, intervention=None):
    """resid_pre of the next layer (= the edited resid_post) for every token of every condition."""
    from mechinterp.locate.activations import collect_rows

    seqs = [tokenize_condition(model, c) for it in suite.items for c in it.conditions]
    nxt = Site(site.layer + 1, "resid_pre") if site.layer + 1 < model.n_layers else None
    with apply_interventions(model, [intervention] if intervention else []):
        if nxt is None:
            got = collect_rows(model, seqs, [site])
            return got.tensors[site], got.rows[site], seqs
        got = collect_rows(model, seqs, [nxt])
    return got.tensors[nxt], got.rows[nxt], seqs


def test_clamp_sets_the_projection_only_where_scoped(tiny_model, npz6, fitted):
    cl = fitted["clamp"]
    site = Site(0, "resid_post")
    data = suite_activations(tiny_model, [npz6], [site])
    clamp0 = fit_clamp(data, site, "unambiguous", fitted["scope"])
    base, rows, seqs = _resid(tiny_model, npz6, site)
    edited, rows2, _ = _resid(tiny_model, npz6, site, clamp0)
    assert torch.equal(rows, rows2)
    table = fitted["scope"]
    scoped = torch.tensor([p in table.table[tuple(seqs[s].input_ids)] for s, p in rows.tolist()])
    proj = edited.double() @ clamp0.direction.double()
    torch.testing.assert_close(proj[scoped], torch.full_like(proj[scoped], clamp0.value), atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(edited[~scoped], base[~scoped])
    # the orthogonal complement is untouched
    u = clamp0.direction
    resid_b = base[scoped] - (base[scoped] @ u)[:, None] * u
    resid_e = edited[scoped] - (edited[scoped] @ u)[:, None] * u
    torch.testing.assert_close(resid_b, resid_e, atol=1e-4, rtol=1e-4)
    assert cl.target == "ambiguous" and cl.info["shift"] == 1.0
    med_a, med_u = cl.info["median_target"], cl.info["median_other"]
    assert cl.value == pytest.approx(med_a + (med_a - med_u))


@pytest.mark.parametrize("backend", BACKENDS)
def test_interventions_same_on_every_backend_and_hooks_removed(tiny_model, npz6, fitted, backend):
    cfg = SurprisalConfig(backend=backend)
    ref_cfg = SurprisalConfig(backend="hf")
    base = suite_surprisal(tiny_model, npz6, cfg, show_progress=False)
    before = hook_snapshot(tiny_model)
    for iv in (fitted["erasure"], fitted["clamp"]):
        got = suite_surprisal_under(tiny_model, npz6, iv, cfg)
        ref = suite_surprisal_under(tiny_model, npz6, iv, ref_cfg)
        np.testing.assert_allclose(got["surprisal_bits"], ref["surprisal_bits"], atol=2e-3)
        assert (got["surprisal_bits"] - base["surprisal_bits"]).abs().max() > 1e-3
        assert hook_snapshot(tiny_model) == before


def test_only_words_after_the_scope_change(tiny_model, npz6, fitted):
    """Edits at the two words before the disambiguator leave every earlier word's surprisal as it was."""
    base = suite_surprisal(tiny_model, npz6, show_progress=False)
    got = suite_surprisal_under(tiny_model, npz6, fitted["erasure"])
    for (_, it), g in got.groupby(["construction", "item"]):
        for cond, gc in g.groupby("condition"):
            b = base[(base["item"] == it) & (base["condition"] == cond)].set_index("word_index")["surprisal_bits"]
            c = npz6.item(it).condition(cond)
            tt = tokenize_condition(tiny_model, c)
            first = min(positions_of(tt, npz6, "pre_disambiguator", 2))
            for _, r in gc.iterrows():
                a, _ = tt.word_spans[int(r["word_index"])]
                if a <= first:  # predicted from positions before the scope
                    assert r["surprisal_bits"] == pytest.approx(b[int(r["word_index"])], abs=1e-4)


def test_padding_and_batch_size_do_not_matter(tiny_model, npz6, fitted):
    iv = compose(fitted["erasure"], fitted["clamp"])
    a = suite_surprisal_under(tiny_model, npz6, iv, SurprisalConfig(batch_size=1))
    b = suite_surprisal_under(tiny_model, npz6, iv, SurprisalConfig(batch_size=16, padding_side="left"))
    np.testing.assert_allclose(a["surprisal_bits"], b["surprisal_bits"], atol=2e-4)


def test_composition_is_sequential_application(tiny_model, npz6, fitted):
    er, cl = fitted["erasure"], fitted["clamp"]
    composed = suite_surprisal_under(tiny_model, npz6, compose(er, cl))
    with intervene(tiny_model, er):
        nested = suite_surprisal_under(tiny_model, npz6, cl)
    np.testing.assert_allclose(composed["surprisal_bits"], nested["surprisal_bits"], atol=1e-5)
    only_er = suite_surprisal_under(tiny_model, npz6, er)
    assert (composed["surprisal_bits"] - only_er["surprisal_bits"]).abs().max() > 1e-4
    c = compose(compose(er, cl), cl, name="x")
    assert len(c.parts) == 3 and c.label == "x"
    with pytest.raises(ConfigError, match="truncation composes only"):
        compose(er, Truncation(3))
    with pytest.raises(ConfigError, match="only once"):
        compose(Truncation(3), Truncation(4))
    with pytest.raises(ConfigError, match="not a hook"):
        with intervene(tiny_model, compose(Truncation(3))):
            pass


def test_hooks_removed_on_exception(tiny_dirs, npz6):
    """A fresh model (no TransformerLens bridge built): no hook survives an error inside the block or inside
    the forward pass."""
    from mechinterp.models import load_model

    model = load_model(str(tiny_dirs["llama"]), cached=False)
    site = Site(1, "resid_post")
    data = suite_activations(model, [npz6], [site])
    scope = TokenTable.from_suites(model, [npz6])
    er = fit_erasure(data, [site], scope)
    assert_no_hooks(model)
    with pytest.raises(RuntimeError, match="inside"):
        with intervene(model, er):
            raise RuntimeError("inside the block")
    assert_no_hooks(model)

    class Boom(type(er)):
        def edits(self):
            from mechinterp.interventions.base import SiteEdit

            def fail(x):
                raise ValueError("edit failed")

            return [SiteEdit(site, fail)]

    boom = Boom(er.erasers, scope, er.classes)
    with pytest.raises(ValueError, match="edit failed"):
        suite_surprisal_under(model, npz6, boom)
    assert_no_hooks(model)


def test_free_text_is_edited_everywhere(tiny_model, fitted):
    texts = ["The cat sat on the mat and looked at the door."]
    base = sentence_surprisal_under(tiny_model, texts, None)
    got = sentence_surprisal_under(tiny_model, texts, fitted["clamp"])
    assert got["surprisal_bits"].iloc[0] == pytest.approx(base["surprisal_bits"].iloc[0], abs=1e-5)  # BOS untouched
    assert (got["surprisal_bits"] - base["surprisal_bits"]).abs().iloc[1:].max() > 1e-3


def test_labelled_checks():
    x = torch.zeros(3, 4)
    with pytest.raises(ConfigError, match="two classes"):
        Labelled({Site(0, "resid_post"): x}, ("a", "a", "a"), ("1", "2", "3"))
    with pytest.raises(ConfigError, match="does not match"):
        Labelled({Site(0, "resid_post"): x}, ("a", "b"), ("1", "2"))


def test_spec_parsing():
    s = parse_spec("leace:layers=1+3,where=prefix")
    assert s.name == "leace@1+3" and s.parts[0].layers == (1, 3) and s.parts[0].where == "prefix"
    s = parse_spec("leace:layers=0-2+truncate:k=3")
    assert s.parts[0].layers == (0, 1, 2) and s.parts[1].k == 3
    for old in ("leace:layers=1/3", "leace:layers=-1", "clamp:layer=-1"):
        with pytest.raises(ConfigError, match="layer"):
            parse_spec(old)
    s = parse_spec("commit=clamp:layer=2,target=ambiguous,shift=1.5,conditions=ambiguous+truncate:k=4")
    assert s.name == "commit" and [p.kind for p in s.parts] == ["clamp", "truncate"]
    assert s.parts[0].shift == 1.5 and s.parts[1].k == 4
    s = parse_spec('{"kind": "sae", "sae": "x", "mode": "clamp", "name": "s"}')
    assert s.name == "s" and s.parts[0].mode == "clamp"
    for bad, msg in [("erase:layers=1", "unknown kind"), ("leace:layers", "not key=value"),
                     ("leace:layers=1,colour=red", "invalid intervention"), ("truncate:k=-1", "invalid"),
                     ("clamp:layer=1,where=nowhere", "invalid"), ("{bad json", "JSON")]:
        with pytest.raises(ConfigError, match=msg):
            parse_spec(bad)


def test_build_from_spec(tiny_model, npz6):
    c = build(tiny_model, "leace:layers=1,fit=npz", npz6)
    (er,) = c.parts
    assert er.info["in_sample"] is True and er.describe()["kind"] == "leace"
    c = build(tiny_model, "t=truncate:k=3", npz6)
    assert c.truncation.k == 3 and c.label == "t"
    with pytest.raises(ConfigError, match="out of range"):
        build(tiny_model, "leace:layers=7", npz6)
    with pytest.raises(ConfigError, match="layer="):
        build(tiny_model, "clamp:target=ambiguous", npz6)


def test_build_all_shares_activations(tiny_model, npz6, monkeypatch):
    import mechinterp.interventions.labelled as labelled
    import mechinterp.interventions.spec as spec_module
    from mechinterp.interventions.spec import build_all

    calls = []
    real = labelled.suite_activations

    def counting(*a, **k):
        calls.append(a[2])
        return real(*a, **k)

    monkeypatch.setattr(spec_module, "suite_activations", counting)  # the name build_all calls
    specs = [parse_spec("a=leace:layers=0,fit=npz"), parse_spec("b=clamp:layer=1,fit=npz"),
             parse_spec("c=clamp:layer=1,fit=npz,shift=1")]
    built = build_all(tiny_model, specs, npz6)
    assert list(built) == ["a", "b", "c"] and len(calls) == 1
    alone = build(tiny_model, specs[1], npz6)
    assert built["b"].parts[0].value == pytest.approx(alone.parts[0].value, abs=1e-5)


def test_fit_on_readings_not_minimal_pairs(tiny_model, npz6):
    """fit=readings: labelled generated sentences (preferred/dispreferred reading), none sharing a content
    word with the evaluated suite; a clamp to the preferred reading and an erasure are built from them."""
    from mechinterp.interventions.labelled import reading_activations
    from mechinterp.probes.lexical import suite_content_words

    data = reading_activations(tiny_model, npz6, [Site(1, "resid_post")], n_per_class=30)
    assert data.classes == ("dispreferred", "preferred")
    assert data.info["source"] == "readings" and set(data.info["constructions"]) == {"NP/Z"}
    assert abs(data.labels.count("preferred") - data.labels.count("dispreferred")) <= 10
    assert all(g.startswith("NP/Z:") for g in data.groups)
    c = build(tiny_model, "clamp:layer=1,fit=readings,target=preferred,shift=1", npz6)
    (cl,) = c.parts
    assert cl.target == "preferred" and cl.info["source"] == "readings" and cl.info["in_sample"] is False
    assert cl.info["median_target"] > cl.info["median_other"]
    (er,) = build(tiny_model, "leace:layers=1,fit=readings", npz6).parts
    assert er.info["source"] == "readings"
    with pytest.raises(ConfigError, match="unknown class"):
        build(tiny_model, "clamp:layer=1,fit=readings,target=ambiguous", npz6)
    with pytest.raises(ConfigError, match="cannot be combined"):
        build(tiny_model, "leace:layers=1,fit=readings/npz", npz6)
    from mechinterp.probes.templates import generate

    words = suite_content_words(npz6)
    kept = generate("NP/Z", 30, 0).without_words(words, min_per_class=10)
    assert len(kept) == len(data.labels)


def test_clamp_along_a_saved_probe(tiny_model, npz6, tmp_path):
    """clamp:probe=DIR uses the probe artifact's direction and site, fit on readings; a probe of another
    model is refused."""
    import dataclasses

    from mechinterp.probes import ProbeArtifact, ProbeSettings, run_probes

    res = run_probes(tiny_model, npz6, layers=[1], settings=ProbeSettings(n_per_class=20, folds=3, bootstrap=100,
                                                                         random_directions=1),
                     seed=0, show_progress=False)
    (art,) = res.artifacts.values()
    art.save(tmp_path / "probe")
    (cl,) = build(tiny_model, f"clamp:probe={tmp_path / 'probe'},fit=readings,target=preferred,shift=1", npz6).parts
    assert cl.site == Site(1, "resid_post") and cl.info["direction"].startswith("probe")
    cos = float(cl.direction.double() @ art.direction.double())
    assert cos == pytest.approx(1.0, abs=1e-5)  # the probe points to the preferred reading, so no sign flip
    with intervene(tiny_model, compose(cl)):
        pass
    assert_no_hooks(tiny_model)
    other = dataclasses.replace(art, model={**art.model, "weights_sha256": "0" * 64, "name": "other"})
    other.save(tmp_path / "other")
    with pytest.raises(ConfigError, match="was trained on other"):
        build(tiny_model, f"clamp:probe={tmp_path / 'other'},fit=readings,target=preferred", npz6)
    assert ProbeArtifact.load(tmp_path / "probe").site.layer == 1


@pytest.mark.slow
def test_erasure_and_clamp_on_smollm2(smollm2):
    """Real model: erasure fit on two built-in suites removes the condition's linear information at a middle
    layer (held-out items of a third suite included), and a clamp sets the projection in a real forward pass."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score

    fit_s = [load_suite(n).head(10) for n in ("npz", "nps")]
    test_s = load_suite("mvrr").head(8)
    site = Site(12, "resid_post")
    data = suite_activations(smollm2, fit_s, [site])
    er = fit_erasure(data, [site], TokenTable.from_suites(smollm2, [test_s]))
    x, y, groups = data.at(site).numpy(), data.y(), list(data.groups)
    probe = LogisticRegression(max_iter=3000, C=0.1)
    before = cross_val_score(probe, x, y, cv=GroupKFold(4), groups=groups).mean()
    after = cross_val_score(probe, er.erase(site, data.at(site)).numpy(), y, cv=GroupKFold(4), groups=groups).mean()
    assert before > 0.8 and after < 0.65
    clamp = fit_clamp(data, site, "ambiguous", TokenTable.from_suites(smollm2, [test_s]), shift=1.0)
    base, rows, seqs = _resid(smollm2, test_s, site)
    edited, _, _ = _resid(smollm2, test_s, site, clamp)
    scoped = torch.tensor([p in clamp.scope.table[tuple(seqs[s].input_ids)] for s, p in rows.tolist()])
    proj = edited.double() @ clamp.direction.double()
    assert torch.allclose(proj[scoped], torch.full_like(proj[scoped], clamp.value), rtol=1e-4, atol=1e-2)
    torch.testing.assert_close(edited[~scoped], base[~scoped])
    words = suite_surprisal_under(smollm2, test_s, compose(er, clamp))
    assert words["surprisal_bits"].notna().all()


@pytest.mark.parametrize("text", ["clamp:layer=0,shift=nan", "clamp:layer=0,shift=inf", "=clamp:layer=0",
                                  " =clamp:layer=0"])
def test_spec_refuses_non_finite_numbers_and_empty_names(text):
    from mechinterp.errors import ConfigError

    with pytest.raises(ConfigError) as exc:
        parse_spec(text)
    assert "\n" not in str(exc.value)
