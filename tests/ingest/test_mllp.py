"""The MLLP framer, without sockets: any chunking of the stream gives the same messages."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leukofhir.errors import ErrorCode
from leukofhir.ingest.mllp import END, START, FrameTooLargeError, MllpFramer, frame

MESSAGE = st.binary(max_size=200).map(lambda b: b.replace(b"\x0b", b"").replace(b"\x1c", b""))
GARBAGE = st.binary(max_size=20).map(lambda b: b.replace(b"\x0b", b""))


def feed_all(framer: MllpFramer, chunks: list[bytes]) -> list[bytes]:
    return [message for chunk in chunks for message in framer.feed(chunk)]


@given(st.lists(st.tuples(GARBAGE, MESSAGE), max_size=8), st.data())
def test_any_chunking_gives_the_same_messages(
    parts: list[tuple[bytes, bytes]], data: st.DataObject
) -> None:
    stream = b"".join(garbage + frame(message) for garbage, message in parts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    framer = MllpFramer()
    assert feed_all(framer, chunks) == [message for _, message in parts]
    assert framer.skipped == sum(len(garbage) for garbage, _ in parts)
    assert not framer.in_frame


def test_every_split_point_of_two_frames() -> None:
    stream = frame(b"MSH|first") + b"noise" + frame(b"MSH|second")
    for cut in range(len(stream) + 1):
        framer = MllpFramer()
        assert feed_all(framer, [stream[:cut], stream[cut:]]) == [b"MSH|first", b"MSH|second"]
        assert framer.skipped == len(b"noise")


def test_several_frames_in_one_read() -> None:
    framer = MllpFramer()
    assert framer.feed(frame(b"a") + frame(b"b") + frame(b"c")) == [b"a", b"b", b"c"]


def test_a_frame_without_the_final_cr_still_ends() -> None:
    framer = MllpFramer()
    assert framer.feed(START + b"MSH|x\x1c") == [b"MSH|x"]
    assert framer.feed(b"\r" + frame(b"MSH|y")) == [b"MSH|y"]
    assert framer.skipped == 0  # the late CR belonged to the first frame's end


def test_eof_mid_frame_returns_nothing() -> None:
    framer = MllpFramer()
    assert framer.feed(START + b"MSH|half") == []
    assert framer.in_frame


def test_a_frame_over_the_limit_is_refused() -> None:
    framer = MllpFramer(max_frame=10)
    with pytest.raises(FrameTooLargeError) as caught:
        framer.feed(START + b"x" * 11 + END)
    assert caught.value.issue.code is ErrorCode.VALUE_TOO_LONG
    assert framer.feed(frame(b"small")) == [b"small"]  # the framer is usable again
