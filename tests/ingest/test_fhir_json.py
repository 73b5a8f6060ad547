"""FHIR JSON text → values: decimals as sent, and what is refused says where (line, column)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from leukofhir.ingest.fhir_json import JsonError, canonical_digest, load_json
from leukofhir.limits import MAX_DEPTH


def test_decimals_keep_their_text_and_integers_stay_integers() -> None:
    assert load_json(b'{"a": 5.100, "b": 7}') == {"a": Decimal("5.100"), "b": 7}


@pytest.mark.parametrize(
    ("data", "line", "column"),
    [
        (b'{"resourceType": "Observation",\n "x": }', 2, 7),
        (b'{"a": 1,\n\n   "b": NaN}', 3, 9),
        (b'{"a": "\xff"}', 1, 8),
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), 1, MAX_DEPTH + 1),
        (b"[" * 100_000, 1, MAX_DEPTH + 1),  # beyond the parser's own recursion
        (b'{"s": "[[[[\\"{{",\n "t":' + b"[" * 150 + b"]" * 150 + b"}", 2, 5 + MAX_DEPTH),
        # an exponent of 19 digits: Decimal() raised InvalidOperation out of json.loads
        (b'{"a": "1E+9999999999999999999",\n "b": [1.5, -2E-99999999999999999999]}', 2, 13),
    ],
)
def test_an_error_says_the_line_and_column(data: bytes, line: int, column: int) -> None:
    with pytest.raises(JsonError) as caught:
        load_json(data)
    assert (caught.value.line, caught.value.column) == (line, column)
    assert f"at line {line} column {column}" in str(caught.value)


def test_nesting_up_to_the_limit_is_read() -> None:
    assert load_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    # brackets inside strings are no nesting
    assert load_json(b'{"a": "' + b"[" * 500 + b'"}') == {"a": "[" * 500}


def test_an_integer_too_long_for_int_is_a_number_not_a_failure() -> None:
    # Python's int() refuses 4,300 digits and more; the value is kept (as a Decimal), so
    # that it is refused as a number beyond the bounds, located, like any other
    value = load_json(b'{"v": ' + b"7" * 5000 + b"}")["v"]
    assert value == Decimal("7" * 5000)
    assert len(canonical_digest([{"v": value}])) == 64


@pytest.mark.parametrize(
    ("data", "column"),
    [
        (b'{"a": "\\ud800"}', 8),
        (b'{"a": "\\uDC00"}', 8),
        (b'{"a": "ok \\ud83d"}', 11),
        (b'{"a": "\\ud83d\\ude00 \\ud83d x"}', 21),
    ],
)
def test_a_lone_surrogate_escape_is_refused(data: bytes, column: int) -> None:
    # json.loads lets "\ud800" through as a str no UTF-8 writer takes: orjson raised on
    # the OperationOutcome quoting it ("a \ud800 is not a lab result")
    with pytest.raises(JsonError) as caught:
        load_json(data)
    assert "surrogate" in str(caught.value)
    assert (caught.value.line, caught.value.column) == (1, column)


def test_surrogate_pairs_and_escaped_backslashes_are_read() -> None:
    assert load_json(b'{"a": "\\ud83d\\ude00", "b": "\\\\ud800"}') == {"a": "😀", "b": "\\ud800"}
