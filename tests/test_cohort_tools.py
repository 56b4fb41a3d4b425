"""Cohort tools (tools/cohort_tools.py) and the cohort citation check (agent/cohort_citations.py) on the
project fixtures. Expected counts are computed from the fixture bundles' raw JSON, not from the store."""

from __future__ import annotations

import json

import pytest

from ehr_agent.agent.cohort_citations import check_cohort_answer
from tests.conftest import FIXTURES
from ehr_agent.tools.cohort_tools import CohortSession, canonical_cite, parse_cite, query_dates


def _raw(rtype: str) -> list[dict]:
    out = []
    for f in sorted(FIXTURES.glob("*.json")):
        doc = json.loads(f.read_text())
        for e in doc.get("entry", []) if isinstance(doc, dict) else []:
            if e.get("resource", {}).get("resourceType") == rtype:
                out.append(e["resource"])
    return out


def _patient_of(r: dict) -> str:
    ref = (r.get("subject") or r.get("patient") or {}).get("reference", "")
    return ref.rsplit("/", 1)[-1].removeprefix("urn:uuid:")


@pytest.fixture()
def session(fixture_store):
    return CohortSession(fixture_store, max_rows=5)


def test_count_resources_with_chain_matches_raw_json(session):
    male = {p["id"] for p in _raw("Patient") if p.get("gender") == "male"}
    want = sum(1 for e in _raw("Encounter") if e["class"]["code"] == "IMP" and e["period"]["start"].startswith("2010")
               and _patient_of(e) in male)
    assert want == 2  # Robert Haines' two stays (fixture docs)
    out = session.call("count_resources", {"resource_type": "Encounter",
                                           "params": {"class": "IMP", "date": "2010", "patient.gender": "male"}})
    assert not out.error and out.text.startswith(f"{want} Encounter resources match")
    key = "query:Encounter?class=IMP&date=2010&patient.gender=male"
    assert f"[{key}]" in out.text and session.queries == {key: want}
    assert session.recount(key) == want


def test_count_patients_counts_distinct_patients(session):
    imms = [i for i in _raw("Immunization") if "influenza" in i["vaccineCode"]["coding"][0]["display"].lower()]
    assert len(imms) > len({_patient_of(i) for i in imms})  # several shots per patient: distinct count differs
    out = session.call("count_patients", {"resource_type": "Immunization", "params": "vaccine-code:text=influenza"})
    assert out.text.startswith(f"{len({_patient_of(i) for i in imms})} distinct patients")
    res = session.call("count_resources", {"resource_type": "Immunization",
                                           "params": {"vaccine-code:text": "influenza"}})
    assert res.text.startswith(f"{len(imms)} Immunization")
    # Patient counts are counts of Patient resources; an AND of two date values is a repeated parameter
    born = [p for p in _raw("Patient") if "1950" <= p["birthDate"] < "1995"]
    out = session.call("count_patients", {"resource_type": "Patient", "params": {"birthdate": ["ge1950", "lt1995"]}})
    assert out.text.startswith(f"{len(born)} distinct")


def test_list_resources_is_bounded_and_projected(session):
    enc = _raw("Encounter")
    assert len(enc) > 5
    out = session.call("list_resources", {"resource_type": "Encounter", "limit": 50})
    lines = out.text.splitlines()
    assert lines[0].startswith(f"{len(enc)} Encounter resources match")
    assert len([k for k in out.evidence if k.startswith("Encounter/")]) == 5  # max_rows wins over limit
    assert lines[-1] == f"... {len(enc) - 5} more not shown"
    assert all(line.endswith("]") and "Encounter/" in line for line in lines[1:6])


def test_find_codes_turns_words_into_a_code_param(session):
    want = {i["vaccineCode"]["coding"][0]["code"] for i in _raw("Immunization")
            if "influenza" in i["vaccineCode"]["coding"][0]["display"].lower()}
    out = session.call("find_codes", {"resource_type": "Immunization", "text": "influenza seasonal"})
    assert not out.error
    for code in want:
        assert f"vaccine-code=http://hl7.org/fhir/sid/cvx|{code}" in out.text
    none = session.call("find_codes", {"resource_type": "Condition", "text": "zzzqqq"})
    assert "no Condition has a code" in none.text


