"""The ordering key of a Bundle: one per patient, never the identifier itself."""

from __future__ import annotations

import orjson

from leukofhir.delivery.keys import patient_key
from tests.delivery.helpers import SAMPLES, SOURCE


def test_reports_of_one_patient_share_a_key_and_others_do_not() -> None:
    keys = [patient_key(orjson.loads(data)) for data in SAMPLES]
    assert keys[3] == keys[4]  # two reports of one patient
    # Every sample Bundle has a Patient with an identifier (a FHIR patient known only by
    # its source reference, or by nothing, gets one of ours): 98 Bundles of 83 patients
    # (one has 11 daily reports, five have two; samples 39-46 are a child each).
    named = [key for key in keys if key is not None]
    assert len(named) == len(keys) == 98
    assert len(set(named)) == 83
    assert all(len(key) == 32 for key in named)
    identifier = orjson.loads(SAMPLES[3])["entry"][0]["resource"]["identifier"][0]["value"]
    assert identifier not in str(keys)


def test_a_bundle_without_a_patient_entry_is_keyed_by_its_subject() -> None:
    kinds = {
        patient_key(bundle) is not None: bundle
        for bundle in map(orjson.loads, SOURCE)
        if all(e["resource"]["resourceType"] != "Patient" for e in bundle["entry"])
    }
    assert kinds[True]  # --fhir-target source: the subject names the source server's Patient
    assert [e["resource"]["resourceType"] for e in kinds[False]["entry"]] == ["Provenance"]
    bundle = {
        "entry": [{"resource": {"resourceType": "Flag", "subject": {"reference": "Patient/7"}}}]
    }
    same = {
        "entry": [
            {"resource": {"resourceType": "Observation", "subject": {"reference": "Patient/7"}}}
        ]
    }
    assert patient_key(bundle) == patient_key(same) is not None
    logical = {"entry": [{"resource": {"subject": {"identifier": {"system": "s", "value": "v"}}}}]}
    patient = {
        "entry": [
            {"resource": {"resourceType": "Patient", "identifier": [{"system": "s", "value": "v"}]}}
        ]
    }
    assert patient_key(logical) == patient_key(patient)


def test_no_key_when_nothing_names_the_patient() -> None:
    placeholder = {"entry": [{"resource": {"subject": {"reference": "urn:uuid:1"}}}]}
    assert patient_key(placeholder) is None
    assert patient_key({"entry": []}) is None
