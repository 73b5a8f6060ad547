"""Which CBC field a result line is, from its codes alone.

A line is a CBC field when one of its codings is a LOINC code of the field table
(``Coding.system == http://loinc.org``, which the reader sets for v2 system ``LN``;
the alternate coding of CWE-4..6 is the second :class:`~leukofhir.model.Coding`), or
when a local coding is in the user's mapping.  Codings are tried in the order sent,
LOINC before local mappings.  A line carrying a code of the "never" list (a panel
code, cord-blood neutrophils 74398-9, the 0–1 neutrophil fraction 71676-1) is never a
CBC field, whatever its other codings say.  The code's text is never used.
"""

from __future__ import annotations

from leukofhir.model import LOINC, Coding, LabObservation
from leukofhir.terminology.tables import Field, Terminology

__all__ = ["identify", "is_loinc_coding"]


def is_loinc_coding(coding: Coding) -> bool:
    return coding.system == LOINC or (not coding.system and coding.source_system.upper() == "LN")


def identify(obs: LabObservation, terminology: Terminology) -> tuple[Field | None, str]:
    """The field of ``obs`` (or None), and when it is a "never" code, why: ``"74398-9: ..."``."""
    found: Field | None = None
    for coding in obs.codes:
        if coding.system != LOINC and (coding.system or coding.source_system.upper() != "LN"):
            continue  # not a LOINC coding (is_loinc_coding, inlined on the hot path)
        if (reason := terminology.never.get(coding.code)) is not None:
            return None, f"{coding.code} is {reason}"
        if found is None:
            found = terminology.fields.get(coding.code)
    if found is not None or not terminology.local:
        return found, ""
    local = terminology.local
    for coding in obs.codes:
        if is_loinc_coding(coding):
            continue
        code = coding.code
        if coding.system and (field := local.get((coding.system, code))):
            return field, ""
        if coding.source_system and (field := local.get((coding.source_system, code))):
            return field, ""
        if field := local.get(("", code)):
            return field, ""
    return None, ""
