"""Question intent (type, status, class, period, list) and how the index uses it: structured ranking
fused by RRF, complete lists with "N more", rows read back at an unchanged data version."""

from __future__ import annotations

import pytest

from tests.test_retrieval_support import note, write_bundle
from ehr_agent.tools.retrieval.index import HybridIndex
from ehr_agent.tools.retrieval.intent import encounter_class, parse_intent, row_status
from ehr_agent.tools.retrieval.projections import Row

PID = "intent-pt-1"


@pytest.mark.parametrize(
    "question, expected",
    [
        ("Does the patient have any recorded allergies?", "AllergyIntolerance"),
        ("Is she intolerant to anything?", "AllergyIntolerance"),
        ("What is he allergic to?", "AllergyIntolerance"),
        ("Which meds does she take?", "MedicationRequest"),
        ("List his prescriptions", "MedicationRequest"),
        ("What drugs were given?", "MedicationRequest"),
        ("Which vaccines did the child get?", "Immunization"),
        ("Any immunizations this year?", "Immunization"),
        ("How many flu shots?", "Immunization"),
        ("What are the active conditions?", "Condition"),
        ("List the diagnoses", "Condition"),
        ("Which problems are resolved?", "Condition"),
        ("Does she have a history of asthma?", "Condition"),
        ("What procedures were done?", "Procedure"),
        ("Any surgery?", "Procedure"),
        ("Which visits in 2015?", "Encounter"),
        ("List the encounters", "Encounter"),
        ("How many hospital admissions?", "Encounter"),
        ("Any inpatient stays?", "Encounter"),
        ("Show the lab results", "Observation"),
        ("Which tests were abnormal?", "Observation"),
        ("What care plans are active?", "CarePlan"),
    ],
)
def test_type_vocabulary(question, expected):
    assert expected in parse_intent(question).types


@pytest.mark.parametrize(
    "question, status, absent",
    [
        ("Which medications are active?", "active", "stopped"),
        ("What is she currently prescribed?", "active", "stopped"),
        ("Any ongoing conditions?", "active", "resolved"),
        ("Which conditions are resolved?", "resolved", "active"),
        ("List past diagnoses", "resolved", "active"),
        ("Which medications were stopped?", "stopped", "active"),
        ("List discontinued prescriptions", "stopped", "active"),
    ],
)
def test_status_vocabulary(question, status, absent):
    intent = parse_intent(question)
    assert status in intent.statuses and absent not in intent.statuses


def test_list_single_and_plain_questions():
    assert parse_intent("List all immunizations").listing
    assert parse_intent("Which procedures of this kind were done?").listing
    assert parse_intent("What is this patient allergic to?").listing
    assert parse_intent("When were the flu shots given? List all dates.").listing
    assert not parse_intent("When was the patient first prescribed metformin?").listing
    assert not parse_intent("What was the latest lab result?").listing
    assert not parse_intent("When was she diagnosed with asthma?").listing
    # No kind of record named: no intent at all (the fused lexical and dense ranks decide alone).
    assert parse_intent("What socioeconomic background does the patient come from?") == parse_intent("bees")
    assert not parse_intent("bees").typed


def test_encounter_class_and_period():
    intent = parse_intent("Which emergency visits happened in 2014?")
    assert intent.types == ("Encounter",) and "EMER" in intent.classes and intent.period == "2014"
    assert "IMP" in parse_intent("List the inpatient encounters").classes
    # Class words only count for encounters.
    assert parse_intent("Which emergency medications?").classes == ()


def test_row_status_and_class_read_from_projected_lines():
    cond = Row(ref="Condition/1", type="Condition", date="2020-01-01",
               text="2020-01-01 Condition: diagnosed Asthma; clinical status resolved; verification confirmed [Condition/1]")
    med = Row(ref="MedicationRequest/1", type="MedicationRequest", date="2020-01-01",
              text="2020-01-01 MedicationRequest: prescribed X; status stopped [MedicationRequest/1]")
    enc = Row(ref="Encounter/1", type="Encounter", date="2020-01-01",
              text="2020-01-01 Encounter EMER: Emergency room admission; status finished [Encounter/1]")
    assert row_status(cond) == "resolved" and row_status(med) == "stopped"
    assert encounter_class(enc) == "EMER"


