"""The terminology tables: LOINC code → CBC field, unit spelling → factor, result statuses.

They are read once from the packaged, versioned data files ``cbc-loinc-v1.toml`` and
``units-v1.toml`` (the package's data folder) and turned into lookup dicts, so that the hot
path does one dict lookup per code and per unit.  A :class:`Terminology` is immutable:
its mappings are read-only views.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from functools import cache, lru_cache
from types import MappingProxyType
from typing import Any, NamedTuple

from leukofhir import packaged_toml
from leukofhir.errors import ConfigError, ErrorCode, Issue, Location, error
from leukofhir.model import Analyte, Coding, Measure
from leukofhir.terminology.checkdigits import is_loinc

__all__ = [
    "Derivation",
    "Field",
    "Terminology",
    "Unit",
    "field_key",
    "normalise_unit",
    "packaged_terminology",
]

CBC_LOINC_FILE = "cbc-loinc-v1.toml"
UNITS_FILE = "units-v1.toml"
_MEASURES = {measure.value: measure for measure in Measure}


def field_key(analyte: Analyte, measure: Measure) -> str:
    """A string naming (analyte, measure): ``"neutrophils/percent"``.

    The hot path keys its dicts by these strings rather than by enum tuples, whose
    hash is computed in Python on every lookup.
    """
    return f"{analyte.value}/{measure.value}"


class Unit(NamedTuple):
    """One accepted unit spelling for one measure, and how to normalise it."""

    ucum: str  # the normalised unit: "10*9/L", "%", "g/dL"
    factor: Decimal
    quantum: Decimal | None = None  # rounding of the normalised value, when inexact


class Field(NamedTuple):
    """One LOINC code that names a CBC field, with what the hot path needs precomputed."""

    loinc: str
    analyte: Analyte
    measure: Measure
    label: str  # how messages name it: "WBC", "neutrophils %"
    key: str  # field_key(analyte, measure)
    units: Mapping[str, Unit]  # the accepted units of its measure, by normalised spelling
    max: Decimal | None = None  # physical upper limit in the normalised unit
    preferred_over: frozenset[str] = frozenset()  # codes of the same field this one beats

    def unit_for(self, unit: Coding | None) -> Unit | None:
        """The accepted unit the sent unit names (its code first, then its display)."""
        if unit is None:
            return None
        units = self.units
        for spelling in (unit.code, unit.display):
            if spelling and (found := units.get(normalise_unit(spelling))) is not None:
                return found
        return None


class Derivation(NamedTuple):
    """A count leukofhir computes as WBC × percent / 100, under the LOINC code ``loinc``."""

    analyte: Analyte
    loinc: str
    count_key: str
    percent_key: str


def _ro(mapping: dict[Any, Any]) -> Mapping[Any, Any]:
    return MappingProxyType(mapping)


class Terminology(NamedTuple):
    """The loaded tables, plus the user's local-code mappings.

    ``version`` names the field table (``cbc-loinc-v1``), ``units_version`` the unit table;
    ``mapping_files`` the user mapping files merged in, in order; ``issues`` notes made
    while loading them (a ConceptMap target that was skipped, say).
    """

    version: str
    units_version: str
    fields: Mapping[str, Field]  # LOINC code → field
    never: Mapping[str, str]  # LOINC code → why it is never a CBC field
    units: Mapping[str, Mapping[str, Unit]]  # measure value → normalised spelling → unit
    labels: Mapping[tuple[Analyte, Measure], str]
    derivations: tuple[Derivation, ...]  # counts computed from WBC × percent
    anc_parts: tuple[Derivation, ...]  # segmented + band: each a count, or WBC × percent
    status_use: frozenset[str]
    status_refuse: Mapping[str, str]  # status → meaning
    percent_max: Decimal
    differential_sum: tuple[Decimal, Decimal]
    local: Mapping[tuple[str, str], Field] = MappingProxyType({})
    mapping_files: tuple[str, ...] = ()
    issues: tuple[Issue, ...] = ()

    def label(self, analyte: Analyte, measure: Measure) -> str:
        return self.labels.get((analyte, measure), f"{analyte.value} {measure.value}")

    def unit_for(self, measure: Measure, unit: Coding | None) -> Unit | None:
        """The accepted unit of ``measure`` the sent unit names (code first, then display)."""
        if unit is None:
            return None
        units = self.units.get(measure.value, {})
        for spelling in (unit.code, unit.display):
            if spelling and (found := units.get(normalise_unit(spelling))) is not None:
                return found
        return None


@lru_cache(maxsize=4096)
def normalise_unit(spelling: str) -> str:
    """The lookup key of a unit spelling: trimmed and case-folded, with the micro sign
    (µ U+00B5, Greek μ U+03BC, and Μ U+039C, the upper case of both) read as ``u``.
    Memoised: a feed uses a handful of spellings."""
    return spelling.strip().casefold().replace("μ", "u")


def _bad(file: str, where: str, message: str) -> ConfigError:
    return ConfigError(
        error(
            ErrorCode.DATA_TYPE,
            f"{file}: {message}",
            Location(expression=where),
            fhir_type="invalid",
        )
    )


def _decimal(file: str, where: str, raw: object) -> Decimal:
    if not isinstance(raw, str):
        raise _bad(file, where, f"{where} must be a number written as a string, not {raw!r}")
    try:
        number = Decimal(raw)
    except InvalidOperation:
        raise _bad(file, where, f"{where} is not a number: {raw!r}") from None
    if not number.is_finite():
        raise _bad(file, where, f"{where} is not a finite number: {raw!r}")
    return number


def _fields(
    data: dict[str, Any], units: Mapping[str, Mapping[str, Unit]]
) -> tuple[dict[str, Field], dict[tuple[Analyte, Measure], str], dict[Analyte, str]]:
    file = CBC_LOINC_FILE
    preferred = {code: frozenset(over) for code, over in data.get("preferred_over", {}).items()}
    fields: dict[str, Field] = {}
    labels: dict[tuple[Analyte, Measure], str] = {}
    derive: dict[Analyte, str] = {}
    for key, table in data["analytes"].items():
        analyte = Analyte(key)
        for measure in Measure:
            codes = table.get(measure.value, [])
            if not codes:
                continue
            label = table.get(f"label_{measure.value}", f"{key} {measure.value}")
            labels[(analyte, measure)] = label
            limit = table.get(f"max_{measure.value}")
            where = f"analytes.{key}.max_{measure.value}"
            maximum = _decimal(file, where, limit) if limit else None
            for code in codes:
                if not is_loinc(code):
                    raise _bad(file, f"analytes.{key}", f"{code!r} fails the LOINC check digit")
                if code in fields:
                    raise _bad(file, f"analytes.{key}", f"{code} is listed twice")
                fields[code] = Field(
                    code,
                    analyte,
                    measure,
                    label,
                    field_key(analyte, measure),
                    units.get(measure.value, _ro({})),
                    maximum,
                    preferred.get(code, frozenset()),
                )
        if "derive" in table:
            derive[analyte] = table["derive"]
    for code in (*derive.values(), *preferred):
        if code not in fields:
            raise _bad(file, "analytes", f"{code} is used but is not a CBC field code")
    clash = set(fields) & set(data["never"])
    if clash:
        raise _bad(file, "never", f"{sorted(clash)} are both CBC fields and never CBC fields")
    return fields, labels, derive


def _units(data: dict[str, Any]) -> dict[str, Mapping[str, Unit]]:
    file = UNITS_FILE
    units: dict[str, dict[str, Unit]] = {}
    for index, group in enumerate(data["units"]):
        where = f"units[{index}]"
        measure = _MEASURES.get(group["measure"])
        if measure is None:
            raise _bad(file, where, f"unknown measure {group['measure']!r}")
        quantum = group.get("quantum")
        unit = Unit(
            group["ucum"],
            _decimal(file, f"{where}.factor", group["factor"]),
            _decimal(file, f"{where}.quantum", quantum) if quantum else None,
        )
        spellings = units.setdefault(measure.value, {})
        for spelling in group["spellings"]:
            key = normalise_unit(spelling)
            if spellings.get(key, unit) != unit:
                raise _bad(file, where, f"{spelling!r} has two different factors")
            spellings[key] = unit
    return {measure: _ro(spellings) for measure, spellings in units.items()}


def _derivation(analyte: Analyte, loinc: str) -> Derivation:
    return Derivation(
        analyte, loinc, field_key(analyte, Measure.COUNT), field_key(analyte, Measure.PERCENT)
    )


@cache
def packaged_terminology() -> Terminology:
    """The packaged tables, read once per process."""
    cbc, unit_data = packaged_toml(CBC_LOINC_FILE), packaged_toml(UNITS_FILE)
    units = _units(unit_data)
    fields, labels, derive = _fields(cbc, units)
    plausibility = cbc["plausibility"]
    anc_parts = [Analyte(part) for part in cbc["anc"]["parts"]]
    return Terminology(
        version=cbc["id"],
        units_version=unit_data["id"],
        fields=_ro(fields),
        never=_ro(dict(cbc["never"])),
        units=_ro(units),
        labels=_ro(labels),
        derivations=tuple(_derivation(analyte, loinc) for analyte, loinc in derive.items()),
        anc_parts=tuple(_derivation(analyte, derive.get(analyte, "")) for analyte in anc_parts),
        status_use=frozenset(cbc["status"]["use"]),
        status_refuse=_ro(dict(cbc["status"]["refuse"])),
        percent_max=_decimal(CBC_LOINC_FILE, "plausibility", plausibility["percent_max"]),
        differential_sum=(
            _decimal(CBC_LOINC_FILE, "plausibility", plausibility["differential_sum_low"]),
            _decimal(CBC_LOINC_FILE, "plausibility", plausibility["differential_sum_high"]),
        ),
    )
