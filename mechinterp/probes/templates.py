"""Training sentences for reading probes: many varied, UNAMBIGUOUS sentences whose reading is fixed by structure.

A minimal pair is not training data: its cue (comma, "that", "who was") precedes the noun phrase, so a probe
separates the two versions at every layer and at every earlier word without any parse. Instead, for each
construction this module writes sentences where the probed word's reading is fixed by the words *before* it
(the model is causal, so only those can matter), through many different structures per reading:

==========  ==================================================  =============================================
construct.  reading (label 1 = the reading people prefer)       other reading (label 0)
==========  ==================================================  =============================================
NP/Z        object: the NP is the object of the preceding       subject: the NP is the subject of a following
            obligatorily transitive verb ("Once she lifted      clause ("Once Tom arrived, the infant cried",
            the infant, ...", "Tom sighed and lifted the        "Then the infant cried", "Tom sighed and the
            infant", "She said that Tom lifted the infant")     infant cried", "She said that the infant ...")
NP/S        direct_object: object of a verb that takes no       complement_subject: subject of a clause after
            clause ("She copied the recipe", "She hoped Tom     a verb that takes no object ("She hoped the
            copied the recipe")                                 recipe ...", "She said that the recipe ...")
MV/RR       main_verb: finite verb with its subject as agent    reduced_relative: passive participle modifying
            ("She mailed ...", "The clerk gave ...")            the NP before it ("She found the parcel
                                                                mailed ...", "The parcel given ...")
LEX         noun: after a determiner/adjective that cannot be   verb: after a plural subject or "to" ("They
            a noun phrase alone ("A new watch ...")             watch ...", "The local workers watch ...")
==========  ==================================================  =============================================

Every cue word is used by both readings (commas, subordinators, "that", "and", adverbs, say-verbs, clause
verbs, names and pronouns), the probed word appears early and late in both, and each target word (noun, verb
or word) is used in both readings equally often, so no single word of the prefix gives the label away
(:mod:`mechinterp.probes.confounds` measures this, and the tests hold it below a bound). Words come from
``data/lexicon.toml`` in lexical *buckets*; a sentence uses one bucket, and the bucket is its
cross-validation group.

Regions of a generated sentence (as :func:`mechinterp.tokenization.tokenize_text` takes them):
1 = words before the word that precedes the target (may be empty), 2 = the word just before the target,
3 = the target (the noun phrase, the verb or the ambiguous word), 4 = the rest.
"""

from __future__ import annotations

import random
import re
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from mechinterp.errors import ConfigError
from mechinterp.probes.labels import READINGS, canonical
from mechinterp.probes.lexical import content_words
from mechinterp.tokenization import tokenize_text

LEXICON_PATH = Path(__file__).parent / "data" / "lexicon.toml"

REGION_BEFORE, REGION_PRE, REGION_TARGET, REGION_AFTER = 1, 2, 3, 4


@cache
def lexicon() -> dict[str, Any]:
    with LEXICON_PATH.open("rb") as fh:
        return tomllib.load(fh)


@dataclass(frozen=True)
class TrainingSentence:
    """One generated sentence with its reading and where its target is."""

    text: str
    construction: str
    reading: str
    label: int  # 1 = the preferred reading, 0 = the other (see mechinterp.probes.labels)
    template: str
    group: int  # lexical bucket: the cross-validation group
    target: str  # the probed word (NP head noun, verb, or ambiguous word): the control-task "type"
    regions: dict[int, tuple[int, int]] = field(hash=False)  # char spans of regions 1-4
    lexical: tuple[str, ...] = ()  # the bucket words this sentence uses (nouns, verbs)

    @property
    def target_index(self) -> int:
        """Word index of the target's first word."""
        return len(self.text[: self.regions[REGION_TARGET][0]].split())

    @property
    def prefix(self) -> str:
        """The sentence up to and including the target: all a causal model has seen at the probed token."""
        return self.text[: self.regions[REGION_TARGET][1]]

    def tokenized(self, tokenizer: Any, bos_token_id: int):
        return tokenize_text(tokenizer, bos_token_id, self.text, self.regions)


