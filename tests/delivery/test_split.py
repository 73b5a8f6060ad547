"""Splitting a transaction Bundle to a server's limits: a partition of the entries, every
part within the limits, every entry after (or with) what it names; parts written with the
earlier parts' locations and exact numbers."""

from __future__ import annotations

import re
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from leukofhir.delivery.split import (
    PROFILES,
    Part,
    ServerProfile,
    SplitError,
    is_conditional,
    named_by,
    part_body,
    placeholders,
    plan_parts,
    read_bundle,
    reference_from_location,
)
from tests.fhirserver import sample_bundles, source_bundles

SAMPLES = sample_bundles()
SOURCE = source_bundles()
MEDPLUM = PROFILES["medplum"]


def check_plan(bundle: dict[str, Any], parts: tuple[Part, ...], profile: ServerProfile) -> None:
    entries = bundle["entry"]
    placed = [i for part in parts for i in part.entries]
    assert sorted(placed) == list(range(len(entries)))  # each entry exactly once
    part_of = {i: n for n, part in enumerate(parts) for i in part.entries}
    known = placeholders(bundle)
    for n, part in enumerate(parts):
        members = [entries[i] for i in part.entries]
        assert len(members) <= profile.max_entries
        if profile.max_conditional_entries and any(is_conditional(e) for e in members):
            assert len(members) <= profile.max_conditional_entries
        for i in part.entries:
            assert all(part_of[j] <= n for j in named_by(entries[i], known))


def test_every_sample_fits_the_default_profile_whole() -> None:
    for data in SAMPLES + SOURCE:
        bundle = read_bundle(data)
        assert plan_parts(bundle, PROFILES["default"]) == (
            Part(tuple(range(len(bundle["entry"])))),
        )


def test_every_sample_split_for_medplum() -> None:
    split = 0
    for data in SAMPLES + SOURCE:
        bundle = read_bundle(data)
        parts = plan_parts(bundle, MEDPLUM)
        check_plan(bundle, parts, MEDPLUM)
        split += len(parts) > 1
    assert split >= 60  # most of today's Bundles have more than 8 entries, all conditional


def test_done_entries_are_left_out() -> None:
    bundle = read_bundle(SAMPLES[0])
    first, *rest = plan_parts(bundle, MEDPLUM)
    again = plan_parts(bundle, MEDPLUM, done=set(first.entries))
    assert [i for p in again for i in p.entries] == [i for p in rest for i in p.entries]
    assert plan_parts(bundle, MEDPLUM, done=range(len(bundle["entry"]))) == ()


def entry(n: int, names: list[int], *, conditional: bool = True) -> dict[str, Any]:
    request: dict[str, Any] = {"method": "POST", "url": "Observation"}
    if conditional:
        request["ifNoneExist"] = f"identifier=urn:t|{n}"
    return {
        "fullUrl": f"urn:uuid:{uuid.UUID(int=n + 1)}",
        "resource": {
            "resourceType": "Observation",
            "hasMember": [{"reference": f"urn:uuid:{uuid.UUID(int=m + 1)}"} for m in names],
        },
        "request": request,
    }


@st.composite
def graphs(draw: st.DrawFn, *, acyclic: bool) -> dict[str, Any]:
    size = draw(st.integers(1, 30))
    names = []
    for n in range(size):
        pool = range(n) if acyclic else range(size)
        names.append(draw(st.lists(st.sampled_from(pool), max_size=3)) if pool else [])
    order = draw(st.permutations(range(size)))
    conditional = draw(st.lists(st.booleans(), min_size=size, max_size=size))
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [entry(n, names[n], conditional=conditional[n]) for n in order],
    }


limits = st.builds(
    ServerProfile,
    max_entries=st.integers(1, 12),
    max_conditional_entries=st.none() | st.integers(1, 8),
)


@given(graphs(acyclic=True), limits)
def test_any_acyclic_bundle_splits_in_dependency_order(
    bundle: dict[str, Any], profile: ServerProfile
) -> None:
    check_plan(bundle, plan_parts(bundle, profile), profile)


def cycles(bundle: dict[str, Any]) -> list[set[int]]:
    """Entries that reach each other (transitive closure, independent of the code under
    test), as sets of entry indices."""
    entries = bundle["entry"]
    known = placeholders(bundle)
    size = len(entries)
    reach = [[i == j or j in named_by(entries[i], known) for j in range(size)] for i in range(size)]
    for k in range(size):
        for i in range(size):
            if reach[i][k]:
                reach[i] = [a or b for a, b in zip(reach[i], reach[k], strict=True)]
    return [{j for j in range(size) if reach[i][j] and reach[j][i]} for i in range(size)]


