"""The fold, step by step: episodes, hysteresis, nadir, versions, withdrawals, the window."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leukofhir.lifecycle import state as state_module
from leukofhir.lifecycle.facts import (
    ABSENT,
    NOT_EVALUATED,
    PRESENT,
    ReportFacts,
    Result,
    Seen,
    Version,
)
from leukofhir.lifecycle.fold import (
    ACTIVE,
    INACTIVE,
    RETRACTED,
    Writes,
    _episodes,
    _flags,
    flag_identifier,
    fold,
)
from leukofhir.lifecycle.state import (
    WINDOW,
    PatientState,
    decode_state,
    encode_records,
    encode_state,
)
from leukofhir.rules import load_rule_set
from tests.lifecycle.sequences import START

RULES = load_rule_set()
PATIENT = "urn:oid:1.2|P1"
RANK = {"preliminary": 1, "final": 2, "corrected": 3}


def facts(
    report: str,
    hours: float,
    *,
    leukopenia: str | tuple[int, str] = ABSENT,
    leukocytosis: str | tuple[int | None, str] = ABSENT,
    version: int = 0,
    status: str = "final",
    results: tuple[str, ...] = ("wbc",),
) -> ReportFacts:
    """A report ``hours`` after START; ``leukopenia`` is a state or (grade, WBC)."""
    when = (START + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")
    wanted = {"leukopenia": leukopenia, "leukocytosis": leukocytosis}
    seen = []
    for rule in RULES.rules:
        value = wanted.get(rule.id, ABSENT)
        if isinstance(value, tuple):
            grade, number = value
            text = f"{rule.name}, CTCAE grade {grade}" if grade else rule.name
            seen.append(Seen(rule.id, PRESENT, grade, "PM", text, number, "", "10*9/L", ()))
        else:
            seen.append(Seen(rule.id, value))
    return ReportFacts(
        patient=PATIENT,
        report=f"urn:oid:9|{report}",
        version=Version(
            when, {"preliminary": 1, "final": 2, "corrected": 3}[status], "", f"{version}"
        ),
        collected=when,
        shown=when,
        status=status,
        findings=tuple(seen),
        results=tuple(
            Result(f"obs|{report}/{r}", f"http://loinc.org|{r}", status) for r in results
        ),
    )


def run(*reports: ReportFacts, state: PatientState | None = None) -> tuple[Writes, PatientState]:
    state = state or PatientState()
    writes = Writes()
    for report in reports:
        writes, state = fold(state, report, RULES)
    return writes, state


def flags(state: PatientState) -> dict[str, tuple[str, str, str]]:
    """identifier → (status, start, end) of every Flag the state remembers (times in UTC)."""
    return {
        r.identifier: (r.status, r.start.collected, r.end[0] if r.end else "") for r in state.flags
    }


def flag_id(report: str, rule: str = "leukopenia") -> str:
    return flag_identifier(PATIENT, rule, f"urn:oid:9|{report}")


def test_a_present_finding_opens_one_flag_named_by_its_first_report() -> None:
    writes, state = run(facts("A", 0, leukopenia=(1, "3.5")))
    assert [(w.identifier, w.status) for w in writes.flags] == [(flag_id("A"), ACTIVE)]
    assert flags(state) == {flag_id("A"): (ACTIVE, "2026-03-02T08:00:00Z", "")}


def test_the_same_version_again_restates_its_flags_as_they_stand() -> None:
    report = facts("A", 0, leukopenia=(1, "3.5"))
    first, state = run(report)
    again, after = fold(state, report, RULES)
    assert again.flags == first.flags  # the same Flag, unchanged: the document holds alone
    assert after.flags == state.flags
    later = facts("B", 24, leukopenia=(2, "2.5"))
    _, state = run(later, state=state)
    again, _ = fold(state, report, RULES)
    assert again.flags == ()  # B is the latest word on the episode now


def test_a_later_report_updates_the_flag_in_place_with_its_nadir() -> None:
    writes, state = run(
        facts("A", 0, leukopenia=(1, "3.5")),
        facts("B", 24, leukopenia=(3, "1.4")),
        facts("C", 48, leukopenia=(2, "2.2")),
    )
    [write] = writes.flags
    assert write.identifier == flag_id("A")
    assert write.episode.latest.seen.grade == 2  # the grade now
    assert (write.episode.nadir.seen.grade, write.episode.nadir.seen.number) == (3, "1.4")
    assert len(state.flags) == 1


def test_one_normal_count_does_not_resolve_two_a_day_apart_do() -> None:
    low = facts("A", 0, leukopenia=(1, "3.5"))
    writes, state = run(low, facts("B", 24))
    assert writes.flags == ()  # still active, nothing it shows changed
    assert flags(state)[flag_id("A")][0] == ACTIVE
    writes, state = run(facts("C", 48), state=state)
    [write] = writes.flags
    assert write.status == INACTIVE
    assert write.episode.end is not None
    assert write.episode.end.shown == "2026-03-03T08:00:00Z"  # the first normal report


def test_the_normal_run_must_span_the_minimum_interval() -> None:
    low = facts("A", 0, leukopenia=(1, "3.5"))
    _, state = run(low, facts("B", 24), facts("C", 36))  # 12 h apart: not yet
    assert flags(state)[flag_id("A")][0] == ACTIVE
    _, state = run(facts("D", 50), state=state)  # B..D spans 26 h
    assert flags(state)[flag_id("A")] == (INACTIVE, low.shown, "2026-03-03T08:00:00Z")


def test_a_report_without_the_finding_evaluated_neither_extends_nor_closes() -> None:
    _, state = run(
        facts("A", 0, leukopenia=(1, "3.5")),
        facts("B", 24, leukopenia=NOT_EVALUATED),
        facts("C", 48),
    )
    assert flags(state)[flag_id("A")][0] == ACTIVE
    _, state = run(facts("D", 72, leukopenia=NOT_EVALUATED), facts("E", 96), state=state)
    assert flags(state)[flag_id("A")] == (INACTIVE, "2026-03-02T08:00:00Z", "2026-03-04T08:00:00Z")


def test_a_correction_that_removes_the_finding_withdraws_the_flag() -> None:
    writes, state = run(
        facts("A", 0, leukopenia=(2, "2.9")),
        facts("A", 0, version=1, status="corrected"),  # WBC corrected to normal
    )
    assert [(w.identifier, w.status) for w in writes.flags] == [(flag_id("A"), RETRACTED)]
    assert flag_id("A") not in flags(state)  # withdrawn for good: nothing left to remember


def test_an_older_version_is_superseded_and_changes_nothing() -> None:
    final = facts("A", 0, leukopenia=(2, "2.9"), version=2, status="corrected")
    preliminary = facts("A", 0, leukopenia=(1, "3.1"), version=1, status="preliminary")
    _, state = run(final)
    writes, after = fold(state, preliminary, RULES)
    assert writes.superseded_by == final.version
    assert after is state


def test_results_the_newer_version_no_longer_holds_are_withdrawn() -> None:
    writes, _ = run(
        facts("A", 0, status="preliminary", results=("wbc", "anc")),
        facts("A", 0, version=1, results=("wbc",)),
    )
    assert [r.identifier for r in writes.withdrawn] == ["obs|A/anc"]


def test_a_late_report_merges_two_episodes_and_withdraws_the_second_flag() -> None:
    _, state = run(
        facts("A", 0, leukopenia=(1, "3.5")),
        facts("B", 24),
        facts("C", 48),  # A's episode closes (B, C: two normal reports a day apart)
        facts("D", 72, leukopenia=(1, "3.9")),  # a new episode
    )
    assert flags(state) == {
        flag_id("A"): (INACTIVE, "2026-03-02T08:00:00Z", "2026-03-03T08:00:00Z"),
        flag_id("D"): (ACTIVE, "2026-03-05T08:00:00Z", ""),
    }
    writes, state = run(facts("X", 36, leukopenia=(1, "4.0")), state=state)  # between B and C
    assert {w.identifier: w.status for w in writes.flags} == {
        flag_id("A"): ACTIVE,
        flag_id("D"): RETRACTED,
    }
    assert [f for f in flags(state).values() if f[0] == ACTIVE] == [
        (ACTIVE, "2026-03-02T08:00:00Z", "")
    ]


def test_leukocytosis_nadir_is_its_highest_count() -> None:
    writes, _ = run(
        facts("A", 0, leukocytosis=(None, "12.0")),
        facts("B", 24, leukocytosis=(None, "19.5")),
        facts("C", 48, leukocytosis=(None, "14.1")),
    )
    [write] = writes.flags
    assert write.episode.nadir.seen.number == "19.5"


def test_the_window_is_bounded_and_an_episode_outlives_it() -> None:
    reports = [facts(f"R{i:03d}", 24 * i, leukopenia=(1, "3.9")) for i in range(WINDOW + 8)]
    _, state = run(*reports)
    assert len(state.reports) == WINDOW
    assert [e.rule for e in state.base] == ["leukopenia"]  # open at the horizon
    assert flags(state)[flag_id("R000")][0] == ACTIVE  # one Flag, opened by the first
    writes, state = run(facts("N1", 24 * 41), facts("N2", 24 * 42), state=state)
    assert flags(state)[flag_id("R000")][0] == INACTIVE
    assert writes.flags[0].episode.nadir.seen.number == "3.9"


def test_a_report_before_the_horizon_changes_no_flag_and_old_versions_stay_old() -> None:
    reports = [facts(f"R{i:03d}", 24 * i) for i in range(WINDOW + 4)]
    _, state = run(*reports)
    writes, after = fold(state, facts("LATE", 1, leukopenia=(4, "0.5")), RULES)
    assert writes.frozen
    assert writes.flags == ()
    older = facts("R000", 0, version=-1, status="preliminary")  # R000 left the window
    writes, _ = fold(after, older, RULES)
    assert writes.superseded_by is not None


@pytest.mark.parametrize("count", [0, 1, WINDOW + 3])
def test_the_state_survives_its_json_form(count: int) -> None:
    reports = [
        facts(f"R{i}", 24 * i, leukopenia=(1 + i % 4, f"{3.9 - i / 20:.2f}")) for i in range(count)
    ]
    _, state = run(*reports)
    assert decode_state(encode_state(state)) == state


def test_a_state_encodes_the_same_whatever_json_of_its_records_is_known() -> None:
    """The JSON kept of a patient's records (:func:`encode_records`, what a store's cache
    keeps) changes no byte: from nothing, from the same state's, from the previous state's
    (which the next one shares records with), from equal records that are other objects."""
    reports = [
        facts(f"R{i}", 24 * i, leukopenia=(1 + i % 4, f"{3.9 - i / 20:.2f}"))
        for i in range(WINDOW + 3)
    ]
    _, before = run(*reports[:-1])
    _, state = fold(before, reports[-1], RULES)
    first = encode_state(state)
    data, known = encode_records(state, {})
    assert data == first
    assert [hit[0] for hit in known.values()] == list(state.reports)
    assert encode_records(state, known)[0] == first
    assert encode_records(state, encode_records(before, {})[1])[0] == first
    decoded = decode_state(first)
    assert decoded == state
    assert encode_records(decoded, known)[0] == first  # other objects: not taken from known


GRADES = st.sampled_from([ABSENT, NOT_EVALUATED, (1, "3.9"), (2, "2.5"), (3, "1.5"), (4, "0.7")])


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 60), GRADES, st.sampled_from(["final", "corrected"])),
        max_size=WINDOW + 12,
    )
)
def test_a_complete_refold_of_any_state_writes_nothing(
    steps: list[tuple[int, str | tuple[int, str], str]],
) -> None:
    """The quick path (a report after all others) and the complete refold agree: after any
    sequence, refolding the whole window finds the same open episodes and no Flag to write."""
    state = PatientState()
    for version, (day, leukopenia, status) in enumerate(steps):
        report = facts(f"D{day}", 24 * day, leukopenia=leukopenia, version=version, status=status)
        _, state = fold(state, report, RULES)
    episodes, tail = _episodes(state, RULES)
    writes, _, revoked = _flags(state, PATIENT, episodes, complete=True)
    assert writes == ()
    assert revoked == ()
    assert tail == state.tail


@pytest.mark.parametrize(
    "results",
    [
        (),
        (Result("urn:oid:9|R1/wbc", "http://loinc.org|6690-2", "final"),),
        tuple(
            Result(f"urn:oid:9|R1/{code}", f"http://loinc.org|{code}", status)
            for code, status in [("6690-2", "final"), ("751-8", "corrected"), ("26464-8", "final")]
        ),
        (Result("a|x", "c|x", "final"), Result("b|x\u00e9", "c|y", "final")),  # no common prefix
    ],
)
def test_a_packed_records_identifiers_are_those_of_its_results(results: tuple[Result, ...]) -> None:
    packed = state_module._pack(results)
    assert state_module._unpack(packed) == results
    assert state_module._identifiers(packed) == [r.identifier for r in results]
