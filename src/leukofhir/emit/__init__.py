"""FHIR R4 output: plain dicts built by small typed builders, written with orjson."""
