"""leukofhir: CBC lab results (HL7 v2, FHIR) → leukopenia rule set → FHIR R4 transaction Bundles."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def packaged_text(name: str) -> str:
    """A file of the package's ``data`` folder (a plain folder beside this file: the package
    is never run from a zip, and ``importlib.resources`` costs ~10 ms of every start)."""
    with open(f"{__path__[0]}/data/{name}", encoding="utf-8") as handle:
        return handle.read()


def packaged_toml(name: str) -> dict[str, Any]:
    """A TOML file of the package's ``data`` folder, read with rtoml (compiled: at start-up
    tomllib's pure Python took 66 M instructions for the four files, rtoml 24 M with its
    import); tests/test_packaged_data.py pins that it reads them as tomllib does.  Users'
    files are read with tomllib, whose errors give the line and column."""
    import rtoml

    return rtoml.loads(packaged_text(name))