@dataclass(frozen=True)
class TrainingSet:
    """Generated sentences for one construction (both readings, balanced)."""

    construction: str
    sentences: tuple[TrainingSentence, ...]
    seed: int
    dropped: tuple[str, ...] = ()  # texts removed for sharing content words with a test suite

    def __len__(self) -> int:
        return len(self.sentences)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "construction": s.construction,
                "reading": s.reading,
                "label": s.label,
                "template": s.template,
                "group": s.group,
                "target": s.target,
                "target_index": s.target_index,
                "text": s.text,
                "target_text": s.text[slice(*s.regions[REGION_TARGET])],
            }
            for s in self.sentences
        )

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.sentences]

    @property
    def groups(self) -> list[int]:
        return [s.group for s in self.sentences]

    @property
    def targets(self) -> list[str]:
        return [s.target for s in self.sentences]

    def without_words(self, words: set[str], min_per_class: int = 20) -> "TrainingSet":
        """Drop every sentence that shares a content word (by stem, see :mod:`mechinterp.probes.lexical`) with
        ``words``; raise if fewer than ``min_per_class`` sentences of a reading survive."""
        keep, drop = [], []
        for s in self.sentences:
            (drop if set(content_words(s.text)) & words else keep).append(s)
        for reading in READINGS[self.construction]:
            n = sum(s.reading == reading for s in keep)
            if n < min_per_class:
                raise ConfigError(
                    f"only {n} {self.construction} training sentences with reading {reading!r} share no content "
                    f"word with the test items (need {min_per_class}); generate more (n_per_class) or use a "
                    "suite with less overlap"
                )
        return TrainingSet(self.construction, tuple(keep), self.seed, self.dropped + tuple(s.text for s in drop))


# ---- template machinery ---------------------------------------------------------------------------------

_SLOT = re.compile(r"\{(\w+)\}")


def _an(text: str) -> str:
    return re.sub(r"\b([Aa]) (?=[aeiouAEIOU])", lambda m: m.group(1) + "n ", text)


def _realise(pattern: str, values: dict[str, str]) -> tuple[str, dict[int, tuple[int, int]]]:
    """Fill ``pattern`` (target between ``<`` and ``>``) and return the sentence with its region spans."""
    filled = _SLOT.sub(lambda m: values[m.group(1)], pattern)
    filled = " ".join(filled.split())
    filled = re.sub(r"\s+([,.])", r"\1", filled)
    filled = _an(filled)
    filled = filled[0].upper() + filled[1:]
    a = filled.index("<")
    b = filled.index(">") - 1
    text = filled.replace("<", "").replace(">", "")
    text = re.sub(r"\bi\b", "I", text)
    if b >= len(text) or text[b] != " ":
        # punctuation glued to the target would be part of its last word, i.e. of the probed token(s):
        # a future cue leaking into the probe
        raise ValueError(f"template {pattern!r} attaches punctuation to the target; put a word after it")
    words_before = text[:a].split()
    if not words_before:
        raise ValueError(f"template {pattern!r} puts the target first; every target needs a word before it")
    pre_start = text.rindex(words_before[-1], 0, a)
    regions = {REGION_BEFORE: (0, pre_start), REGION_PRE: (pre_start, a), REGION_TARGET: (a, b), REGION_AFTER: (b, len(text))}
    return text, regions


@dataclass(frozen=True)
class Template:
    name: str
    reading: str
    pattern: str


def _pick(rng: random.Random, xs: Sequence[Any]) -> Any:
    return xs[rng.randrange(len(xs))]


def _two(rng: random.Random, xs: Sequence[str]) -> tuple[str, str]:
    a, b = rng.sample(list(xs), 2)
    return a, b


