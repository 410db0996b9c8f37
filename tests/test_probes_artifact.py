"""ProbeArtifact: save/load roundtrip, the original-space map and direction, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mechinterp.errors import CacheError, ConfigError
from mechinterp.locate.sites import RegionPos, Site
from mechinterp.probes.artifact import ProbeArtifact
from mechinterp.probes.train import fit_full, make_probe


def _fitted(seed=0, d=16):
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1], 60)
    X = rng.standard_normal((120, d)) * rng.uniform(0.1, 50, d) + rng.standard_normal(d) * 100
    X[:, 3] += 5 * (2 * y - 1)
    return X, y


def _artifact(X, y, **kw):
    f = fit_full(X, y, C=0.5)
    return ProbeArtifact(
        coef=torch.tensor(f.coef, dtype=torch.float32), intercept=f.intercept,
        mean=torch.tensor(f.mean, dtype=torch.float32), scale=torch.tensor(f.scale, dtype=torch.float32),
        site=Site(4, "resid_post", RegionPos("ambiguous", "last")), construction="NP/Z",
        readings=("object", "subject"), model={"name": "m", "weights_sha256": "abc"},
        suite={"name": "npz", "sha256": "def"}, training={"texts": ["a b", "c d"], "labels": [1, 0]},
        metrics={"accuracy": {"value": 0.9}}, **kw,
    )


def test_predict_proba_matches_sklearn_and_direction_is_unit_in_original_space():
    X, y = _fitted()
    art = _artifact(X, y)
    ref = make_probe(0.5).fit(X, y).predict_proba(X)[:, 1]
    assert np.allclose(art.predict_proba(torch.tensor(X)).numpy(), ref, atol=1e-4)
    assert np.allclose(art.predict_proba(X).numpy(), ref, atol=1e-4)  # numpy input too
    u = art.direction.double()
    assert abs(float(u.norm()) - 1) < 1e-6
    w = art.coef.double() / art.scale.double()
    assert torch.allclose(u, w / w.norm(), atol=1e-6)
    # moving along the direction raises P(preferred); logit = weight . x + bias
    x0 = torch.tensor(X[:1])
    assert float(art.predict_proba(x0 + 5 * art.direction)[0]) > float(art.predict_proba(x0)[0])
    logit = torch.tensor(X) @ art.weight.double() + art.bias
    assert torch.allclose(logit.float(), art.decision_function(X), atol=1e-3)


def test_save_load_roundtrip(tmp_path):
    X, y = _fitted()
    art = _artifact(X, y)
    path = art.save(tmp_path / "probe")
    assert {p.name for p in path.iterdir()} == {"probe.safetensors", "probe.json"}
    back = ProbeArtifact.load(path)
    for name in ("coef", "mean", "scale"):
        assert torch.equal(getattr(back, name), getattr(art, name))
    assert back.intercept == art.intercept
    assert back.site == art.site and isinstance(back.site, Site)
    assert back.readings == art.readings and back.construction == "NP/Z"
    assert back.model == art.model and back.suite == art.suite and back.training == art.training
    assert back.metrics == art.metrics
    assert torch.allclose(back.predict_proba(X), art.predict_proba(X))
    assert torch.allclose(back.direction, art.direction)
    # saving again over it replaces it whole, leaving no temporary directories behind
    art2 = _artifact(*_fitted(seed=1))
    art2.save(path)
    assert not torch.equal(ProbeArtifact.load(path).coef, art.coef)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["probe"]


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(CacheError, match="not a saved probe"):
        ProbeArtifact.load(tmp_path / "nothing")
    X, y = _fitted()
    path = _artifact(X, y).save(tmp_path / "p")
    (path / "probe.json").write_text("{broken")
    with pytest.raises(CacheError, match="unreadable"):
        ProbeArtifact.load(path)


def test_bad_shapes_are_refused():
    X, y = _fitted()
    art = _artifact(X, y)
    with pytest.raises(ConfigError, match="do not fit"):
        art.predict_proba(torch.zeros(2, 3))
    with pytest.raises(ConfigError, match="shapes differ"):
        ProbeArtifact(coef=torch.zeros(3), intercept=0.0, mean=torch.zeros(4), scale=torch.ones(3), site=art.site,
                      construction="NP/Z", readings=("object", "subject"))
