from __future__ import annotations

import hashlib
import uuid
from decimal import Decimal

import pytest

from leukofhir.emit.datatypes import (
    NAMESPACE,
    code,
    decimal,
    identifier,
    if_none_exist,
    system_uri,
    text,
    urn,
    uuid_value,
)
from leukofhir.model import Identifier


@pytest.mark.parametrize("parts", [("a",), ("Bundle", "x|y"), ("ü", ""), ()])
def test_uuid_value_is_uuid5(parts: tuple[str, ...]) -> None:
    assert uuid_value(*parts) == str(uuid.uuid5(NAMESPACE, "|".join(parts)))
    assert urn(*parts).startswith("urn:uuid:") if parts else True


def test_uuid_value_sets_version_and_variant_for_every_digit() -> None:
    """The version and variant are written over the SHA-1's hex digits: each of the 16
    values the variant's digit (the 17th) can have is met among these names."""
    digits = set()
    for number in range(200):
        name = f"Observation|{number}"
        assert uuid_value("Observation", str(number)) == str(uuid.uuid5(NAMESPACE, name))
        digits.add(hashlib.sha1(NAMESPACE.bytes + name.encode()).hexdigest()[16])
    assert len(digits) == 16


def test_text_and_code_cleaning() -> None:
    assert text("  a\x00b\x1fc\n ") == "abc"
    assert text("line1\nline2") == "line1\nline2"
    assert code(" 6690-2 ") == "6690-2"
    assert code("a  b\tc") == "a b c"


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("", "https://leukofhir.dev/fhir/sid/patient"),
        ("2.16.840.1.113883.19.5", "urn:oid:2.16.840.1.113883.19.5"),
        ("http://hospital.example/mrn", "http://hospital.example/mrn"),
        ("Joe's Lab", "https://leukofhir.dev/fhir/sid/patient/Joe%27s%20Lab"),
    ],
)
def test_system_uri(authority: str, expected: str) -> None:
    assert system_uri(authority, "patient") == expected


def test_if_none_exist_escapes_the_value() -> None:
    ident = identifier(Identifier("12|3&x=y", "HOSP", "MR"), "patient")
    assert ident["type"]["coding"][0]["code"] == "MR"
    assert if_none_exist(ident) == (
        "identifier=https://leukofhir.dev/fhir/sid/patient/HOSP%7C12%5C%7C3%26x%3Dy"
    )


@pytest.mark.parametrize("number", ["1E+999999999", "1E-99999999", "1E+100", "NaN", "-Infinity"])
def test_a_number_beyond_the_output_bounds_is_refused_before_it_is_formatted(number: str) -> None:
    # the readers refuse these; reaching the writer is a fault of ours, never a gigabyte line
    with pytest.raises(ValueError, match="beyond the output bounds"):
        decimal(Decimal(number))


def test_a_derived_count_within_the_bounds_is_written() -> None:
    product = Decimal("0.000000000000000001") * Decimal("0.000000000000000001")
    assert decimal(product.scaleb(-2)) == "0." + "0" * 37 + "1"
