"""Task generation: every sampled gold answer is recomputed by a SECOND, independent computation straight
from the bundle files (plain Python over the raw bundle JSON, urn:uuid references, no store, no
agent.eval.fhirdata helpers), and every gold ref resolves to a resource of the task's patient.

The generator itself runs through the real embedded store (load -> everything_all), as in production.
"""

from __future__ import annotations

import base64
import bz2
import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from ehr_agent.agent.eval import gen_observations
from ehr_agent.agent.eval.fhirdata import PatientRecord
from ehr_agent.agent.eval.gen_common import Vocabulary
from ehr_agent.agent.eval.generator import CATEGORIES, generate_tasks
from ehr_agent.agent.eval.tasks import read_tasks, write_tasks

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "synthea-blaze-120"
# Chosen for variety: allergies, Medication resources, deceased patients, care plans, long notes.
PATIENT_FILES = [
    "085e81c0-7a95-ef02-16ef-aa1b4344deed", "83c9c542-0421-9ccb-34f6-8c6876fe04e5",
    "88e4bac8-2609-3c28-a354-ab29f69153f4", "5d2a2d08-cf2e-b7ad-a0db-77551a2777ec",
    "098fc002-b87e-49dc-4b8e-8900a1bc8661", "0ef7a3b5-53ee-e765-10e2-c63a904ad0fd",
    "2b208315-4cc4-3d52-e597-a03509645859", "ab5537a3-8608-5f56-53f5-d10b00eb4680",
]

pytestmark = pytest.mark.shared


# ---------------------------------------------------------------- the independent computation
class Bundle:
    """One patient's bundle file, read with nothing but bz2 and json."""

    def __init__(self, path: Path):
        doc = json.loads(bz2.decompress(path.read_bytes()))
        self.entries = doc["entry"]
        self.by_url = {e["fullUrl"]: e["resource"] for e in self.entries}
        self.patient = next(e["resource"] for e in self.entries if e["resource"]["resourceType"] == "Patient")
        self.ids = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in self.entries}

    def all(self, rtype):
        return [e["resource"] for e in self.entries if e["resource"]["resourceType"] == rtype]


def when(r):
    t = r["resourceType"]
    if t == "Observation":
        v = r.get("effectiveDateTime") or (r.get("effectivePeriod") or {}).get("start") or r.get("issued")
    elif t == "Condition":
        v = r.get("onsetDateTime") or r.get("recordedDate")
    elif t in ("Encounter", "CarePlan"):
        v = (r.get("period") or {}).get("start")
    elif t == "Procedure":
        v = r.get("performedDateTime") or (r.get("performedPeriod") or {}).get("start")
    elif t == "Immunization":
        v = r.get("occurrenceDateTime")
    elif t == "MedicationRequest":
        v = r.get("authoredOn")
    elif t == "DocumentReference":
        v = r.get("date")
    else:
        v = r.get("recordedDate") or r.get("onsetDateTime")
    return v[:10] if v else None


def name(cc):
    if not cc:
        return None
    return cc.get("text") or next((c["display"] for c in cc.get("coding", []) if c.get("display")), None)


def med_name(b: Bundle, mr):
    if "medicationCodeableConcept" in mr:
        return name(mr["medicationCodeableConcept"])
    return name(b.by_url[mr["medicationReference"]["reference"]]["code"])


def years_between(b, d):
    (by, bm, bd), (y, m, dd) = (int(x) for x in b.split("-")), (int(x) for x in d.split("-"))
    return y - by - (1 if (m, dd) < (bm, bd) else 0)


def obs_values(b: Bundle, code):
    system, _, c = code.partition("|")
    out = []
    for o in b.all("Observation"):
        cd = o["code"]["coding"][0]
        if cd.get("system", "") == system and cd["code"] == c and "valueQuantity" in o:
            out.append((when(o), o["valueQuantity"]["value"], o["valueQuantity"].get("unit")))
    return out


def one_value(vals, d):
    got = {v for w, v, _ in vals if w == d}
    assert len(got) == 1, f"ambiguous or missing value on {d}: {got}"
    return got.pop()


