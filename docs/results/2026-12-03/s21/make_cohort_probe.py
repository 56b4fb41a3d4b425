"""Probe set s21 (cohort): 24 population questions in researchers' own wording, gold computed here from raw FHIR.

Independent of the agent, its tools and the evaluation's generators: the raw Synthea bundles in
/work/shared/data/synthea-blaze-120 are read with the standard library (bz2 + json), and every code list,
date rule and ambiguity check below is local to this script. The only project code used is the task/gold
classes with ``make_task`` (to write a valid task file) and ``read_tasks`` (to validate it).

Rules:
- counts are of distinct Patient ids unless the question asks for encounters / doses / procedures;
- "ever" means any resource of the concept, whatever its status (every Condition here is confirmed; every
  Immunization and Procedure is completed; MedicationRequests count whether stopped or active);
- a year means the resource's own date falls in it, read from the local date-time string as written
  (Immunization.occurrenceDateTime, Encounter.period.start, Procedure.performedPeriod.start,
  MedicationRequest.authoredOn, Patient.deceasedDateTime); a question is refused (``Ambiguous``) when reading
  the same instants in UTC would change its count (a resource within hours of New Year);
- a drug name matches a MedicationRequest whose medicationCodeableConcept, or referenced Medication, names
  that ingredient; a name that also matches a combination product with another ingredient is refused;
- a concept is given as SNOMED/CVX codes chosen by display (listed in each task's meta["codes"]); a condition
  question is refused when a patient holds only a related code a reader could also count (checked through
  ``near`` codes per question).

Usage (from the repository root):
    .venv/bin/python docs/results/2026-12-03/s21/make_cohort_probe.py   # writes cohort-probe24-tasks.jsonl
"""

from __future__ import annotations

import bz2
import json
import re
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from ehr_agent.agent.eval.gen_common import make_task
from ehr_agent.agent.eval.tasks import IntegerGold, read_tasks

DATA = Path("/work/shared/data/synthea-blaze-120")
HERE = Path(__file__).resolve().parent
OUT = HERE / "cohort-probe24-tasks.jsonl"
SOURCE = "cohort-probe-s21"

SNOMED = "http://snomed.info/sct"
CVX = "http://hl7.org/fhir/sid/cvx"


class Ambiguous(ValueError):
    """The question would not have one clear gold count."""


# ------------------------------------------------------------------ raw data
def load() -> dict[str, list[dict]]:
    """Every resource of every bundle, by type (the two 0-* batch bundles hold no patient data)."""
    out: dict[str, list[dict]] = {}
    for f in sorted(DATA.glob("*.json.bz2")):
        with bz2.open(f, "rt", encoding="utf-8") as fh:
            bundle = json.load(fh)
        for e in bundle.get("entry", []):
            r = e["resource"]
            out.setdefault(r["resourceType"], []).append(r)
    return out


def ref_id(ref: str) -> str:
    """``urn:uuid:X`` or ``Type/X`` -> ``X``."""
    return ref.rsplit(":", 1)[-1].rsplit("/", 1)[-1]


def patient_of(r: dict) -> str:
    return ref_id((r.get("subject") or r.get("patient"))["reference"])


def codings(cc: dict | None) -> list[dict]:
    return list((cc or {}).get("coding", []))


def has_code(cc: dict | None, system: str, codes: set[str]) -> bool:
    return any(c.get("system") == system and c.get("code") in codes for c in codings(cc))


def local_year(s: str) -> int:
    return int(s[:4])


def utc_year(s: str) -> int:
    if len(s) <= 10:  # a plain date has no instant
        return int(s[:4])
    return datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(timezone.utc).year


class Data:
    def __init__(self, res: dict[str, list[dict]]):
        self.res = res
        self.patients = {p["id"]: p for p in res["Patient"]}
        self.meds = {m["id"]: m for m in res.get("Medication", [])}
        for t in ("Condition", "Immunization", "Encounter", "Procedure", "MedicationRequest", "AllergyIntolerance"):
            for r in res.get(t, []):
                if patient_of(r) not in self.patients:
                    raise Ambiguous(f"{t}/{r['id']} points at no patient in the data")

    def gender(self, pid: str) -> str:
        return self.patients[pid]["gender"]

    def keep_gender(self, pids, gender: str | None) -> list:
        return [p for p in pids if gender is None or self.gender(p) == gender]


