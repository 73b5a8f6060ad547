"""MLLP framing (HL7 v2 Minimal Lower Layer Protocol, release 1): ``0x0B message 0x1C 0x0D``.

A pure, socket-free framer in the style of h11: :meth:`MllpFramer.feed` takes whatever
bytes a read returned (part of a frame, several frames, garbage between frames) and
returns the complete messages, in order.  The service edge owns the socket; this class
owns the bytes.

Tolerated, as real senders need: a frame ended by ``0x1C`` without the final ``0x0D``
(the ``0x0D`` that may follow later is not counted as garbage); bytes outside frames are
skipped and counted in :attr:`MllpFramer.skipped` for the caller to log.  A frame longer
than ``max_frame`` raises :class:`FrameTooLargeError` (the caller closes the connection); EOF
in the middle of a frame leaves :attr:`MllpFramer.in_frame` true and the partial frame is
never returned (no ACK may be sent for it).
"""

from __future__ import annotations

from leukofhir.errors import ErrorCode, LeukofhirError, Location, error

__all__ = ["END", "START", "FrameTooLargeError", "MllpFramer", "frame"]

START = b"\x0b"
END = b"\x1c\x0d"
_END_BLOCK = 0x1C
_CR = 0x0D
DEFAULT_MAX_FRAME = 1 << 20  # 1 MiB


class FrameTooLargeError(LeukofhirError):
    """A frame grew past the configured maximum; the connection should be closed."""


def frame(message: bytes) -> bytes:
    """One message wrapped for sending (an ACK, or a test client's message)."""
    return START + message + END


class MllpFramer:
    """Bytes in, complete MLLP messages out; see the module docstring."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self.skipped = 0  # bytes seen outside any frame
        self._frame = bytearray()
        self._in_frame = False
        self._after_end = False  # the last frame ended with 0x1C alone: a 0x0D may follow

    @property
    def in_frame(self) -> bool:
        """True while a frame has started and not ended (EOF now would lose it)."""
        return self._in_frame

    def feed(self, data: bytes) -> list[bytes]:
        """The messages that ``data`` completes, in the order they were sent."""
        messages: list[bytes] = []
        position, size = 0, len(data)
        while position < size:
            if self._after_end:
                self._after_end = False
                if data[position] == _CR:
                    position += 1
                    continue
            if not self._in_frame:
                start = data.find(START, position)
                if start < 0:
                    self.skipped += size - position
                    break
                self.skipped += start - position
                self._in_frame = True
                position = start + 1
                continue
            end = data.find(_END_BLOCK, position)
            if end < 0:
                self._grow(data[position:])
                break
            self._grow(data[position:end])
            messages.append(bytes(self._frame))
            self._frame.clear()
            self._in_frame = False
            position = end + 1
            if position < size and data[position] == _CR:
                position += 1
            elif position == size:
                self._after_end = True
        return messages

    def _grow(self, part: bytes) -> None:
        if len(self._frame) + len(part) > self.max_frame:
            self._frame.clear()
            self._in_frame = False
            raise FrameTooLargeError(
                error(
                    ErrorCode.VALUE_TOO_LONG,
                    f"an MLLP frame exceeds {self.max_frame} bytes; the connection is closed"
                    " (raise the maximum frame size if such messages are expected)",
                    Location("MSH"),
                )
            )
        self._frame += part