def _common(rng: random.Random, tense: str) -> dict[str, str]:
    f = lexicon()["fillers"]
    past = tense == "past"
    # present-tense frames ("says", "wants") need third-person singular subjects: names only
    agents = f["names"] + f["pronouns"] if past else f["names"]
    a, a2 = _two(rng, agents)
    sub = _pick(rng, f["subordinators"])
    pred = f["filler_predicates_past" if past else "filler_predicates_present"]
    return {
        "a": a,
        "a2": a2,
        "SUB": sub,
        "sublow": sub.lower(),
        "SUBCL": f"{sub} {_pick(rng, [n for n in f['names'] if n not in (a, a2)])} {_pick(rng, pred)}",
        "ADVC": _pick(rng, f["adverbials_past" if past else "adverbials_present"]),
        "ADV": _pick(rng, f["adverbs_past" if past else "adverbs_present"]),
        "say": _pick(rng, f["say_verbs_past" if past else "say_verbs_present"]),
        **dict(zip(("fpred", "fpred2"), _two(rng, pred))),
        "tail": _pick(rng, f["past_tails" if past else "present_tails"]),
        "det": _pick(rng, f["determiners"]),
    }


def _np(rng: random.Random, det: str, noun: str, adjectives: Sequence[str], p_adj: float = 0.3) -> str:
    adj = f"{_pick(rng, adjectives)} " if rng.random() < p_adj else ""
    return f"{det} {adj}{noun}"


# ---- the four constructions -------------------------------------------------------------------------------

NPZ_TEMPLATES = (
    Template("main", "object", "{a} {vt} <{np}> {tail}."),
    Template("adverbial", "object", "{ADVC}, {a} {vt} <{np}> {tail}."),
    Template("adverb", "object", "{ADV} {a} {vt} <{np}> {tail}."),
    Template("after_clause", "object", "{SUBCL}, {a} {vt} <{np}> {tail}."),
    Template("in_clause", "object", "{SUB} {a} {vt} <{np}> {tail}, {a2} {fpred}."),
    Template("coordinated", "object", "{a} {fpred} {conj} {vt} <{np}> {tail}."),
    Template("that_clause", "object", "{a} {say} that {a2} {vt} <{np}> {tail}."),
    Template("late_clause", "object", "{a} {fpred} {sublow} {a2} {vt} <{np}> {tail}."),
    Template("adverbial", "subject", "{ADVC}, <{np}> {vi} {tail}."),
    Template("adverb", "subject", "{ADV} <{np}> {vi} {tail}."),
    Template("after_clause", "subject", "{SUBCL}, <{np}> {vi} {tail}."),
    Template("in_clause", "subject", "{SUB} <{np}> {vi}, {a2} {fpred}."),
    Template("coordinated", "subject", "{a} {fpred} {conj} <{np}> {vi} {tail}."),
    Template("that_clause", "subject", "{a} {say} that <{np}> {vi} {tail}."),
    Template("late_clause", "subject", "{a} {fpred} {sublow} <{np}> {vi}."),
    Template("that_after_clause", "subject", "{a} {say} that {sublow} {a2} {fpred}, <{np}> {vi}."),
    Template("two_clauses", "subject", "{a} {fpred} {sublow} {a2} {fpred2} {conj} <{np}> {vi}."),
    Template("coordinated_then", "subject", "{a} {fpred} {conj} then <{np}> {vi} {tail}."),
)


def _npz_values(rng: random.Random, bucket: dict[str, Any]) -> tuple[dict[str, str], str, tuple[str, ...]]:
    v = _common(rng, "past")
    noun = _pick(rng, bucket["nouns"])
    vt, vi = _pick(rng, bucket["vt"]), _pick(rng, bucket["vi"])
    v |= {"np": _np(rng, v["det"], noun, lexicon()["npz"]["adjectives"]), "vt": vt, "vi": vi,
          "conj": _pick(rng, ["and", "but"])}
    return v, noun, (noun, vt, vi)


NPS_TEMPLATES = (
    Template("main", "direct_object", "{a} {vt} <{np}> {tail}."),
    Template("adverbial", "direct_object", "{ADVC}, {a} {vt} <{np}> {tail}."),
    Template("after_clause", "direct_object", "{SUBCL}, {a} {vt} <{np}> {tail}."),
    Template("say_that", "direct_object", "{a} {say} that {a2} {vt} <{np}> {tail}."),
    Template("clause_verb", "direct_object", "{a} {vb} {a2} {vt} <{np}> {tail}."),
    Template("clause_verb_that", "direct_object", "{a} {vb} that {a2} {vt} <{np}> {tail}."),
    Template("main", "complement_subject", "{a} {vb} <{np}> {pred}."),
    Template("adverbial", "complement_subject", "{ADVC}, {a} {vb} <{np}> {pred}."),
    Template("after_clause", "complement_subject", "{SUBCL}, {a} {vb} <{np}> {pred}."),
    Template("say_that", "complement_subject", "{a} {say} that <{np}> {pred}."),
    Template("clause_verb", "complement_subject", "{a} {vt} {np2} and {vb} <{np}> {pred}."),
    Template("clause_verb_that", "complement_subject", "{a} {vb} that <{np}> {pred}."),
)