def recompute(task, b: Bundle | None, bundles: list[Bundle]):
    """The gold answer computed again, independently, as a plain Python value."""
    m, op = task.meta, task.meta["op"]
    cat = task.category
    if cat == "cohort":
        if op == "gender":
            return sum(x.patient["gender"] == m["gender"] for x in bundles)
        if op == "born_before":
            return sum(x.patient["birthDate"] < m["year"] for x in bundles)
        if op == "condition":  # by code: one code can carry several displays
            system, _, code = m["code"].rpartition("|")
            return sum(any(c["code"]["coding"][0].get("code") == code and str(c["code"]["coding"][0].get("system")) == system
                           for c in x.all("Condition")) for x in bundles)
        if op == "vaccine_year":
            return sum(any(name(i["vaccineCode"]) == m["name"] and when(i)[:4] == m["year"]
                           for i in x.all("Immunization")) for x in bundles)
    p = b.patient
    if cat == "demographics":
        return {"gender": lambda: p["gender"], "birth_date": lambda: p["birthDate"],
                "death_date": lambda: p["deceasedDateTime"][:10],
                "age_at": lambda: years_between(p["birthDate"], m["day"])}[op]()
    if cat.startswith("observation_"):
        vals = obs_values(b, m["code"])
        days = sorted({w for w, _, _ in vals})
        if op == "latest":
            return one_value(vals, days[-1])
        if op == "earliest":
            return one_value(vals, days[0])
        if op == "at_date":
            return one_value(vals, m["day"])
        if op == "trend":
            return "increased" if one_value(vals, m["end"]) > one_value(vals, m["start"]) else "decreased"
    if cat == "encounters":
        encs = [e for e in b.all("Encounter") if e["class"]["code"] == m["class"]]
        if op == "count_class":
            return len(encs)
        if op == "count_class_year":
            return sum(when(e).startswith(m["year"]) for e in encs)
        if op == "last_class":
            return max(when(e) for e in encs)
    if cat == "conditions":
        conds = [c for c in b.all("Condition") if name(c["code"]) == m["name"]]
        if op == "onset":
            return min(when(c) for c in conds)
        if op == "abatement":
            return conds[0]["abatementDateTime"][:10]
        if op == "active_on":
            return any(when(c) < m["day"] and (not c.get("abatementDateTime") or m["day"] < c["abatementDateTime"][:10])
                       for c in conds)
        if op == "ever":
            return bool(conds)
    if cat == "medications":
        mrs = b.all("MedicationRequest")
        if op == "active":
            return {med_name(b, r) for r in mrs if r["status"] == "active"}
        if op == "first":
            return min(when(r) for r in mrs if med_name(b, r) == m["name"])
        if op == "in_year":
            return {med_name(b, r) for r in mrs if r["authoredOn"].startswith(m["year"])}
        if op == "ever":
            return any(med_name(b, r) == m["name"] for r in mrs)
    if cat == "immunizations":
        ims = [i for i in b.all("Immunization") if i.get("status") == "completed"]
        if op == "count_by":
            return sum(name(i["vaccineCode"]) == m["name"] and when(i) <= m["day"] for i in ims)
        if op == "last":
            return max(when(i) for i in ims if name(i["vaccineCode"]) == m["name"])
        if op == "in_year":
            return {name(i["vaccineCode"]) for i in ims if when(i).startswith(m["year"])}
    if cat == "procedures":
        prs = b.all("Procedure")
        if op == "last":
            return max(when(x) for x in prs if name(x["code"]) == m["name"])
        if op == "count":
            return sum(name(x["code"]) == m["name"] for x in prs)
        if op == "on_day":
            return {name(x["code"]) for x in prs if when(x) == m["day"]}
    if cat == "allergies":
        active = {name(a["code"]) for a in b.all("AllergyIntolerance")
                  if a.get("clinicalStatus", {"coding": [{"code": "active"}]})["coding"][0]["code"] == "active"}
        return active if op == "list" else m["name"] in active
    if cat == "care_plans":
        plans = b.all("CarePlan")
        pname = lambda r: name(r["category"][-1])  # noqa: E731
        if op == "active":
            return {pname(r) for r in plans if r["status"] == "active"}
        mine = [r for r in plans if pname(r) == m["name"]]
        if op == "start":
            return mine[0]["period"]["start"][:10]
        if op == "activities":
            return {name(a["detail"]["code"]) for a in mine[0].get("activity", [])}
    if cat == "notes":
        texts = [(when(d), base64.b64decode(d["content"][0]["attachment"]["data"]).decode())
                 for d in b.all("DocumentReference")]
        if op == "education":
            levels = {"did not finish high school": "less than high school", "has a high school education": "high school",
                      "has completed some college courses": "some college", "is a college graduate": "college graduate"}
            found = {v for _, t in texts for k, v in levels.items() if k in " ".join(t.split())}
            assert len(found) == 1
            return found.pop()
        if op == "socio":
            found = set(re.findall(r"from an? (\w+) socioeconomic", " ".join(t for _, t in texts)))
            assert len(found) == 1
            return found.pop()
        if op == "complaint":
            t = next(t for d, t in texts if d == m["day"])
            block = t.split("# Chief Complaint", 1)[1].split("\n#", 1)[0]
            return {ln[2:].strip() for ln in block.split("\n") if ln.startswith("- ")}
    raise AssertionError(f"no independent computation for {cat}/{op}")