@pytest.mark.parametrize("args, says", [
    ({"resource_type": "Encounter", "params": {"colour": "red"}}, "search rejected: unknown search parameter 'colour'"),
    ({"resource_type": "Encounter", "params": {"_count": "5"}}, "set by the tool itself"),
    ({"resource_type": "encounter"}, "not a FHIR resource type name"),
    ({"resource_type": "Encounter", "params": {"date": "notadate"}}, "search rejected"),
    ({"resource_type": "Encounter", "params": {"class": ""}}, "have no value"),
])
def test_bad_calls_come_back_as_messages(session, args, says):
    out = session.call("count_resources", args)
    assert out.error and says in out.text
    assert session.queries == {}


def test_count_patients_is_bounded(fixture_store):
    small = CohortSession(fixture_store, max_scan=3)
    out = small.call("count_patients", {"resource_type": "Observation"})
    assert out.error and "more than count_patients reads (3)" in out.text


def test_citation_keys_are_canonical():
    a = canonical_cite("query:Encounter?patient.gender=male&date=2010&class=IMP")
    assert a == canonical_cite("query:Encounter?class=IMP&date=2010&patient.gender=male")
    assert canonical_cite("patients:Immunization?vaccine-code=http://hl7.org/fhir/sid/cvx%7C62") == \
        "patients:Immunization?vaccine-code=http://hl7.org/fhir/sid/cvx|62"
    assert parse_cite("query:Patient?gender=male")[:2] == ("query", "Patient")
    assert query_dates([("date", "ge2010-01-01"), ("birthdate", "lt1950"), ("code", "cvx|62")]) == ["2010-01-01",
                                                                                                      "1950"]


# ------------------------------------------------------------------------------------------ the check


def _check(answer: str, ran: dict[str, int], question: str = "", evidence=None):
    return check_cohort_answer(answer, ran=list(ran), recount=lambda k: ran[canonical_cite(k)], evidence=evidence,
                               question=question)


KEY = "query:Encounter?class=IMP&date=2010&patient.gender=male"


def test_check_accepts_the_count_of_a_run_query():
    r = _check(f"Male patients had 2 inpatient stays in 2010 [{KEY}].", {KEY: 2},
               "How many inpatient stays did male patients have in 2010?")
    assert r.verified and r.citations == [KEY]
    # parameter order of the cited key does not matter; a citation after the full stop belongs to the sentence
    r = _check("There were two stays in 2010. [query:Encounter?patient.gender=male&date=2010&class=IMP]", {KEY: 2})
    assert r.verified, r.unsupported


def test_check_flags_a_wrong_number():
    r = _check(f"Male patients had 3 inpatient stays in 2010 [{KEY}].", {KEY: 2})
    assert not r.verified and "[unsupported]" in r.marked_answer
    assert "value 3 does not equal the count of the cited query (2)" in r.claims[0].reasons[0]


def test_check_rejects_unrun_and_uncited_queries():
    other = "query:Encounter?class=IMP&date=2010"
    r = _check(f"There were 2 stays [{other}].", {KEY: 2})
    assert not r.verified and "was not run by a tool in this session" in r.claims[0].reasons[0]
    r = _check("Male patients had 2 inpatient stays.", {KEY: 2})
    assert not r.verified and "value 2 is stated without a citation" in r.claims[0].reasons
    r = _check("Many patients were admitted.", {KEY: 2})
    assert not r.verified
    assert _check("There is no record of that vaccine in 1800.", {}, "Who got it in 1800?").verified
    zero = "patients:Immunization?date=1800"
    assert _check(f"No patient received it in 1800 [{zero}].", {zero: 0}).verified
    assert not _check(f"No patient received it in 1800 [{zero}].", {zero: 4}).verified


def test_check_accepts_listed_rows_and_rejects_unlisted_ones(session):
    out = session.call("list_resources", {"resource_type": "Encounter", "params": {"class": "IMP", "date": "2010"}})
    rows = {k: v for k, v in out.evidence.items() if "/" in k and not k.startswith("query:")}
    ref, line = next(iter(rows.items()))
    day = line[:10]
    ran = dict(session.queries)
    key = next(iter(ran))
    good = f"There were {ran[key]} inpatient stays in 2010 [{key}]. One began on {day} [{ref}]."
    r = check_cohort_answer(good, ran=ran, recount=session.recount, evidence=rows)
    assert r.verified, r.unsupported
    r = check_cohort_answer(f"One began on {day} [Encounter/not-listed].", ran=ran, recount=session.recount,
                            evidence=rows)
    assert not r.verified and "was not returned by any tool" in r.claims[0].reasons[0]
    r = check_cohort_answer(f"One began on 1999-01-01 [{ref}].", ran=ran, recount=session.recount, evidence=rows)
    assert not r.verified and "date 1999-01-01" in r.claims[0].reasons[0]