def year_filter(items: list[tuple[str, str]], year: int) -> list[str]:
    """``(patient, datetime)`` pairs -> the patients of those in ``year`` (local); refuse if UTC disagrees."""
    loc = sorted(p for p, s in items if local_year(s) == year)
    utc = sorted(p for p, s in items if utc_year(s) == year)
    if loc != utc:
        raise Ambiguous(f"year {year}: local and UTC readings differ ({len(loc)} vs {len(utc)})")
    return loc


# ------------------------------------------------------------------ operations
def condition_ever(d: Data, codes: set[str], gender: str | None = None, near: set[str] = frozenset()) -> int:
    """Distinct patients with a Condition coded in ``codes``; refuse if some patient holds only a ``near`` code."""
    hits = {patient_of(c) for c in d.res["Condition"] if has_code(c["code"], SNOMED, codes)}
    near_only = {patient_of(c) for c in d.res["Condition"] if has_code(c["code"], SNOMED, set(near))} - hits
    near_only = set(d.keep_gender(near_only, gender))
    if near_only:
        raise Ambiguous(f"{len(near_only)} patient(s) hold only a related code")
    return len(d.keep_gender(hits, gender))


def vaccine_year(d: Data, codes: set[str], year: int, unit: str, gender: str | None = None,
                 near: set[str] = frozenset()) -> int:
    """Patients (or doses) with an Immunization in ``codes`` given in ``year``."""
    def pairs(cs):
        return [(patient_of(i), i["occurrenceDateTime"]) for i in d.res["Immunization"]
                if has_code(i["vaccineCode"], CVX, set(cs)) and i.get("status", "completed") == "completed"]
    hits = d.keep_gender(year_filter(pairs(codes), year), gender)
    if near and d.keep_gender(year_filter(pairs(near), year), gender):
        raise Ambiguous("a related vaccine was given in the same year")
    return len(hits) if unit == "doses" else len(set(hits))


def med_names(d: Data, mr: dict) -> list[str]:
    if "medicationCodeableConcept" in mr:
        cc = mr["medicationCodeableConcept"]
    else:
        cc = d.meds[ref_id(mr["medicationReference"]["reference"])]["code"]
    return [c.get("display", "") for c in codings(cc)] + [cc.get("text", "")]


def medication_ever(d: Data, name: str) -> int:
    """Distinct patients with a MedicationRequest naming ``name`` (any status, any product of that ingredient)."""
    pat = re.compile(rf"\b{re.escape(name)}\b", re.I)
    hits, products = set(), set()
    for mr in d.res["MedicationRequest"]:
        names = [n for n in med_names(d, mr) if pat.search(n)]
        if names:
            hits.add(patient_of(mr))
            products.update(names)
    for p in products:
        if " / " in p:  # a combination product: the generic name alone would not say which patients count
            raise Ambiguous(f"{name!r} also matches combination product {p!r}")
    return len(hits)


def encounters_year(d: Data, cls: str, year: int, unit: str, gender: str | None = None) -> int:
    pairs = [(patient_of(e), e["period"]["start"]) for e in d.res["Encounter"]
             if e.get("class", {}).get("code") == cls]
    hits = d.keep_gender(year_filter(pairs, year), gender)
    return len(hits) if unit == "encounters" else len(set(hits))


def procedure_year(d: Data, codes: set[str], year: int, unit: str, near: set[str] = frozenset()) -> int:
    def pairs(cs):
        return [(patient_of(p), p["performedPeriod"]["start"] if "performedPeriod" in p else p["performedDateTime"])
                for p in d.res["Procedure"] if has_code(p["code"], SNOMED, set(cs))]
    hits = year_filter(pairs(codes), year)
    if near and year_filter(pairs(near), year):
        raise Ambiguous("a related procedure was done in the same year")
    return len(hits) if unit == "procedures" else len(set(hits))


def allergy_ever(d: Data, codes: set[str]) -> int:
    recs = [a for a in d.res["AllergyIntolerance"] if has_code(a["code"], SNOMED, codes)]
    if any(c.get("code") != "active" for a in recs for c in codings(a.get("clinicalStatus"))):
        raise Ambiguous("an inactive allergy record")
    return len({patient_of(a) for a in recs})


