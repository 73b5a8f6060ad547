"""Our ER7 reader against python-hl7 (``hl7`` 0.4.5), on the corpus and on generated messages.

Structure (segment names, fields, repetitions, components as raw text) must be
identical.  Decoded text is compared where both libraries implement the same
escapes; python-hl7's ``util.unescape`` differs on purpose in these ways
(ours follows HL7 v2.5.1 ch. 2.7):

========================  ========================  =================================
escape                    python-hl7                leukofhir
========================  ========================  =================================
``\\.br\\ \\.sp\\ \\.ce\\``  ``\\r``                   ``\\n`` (compared after CR → LF)
``\\H\\ \\N\\``             ``_``                     dropped (no highlighting in text)
``\\.in n\\ \\.ti n\\``     4 × n spaces              n spaces (the standard: indent n)
``\\.sp 0\\``              nothing                   one line break (.sp ends the line)
``\\.spx\\`` (bad number)  ValueError raised         kept literally
``\\X..\\`` non-ASCII      one char per byte         UTF-8 first, then ISO 8859-1
``\\P\\``                  dropped                   the MSH-2 truncation character
unknown, empty, unended   dropped                   kept literally (and a warning)
========================  ========================  =================================

Structure differs only where python-hl7 would be wrong: it keeps blank lines as
segments (we skip them; both get the same text without them here) and reads
``MSH|^~\\\\&`` as having ``\\`` for subcomponent separator (we read ``^~\\&``,
so the decoded comparison is skipped for that message).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import hl7
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leukofhir.errors import FramingError
from leukofhir.ingest.er7 import Er7Message, Segment, Separators, decode_escapes, parse_message
from leukofhir.ingest.framing import split_messages

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "hl7v2"
FILES = sorted(CORPUS.glob("*.hl7")) if CORPUS.exists() else []


def children(node: Any) -> list[Any]:
    """python-hl7 keeps a part without lower separators as a plain ``str``."""
    return [node] if isinstance(node, str) else list(node)


def same_text(text: str) -> str:
    return text.replace("\r", "\n")


def common_escapes(escape: str) -> re.Pattern[str]:
    """Escape sequences both libraries decode the same way."""
    e = re.escape(escape)
    formatting = r"\.br|\.ce|\.fi|\.nf|\.sp ?[1-9]|\.sk(?: ?[1-9])?"
    return re.compile(rf"{e}(?:[FSTRE]|X(?:[0-7][0-9A-Fa-f])+|{formatting}){e}")


def only_common_escapes(text: str, escape: str) -> bool:
    return escape not in common_escapes(escape).sub("", text)


def python_hl7_text(data: bytes, codec: str) -> str:
    """The message as python-hl7 wants it: CR segment ends, no blank lines."""
    lines = re.split(r"\r\n|\r|\n", data.decode(codec))
    return "\r".join(line for line in lines if line and not line.isspace()).strip()


def python_separators(message: Any) -> Separators:
    _, field, repetition, component, subcomponent = message.separators
    return Separators(field, component, repetition, message.esc, subcomponent)


def assert_same(ours: Er7Message, theirs: Any) -> None:
    same_escapes = python_separators(theirs) == ours.separators._replace(truncation="")
    assert [str(s[0]) for s in theirs] == [s.name for s in ours.segments]
    for segment, their_segment in zip(ours.segments, theirs, strict=True):
        assert len(segment.fields) == len(their_segment)
        for number, their_field in enumerate(their_segment):
            assert segment.raw(number) == str(their_field), (segment.location, number)
            if number == 0 or (segment.name == "MSH" and number <= 2):
                continue
            assert_same_field(segment, number, their_field, theirs if same_escapes else None)


def assert_same_field(segment: Segment, number: int, their_field: Any, theirs: Any) -> None:
    repetitions = [str(r) for r in children(their_field)]
    assert (segment.repetitions(number) or ("",)) == tuple(repetitions)
    for r, their_repetition in enumerate(children(their_field), 1):
        components = children(their_repetition)
        assert repetitions[r - 1].split(segment.separators.component) == [
            str(c) for c in components
        ]
        if theirs is None:
            continue
        for c, their_component in enumerate(components, 1):
            for s, their_sub in enumerate(children(their_component), 1):
                raw = str(their_sub)
                if only_common_escapes(raw, segment.separators.escape):
                    expected = same_text(theirs.unescape(raw))
                    assert same_text(segment.get(number, c, s, r)) == expected


# --------------------------------------------------------------------------- corpus


@pytest.mark.skipif(not FILES, reason="../shared/corpus/hl7v2 is not here")
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_corpus_matches_python_hl7(path: Path) -> None:
    for raw in split_messages(path.read_bytes()):
        try:
            ours = parse_message(raw.data)
        except FramingError:
            ours = None
        try:
            theirs = hl7.parse(python_hl7_text(raw.data, ours.charset if ours else "latin-1"))
        except Exception:  # python-hl7 fails in many ways; we must not
            continue
        assert ours is not None, "python-hl7 read a message we rejected"
        assert_same(ours, theirs)


# --------------------------------------------------------------------------- generated

SEPARATOR_POOL = "|^~\\&$*@!%#+:;?"
SEPARATOR_SETS = st.permutations(SEPARATOR_POOL).map(lambda p: Separators(*p[:5]))
SEGMENT_NAMES = st.from_regex(r"[A-Z][A-Z0-9]{2}", fullmatch=True).filter(
    lambda name: name not in {"MSH", "FHS", "BHS", "BTS", "FTS"}
)


PLAIN_TEXT = st.text(  # no separator of any set, no line end
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters=SEPARATOR_POOL + "\r\n"),
    max_size=8,
)


def escape_tokens(separators: Separators) -> st.SearchStrategy[str]:
    e = separators.escape
    fixed = [f"{e}{code}{e}" for code in ("F", "S", "T", "R", "E", ".br", ".ce", ".fi", ".nf")]
    return st.one_of(
        st.sampled_from(fixed),
        st.integers(1, 9).map(lambda n: f"{e}.sp{n}{e}"),
        st.integers(1, 9).map(lambda n: f"{e}.sk {n}{e}"),
        st.binary(min_size=1, max_size=3).map(
            lambda b: f"{e}X{bytes(x & 0x7F for x in b).hex()}{e}"
        ),
    )


def escaped_text(separators: Separators) -> st.SearchStrategy[str]:
    token = st.one_of(PLAIN_TEXT, escape_tokens(separators))
    return st.lists(token, max_size=5).map("".join)


@st.composite
def messages(draw: st.DrawFn) -> tuple[str, Separators]:
    separators = draw(SEPARATOR_SETS)
    s = separators
    text = escaped_text(separators)
    component = st.lists(text, min_size=1, max_size=3).map(s.subcomponent.join)
    repetition = st.lists(component, min_size=1, max_size=3).map(s.component.join)
    field = st.lists(repetition, min_size=1, max_size=3).map(s.repetition.join)
    segment = st.builds(
        lambda name, fields: s.field.join([name, *fields]),
        SEGMENT_NAMES,
        st.lists(field, max_size=6),
    )
    encoding = s.component + s.repetition + s.escape + s.subcomponent
    # MSH-3 is never empty: python-hl7 drops a lone empty field after MSH-2.
    header = s.field.join(["MSH", encoding, "APP", *draw(st.lists(field, max_size=10))])
    body = draw(st.lists(segment, max_size=6))
    return "\r".join([header, *body]).strip(), separators


@settings(max_examples=150, deadline=None)
@given(messages(), st.sampled_from(["\r", "\n", "\r\n"]))
def test_generated_messages_match_python_hl7(generated: tuple[str, Separators], end: str) -> None:
    text, separators = generated
    ours = parse_message(text.replace("\r", end).encode())
    assert ours.separators == separators
    assert_same(ours, hl7.parse(text))


@st.composite
def escaped_values(draw: st.DrawFn) -> tuple[str, Separators]:
    separators = draw(SEPARATOR_SETS)
    return draw(escaped_text(separators)), separators


@settings(max_examples=300, deadline=None)
@given(escaped_values())
def test_escape_decoding_matches_python_hl7(value: tuple[str, Separators]) -> None:
    text, s = value
    encoding = s.component + s.repetition + s.escape + s.subcomponent
    header = hl7.parse(f"MSH{s.field}{encoding}{s.field}APP")
    assert same_text(decode_escapes(text, s)) == same_text(header.unescape(text))


@pytest.mark.parametrize(
    ("text", "ours", "theirs"),
    [
        ("\\H\\a\\N\\", "a", "_a_"),
        ("\\.in 2\\", "  ", " " * 8),
        ("\\.br\\", "\n", "\r"),
        ("\\XC2B5\\", "µ", "Âµ"),
        ("\\Q\\x", "\\Q\\x", "x"),
        ("x\\F", "x\\F", "x"),
    ],
)
def test_documented_differences(text: str, ours: str, theirs: str) -> None:
    header = hl7.parse("MSH|^~\\&|")
    assert decode_escapes(text, Separators()) == ours
    assert header.unescape(text) == theirs
