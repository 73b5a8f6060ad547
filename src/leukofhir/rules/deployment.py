"""What one deployment adds to the rule set: its profile (``--profile FILE``) and its
patients' own lower ANC limits.

A deployment profile is a TOML file::

    name = "riverbend-haematology"          # goes into every report's conclusion
    version = "2025.1"
    source = "Riverbend RMC laboratory, adult reference intervals 2025"

    [neutropenia]                           # optional: the adult lower ANC limit
    below = "1.5"                           # 10*9/L
    source = "..."                          # required with it

    [patients]                              # optional: per-patient lower ANC limits
    file = "anc-limits.csv"                 # relative to this file

    [paediatric]                            # optional: another paediatric profile
    file = "paediatric-local.toml"

    [[intervals]]                           # optional: adult intervals replacing those
    analyte = "neutrophils"                 # of the rule file's [profile] (same keys)
    measure = "percent"
    low = "40"
    high = "75"
    unit = "%"

The patient file is CSV with the header ``system,value,anc_below,unit,basis``: the patient
identifier (``system`` as the Patient resource shows it, or the HL7 assigning authority;
empty for none), the lower ANC limit in ``10*9/L`` (the only unit accepted), and its basis,
which is written into every finding it changes ("Duffy-null phenotype Fy(a-b-), blood bank
2024-05-02").  A limit is a clinician's statement about one patient: it is never derived
here from anything else, and never from race or ethnicity.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from leukofhir.emit.datatypes import system_uri
from leukofhir.errors import ConfigError, ErrorCode, Location, error
from leukofhir.model import Identifier
from leukofhir.rules.paediatric import PaediatricProfile, load_paediatric
from leukofhir.rules.ruleset import Interval, RuleSet

__all__ = [
    "Deployment",
    "PatientLimit",
    "accepted_range",
    "default_deployment",
    "load_deployment",
    "refused",
]

PATIENT_COLUMNS = ("system", "value", "anc_below", "unit", "basis")
LIMIT_UNIT = "10*9/L"


class PatientLimit(NamedTuple):
    """One patient's own lower ANC limit and where it comes from."""

    below: Decimal
    basis: str  # the clinical reason, as the deployment wrote it
    origin: str  # "patient file anc-limits.csv line 3", "OBX[9]"


class Deployment(NamedTuple):
    paediatric: PaediatricProfile
    name: str = ""
    version: str = ""
    source: str = ""
    anc_below: Decimal | None = None  # adults
    anc_source: str = ""
    intervals: Mapping[tuple[str, str], Interval] | None = None  # adults
    patients: Mapping[tuple[str, str], PatientLimit] = MappingProxyType({})
    origin: str = ""

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}".strip()

    def patient_limit(self, identifiers: tuple[Identifier, ...]) -> PatientLimit | None:
        """The limit the patient file gives for any of the patient's identifiers."""
        for ident in identifiers:
            found = self.patients.get(_key(ident.system, ident.value))
            if found is not None:
                return found
        return None


def _key(system: str, value: str) -> tuple[str, str]:
    return (system_uri(system, "patient") if system.strip() else "", value.strip())


_DEFAULTS: dict[int, tuple[RuleSet, Deployment]] = {}


def default_deployment(rule_set: RuleSet) -> Deployment:
    """No profile: the packaged paediatric profile, nothing else (made once per rule set)."""
    found = _DEFAULTS.get(id(rule_set))
    if found is None or found[0] is not rule_set:
        found = (rule_set, Deployment(load_paediatric(rule_set)))
        _DEFAULTS[id(rule_set)] = found
    return found[1]


def _fail(name: str, where: str, message: str) -> ConfigError:
    return ConfigError(
        error(
            ErrorCode.DATA_TYPE,
            f"deployment profile {name}: {where}: {message}",
            Location(expression=where),
            fhir_type="invalid",
        )
    )


def accepted_range(rule_set: RuleSet) -> tuple[Decimal, Decimal]:
    """The lower ANC limits accepted for a patient or a deployment, both ends included
    (the rule file's ``[patient_limits].accepted``): never below the critical ANC limit,
    which it would hide, never above the adult limit."""
    code = rule_set.patient_limit
    if code is None:
        return Decimal("0.5"), Decimal("1.5")
    return code.lowest, code.highest