@given(graphs(acyclic=False), limits)
def test_cycles_stay_together_or_are_refused(
    bundle: dict[str, Any], profile: ServerProfile
) -> None:
    groups = cycles(bundle)
    too_big = any(
        len(group) > profile.max_entries
        or (
            profile.max_conditional_entries is not None
            and len(group) > profile.max_conditional_entries
            and any(is_conditional(bundle["entry"][i]) for i in group)
        )
        for group in groups
    )
    if too_big:
        with pytest.raises(SplitError, match="name each other"):
            plan_parts(bundle, profile)
        return
    parts = plan_parts(bundle, profile)
    check_plan(bundle, parts, profile)
    part_of = {i: n for n, part in enumerate(parts) for i in part.entries}
    assert all(len({part_of[i] for i in group}) == 1 for group in groups)


def test_a_cycle_larger_than_the_limit_is_refused() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [entry(0, [1]), entry(1, [0]), entry(2, [])],
    }
    with pytest.raises(SplitError, match="2 entries that name each other"):
        plan_parts(bundle, ServerProfile(max_entries=1))
    assert plan_parts(bundle, ServerProfile(max_entries=2)) == (Part((0, 1)), Part((2,)))


def test_updates_are_limited_too() -> None:
    puts = [
        {"resource": {"resourceType": "Flag"}, "request": {"method": "PUT", "url": f"Flag/{n}"}}
        for n in range(120)
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": puts}
    assert [len(p.entries) for p in plan_parts(bundle, MEDPLUM)] == [50, 50, 20]


def test_conditional_entries() -> None:
    def is_cond(method: str, url: str, **more: str) -> bool:
        return is_conditional({"request": {"method": method, "url": url, **more}})

    assert is_cond("POST", "Patient", ifNoneExist="identifier=a|b")
    assert not is_cond("POST", "Provenance")
    assert is_cond("PUT", "Flag?identifier=a|b")
    assert not is_cond("PUT", "Flag/1")
    assert is_cond("DELETE", "Flag?identifier=a|b")
    assert is_cond("PATCH", "Flag?identifier=a|b")


@pytest.mark.parametrize(
    ("location", "reference"),
    [
        ("Patient/123", "Patient/123"),
        ("Patient/123/_history/1", "Patient/123"),
        ("https://fhir.example.org/r4/Patient/abc-1/_history/7", "Patient/abc-1"),
        ("http://127.0.0.1:8080/fhir/R4/Observation/9", "Observation/9"),
        ("", None),
        ("not a location", None),
        ("Patient", None),
    ],
)
def test_reference_from_location(location: str, reference: str | None) -> None:
    assert reference_from_location(location) == reference


def test_part_body_rewrites_placeholders_and_keeps_numbers_digit_for_digit() -> None:
    patient, obs = f"urn:uuid:{uuid.UUID(int=1)}", f"urn:uuid:{uuid.UUID(int=2)}"
    data = (
        b'{"resourceType":"Bundle","type":"transaction","entry":['
        b'{"fullUrl":"' + patient.encode() + b'","resource":{"resourceType":"Patient"},'
        b'"request":{"method":"POST","url":"Patient"}},'
        b'{"fullUrl":"' + obs.encode() + b'","resource":{"resourceType":"Observation",'
        b'"valueQuantity":{"value":5.100},"referenceRange":[{"low":{"value":0.80}}],'
        b'"component":[{"valueInteger":12345678901234567890123}],'
        b'"subject":{"reference":"' + patient.encode() + b'"},'
        b'"text":{"div":"<div>see ' + patient.encode() + b'</div>"}},'
        b'"request":{"method":"POST","url":"Observation"}}]}'
    )
    exact = read_bundle(data, exact=True)
    body = part_body(exact, Part((1,)), {patient: "Patient/p-1"})
    assert b'"value":5.100' in body
    assert b'"value":0.80' in body
    assert b"12345678901234567890123" in body
    parsed = orjson.loads(re.sub(rb"1234567890\d+", b"0", body))
    resource = parsed["entry"][0]["resource"]
    assert resource["subject"] == {"reference": "Patient/p-1"}
    assert resource["text"]["div"] == "<div>see Patient/p-1</div>"
    assert parsed["entry"][0]["fullUrl"] == obs  # its own placeholder stays


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{", "not JSON"),
        (b'{"resourceType":"Bundle","type":"batch","entry":[{}]}', "not a transaction"),
        (b'{"resourceType":"Bundle","type":"transaction","entry":[]}', "no entries"),
        (b'{"resourceType":"Bundle","type":"transaction","entry":[1]}', "not an object"),
        (b'{"resourceType":"OperationOutcome"}', "not a transaction"),
    ],
)
def test_unusable_documents(data: bytes, reason: str) -> None:
    with pytest.raises(SplitError, match=reason):
        read_bundle(data)


def test_a_forged_marker_cannot_become_a_number() -> None:
    data = (
        b'{"resourceType":"Bundle","type":"transaction",'
        b'"entry":[{"resource":{"t":"\\u001E5\\u001e"}}]}'
    )
    with pytest.raises(SplitError, match="U\\+001E"):
        read_bundle(data, exact=True)
