"""The training-sentence generator: balanced, deterministic, structurally labelled, no one-word giveaway,
lexically disjoint from a suite on demand."""

from __future__ import annotations

import pytest

from mechinterp.errors import ConfigError
from mechinterp.probes.confounds import cue_report
from mechinterp.probes.labels import READINGS, label_of, transfer_kind
from mechinterp.probes.lexical import content_words, suite_content_words
from mechinterp.probes.templates import (
    REGION_PRE,
    REGION_TARGET,
    generate,
    lexicon,
    supported_constructions,
)

CONS = ["NP/Z", "NP/S", "MV/RR", "LEX"]


@pytest.mark.parametrize("construction", CONS)
def test_balanced_deterministic_and_labelled(construction):
    ts = generate(construction, 60, seed=0)
    df = ts.frame()
    pref, other = READINGS[construction]
    assert df.groupby("reading").size().to_dict() == {pref: 60, other: 60}
    assert (df.label == (df.reading == pref).astype(int)).all()
    assert df.text.is_unique
    assert generate(construction, 60, seed=0).frame().equals(df)
    assert not generate(construction, 60, seed=1).frame().text.equals(df.text)


@pytest.mark.parametrize("construction", CONS)
def test_regions_mark_target_and_the_word_before(construction):
    for s in generate(construction, 40, seed=3).sentences:
        a, b = s.regions[REGION_TARGET]
        target = s.text[a:b]
        assert target and target == target.strip()
        assert s.target in target.lower().split()
        pre = s.text[slice(*s.regions[REGION_PRE])].strip()
        assert len(pre.split()) == 1, (s.text, pre)
        spans = sorted(s.regions.values())
        assert spans[0][0] == 0 and spans[-1][1] == len(s.text)


@pytest.mark.parametrize("construction", CONS)
@pytest.mark.parametrize("seed", [0, 1])
def test_no_shallow_rule_gives_the_label_away(construction, seed):
    rep = cue_report(generate(construction, 150, seed)).set_index("rule")["accuracy"]
    assert rep["single_word"] < 0.65, rep  # no word anywhere before the target
    assert rep["previous_word"] < 0.72, rep  # nor the word right before it
    assert rep["position"] < 0.72, rep  # nor where the target is


@pytest.mark.parametrize("construction", ["NP/Z", "NP/S", "LEX"])
def test_every_target_word_appears_in_both_readings(construction):
    df = generate(construction, 150, seed=0).frame()
    per_type = df.groupby("target").label.nunique()
    assert (per_type == 2).mean() > 0.9, per_type[per_type < 2]


def test_buckets_are_lexically_disjoint_and_fillers_share_no_bucket_word():
    lex = lexicon()
    filler_words = {w for v in lex["fillers"].values() for x in v for w in content_words(x)}
    for key in ("npz", "nps", "mvrr", "lexcat"):
        seen: dict[str, int] = {}
        for g, bucket in enumerate(lex[key]["buckets"]):
            words = set()
            for v in bucket.values():
                for x in v:
                    xs = [x[0]] if key == "lexcat" else (x if isinstance(x, list) else [x])
                    for y in xs:
                        words.update(content_words(y))
            for w in words:
                assert seen.setdefault(w, g) == g, f"{key}: {w!r} in buckets {seen[w]} and {g}"
            assert not words & filler_words, (key, words & filler_words)


def test_without_words_drops_every_overlap_and_names_a_shortage():
    from mechinterp.stimuli import load_suite

    suite = load_suite("npz")
    words = suite_content_words(suite)
    full = generate("NP/Z", 80, seed=0)
    kept = full.without_words(words)
    assert len(kept) + len(kept.dropped) == len(full)
    for s in kept.sentences:
        assert not set(content_words(s.text)) & words
    for t in kept.dropped:
        assert set(content_words(t)) & words
    with pytest.raises(ConfigError, match="share no content word"):
        full.without_words({content_words("the puppy")[0], content_words("she lifted")[0], "hound", "stallion",
                            "infant", "kettl", "door", "engin", "phone", "candl", "parrot", "juri", "truck",
                            "bush", "hamster", "pupil"}, min_per_class=60)


def test_labels_and_unknown_construction():
    assert set(supported_constructions()) == set(CONS)
    assert label_of("NPZ", "object") == 1 and label_of("NP/Z", "subject") == 0
    with pytest.raises(ConfigError, match="not a reading"):
        label_of("NP/Z", "verb")
    with pytest.raises(ConfigError, match="no training-sentence generator"):
        generate("XYZ", 10)
    assert transfer_kind("NP/Z", "NP/S") == "structural" and transfer_kind("NP/Z", "LEX") == "preference"


def test_tokenized_regions_cover_the_target(tiny_model):
    for s in generate("NP/Z", 10, seed=0).sentences:
        tok = s.tokenized(tiny_model.tokenizer, tiny_model.bos_token_id)
        ids = [tok.input_ids[i] for i in tok.tokens_of_region(REGION_TARGET)]
        assert tiny_model.tokenizer.decode(ids).strip() == s.text[slice(*s.regions[REGION_TARGET])]
        assert tok.tokens_of_region(REGION_PRE).stop == tok.tokens_of_region(REGION_TARGET).start
        assert min(tok.tokens_of_region(REGION_PRE)) >= 1  # never BOS


def test_cue_report_does_not_depend_on_the_hash_seed():
    """Ties between equally predictive cue words are broken by the word, not by set order (PYTHONHASHSEED)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = ("import pandas as pd\nfrom mechinterp.probes.confounds import cue_report\n"
              "from mechinterp.probes.templates import generate\n"
              f"print(pd.concat([cue_report(generate(c, 40, 0)) for c in {CONS!r}]).to_csv())")
    outs = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(Path(__file__).parents[1])}
        run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        outs.add(run.stdout)
    assert len(outs) == 1