def gold_value(task):
    a = task.answer
    if a.kind == "set":
        return set(a.items)
    return a.value


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def bundles():
    return {f: Bundle(DATA / f"{f}.json.bz2") for f in PATIENT_FILES}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from ehr_agent.tools.store import open_store

    d = tmp_path_factory.mktemp("evalstore")
    s = open_store(str(d), create=True)
    info = sorted(DATA.glob("0-*.json.bz2"))
    s.load([*info, *(DATA / f"{f}.json.bz2" for f in PATIENT_FILES)], validate=False)
    yield s
    s.close()


@pytest.fixture(scope="module")
def tasks(store):
    return generate_tasks(store, per_patient=200, seed=3, cohort=12)


# ---------------------------------------------------------------- tests
def test_categories_and_shape(tasks):
    cats = Counter(t.category for t in tasks)
    assert len(cats) >= 10, cats
    assert set(cats) <= set(CATEGORIES)
    assert len({t.id for t in tasks}) == len(tasks)
    for t in tasks:
        assert t.question.endswith(("?", ".")) and "{" not in t.question
        assert (t.patient is None) == (t.category == "cohort")


def test_gold_answers_match_independent_computation(tasks, bundles):
    by_patient = {b.patient["id"]: b for b in bundles.values()}
    sample = random.Random(7).sample(tasks, min(400, len(tasks)))
    checked = Counter()
    for t in sample:
        expected = recompute(t, by_patient.get(t.patient), list(bundles.values()))
        got = gold_value(t)
        if t.answer.kind == "quantity":
            assert got == pytest.approx(expected), (t.question, got, expected)
        else:
            assert got == expected, (t.id, t.question, got, expected)
        checked[t.category] += 1
    assert len(checked) >= 10, checked


def test_every_gold_ref_resolves_to_the_tasks_patient(tasks, bundles, store):
    by_patient = {b.patient["id"]: b for b in bundles.values()}
    all_ids = set().union(*(b.ids for b in bundles.values()))
    for t in tasks:
        for ref in t.gold_refs:
            rtype, _, rid = ref.partition("/")
            assert store.read(rtype, rid)["id"] == rid
            if t.patient is not None:
                assert (rtype, rid) in by_patient[t.patient].ids, (t.id, ref)
            else:
                assert (rtype, rid) in all_ids
        if t.answer.kind not in ("yes_no",) or t.answer.value:
            assert t.gold_refs, t.id  # only a "no" may have nothing to point at


def test_deterministic_and_roundtrip(store, tasks, tmp_path):
    again = generate_tasks(store, per_patient=200, seed=3, cohort=12)
    assert [t.model_dump() for t in again] == [t.model_dump() for t in tasks]
    other = generate_tasks(store, per_patient=5, seed=4, cohort=0)
    assert {t.id for t in other} != {t.id for t in tasks}
    write_tasks(tmp_path / "t.jsonl", tasks)
    assert [t.model_dump() for t in read_tasks(tmp_path / "t.jsonl")] == [t.model_dump() for t in tasks]


def test_ambiguous_values_are_not_emitted():
    pid = "p1"

    def obs(i, day, value, unit="kg", code="29463-7"):
        vq = {"value": value, **({"unit": unit} if unit else {})}
        return {"resourceType": "Observation", "id": f"o{i}", "subject": {"reference": f"Patient/{pid}"},
                "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": f"C{code}"}]},
                "effectiveDateTime": f"{day}T10:00:00Z", "valueQuantity": vq}

    res = [{"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1980-01-01"},
           obs(1, "2010-01-01", 70), obs(2, "2012-01-01", 72), obs(3, "2014-05-05", 75), obs(4, "2014-05-05", 76),
           obs(5, "2013-01-01", 5.0, unit=None, code="1-1")]
    rec = PatientRecord.from_resources(res)
    out = gen_observations.generate(rec, random.Random(0), Vocabulary())
    assert "1-1" not in " ".join(t.meta["code"] for ts in out.values() for t in ts)  # no unit -> no task
    assert not out["observation_latest"]  # two different values on the last day -> not asked
    assert [t.answer.value for t in out["observation_earliest"]] == [70]
