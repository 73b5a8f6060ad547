"""leukofhir: CBC lab results (HL7 v2, FHIR) → leukopenia rule set → FHIR R4 transaction Bundles."""

from __future__ import annotations

__version__ = "0.1.0"