def deaths(d: Data, year: int | None = None) -> int:
    pairs = [(pid, p["deceasedDateTime"]) for pid, p in d.patients.items() if p.get("deceasedDateTime")]
    if any(p.get("deceasedBoolean") for p in d.patients.values()):
        raise Ambiguous("a death without a date")
    return len(pairs) if year is None else len(set(year_filter(pairs, year)))


def gender_count(d: Data, gender: str) -> int:
    return sum(1 for p in d.patients.values() if p.get("gender") == gender)


def born_before(d: Data, year: int) -> int:
    days = [p["birthDate"] for p in d.patients.values()]
    return sum(1 for b in days if int(b[:4]) < year)


OPS = {
    "condition_ever": condition_ever,
    "vaccine_year": vaccine_year,
    "medication_ever": medication_ever,
    "encounters_year": encounters_year,
    "procedure_year": procedure_year,
    "allergy_ever": allergy_ever,
    "deaths": deaths,
    "gender_count": gender_count,
    "born_before": born_before,
}

# ------------------------------------------------------------------ the questions (hand-written wording)
# (category, question, op, params, meta codes)
HTN = {"59621000"}  # Hypertension
T2DM = {"44054006", "127013003", "368581000119106", "90781000119102"}  # Diabetes (= T2DM) and its T2DM complications
ASTHMA = {"195967001", "233678006"}  # Asthma, Childhood asthma
COPD = {"185086009", "87433001"}  # Chronic obstructive bronchitis, Pulmonary emphysema
STROKE = {"230690007"}  # Stroke
CKD = {"431855005", "431856006", "127013003"}  # CKD stage 1, CKD stage 2, Diabetic renal disease
FLU = {"140"}
TD = {"113"}  # Td (adult) preservative free
TETANUS_OTHER = {"115", "20"}  # Tdap, DTaP
PNEUMO = {"133", "33"}  # PCV13, PPSV23
HPV = {"62"}
ZOSTER = {"121"}
COLONOSCOPY = {"73761001"}
MAMMOGRAM = {"71651007", "241055006"}  # Mammography, Mammogram - symptomatic
PEANUT = {"91935009"}

