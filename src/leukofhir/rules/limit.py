"""A finding judged by another limit than the rule file's: an age band's, a patient's.

CTCAE v5.0 writes grade 1 of a low count as "< LLN to" the grade 2 limit and grades 2-4
as absolute counts; the rule file's grade table ends with that LLN grade.  Another lower
limit (the LLN) keeps the absolute grades below it, cuts the grade it falls in at it, and
extends grade 1 up to it when it lies above every absolute limit:

* neutropenia, limit 1.0: G4 < 0.5, G3 0.5 to < 1.0 (no G2: 1.0 is normal for an infant);
* neutropenia, limit 1.2: G4, G3, G2 1.0 to < 1.2;
* neutropenia, limit 2.0: G4, G3, G2 1.0 to < 1.5, G1 1.5 to < 2.0;
* leukopenia, limit 6.1: G4 < 1.0, G3, G2, G1 3.0 to < 6.1.

Clinical bands (mild / moderate / severe) are absolute: kept below the limit, the one the
limit falls in cut at it, none added above them.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

from leukofhir.rules.ruleset import Band, Grade, ThresholdRule

__all__ = ["with_limit"]


@lru_cache(maxsize=256)
def with_limit(rule: ThresholdRule, limit: Decimal) -> ThresholdRule:
    """``rule`` with ``limit`` as its threshold, its grades and bands cut to it."""
    if rule.kind != "below":
        return rule._replace(threshold=limit)
    return rule._replace(
        threshold=limit,
        grades=_grades(rule.grades, limit),
        bands=_bands(rule.bands, limit),
    )


def _grades(grades: tuple[Grade, ...], limit: Decimal) -> tuple[Grade, ...]:
    if not grades:
        return ()
    absolute, lln = grades[:-1], grades[-1]
    kept = [grade for grade in absolute if grade.below < limit]
    cut = next((grade for grade in absolute if grade.below >= limit), lln)
    return (*kept, cut._replace(below=limit))


def _bands(bands: tuple[Band, ...], limit: Decimal) -> tuple[Band, ...]:
    kept = [band for band in bands if band.below < limit]
    cut = next((band for band in bands if band.below >= limit), None)
    return (*kept, cut._replace(below=limit)) if cut is not None else tuple(kept)
