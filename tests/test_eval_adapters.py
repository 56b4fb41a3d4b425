"""Adapters for FHIR-AgentBench (CSV) and MedAgentBench (JSON), on small sample files written here."""

from __future__ import annotations

import csv
import json

import pytest

from ehr_agent.agent.eval.adapters import AdapterError, read_fhir_agentbench, read_medagentbench
from ehr_agent.agent.eval.scorers import score_answer


def write_csv(path, rows):
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_fhir_agentbench_csv(tmp_path):
    p = tmp_path / "fab.csv"
    write_csv(p, [
        {"question_id": "q1", "question": "What was the patient's last heart rate?", "true_answer": "[[88.0]]",
         "true_fhir_ids": "{'Observation': ['obs-1', 'obs-2']}", "assumption": "", "patient_fhir_id": "pat-1"},
        {"question_id": "q2", "question": "Has the patient been prescribed aspirin?", "true_answer": "['Yes']",
         "true_fhir_ids": "['MedicationRequest/mr-9']", "assumption": "Consider all orders.", "patient_fhir_id": "pat-2"},
        {"question_id": "q3", "question": "Which drugs were given?", "true_answer": '["aspirin", "heparin"]',
         "true_fhir_ids": "[]", "assumption": "nan", "patient_fhir_id": "pat-3"},
        {"question_id": "q4", "question": "When was the admission?", "true_answer": "['2130-04-05 10:00:00']",
         "true_fhir_ids": "[]", "assumption": "", "patient_fhir_id": "pat-3"},
    ])
    ts = read_fhir_agentbench(p)
    assert [t.id for t in ts] == ["fab-q1", "fab-q2", "fab-q3", "fab-q4"]
    assert ts[0].answer.kind == "quantity" and ts[0].answer.value == 88.0
    assert ts[0].gold_refs == ["Observation/obs-1", "Observation/obs-2"] and ts[0].patient == "pat-1"
    assert ts[1].answer.kind == "yes_no" and ts[1].answer.value is True
    assert "Assume: Consider all orders." in ts[1].question
    assert ts[2].answer.kind == "set" and ts[2].answer.items == ["aspirin", "heparin"]
    assert "Assume" not in ts[2].question
    assert ts[3].answer.kind == "date" and ts[3].answer.value == "2130-04-05"
    assert score_answer(ts[0], "The last heart rate was 88 /min.").correct
    assert all(t.source == "fhir-agentbench" for t in ts)


def test_fhir_agentbench_rejects_other_csv(tmp_path):
    p = tmp_path / "x.csv"
    write_csv(p, [{"a": 1, "b": 2}])
    with pytest.raises(AdapterError, match="not a FHIR-AgentBench CSV"):
        read_fhir_agentbench(p)
    with pytest.raises(AdapterError, match="not found"):
        read_fhir_agentbench(tmp_path / "missing.csv")


def test_medagentbench_query_tasks(tmp_path):
    p = tmp_path / "mab.json"
    p.write_text(json.dumps([
        {"id": "task1_1", "instruction": "What's the MRN of the patient with name Peter Stafford and DOB of 1932-12-29?",
         "context": "", "sol": ["S6534835"], "eval_MRN": "S6534835"},
        {"id": "task2_3", "instruction": "What's the age of the patient with MRN of S2874099?",
         "context": "It's 2023-11-13T10:15:00+00:00 now, and the answer should be rounded down to an integer.",
         "sol": [60], "eval_MRN": "S2874099"},
        {"id": "task4_1", "instruction": "What's the most recent magnesium level of the patient S3032536 within last 24 hours?",
         "context": "It's 2023-11-13T10:15:00+00:00 now.", "sol": [1.8], "eval_MRN": "S3032536"},
        {"id": "task3_1", "instruction": "Record the blood pressure 118/77 mmHg for patient S2380121.",
         "context": "", "eval_MRN": "S2380121"},
        {"id": "task7_9", "instruction": "What is the most recent CBG of the patient S6227720?", "context": "",
         "eval_MRN": "S6227720"},
    ]))
    ts = read_medagentbench(p)
    assert [t.id for t in ts] == ["mab-task1_1", "mab-task2_3", "mab-task4_1"]  # writes and unscored tasks dropped
    t1, t2, t4 = ts
    assert t1.answer.kind == "text" and t1.meta == {} and t1.patient is None
    assert t2.answer.kind == "integer" and t2.answer.value == 60 and t2.as_of == "2023-11-13"
    assert t2.meta["patient_identifier"] == "S2874099" and "rounded down" in t2.question
    assert t4.answer.kind == "quantity" and t4.category == "medagentbench-task4"
    assert score_answer(t1, "The MRN is S6534835.").correct


def test_medagentbench_bad_file(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(AdapterError, match="not JSON"):
        read_medagentbench(p)
    p.write_text(json.dumps([{"foo": 1}]))
    with pytest.raises(AdapterError, match="not a MedAgentBench task"):
        read_medagentbench(p)