SPECS: list[tuple[str, str, str, dict, list[str]]] = [
    # --- conditions ever (SNOMED)
    ("cohort_condition", "Of the men in this cohort, what's the count with high blood pressure on their problem list?",
     "condition_ever", {"codes": HTN, "gender": "male"}, sorted(HTN)),
    ("cohort_condition", "I need the number of unique patients carrying a type 2 diabetes dx (sugar diabetes proper, "
     "not prediabetes).", "condition_ever", {"codes": T2DM}, sorted(T2DM)),
    ("cohort_condition", "Size of the asthma population here? Patients with an asthma diagnosis at any point.",
     "condition_ever", {"codes": ASTHMA}, sorted(ASTHMA)),
    ("cohort_condition", "what's n for pts with COPD or emphysema?", "condition_ever", {"codes": COPD}, sorted(COPD)),
    ("cohort_condition", "Stroke history among women: give me a headcount.", "condition_ever",
     {"codes": STROKE, "gender": "female"}, sorted(STROKE)),
    ("cohort_condition", "pts w/ chronic kidney disease (any stage) - total?", "condition_ever",
     {"codes": CKD}, sorted(CKD)),
    # --- vaccines in a year (CVX)
    ("cohort_vaccine", "Flu vaccine uptake among female patients in 2018: how many of them got one?", "vaccine_year",
     {"codes": FLU, "year": 2018, "unit": "patients", "gender": "female"}, sorted(FLU)),
    ("cohort_vaccine", "Total Td (tetanus-diphtheria) booster doses administered in calendar year 2010?",
     "vaccine_year", {"codes": TD, "year": 2010, "unit": "doses", "near": {"115"}}, sorted(TD)),
    ("cohort_vaccine", "Count distinct patients vaccinated against pneumococcus in 2018 (any pneumonia vaccine).",
     "vaccine_year", {"codes": PNEUMO, "year": 2018, "unit": "patients"}, sorted(PNEUMO)),
    ("cohort_vaccine", "Number of HPV vaccine doses given out in 2013?", "vaccine_year",
     {"codes": HPV, "year": 2013, "unit": "doses"}, sorted(HPV)),
    ("cohort_vaccine", "For 2012, tally up the patients who received a shingles (zoster) vaccination.",
     "vaccine_year", {"codes": ZOSTER, "year": 2012, "unit": "patients"}, sorted(ZOSTER)),
    # --- medications ever (by generic name)
    ("cohort_medication", "Ever had a metformin prescription - how many patients is that?", "medication_ever",
     {"name": "metformin"}, ["860975"]),
    ("cohort_medication", "Give me a count of everyone with an amlodipine order anywhere in their chart.",
     "medication_ever", {"name": "amlodipine"}, ["197361", "308136"]),
    ("cohort_medication", "How big is the group that has been prescribed albuterol (inhaler or nebulizer)?",
     "medication_ever", {"name": "albuterol"}, ["2123111", "245314"]),
    # --- encounters by class
    ("cohort_emergency", "In 2018, how many distinct women showed up in the ER?", "encounters_year",
     {"cls": "EMER", "year": 2018, "unit": "patients", "gender": "female"}, ["EMER"]),
    ("cohort_emergency", "Total ED encounters logged during 2016?", "encounters_year",
     {"cls": "EMER", "year": 2016, "unit": "encounters"}, ["EMER"]),
    ("cohort_inpatient", "Number of unique patients hospitalized as inpatients at least once in 2020.",
     "encounters_year", {"cls": "IMP", "year": 2020, "unit": "patients"}, ["IMP"]),
    ("cohort_outpatient", "Ambulatory/outpatient visit volume for male patients in 2019 - how many visits?",
     "encounters_year", {"cls": "AMB", "year": 2019, "unit": "encounters", "gender": "male"}, ["AMB"]),
    # --- procedures in a year
    ("cohort_procedure", "2016 colonoscopies: how many different patients were scoped that year?", "procedure_year",
     {"codes": COLONOSCOPY, "year": 2016, "unit": "patients"}, sorted(COLONOSCOPY)),
    ("cohort_procedure", "Mammograms performed in 2017 - what's the total?", "procedure_year",
     {"codes": MAMMOGRAM, "year": 2017, "unit": "procedures"}, sorted(MAMMOGRAM)),
    # --- allergies
    ("cohort_allergy", "Peanut allergy prevalence: how many patients have one documented?", "allergy_ever",
     {"codes": PEANUT}, sorted(PEANUT)),
    # --- the patients themselves
    ("cohort_demographic", "Mortality check: how many patients passed away during 2020?", "deaths", {"year": 2020},
     []),
    ("cohort_demographic", "What's the male headcount in this population?", "gender_count", {"gender": "male"}, []),
    ("cohort_demographic", "Number of patients with a birth date earlier than 1950?", "born_before", {"year": 1950}, []),
]


def meta_params(params: dict) -> dict:
    out = {}
    for k, v in params.items():
        if k in ("codes", "near"):
            continue
        out[k] = str(v) if k == "year" else v
    return out


def main() -> None:
    d = Data(load())
    tasks = []
    for category, question, op, params, codes in SPECS:
        n = OPS[op](d, **params)
        meta = {"op": op, **meta_params(params), "codes": codes, "source": SOURCE}
        task = make_task(category, None, question, IntegerGold(value=n), [], meta=meta, refs_mode="any")
        tasks.append(task.model_copy(update={"source": "handwritten"}))  # hand-written wording, computed gold
    cats = Counter(t.category for t in tasks)
    assert len(tasks) == 24 and len({t.question for t in tasks}) == 24, "24 distinct questions expected"
    OUT.write_text("".join(t.model_dump_json() + "\n" for t in tasks), encoding="utf-8")
    back = read_tasks(OUT)
    assert [t.id for t in back] == [t.id for t in tasks]
    for t in back:
        print(f"{t.answer.value:5d}  [{t.category}] {t.question}")
    print(f"wrote {len(back)} tasks to {OUT} ({dict(cats)})")


if __name__ == "__main__":
    main()
