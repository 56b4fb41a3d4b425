"""The scope policy (tools/scope.py) on its own: a session scoped to one patient reads that patient's
compartment and the shared resources that patient's data references, never another patient's data."""

from __future__ import annotations

import pytest

from conftest import ALICE, BOB
from ehr_agent.tools.record_cache import PatientRecord
from ehr_agent.tools.scope import FORBIDDEN_PARAMS, PatientScope, search_refusal
from ehr_agent.tools.store.base import normalize_params

ALICE_PRACTITIONER = "Practitioner/e1105422-145d-5ce8-b5c0-2b4c6b54f98e"  # npi 9999999901, Alice's encounters
BOB_PRACTITIONER = "Practitioner/784adcb8-43d2-5648-8c71-91ba4453c9a8"  # npi 9999999902, only Bob's


@pytest.fixture()
def alice(fixture_store):
    return PatientScope(fixture_store, ALICE, PatientRecord())


def resources_of(store, patient: str, rtype: str) -> list[dict]:
    return list(store.search_all(rtype, compartment=("Patient", patient)))


def test_own_compartment_is_allowed_other_patients_is_not(alice, fixture_store):
    own = resources_of(fixture_store, ALICE, "Observation")
    other = resources_of(fixture_store, BOB, "Observation") + resources_of(fixture_store, BOB, "Condition")
    assert own and other
    assert all(alice.allowed(r) for r in own)
    assert not any(alice.allowed(r) for r in other)
    assert not alice.allowed(fixture_store.read("Patient", BOB))
    assert alice.belongs(f"Patient/{ALICE}") and not alice.belongs(f"Patient/{BOB}")


def test_shared_resources_only_when_the_patients_own_data_references_them(alice):
    assert alice.belongs(ALICE_PRACTITIONER)
    assert not alice.belongs(BOB_PRACTITIONER)
    bob = PatientScope(alice.store, BOB, PatientRecord())
    assert bob.belongs(BOB_PRACTITIONER) and not bob.belongs(ALICE_PRACTITIONER)


def test_belongs_is_false_for_what_does_not_exist_or_cannot_be_read(alice):
    for ref in ("Observation/nope", "Nonsense/1", "Observation", "", "Patient/../x"):
        assert not alice.belongs(ref), ref
    # a chunk reference is judged by its note
    note = next(r for r in resources_of(alice.store, ALICE, "DocumentReference"))
    assert alice.belongs(f"DocumentReference/{note['id']}#2")


def test_decisions_are_kept_with_the_record(alice, fixture_store):
    other = resources_of(fixture_store, BOB, "Observation")[0]
    assert not alice.allowed(other)
    assert alice.record.allowed[f"Observation/{other['id']}"] is False
    assert alice.belongs(ALICE_PRACTITIONER)
    assert ALICE_PRACTITIONER in alice.record.refs and BOB_PRACTITIONER not in alice.record.refs
    # a second scope over the same record reuses the decisions instead of re-reading the compartment
    again = PatientScope(fixture_store, ALICE, alice.record)
    again.everything = None  # type: ignore[assignment]  (would fail if called)
    assert again.belongs(ALICE_PRACTITIONER) and not again.allowed(other)


@pytest.mark.parametrize("params", [
    {"patient": BOB}, {"subject": f"Patient/{BOB}"}, {"subject:Patient": BOB}, {"patient.name": "Haines"},
    {"_include": "Observation:subject"}, {"_revinclude": "Provenance:target"}, {"_has:Observation:patient:code": "x"},
    {"_count": "1000"}, {"_offset": "5"}, {"_summary": "count"}, {"_elements": "id"}, {"_contained": "true"},
])
def test_searches_that_would_widen_the_scope_are_refused(params):
    why = search_refusal("Observation", normalize_params(params))
    assert why and "not allowed" in why, params


def test_search_types_outside_one_record_are_refused():
    assert "shared" in search_refusal("Practitioner", [])
    assert "unknown or unsupported" in search_refusal("Spaceship", [])
    assert search_refusal("Observation", normalize_params({"code": "4548-4", "date": "ge2020"})) is None
    assert {"patient", "subject", "_include", "_revinclude", "_has"} <= FORBIDDEN_PARAMS
