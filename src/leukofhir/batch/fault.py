"""Faults of the core, contained in the worker: they reject a message, never stop the batch.

:func:`leukofhir.pipeline.process_message` promises never to raise, and FHIR reading
promises a unit per report; a bug can still break either promise (an ``Observation`` with
``"contained": [{"resourceType": "Foo"}]`` raised ``KeyError`` in the FHIR reader).  An
exception escaping the core must not kill a worker, stop the batch or lose the other
messages of the file, so the worker runs every step under a guard:

* processing or rendering one message raises: that message is rejected with code 207
  (``ErrorCode.INTERNAL_ERROR``, FHIR issue type ``exception``): its bytes are kept beside
  the OperationOutcome, the other messages of the file go on (:func:`faulted`);
* the reader of a file raises part-way (the FHIR reader is a generator, the HL7 v2
  splitter too): the outcomes it gave before stand, and what it had not given yet cannot
  be told apart any more, so the rest of the file is rejected as one unit with the same
  code and a reason that says so (:func:`faulted` with ``rest=True``; :func:`guarded`
  turns the reader's exception into the end of the stream and keeps it).

Only the exception's type goes into the reason and the log: its text may quote the input.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

from leukofhir.errors import ErrorCode, Issue, error
from leukofhir.pipeline import Disposition, MessageOutcome

__all__ = ["Fault", "fault_issue", "faulted", "guarded"]

T = TypeVar("T")


@dataclass(slots=True)
class Fault:
    """What stopped a reader (None while it has not failed)."""

    error: Exception | None = None


def guarded(items: Iterator[T], fault: Fault) -> Iterator[T]:
    """``items`` until they end, or until getting the next one raises: then the exception
    goes to ``fault`` and the stream ends (a generator that raised cannot go on)."""
    while True:
        try:
            item = next(items)
        except StopIteration:
            return
        except Exception as exc:  # the reader's bug: the caller rejects the rest
            fault.error = exc
            return
        yield item


def faulted(index: int, offset: int, exc: Exception, *, rest: bool = False) -> MessageOutcome:
    """A rejected outcome for a message (or, with ``rest``, the rest of a file) whose
    processing raised ``exc``: code 207, FHIR issue type ``exception``."""
    issue = fault_issue(exc, rest=index if rest else None)
    return MessageOutcome(index, offset, Disposition.REJECTED, issues=(issue,))


def fault_issue(exc: Exception, *, rest: int | None = None) -> Issue:
    """The code 207 issue (FHIR ``exception``) for a message whose processing raised
    ``exc``, or (``rest``: how many messages were read before) for the rest of an input."""
    kind = type(exc).__name__
    if rest is not None:
        index = rest
        text = (
            f"leukofhir failed while reading this input ({kind}) after {index} message(s);"
            " the rest of the input could not be told apart and is rejected as one unit,"
            " kept whole beside this outcome; please report it with the input"
        )
    else:
        text = (
            f"leukofhir failed on this message ({kind}); the message is kept as rejected;"
            " please report it with the input"
        )
    return error(ErrorCode.INTERNAL_ERROR, text, fhir_type="exception")
