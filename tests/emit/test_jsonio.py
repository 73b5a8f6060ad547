"""Numbers are written digit for digit; nothing else can forge a number."""

from __future__ import annotations

import json
from decimal import Decimal

import orjson
from hypothesis import given
from hypothesis import strategies as st

from leukofhir.emit.datatypes import decimal, text
from leukofhir.emit.jsonio import dumps

NUMBER_TEXT = st.from_regex(r"\A-?(0|[1-9][0-9]{0,18})(\.[0-9]{1,8})?\Z")


@given(NUMBER_TEXT)
def test_a_decimal_is_written_exactly_as_its_text(number: str) -> None:
    written = dumps({"v": decimal(Decimal(number))})
    assert written == b'{"v":' + format(Decimal(number), "f").encode() + b"}"
    json.loads(written)


def test_leading_zeros_and_plus_go_trailing_zeros_stay() -> None:
    assert dumps([decimal(Decimal(t)) for t in ("05.100", "+4.2", ".5", "0.80", "41")]) == (
        b"[5.100,4.2,0.5,0.80,41]"
    )


@given(st.text())
def test_input_text_cannot_forge_a_number_marker(value: str) -> None:
    cleaned = text(value)
    assert orjson.loads(dumps({"v": cleaned})) == {"v": cleaned}


def test_indent() -> None:
    assert dumps({"a": decimal(Decimal("1.10"))}, indent=True) == b'{\n  "a": 1.10\n}'


MARKED = st.from_regex(r"\A\x1e-?[0-9]{1,6}(\.[0-9]{1,4})?\x1e\Z")


@given(st.one_of(st.text(), MARKED, st.builds("{}{}".format, st.text(max_size=5), MARKED)))
def test_no_string_is_written_as_a_number(value: str) -> None:
    # FHIR input strings reach the writer without text() cleaning: "\x1e0123\x1e" came out
    # as the bare number 0123 when numbers were marked with \x1e inside strings
    written = dumps({"v": value, "w": [value, decimal(Decimal("5.100"))]})
    assert json.loads(written) == {"v": value, "w": [value, 5.1]}
    assert written.endswith(b",5.100]}")


def test_the_old_number_marker_is_an_ordinary_string() -> None:
    assert dumps({"v": "\x1e0123\x1e"}) == b'{"v":"\\u001e0123\\u001e"}'
