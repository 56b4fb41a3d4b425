"""Held-out retrieval questions generated from a patient's own record, with known gold rows.

Each question is written the way a clinician would ask it (code displays without their
``(disorder)``/``(finding)`` tags, no codes, no ids) and points at exactly one row, or at a small set
of rows that all answer it (note chunks repeating the same fact).  The templates are fixed here and
never tuned against the ranker's results; the sample per patient is seeded, so runs repeat.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict

from pydantic import BaseModel

from .projections import Row

KINDS = ("condition", "latest_lab", "procedure", "first_medication", "last_immunization", "note_social", "note_plan")


class Question(BaseModel):
    """A question with the refs that answer it (a hit is any of them in the top k)."""

    patient: str
    query: str
    gold: list[str]
    kind: str


def plain(display: str) -> str:
    """A code display as words: semantic tags dropped, lower case except acronyms."""
    d = re.sub(r"\s*\((disorder|finding|procedure|situation|regime/therapy|observable entity|physical object|"
               r"qualifier value|morphologic abnormality|record artifact)\)", "", display)
    return " ".join(w if w.isupper() and len(w) > 1 else w.lower() for w in d.split())


def _unique_extreme(rows: list[Row], latest: bool) -> Row | None:
    dated = [r for r in rows if r.date]
    if not dated:
        return None
    dated.sort(key=lambda r: r.date or "", reverse=latest)
    if len(dated) > 1 and dated[0].date == dated[1].date:
        return None  # two rows on the same day: "the latest" would be ambiguous
    return dated[0]


def generate_questions(rows: list[Row], patient: str, *, per_kind: int = 2, seed: int = 0) -> list[Question]:
    """Up to ``per_kind`` questions of each kind in :data:`KINDS` for one patient's rows."""
    rng = random.Random(f"{seed}:{patient}")
    by_code: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for r in rows:
        if r.code and r.display and "#" not in r.ref:
            by_code[(r.type, r.code)].append(r)
    out: list[Question] = []

    def pick(cands: list[Question]) -> None:
        cands.sort(key=lambda q: q.query)
        rng.shuffle(cands)
        out.extend(cands[:per_kind])

    def single(rtype: str, template: str, kind: str) -> None:
        cands = []
        for (t, _), rs in by_code.items():
            if t == rtype and len(rs) == 1 and rs[0].date:
                cands.append(Question(patient=patient, query=template.format(plain(rs[0].display or "")), gold=[rs[0].ref], kind=kind))
        pick(cands)

    def extreme(rtype: str, template: str, kind: str, *, latest: bool, min_rows: int, lab_only: bool = False) -> None:
        cands = []
        for (t, _), rs in by_code.items():
            if t != rtype or len(rs) < min_rows:
                continue
            if lab_only and " laboratory:" not in rs[0].text:
                continue
            best = _unique_extreme(rs, latest)
            if best is not None:
                cands.append(Question(patient=patient, query=template.format(plain(best.display or "")), gold=[best.ref], kind=kind))
        pick(cands)

    single("Condition", "When was the patient diagnosed with {}?", "condition")
    extreme("Observation", "What was the most recent {} result?", "latest_lab", latest=True, min_rows=2, lab_only=True)
    single("Procedure", "When did the patient undergo {}?", "procedure")
    extreme("MedicationRequest", "When was {} first prescribed?", "first_medication", latest=False, min_rows=1)
    extreme("Immunization", "When did the patient last receive the {} vaccine?", "last_immunization", latest=True, min_rows=1)

    chunks = [r for r in rows if "#" in r.ref]
    social = [r.ref for r in chunks if "socioeconomic" in r.text]
    if social:
        out.append(Question(patient=patient, query="What socioeconomic background does the patient come from?", gold=social, kind="note_social"))
    plans: dict[str, list[Row]] = defaultdict(list)
    for r in chunks:
        if r.display and "plan" in r.display.lower() and r.date:
            plans[r.date].append(r)
    cands = []
    for date, rs in plans.items():
        if len({r.ref.split("#")[0] for r in rs}) == 1:  # one note that day: the question is unambiguous
            cands.append(Question(patient=patient, query=f"What was the plan in the clinical note of {date}?", gold=[r.ref for r in rs], kind="note_plan"))
    pick(cands)
    return out


# --- type-intent and list questions (issue 15) ------------------------------------------------------
#
# The phrasings below were written and committed before any ranking work on them, and are frozen:
# HELD_OUT is what the benchmark reports; DEV is the only set the ranker was tuned against (and it is
# asked over a different data set, synthea-smart-75, so neither the wording nor the patients overlap).
# Gold rows are computed from the raw FHIR resources read through the store, never from projections or
# the retriever, so a projection bug cannot make a question easier.

LIST_KINDS = ("allergies", "active_medications", "vaccine_list", "procedure_list", "encounter_class_year")