# --- the index ----------------------------------------------------------------------------------------


def _med(i: int, status: str, year: int) -> dict:
    return {"resourceType": "MedicationRequest", "id": f"mr-{status}-{i}", "status": status, "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                      "code": str(1000 + i), "display": f"Drug number {i} 10 MG Oral Tablet"}]},
            "subject": {"reference": f"Patient/{PID}"}, "authoredOn": f"{year}-0{1 + i % 9}-1{i % 10}"}


@pytest.fixture(scope="module")
def intent_store(tmp_path_factory):
    """A patient with 25 active and 3 stopped prescriptions, 2 allergies, 30 notes whose allergy
    section says there are none, emergency and ambulatory visits, and a note-only fact."""
    from ehr_agent.tools.store.sqlite_store import SQLiteStore

    res: list[dict] = [{"resourceType": "Patient", "id": PID, "gender": "female", "birthDate": "1960-01-01"}]
    res += [_med(i, "active", 2015 + i % 8) for i in range(25)]
    res += [_med(100 + i, "stopped", 2001 + i) for i in range(3)]
    for i, (code, display) in enumerate([("91935009", "Allergy to peanuts"), ("300916003", "Latex allergy")]):
        res.append({"resourceType": "AllergyIntolerance", "id": f"al-{i}", "type": "allergy", "category": ["food"],
                    "clinicalStatus": {"coding": [{"code": "active"}]},
                    "code": {"coding": [{"system": "http://snomed.info/sct", "code": code, "display": display}]},
                    "patient": {"reference": f"Patient/{PID}"}, "recordedDate": f"201{i}-05-05"})
    for i in range(30):
        res.append(note(f"doc-{i}", PID, f"# Allergies\nAllergies: No Known Allergies; allergy review done.\n\n# Plan\nFollow up in {i + 2} weeks.",
                        date=f"{1990 + i}-03-03"))
    res.append(note("doc-bees", PID, "# Social History\nShe keeps bees and sells honey at the market.", date="2019-06-06"))
    for i, (cls, year) in enumerate([("EMER", 2014), ("EMER", 2014), ("EMER", 2016), ("AMB", 2014), ("AMB", 2014)]):
        res.append({"resourceType": "Encounter", "id": f"enc-{i}", "status": "finished",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": cls},
                    "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "50849002", "display": "Visit"}]}],
                    "subject": {"reference": f"Patient/{PID}"},
                    "period": {"start": f"{year}-0{i + 1}-02T10:00:00Z", "end": f"{year}-0{i + 1}-02T11:00:00Z"}})
    src = tmp_path_factory.mktemp("intent-src")
    write_bundle(src / "intent.json", res)
    d = tmp_path_factory.mktemp("intent-store")
    store = SQLiteStore(d, create=True)
    summary = store.load([src])
    assert not summary.refused, summary.refused
    yield store, d
    store.close()


@pytest.fixture()
def lex_index(intent_store, tmp_path):
    store, _ = intent_store
    return HybridIndex(store, tmp_path, dense=False)


def test_allergy_rows_beat_notes_that_mention_allergies(lex_index):
    hits = lex_index.search(PID, "Does the patient have any recorded allergies or intolerances? List them.", k=5, mode="lexical")
    assert {h.ref for h in hits[:2]} == {"AllergyIntolerance/al-0", "AllergyIntolerance/al-1"}
    # The same ranker without the intent signal is crowded out by the thirty allergy sections of notes.
    plain = lex_index.search(PID, "Does the patient have any recorded allergies or intolerances? List them.", k=5,
                             mode="lexical", intent=False)
    assert not any(h.ref.startswith("AllergyIntolerance/") for h in plain)


