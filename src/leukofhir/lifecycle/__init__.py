"""Results over time (design/LIFECYCLE.md): versions of a report, standing Flags.

Pure: :func:`fold` takes a patient's :class:`PatientState` and the
:class:`ReportFacts` of one report version and gives the :class:`Writes` it implies
and the patient's new state.  Where states are kept is an edge
(:mod:`leukofhir.lifecycle.store`: memory, SQLite; the batch ledger and the service
journal keep them beside their own rows).
"""

from leukofhir.lifecycle.episodes import Episode, Point
from leukofhir.lifecycle.facts import ReportFacts, Result, Seen, Version
from leukofhir.lifecycle.fold import FlagWrite, Writes, flag_identifier, fold
from leukofhir.lifecycle.state import PatientState, decode_state, encode_state

__all__ = [
    "Episode",
    "FlagWrite",
    "PatientState",
    "Point",
    "ReportFacts",
    "Result",
    "Seen",
    "Version",
    "Writes",
    "decode_state",
    "encode_state",
    "flag_identifier",
    "fold",
]