def refused(number: Decimal, bounds: tuple[Decimal, Decimal]) -> str:
    """Why ``number`` (10*9/L) is not an accepted lower ANC limit; "" when it is."""
    lowest, highest = bounds
    if not number.is_finite() or not lowest <= number <= highest:
        return (
            f"{number} 10*9/L is not an accepted lower ANC limit (from {lowest}, the"
            f" critical limit, which a lower one would hide, to {highest}, the adult limit)"
        )
    return ""


def _limit(raw: object, name: str, where: str, bounds: tuple[Decimal, Decimal]) -> Decimal:
    try:
        number = Decimal(str(raw)) if isinstance(raw, str) else None
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        raise _fail(name, where, f"{raw!r} is not a lower ANC limit (a number)")
    if why := refused(number, bounds):
        raise _fail(name, where, why)
    return number


def load_deployment(path: Path, rule_set: RuleSet) -> Deployment:
    """The deployment profile of ``path`` with the files it names; raises ConfigError."""
    import tomllib  # only with a profile

    name = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise _fail(name, "file", f"cannot be read ({exc})") from None
    for key in ("name", "version"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise _fail(name, key, "is missing (it goes into every report)")
    folder = Path(path).parent
    paediatric_file = _file(data, "paediatric", folder, name)
    anc_below, anc_source = None, ""
    if (table := data.get("neutropenia")) is not None:
        if not isinstance(table, dict) or not isinstance(table.get("source"), str):
            raise _fail(name, "neutropenia", "needs 'below' and its 'source'")
        anc_below, anc_source = (
            _limit(table.get("below"), name, "neutropenia.below", accepted_range(rule_set)),
            table["source"],
        )
    patients_file = _file(data, "patients", folder, name)
    return Deployment(
        paediatric=load_paediatric(rule_set, paediatric_file),
        name=data["name"].strip(),
        version=data["version"].strip(),
        source=str(data.get("source", "")),
        anc_below=anc_below,
        anc_source=anc_source,
        intervals=_intervals(data, rule_set, name),
        patients=MappingProxyType(
            read_patient_limits(patients_file, accepted_range(rule_set)) if patients_file else {}
        ),
        origin=name,
    )


def _file(data: dict[str, Any], key: str, folder: Path, name: str) -> Path | None:
    table = data.get(key)
    if table is None:
        return None
    if not isinstance(table, dict) or not isinstance(table.get("file"), str):
        raise _fail(name, f"{key}.file", "must name a file")
    file: str = table["file"]
    return folder / file


def _intervals(
    data: dict[str, Any], rule_set: RuleSet, name: str
) -> Mapping[tuple[str, str], Interval] | None:
    """The deployment's adult intervals, read as the rule file's ``[profile]`` is."""
    items = data.get("intervals")
    if items is None:
        return None
    from leukofhir.rules.load import read_intervals

    try:
        own = read_intervals({"intervals": items, "name": "", "version": ""}, name)
    except ConfigError as exc:
        raise _fail(name, "intervals", exc.issue.message) from None
    # over the rule file's: an interval the profile does not give keeps the rule file's
    return MappingProxyType({**rule_set.profile.intervals, **own})


def read_patient_limits(
    path: Path, bounds: tuple[Decimal, Decimal] = (Decimal("0.5"), Decimal("1.5"))
) -> dict[tuple[str, str], PatientLimit]:
    """The patient file (see the module doc); raises ConfigError naming the line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(str(path), "file", f"cannot be read ({exc})") from None
    import csv  # with --profile only: start-up of a plain replay does without

    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if header is None or tuple(h.strip() for h in header) != PATIENT_COLUMNS:
        raise _fail(path.name, "line 1", f"the header must be {','.join(PATIENT_COLUMNS)}")
    limits: dict[tuple[str, str], PatientLimit] = {}
    for number, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"line {number}"
        if len(row) != len(PATIENT_COLUMNS):
            raise _fail(path.name, where, f"needs {len(PATIENT_COLUMNS)} columns")
        system, value, below, unit, basis = (cell.strip() for cell in row)
        if not value:
            raise _fail(path.name, where, "no patient identifier value")
        if unit != LIMIT_UNIT:
            raise _fail(path.name, where, f"unit {unit!r}: write the limit in {LIMIT_UNIT}")
        if not basis:
            raise _fail(path.name, where, "no basis: say why this patient has their own limit")
        key = _key(system, value)
        if key in limits:
            raise _fail(path.name, where, "the patient is listed twice")
        limits[key] = PatientLimit(
            _limit(below, path.name, where, bounds), basis, f"patient file {path.name} {where}"
        )
    return limits
