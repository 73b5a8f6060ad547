"""Terminology: a LabReport's result lines → its normalised CBC fields (a ``Cbc``).

Knowledge lives in versioned data files inside the package, read once:
``data/cbc-loinc-v1.toml`` (LOINC code → analyte and count/percent, codes never to
map, result statuses, physical limits) and ``data/units-v1.toml`` (unit spellings and
factors).  Local (non-LOINC) codes reach a field only through user mapping files (a
FHIR ConceptMap or a CSV table, see :mod:`leukofhir.terminology.mapping`).

Policies (details in the modules named):

- identification by code only, LOINC codings before local mappings; a "never" code
  anywhere on the line makes it unmapped (:mod:`.identify`);
- count or percent from the code; the unit must be one known for that measure, by its
  code, else its display; an unknown or missing unit makes the value unusable, never
  guessed (:mod:`.normalise`);
- status: F, C, A, P, U, empty and FHIR final/amended/corrected/preliminary are used;
  X, W, D, cancelled, entered-in-error and every other status are not (``cbc-loinc-v1``);
- one value per field: first usable in message order, 33256-9 over 6690-2; the others
  are superseded, never dropped (:mod:`.cbc`);
- the differential's percents must sum to about 100 (:mod:`.differential`);
- missing counts derived exactly from WBC × percent, ANC from segmented + band
  (:mod:`.derive`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType

from leukofhir.terminology.cbc import build_cbc
from leukofhir.terminology.tables import Field, Terminology, Unit, packaged_terminology

__all__ = ["Field", "Terminology", "Unit", "build_cbc", "load_terminology"]


def load_terminology(mapping_files: Sequence[Path] = ()) -> Terminology:
    """The packaged tables, with the user's local-code mapping files merged in.

    Raises :class:`~leukofhir.errors.ConfigError` (its issue names the file and the
    place) when a mapping file cannot be read or maps to anything but a CBC field.
    """
    base = packaged_terminology()
    if not mapping_files:
        return base
    from leukofhir.terminology.mapping import read_mappings  # json, csv: with --mapping only

    paths = tuple(Path(path) for path in mapping_files)
    local, notes = read_mappings(paths, base.fields, base.never)
    return base._replace(
        local=MappingProxyType(local),
        mapping_files=tuple(str(path) for path in paths),
        issues=tuple(notes),
    )
