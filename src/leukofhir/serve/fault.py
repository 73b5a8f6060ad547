"""An unexpected exception while processing one message, described for the journal and
the logs: its type and where it was raised, never its text (an exception's text may quote
the message, and so patient data)."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import PurePath
from types import FrameType

__all__ = ["Fault", "fault_of"]

_PACKAGE = "leukofhir"


@dataclass(frozen=True, slots=True)
class Fault:
    error: str  # the exception's type: "KeyError"
    where: str  # "fhir_core/types.py:270 fhir_model_validator, from ingest/fhir.py:55 read"

    @property
    def reason(self) -> str:
        """One line for the journal's ``reason``."""
        return f"{self.error} at {self.where}" if self.where else self.error

    @classmethod
    def from_reason(cls, reason: str) -> Fault:
        error, _, where = reason.partition(" at ")
        return cls(error, where)


def fault_of(exc: BaseException) -> Fault:
    """The type of ``exc`` and the frame that raised it, with the innermost frame of
    leukofhir's own code on the way when that is another one."""
    frames = list(traceback.walk_tb(exc.__traceback__))
    if not frames:
        return Fault(type(exc).__name__, "")
    places = [_place(*frames[-1])]
    ours = [f for f in frames if _PACKAGE in PurePath(f[0].f_code.co_filename).parts]
    if ours and ours[-1] is not frames[-1]:
        places.append(_place(*ours[-1]))
    return Fault(type(exc).__name__, ", from ".join(places))


def _place(frame: FrameType, line: int) -> str:
    """``serve/work.py:88 run_one`` (within leukofhir), ``fhir_core/types.py:270 …``."""
    parts = PurePath(frame.f_code.co_filename).parts
    if _PACKAGE in parts:
        parts = parts[len(parts) - parts[::-1].index(_PACKAGE) :]
    return f"{'/'.join(parts[-2:])}:{line} {frame.f_code.co_name}"
