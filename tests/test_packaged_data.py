"""The packaged TOML data is read with rtoml at start-up (leukofhir.packaged_toml): it must
read every packaged file exactly as tomllib, the reader of users' files, does."""

from __future__ import annotations

import tomllib

import pytest

from leukofhir import packaged_text, packaged_toml
from tests.conftest import ROOT

DATA = sorted(p.name for p in (ROOT / "src" / "leukofhir" / "data").glob("*.toml"))


def test_the_four_packaged_files_are_found() -> None:
    assert len(DATA) == 4


@pytest.mark.parametrize("name", DATA)
def test_rtoml_reads_a_packaged_file_as_tomllib(name: str) -> None:
    # repr: the same keys in the same order, the same types (1 == 1.0 == True for ==)
    assert repr(packaged_toml(name)) == repr(tomllib.loads(packaged_text(name)))