def test_list_question_holds_every_active_row_up_to_k_and_says_how_many_more(lex_index):
    hits = lex_index.search(PID, "Which medication requests are currently active?", k=20, mode="lexical")
    assert len(hits) == 20
    assert all(h.ref.startswith("MedicationRequest/mr-active-") for h in hits)
    assert hits.more == 5 and hits.note.startswith("5 more active MedicationRequest rows match")
    wide = lex_index.search(PID, "Which medication requests are currently active?", k=40, mode="lexical")
    assert {h.ref for h in wide[:25]} == {f"MedicationRequest/mr-active-{i}" for i in range(25)} and wide.more == 0
    stopped = lex_index.search(PID, "List the stopped prescriptions", k=10, mode="lexical")
    assert {h.ref for h in stopped[:3]} == {f"MedicationRequest/mr-stopped-{100 + i}" for i in range(3)}


def test_encounters_of_a_class_in_a_year(lex_index):
    hits = lex_index.search(PID, "Which emergency visits took place in 2014?", k=10, mode="lexical")
    assert {h.ref for h in hits[:2]} == {"Encounter/enc-0", "Encounter/enc-1"}
    assert hits.more == 0


def test_list_respects_the_callers_filters(lex_index):
    hits = lex_index.search(PID, "List all active medications", k=30, until="2016-12-31", mode="lexical")
    assert hits and all((h.date or "") <= "2016-12-31" for h in hits)


def test_note_only_fact_stays_retrievable(lex_index):
    hits = lex_index.search(PID, "Does she keep bees?", k=3, mode="lexical")
    assert hits[0].ref.startswith("DocumentReference/doc-bees")


def test_rows_read_back_at_unchanged_data_version(intent_store, tmp_path, monkeypatch):
    store, _ = intent_store
    first = HybridIndex(store, tmp_path, dense=False)
    expected = [h.ref for h in first.search(PID, "List all active medications", k=10, mode="lexical")]
    assert first.is_indexed(PID)

    import ehr_agent.tools.retrieval.index as index_mod

    def no_projection(*a, **kw):
        raise AssertionError("an indexed patient at an unchanged data version must not be projected again")

    monkeypatch.setattr(index_mod, "patient_record", no_projection)
    again = HybridIndex(store, tmp_path, dense=False)
    assert [h.ref for h in again.search(PID, "List all active medications", k=10, mode="lexical")] == expected


def test_a_store_change_changes_the_data_version(tmp_path):
    from ehr_agent.tools.store.sqlite_store import SQLiteStore

    store = SQLiteStore(tmp_path / "s", create=True)
    store.load([write_bundle(tmp_path / "a.json", [{"resourceType": "Patient", "id": "p-v"}, _med_for("p-v", 1)])])
    index = HybridIndex(store, tmp_path / "ix", dense=False)
    index.ensure_patient("p-v")
    assert index.is_indexed("p-v")
    store.load([write_bundle(tmp_path / "b.json", [_med_for("p-v", 2)])])
    fresh = HybridIndex(store, tmp_path / "ix", dense=False)
    assert not fresh.is_indexed("p-v")
    assert fresh.ensure_patient("p-v") == 1
    assert fresh.is_indexed("p-v")
    store.close()


def _med_for(pid: str, i: int) -> dict:
    m = _med(i, "active", 2020)
    m["subject"] = {"reference": f"Patient/{pid}"}
    return m


def test_hybrid_path_with_the_dense_ranker(intent_store, tmp_path):
    """The default (hybrid) path, with the model loaded: allergy rows first although thirty note
    sections say "Allergies", and a list question cut at k with the right count of the rest."""
    store, _ = intent_store
    index = HybridIndex(store, tmp_path)
    hits = index.search(PID, "What is this patient allergic to?", k=5)
    assert {h.ref for h in hits[:2]} == {"AllergyIntolerance/al-0", "AllergyIntolerance/al-1"}
    meds = index.search(PID, "Which medication requests are currently active?", k=20)
    assert all(h.ref.startswith("MedicationRequest/mr-active-") for h in meds) and meds.more == 5
