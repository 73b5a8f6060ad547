"""The five properties of LIFECYCLE.md over generated per-patient sequences (Hypothesis):
preliminary / final / corrected versions, abnormal and normal runs, re-sends, late old
reports, any arrival order."""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leukofhir.context import Context
from leukofhir.lifecycle.settle import settle_message
from leukofhir.lifecycle.store import MemoryStore
from leukofhir.pipeline import process
from tests.conftest import make_context
from tests.lifecycle.sequences import Version, hl7
from tests.lifecycle.server_model import ServerModel, live_flags, live_results

CONTEXT: Context = make_context()
WBC = ["6.2", "4.0", "3.1", "2.4", "1.6", "0.8"]
ANC = ["3.0", "1.4", "1.1", "0.7", "0.3", "0.1"]
HISTORIES = [("F",), ("P", "F"), ("F", "C"), ("P", "F", "C"), ("P",)]


@st.composite
def sequences(draw: st.DrawFn) -> list[Version]:
    """The versions of a patient's daily reports, in the order the lab sent them."""
    versions: list[Version] = []
    for day in range(draw(st.integers(1, 7))):
        for step, status in enumerate(draw(st.sampled_from(HISTORIES))):
            versions.append(
                Version(
                    day,
                    status,
                    draw(st.sampled_from(WBC)),
                    draw(st.sampled_from(ANC)),
                    sent_hours=2 + 3 * step,
                    drop_anc=step > 0 and draw(st.booleans()),
                )
            )
    return versions


def deliver(
    messages: list[bytes], store: MemoryStore, model: ServerModel, *, check: bool = True
) -> None:
    for data in messages:
        for outcome in process(data, CONTEXT):
            settled, states = settle_message(outcome, store.load, CONTEXT.rule_set)
            store.save(states)
            for document in settled.documents():
                if document["resourceType"] == "Bundle":
                    model.apply(document)  # property 5: every reference resolves
        if check:  # property 1: at most one active Flag per finding, after every message
            active = Counter(
                flag["code"]["coding"][0]["code"]
                for flag in model.of("Flag").values()
                if flag["status"] == "active"
            )
            assert all(n == 1 for n in active.values()), active


def in_order(versions: list[Version]) -> list[bytes]:
    return [hl7("P1", v) for v in sorted(versions, key=lambda v: (v.report, v.sent_hours))]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(versions=sequences(), data=st.data())
def test_any_arrival_order_converges_to_the_in_order_fold(
    versions: list[Version], data: st.DataObject
) -> None:
    expected = ServerModel()
    deliver(in_order(versions), MemoryStore(), expected)
    messages = in_order(versions)
    resent = data.draw(st.lists(st.sampled_from(messages), max_size=4))
    arrival = data.draw(st.permutations([*messages, *resent]))  # each at least once
    model = ServerModel()
    deliver(arrival, MemoryStore(), model)
    assert live_flags(model) == live_flags(expected)  # property 2
    assert live_results(model) == live_results(expected)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(versions=sequences(), data=st.data())
def test_redelivery_changes_nothing(versions: list[Version], data: st.DataObject) -> None:
    """Property 3: delivering any message again, any number of times, changes no
    resource's content and adds no resource."""
    store, model = MemoryStore(), ServerModel()
    messages = in_order(versions)
    deliver(messages, store, model)
    before, created = dict(model.resources), model.created
    again = data.draw(st.lists(st.sampled_from(messages), min_size=1, max_size=6))
    deliver(again, store, model)
    assert model.created == created
    assert model.resources == before