HELD_OUT: dict[str, tuple[str, ...]] = {
    "allergies": (
        "Does the patient have any recorded allergies or intolerances? List them.",
        "What is this patient allergic to?",
        "Are any drug or food intolerances documented?",
        "Show every allergy on the chart.",
    ),
    "active_medications": (
        "Which medication requests are currently active?",
        "What drugs is the patient taking right now?",
        "List the current prescriptions.",
        "Is the patient on any ongoing medications?",
    ),
    "vaccine_list": (
        "Which {v} vaccinations has the patient received?",
        "List every {v} shot given to the patient.",
        "On what dates was the patient immunized with {v}?",
        "How many doses of {v} vaccine are on record? List them.",
    ),
    "procedure_list": (
        "List all {p} procedures the patient has had.",
        "Which times did the patient undergo {p}?",
        "Has the patient ever had {p}? Give each occurrence.",
        "Show every {p} that was performed.",
    ),
    "encounter_class_year": (
        "Which {c} encounters took place in {y}?",
        "List the patient's {c} visits during {y}.",
        "How many {c} encounters were there in {y}? List them.",
        "What {c} visits did the patient have in {y}?",
    ),
}

DEV: dict[str, tuple[str, ...]] = {
    "allergies": ("allergies", "Any allergy on file?", "Which substances cause reactions for this patient?"),
    "active_medications": ("active medications", "What is the patient currently prescribed?", "current meds"),
    "vaccine_list": ("{v} vaccine history", "list {v} immunizations", "dates of {v} vaccination"),
    "procedure_list": ("{p}", "when was {p} done", "all {p} procedures"),
    "encounter_class_year": ("{c} encounters {y}", "{c} visits in {y}", "list {c} encounters in the year {y}"),
}

#: Encounter class codes (v3 ActCode, as Synthea writes them) as a clinician would name them.
CLASS_WORDS = {"EMER": "emergency", "IMP": "inpatient", "AMB": "ambulatory", "ACUTE": "acute inpatient",
               "OBSENC": "observation", "SS": "short stay", "HH": "home health", "VR": "virtual"}


class ListQuestion(BaseModel):
    """A question whose answer is a set of rows; recall is the share of ``gold`` (capped at k) in the top k."""

    patient: str
    query: str
    gold: list[str]
    kind: str
    target: str
    """What the question is about (vaccine name, procedure, class and year), for reports."""


def _first_coding(concept: dict | None) -> dict:
    codings = (concept or {}).get("coding") or [{}]
    return codings[0] if isinstance(codings[0], dict) else {}


def vaccine_name(display: str) -> str:
    """A vaccine display as people say it: ``Influenza, seasonal, injectable...`` -> ``Influenza``,
    ``Td (adult) preservative free`` -> ``Td``, ``Hep A, ped/adol, 2 dose`` -> ``Hep A``."""
    d = re.sub(r"\([^)]*\)", " ", display).split(",")[0]
    d = re.sub(r"\b(preservative free|vaccine)\b", " ", d, flags=re.I)
    return " ".join(d.split())


def intent_questions(resources: list[dict], patient: str, phrasings: dict[str, tuple[str, ...]] = HELD_OUT,
                     *, seed: int = 0) -> list[ListQuestion]:
    """Type-intent and list questions for one patient, from the raw FHIR resources of its record
    (``store.everything_all(patient)``): every phrasing of every kind the record can answer, one
    seeded target per kind (vaccine, procedure, encounter class and year)."""
    rng = random.Random(f"intent:{seed}:{patient}")
    by_type: dict[str, list[dict]] = defaultdict(list)
    for r in resources:
        by_type[r.get("resourceType", "")].append(r)

    def ref(r: dict) -> str:
        return f"{r['resourceType']}/{r['id']}"

    targets: list[tuple[str, str, list[str], dict[str, str]]] = []
    allergies = by_type["AllergyIntolerance"]
    if allergies:
        targets.append(("allergies", "all", [ref(r) for r in allergies], {}))
    active = [r for r in by_type["MedicationRequest"] if r.get("status") == "active"]
    if active:
        targets.append(("active_medications", "status active", [ref(r) for r in active], {}))
    vaccines: dict[str, list[str]] = defaultdict(list)
    for r in by_type["Immunization"]:
        name = vaccine_name(_first_coding(r.get("vaccineCode")).get("display") or "")
        if name:
            vaccines[name].append(ref(r))
    if vaccines:
        name = rng.choice(sorted(vaccines))
        targets.append(("vaccine_list", name, vaccines[name], {"v": name}))
    procs: dict[str, list[str]] = defaultdict(list)
    for r in by_type["Procedure"]:
        disp = _first_coding(r.get("code")).get("display")
        if disp:
            procs[plain(disp)].append(ref(r))
    if procs:
        name = rng.choice(sorted(procs))
        targets.append(("procedure_list", name, procs[name], {"p": name}))
    visits: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in by_type["Encounter"]:
        code = (r.get("class") or {}).get("code")
        start = ((r.get("period") or {}).get("start") or "")[:4]
        if code in CLASS_WORDS and start.isdigit():
            visits[(CLASS_WORDS[code], start)].append(ref(r))
    if visits:
        c, y = rng.choice(sorted(visits))
        targets.append(("encounter_class_year", f"{c} {y}", visits[(c, y)], {"c": c, "y": y}))

    out = []
    for kind, target, gold, fill in targets:
        for template in phrasings.get(kind, ()):
            out.append(ListQuestion(patient=patient, query=template.format(**fill), gold=sorted(gold), kind=kind, target=target))
    return out