def _nps_values(rng: random.Random, bucket: dict[str, Any]) -> tuple[dict[str, str], str, tuple[str, ...]]:
    v = _common(rng, "past")
    lex = lexicon()["nps"]
    noun, noun2 = _two(rng, bucket["nouns"])
    vt, vb = _pick(rng, bucket["vt"]), _pick(rng, bucket["vb"])
    v |= {"np": _np(rng, v["det"], noun, lex["adjectives"]), "np2": f"the {noun2}", "vt": vt, "vb": vb,
          "pred": _pick(rng, lex["predicates"])}
    return v, noun, (noun, noun2, vt, vb)


MVRR_TEMPLATES = (
    Template("subject", "main_verb", "{a} <{vpast}> {np} {tail}."),
    Template("adverbial", "main_verb", "{ADVC}, {a} <{vpast}> {np} {tail}."),
    Template("after_clause", "main_verb", "{SUBCL}, {a} <{vpast}> {np} {tail}."),
    Template("say_that", "main_verb", "{a} {say} that {a2} <{vpast}> {np} {tail}."),
    Template("full_np", "main_verb", "the {agent} <{virr_past}> {np} {tail}."),
    Template("full_np_that", "main_verb", "{a} {say} that the {agent} <{virr_past}> {np}."),
    Template("subject", "reduced_relative", "{a} {find} {np} <{vpart}> {rrtail}."),
    Template("adverbial", "reduced_relative", "with {np} <{vpart}> {rrtail}, {a2} {fpred}."),
    Template("after_clause", "reduced_relative", "{SUBCL}, {a} {find} {np} <{vpart}> {rrtail}."),
    Template("say_that", "reduced_relative", "{a} {say} that {a2} {find} {np} <{vpart}> {rrtail}."),
    Template("full_np", "reduced_relative", "{np} <{virr_part}> {rrtail} {rrpred}."),
    Template("full_np_that", "reduced_relative", "{a} {say} that {np} <{virr_part}> {rrtail} {rrpred}."),
)


def _mvrr_values(rng: random.Random, bucket: dict[str, Any]) -> tuple[dict[str, str], str, tuple[str, ...]]:
    f = lexicon()["fillers"]
    v = _common(rng, "past")
    noun = _pick(rng, bucket["nouns"])
    past, part = _pick(rng, bucket["irregular"])
    if rng.random() < 0.5:  # the ambiguous-form (-ed) verbs and the irregular ones, equally in both readings
        reg = _pick(rng, bucket["regular"])
        vpast = vpart = reg
    else:
        vpast, vpart = past, part
    v |= {
        "np": f"{v['det']} {noun}", "vpast": vpast, "vpart": vpart, "virr_past": past, "virr_part": part,
        "agent": _pick(rng, f["agent_nouns"]), "find": _pick(rng, f["finding_verbs"]),
        "rrtail": _pick(rng, f["rr_tails"]), "rrpred": _pick(rng, f["rr_predicates"]),
    }
    return v, "", (noun, *bucket["regular"], past, part)


