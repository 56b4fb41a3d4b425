"""The generator's cohort tasks (agent.eval.gen_cohort) answered on synthea-blaze-120 by the cohort graph with
a scripted model (agent.eval.cohort_script.scripted_cohort_model, an agent.models.scripted.ScriptedModel)
that issues the queries a good model would (find_codes, then count_patients with the exact code). The
count comes from the tools, never from the task, and must equal the generator's gold answer."""

from __future__ import annotations

import random
import re

import pytest

from ehr_agent.agent.cohort import answer_cohort
from ehr_agent.agent.eval import gen_cohort
from ehr_agent.agent.eval.cohort_script import scripted_cohort_model
from ehr_agent.agent.eval.generator import load_record

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def records(blaze_store):
    return sorted((load_record(blaze_store, p) for p in blaze_store.patient_ids()), key=lambda r: r.id)


@pytest.fixture(scope="module")
def tasks(records):
    out = {}
    for seed in (3, 4, 5):
        for t in gen_cohort.generate(records, random.Random(f"{seed}:cohort"), 40):
            out[t.id] = t
    return list(out.values())


def _expected(task, records) -> int:
    """The gold, recomputed: for a condition, every patient with its code, whatever display the code carries
    (synthea-blaze-120 writes 233604007 as both "Pneumonia (disorder)" and "Pneumonia")."""
    if task.meta["op"] != "condition":
        return task.answer.value
    system, _, code = task.meta["code"].rpartition("|")
    return len({r.id for r in records for c in r.of("Condition")
                if any(cd.get("code") == code and str(cd.get("system")) == system
                       for cd in (c.get("code") or {}).get("coding", [])[:1])})


def test_generated_cohort_tasks_are_answered_correctly(blaze_store, records, tasks):
    ops = {t.meta["op"] for t in tasks}
    assert ops == {"gender", "born_before", "condition", "vaccine_year"}, ops
    wrong = []
    for task in tasks:
        r = answer_cohort(blaze_store, task.question, model=scripted_cohort_model(task))
        m = re.match(r"The count is (\d+) \[((?:query|patients):[^\]]+)\]\.$", r.answer)
        assert m and r.verified and r.error is None, (task.question, r.answer, r.unsupported)
        assert r.citations == [m.group(2)]
        if int(m.group(1)) != _expected(task, records):
            wrong.append((task.question, task.answer.value, r.answer))
    assert not wrong, wrong
    assert len(tasks) >= 30


def test_patients_themselves_are_counted_from_their_patient_resources(blaze_store):
    """Deaths (ever, in a year), women, births before a year: counted from the Patient resources, each count
    recomputed here from the raw resources, and each answer's key re-runs to the same number."""
    from ehr_agent.agent.align import align_call
    from ehr_agent.tools.cohort_tools import CohortSession

    people = list(blaze_store.search_all("Patient", {"_count": "1000"}))
    died = [p["deceasedDateTime"][:4] for p in people if p.get("deceasedDateTime")]
    year = max(set(died), key=died.count)
    s = CohortSession(blaze_store)
    cases = [
        ("How many patients have died?", {"what": "patients"}, len(died)),
        (f"How many patients died in {year}?", {"what": "deaths", "start": year, "end": year}, died.count(year)),
        ("How many women are in the database?", {"what": "women", "sex": "female"},
         sum(p.get("gender") == "female" for p in people)),
        ("How many patients were born before 1950?", {"what": "born", "end": "1949"},
         sum(p["birthDate"] < "1950" for p in people)),
    ]
    for q, args, want in cases:
        out = s.call("cohort_count", align_call("cohort_count", args, q, s.names_something))
        key = re.search(r"\[(query:Patient\?[^\]]*)\]", out.text)
        assert key and f"Answer: {want} patients" in out.text, (q, out.text)
        assert s.queries[key.group(1)] == want


def test_a_count_of_the_patients_themselves_does_not_answer_a_question_about_a_record(blaze_store):
    """"How many female patients had covid-19?" answered with every woman ([query:Patient?gender=female]) is a
    true count of another question: the check refuses it, and align turns the model's "female patients" into the
    question's "covid-19"."""
    from ehr_agent.agent.align import align_call
    from ehr_agent.agent.cohort_citations import check_cohort_answer
    from ehr_agent.tools.cohort_tools import CohortSession

    s = CohortSession(blaze_store)
    women = s.call("cohort_count", {"what": "women", "sex": "female"}).text
    n = re.search(r"Answer: (\d+) patients", women).group(1)
    answer = f"{n} patients (female) [query:Patient?gender=female]."
    bad = check_cohort_answer(answer, ran=list(s.queries), recount=s.recount,
                              question="how many female patients had covid-19?")
    assert not bad.verified and "counts the patients themselves" in " ".join(r for c in bad.claims for r in c.reasons)
    assert check_cohort_answer(answer, ran=list(s.queries), recount=s.recount,
                               question="How many women are there?").verified
    got = align_call("cohort_count", {"what": "female patients", "sex": "female"},
                     "how many female patients had covid-19?", s.names_something)
    assert got["what"] == "covid-19"


def test_a_sex_the_question_names_is_counted(blaze_store):
    """"How many male patients are there?" with no sex set counted all 120: align sets the sex, and a count over
    everyone does not pass the check for it."""
    from ehr_agent.agent.align import align_call
    from ehr_agent.agent.cohort_citations import check_cohort_answer
    from ehr_agent.tools.cohort_tools import CohortSession

    people = list(blaze_store.search_all("Patient", {"_count": "1000"}))
    s = CohortSession(blaze_store)
    q = "How many male patients are there?"
    out = s.call("cohort_count", align_call("cohort_count", {"what": "patients"}, q, s.names_something))
    assert f"Answer: {sum(p.get('gender') == 'male' for p in people)} patients (male)" in out.text, out.text
    s.call("cohort_count", {"what": "patients"})
    everyone = f"{len(people)} patients [query:Patient?]."
    bad = check_cohort_answer(everyone, ran=list(s.queries), recount=s.recount, question=q)
    assert not bad.verified and "male patients only" in " ".join(r for c in bad.claims for r in c.reasons)
    assert check_cohort_answer(everyone, ran=list(s.queries), recount=s.recount,
                               question="How many patients are there?").verified
