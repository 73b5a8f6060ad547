"""leukofhir: CBC lab results (HL7 v2, FHIR) → leukopenia rule set → FHIR R4 transaction Bundles."""

from __future__ import annotations

__version__ = "0.1.0"


def packaged_text(name: str) -> str:
    """A file of the package's ``data`` folder (a plain folder beside this file: the package
    is never run from a zip, and ``importlib.resources`` costs ~10 ms of every start)."""
    with open(f"{__path__[0]}/data/{name}", encoding="utf-8") as handle:
        return handle.read()