LEX_TEMPLATES = (
    Template("determiner", "noun", "{Det} {adj}<{w}> {npred}."),
    Template("object", "noun", "{a} {objv} {det} {adj}<{w}> {ptail}."),
    Template("adverbial", "noun", "{ADVC}, {det} {adj}<{w}> {npred}."),
    Template("adverb", "noun", "{ADV} {det} {adj}<{w}> {npred}."),
    Template("after_clause", "noun", "{SUBCL}, {det} {adj}<{w}> {npred}."),
    Template("say_that", "noun", "{a} {say} that {det} {adj}<{w}> {npred}."),
    Template("determiner", "verb", "the {adj}{npl} <{w}> {vcont} {ptail}."),
    Template("object", "verb", "{a} {want} to <{w}> {vcont}."),
    Template("adverbial", "verb", "{ADVC}, {pp} <{w}> {vcont}."),
    Template("adverb", "verb", "{ADV} {pp} <{w}> {vcont}."),
    Template("after_clause", "verb", "{SUBCL}, the {adj}{npl} <{w}> {vcont}."),
    Template("say_that", "verb", "{a} {say} that {pp} <{w}> {vcont}."),
    Template("pronoun", "verb", "{pp} <{w}> {vcont} {ptail}."),
)


def _lex_values(rng: random.Random, bucket: dict[str, Any]) -> tuple[dict[str, str], str, tuple[str, ...]]:
    f = lexicon()["fillers"]
    v = _common(rng, "present")
    word, vcont, npred = _pick(rng, bucket["words"])
    det = _pick(rng, ["the", "the", "a", "my", "this", "our", "her", "their"])
    adj = f"{_pick(rng, lexicon()['lexcat']['adjectives'])} " if rng.random() < 0.5 else ""
    v |= {
        "w": word, "vcont": vcont, "npred": npred, "det": det, "Det": det, "adj": adj,
        "objv": _pick(rng, f["object_verbs_present"]), "ptail": v["tail"], "npl": _pick(rng, f["plural_nouns"]),
        "pp": _pick(rng, f["plural_pronouns"]), "want": _pick(rng, f["want_verbs"]),
    }
    return v, word, tuple(w[0] for w in bucket["words"])


Filler = Callable[[random.Random, dict[str, Any]], tuple[dict[str, str], str, tuple[str, ...]]]

GENERATORS: dict[str, tuple[str, tuple[Template, ...], Filler]] = {
    "NP/Z": ("npz", NPZ_TEMPLATES, _npz_values),
    "NP/S": ("nps", NPS_TEMPLATES, _nps_values),
    "MV/RR": ("mvrr", MVRR_TEMPLATES, _mvrr_values),
    "LEX": ("lexcat", LEX_TEMPLATES, _lex_values),
}


def supported_constructions() -> list[str]:
    return list(GENERATORS)


def generate(construction: str, n_per_class: int = 150, seed: int = 0) -> TrainingSet:
    """``n_per_class`` distinct unambiguous sentences per reading of ``construction`` (deterministic in
    ``seed``). Templates are used in turn, buckets and fillers drawn at random."""
    name = canonical(construction)
    if name not in GENERATORS:
        raise ConfigError(
            f"no training-sentence generator for construction {construction!r} "
            f"(known: {', '.join(GENERATORS)})"
        )
    if n_per_class < 4:
        raise ConfigError(f"n_per_class must be at least 4 (got {n_per_class})")
    key, templates, fill = GENERATORS[name]
    buckets = lexicon()[key]["buckets"]
    rng = random.Random(f"{name}:{seed}")
    preferred = READINGS[name][0]
    out: list[TrainingSentence] = []
    for reading in READINGS[name]:
        ts = [t for t in templates if t.reading == reading]
        seen: set[str] = set()
        attempts = 0
        while len(seen) < n_per_class:
            attempts += 1
            if attempts > 50 * n_per_class:
                raise ConfigError(
                    f"could not write {n_per_class} distinct {name} sentences for {reading!r} "
                    f"(got {len(seen)}); ask for fewer"
                )
            t = ts[attempts % len(ts)]
            g = rng.randrange(len(buckets))
            values, target, lexical = fill(rng, buckets[g])
            text, regions = _realise(t.pattern, values)
            if text in seen:
                continue
            seen.add(text)
            tgt = target or text[slice(*regions[REGION_TARGET])]
            out.append(
                TrainingSentence(
                    text=text, construction=name, reading=reading, label=int(reading == preferred),
                    template=f"{t.reading}:{t.name}", group=g, target=tgt.split()[-1].lower(), regions=regions,
                    lexical=tuple(lexical),
                )
            )
    return TrainingSet(name, tuple(out), seed)
