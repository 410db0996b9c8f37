"""Checks that a suite is usable; every failure is a :class:`SuiteError` naming the item and problem."""

from __future__ import annotations

from mechinterp.errors import RegionError, SuiteError
from mechinterp.formula import parse_formula
from mechinterp.stimuli.types import Suite


def validate_suite(suite: Suite) -> Suite:
    where = f"suite {suite.name!r}" + (f" ({suite.source})" if suite.source else "")
    if not suite.items:
        raise SuiteError(f"{where} is empty: it has no items")
    spacings = {c.spacing for it in suite.items for c in it.conditions}
    if len(spacings) > 1:
        raise SuiteError(f"{where} mixes spacing conventions {sorted(spacings)}; a suite has one")
    seen: dict[str, int] = {}
    seen_text: dict[tuple, str] = {}
    for idx, item in enumerate(suite.items):
        label = f"{where}, item {item.key}"
        if item.key in seen:
            raise SuiteError(f"{where} has duplicate items: item {item.key} appears twice (entries {seen[item.key]} and {idx})")
        seen[item.key] = idx
        if not item.conditions:
            raise SuiteError(f"{label} has no conditions")
        names = [c.name for c in item.conditions]
        if len(set(names)) != len(names):
            raise SuiteError(f"{label} has duplicate condition names {names}")
        texts = tuple(c.text for c in item.conditions)
        if texts in seen_text:
            raise SuiteError(f"{where} has duplicate items: items {seen_text[texts]} and {item.key} have the same sentences")
        seen_text[texts] = item.key
        for cond in item.conditions:
            clabel = f"{label}, condition {cond.name!r}"
            if not cond.regions:
                raise SuiteError(f"{clabel} has no regions")
            nums = [r.number for r in cond.regions]
            if len(set(nums)) != len(nums):
                raise RegionError(f"{clabel} has duplicate region numbers {nums}")
            if nums != sorted(nums):
                raise RegionError(f"{clabel} lists its regions out of order {nums}")
            if not cond.text.strip():
                raise SuiteError(f"{clabel} is an empty sentence")
            if suite.region_meta:
                unknown = sorted(set(nums) - set(suite.region_meta))
                if unknown:
                    raise RegionError(f"{clabel} has regions {unknown} that region_meta does not name")
        amb = suite.ambiguity
        if amb is not None and (item.construction is None or item.construction == amb.construction):
            for role, num in (
                ("disambiguating", amb.disambiguating_region),
                ("ambiguous", amb.ambiguous_region),
                ("cue", amb.cue_region),
            ):
                if num is None:
                    continue
                for cond in item.conditions:
                    if num not in {r.number for r in cond.regions}:
                        raise RegionError(
                            f"{label}, condition {cond.name!r}: the {role} region {num} is not among its regions"
                        )
            for cname in (amb.ambiguous_condition, amb.unambiguous_condition):
                if cname not in names:
                    raise SuiteError(f"{label} lacks the {cname!r} condition that the ambiguity annotation names")
            for cname in (amb.ambiguous_condition, amb.unambiguous_condition):
                cond = item.condition(cname)
                if not cond.region_words(amb.disambiguating_region):
                    raise RegionError(
                        f"{label}, condition {cname!r}: the disambiguating region {amb.disambiguating_region} is empty"
                    )
            if amb.readings:
                for cond in item.conditions:
                    if cond.reading is not None and cond.reading not in amb.readings:
                        raise SuiteError(
                            f"{label}, condition {cond.name!r}: reading {cond.reading!r} is not one of {sorted(amb.readings)}"
                        )
    for p in suite.predictions:
        parse_formula(p.formula, suite=suite)
    return suite
