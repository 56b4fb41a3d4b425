"""Projections: every type Synthea emits gets one deterministic line ending with its citation key."""

from __future__ import annotations

import copy
import re

import pytest

from tests.conftest import BLAZE, SPEZI, need_shared
from ehr_agent.tools.retrieval.memory_store import read_bundle
from ehr_agent.tools.retrieval.projections import norm_date, project, project_row, render_period


def _resources(path):
    return [e["resource"] for e in read_bundle(path)["entry"]]


@pytest.fixture(scope="module")
def blaze_sample():
    need_shared(BLAZE)
    files = sorted(BLAZE.glob("*.json.bz2"))
    out = []
    for f in files[:2] + files[2:8]:  # the two shared batches plus six patients
        out += _resources(f)
    return out


def test_every_type_in_blaze_projects_to_one_cited_line(blaze_sample):
    seen = set()
    for r in blaze_sample:
        line = project(r)
        assert "\n" not in line
        assert line.endswith(f"[{r['resourceType']}/{r['id']}]"), line
        # Nothing but the key: the line must say what the resource is.
        assert len(line) > len(r["resourceType"]) + len(r["id"]) + 6, line
        seen.add(r["resourceType"])
    # The sample covers the clinical types the issue lists.
    assert {"Patient", "Encounter", "Condition", "Observation", "DiagnosticReport", "MedicationRequest", "Procedure",
            "Immunization", "DocumentReference", "Claim", "ExplanationOfBenefit", "CarePlan", "CareTeam"} <= seen


def test_projection_is_deterministic_and_order_independent(blaze_sample):
    for r in blaze_sample[:300]:
        shuffled = dict(reversed(list(copy.deepcopy(r).items())))
        assert project(r) == project(shuffled)


def test_observation_value_unit_code_date_and_encounter():
    obs = {"resourceType": "Observation", "id": "o1", "status": "final",
           "category": [{"coding": [{"code": "laboratory"}]}],
           "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4", "display": "Hemoglobin A1c"}]},
           "subject": {"reference": "Patient/p1"}, "encounter": {"reference": "Encounter/e1"},
           "effectiveDateTime": "2021-03-04T10:11:12+02:00", "valueQuantity": {"value": 6.8, "unit": "%"}}
    row = project_row(obs)
    assert row.text == ("2021-03-04 Observation laboratory: Hemoglobin A1c (LOINC|4548-4) = 6.8 %; "
                        "encounter Encounter/e1 [Observation/o1]")
    assert row.date == "2021-03-04" and row.code == "http://loinc.org|4548-4" and row.patient == "p1"


def test_blood_pressure_components():
    bp = {"resourceType": "Observation", "id": "bp", "status": "final",
          "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood Pressure"}]},
          "effectiveDateTime": "2010-09-16",
          "component": [
              {"code": {"text": "Diastolic Blood Pressure"}, "valueQuantity": {"value": 70, "unit": "mm[Hg]"}},
              {"code": {"text": "Systolic Blood Pressure"}, "valueQuantity": {"value": 104, "unit": "mm[Hg]"}}]}
    line = project(bp)
    assert "Diastolic Blood Pressure 70 mm[Hg]" in line and "Systolic Blood Pressure 104 mm[Hg]" in line
    assert line.startswith("2010-09-16 ")


def test_condition_status_reason_links_and_periods():
    cond = {"resourceType": "Condition", "id": "c1",
            "clinicalStatus": {"coding": [{"code": "resolved"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "444814009", "display": "Viral sinusitis"}]},
            "onsetDateTime": "2019-01-02T00:00:00Z", "abatementDateTime": "2019-01-20T00:00:00Z",
            "encounter": {"reference": "Encounter/e9"}}
    line = project(cond)
    assert "Viral sinusitis (SNOMED|444814009)" in line and "clinical status resolved" in line
    assert "resolved 2019-01-20" in line and "encounter Encounter/e9" in line
    proc = {"resourceType": "Procedure", "id": "p1", "status": "completed",
            "code": {"text": "Appendectomy"}, "performedPeriod": {"start": "2001-02-03T04:00:00Z", "end": "2001-02-04T01:00:00Z"},
            "reasonReference": [{"reference": "Condition/c1"}]}
    line = project_row(proc, {"Condition/c1": "Appendicitis"}).text
    assert "performed 2001-02-03..2001-02-04" in line and "reason Appendicitis (Condition/c1)" in line
    assert render_period({"start": "2001-02-03"}) == "2001-02-03.."
    assert norm_date("2001-02-03T23:59:00-05:00") == "2001-02-03"


def test_malformed_resource_does_not_raise():
    weird = {"resourceType": "Observation", "id": "x", "code": "not-a-concept", "component": [None, 3],
             "valueQuantity": {"value": None}}
    line = project(weird)
    assert line.endswith("[Observation/x]")
    assert project({"resourceType": "Basic", "id": "b"}).endswith("[Basic/b]")


def test_spezi_long_history_projects(tmp_path):
    need_shared(SPEZI)
    path = sorted(SPEZI.glob("*.json"))[0]
    lines = [project(r) for r in _resources(path)]
    assert all(re.search(r"\[[A-Za-z]+/[^\]]+\]$", ln) for ln in lines)
