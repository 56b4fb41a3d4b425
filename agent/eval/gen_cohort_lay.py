"""Population questions as people type them: vaccines by year, diagnoses ever, hospital stays by sex and year.

Counts are computed over every patient's raw record (``patient`` is ``None``), with the lay vocabulary of
:mod:`agent.eval.lay_vocab`. A count whose lay wording is unclear is not asked: a concept some patients hold
only through an overlapping code ("suspected COVID-19" without COVID-19, a child's DTaP in the year asked
about "tetanus shots").
"""

from __future__ import annotations

import random
from collections import defaultdict

from .fhirdata import PatientRecord, clinical_day, ref
from .gen_common import make_task
from .gen_lay import LayFacts
from .lay_vocab import CONDITIONS, VACCINES, Concept, concept
from .sample import interleave_categories
from .tasks import IntegerGold, Task

CATEGORIES = ("cohort_vaccine", "cohort_condition", "cohort_inpatient")

VACCINE_Q = [
    "How many patients received {a} {v} in {y}?",
    "how many people got the {v} in {y}?",
    "{y}: number of patients given {a} {v}?",
    "How many different patients had {a} {v} during {y}?",
    "count of patients with {a} {v} in {y}",
]
CONDITION_Q = [
    "How many patients have ever been diagnosed with {c}?",
    "how many people in the data have had {c}?",
    "Number of patients with any history of {c}?",
    "how many patients have {c} on record, ever?",
    "Across everyone, how many patients were ever diagnosed with {c}?",
]
STAY_PATIENTS_Q = [
    "How many {g} were admitted to the hospital in {y}?",
    "how many {g} had a hospital stay in {y}?",
    "{y}: number of {g} with at least one inpatient stay?",
    "How many {g} spent time as inpatients in {y}?",
]
STAY_COUNT_Q = [
    "How many inpatient stays did {g} have in {y} in total?",
    "total number of hospital admissions for {g} in {y}?",
    "{y}: how many inpatient admissions were there among {g}?",
    "Count the hospital stays of {g} that started in {y}.",
]
GROUP = {"female": ["women", "female patients"], "male": ["men", "male patients"]}

#: the question the issue reports, asked as written (its count is checked against the data by a test)
FLU_2019 = ("flu", "2019", "How many patients received a flu shot in 2019?")


def _vaccine_counts(facts: list[LayFacts]) -> dict[tuple[str, str], dict[str, list[dict]]]:
    """``(concept, year) -> patient id -> that patient's doses in the year``, for clear (concept, year) pairs."""
    out: dict[tuple[str, str], dict[str, list[dict]]] = defaultdict(dict)
    unclear: set[tuple[str, str]] = set()
    for f in facts:
        for c in VACCINES:
            by_year: dict[str, list[dict]] = defaultdict(list)
            for r in f.of(f.immunizations, c):
                by_year[clinical_day(r)[:4]].append(r)
            for y, doses in by_year.items():
                out[(c.key, y)][f.rec.id] = doses
            for keys, r in f.immunizations:
                y = clinical_day(r)[:4]
                if keys & c.ambiguous_keys() and y not in by_year:
                    unclear.add((c.key, y))
    return {k: v for k, v in out.items() if k not in unclear}


def _condition_counts(facts: list[LayFacts]) -> dict[str, dict[str, list[dict]]]:
    """``concept -> patient id -> Conditions``, for concepts no patient holds only through an overlapping code."""
    out: dict[str, dict[str, list[dict]]] = {}
    for c in CONDITIONS:
        hits = {f.rec.id: f.of(f.conditions, c) for f in facts if f.of(f.conditions, c)}
        if any(f.unclear(c) and f.rec.id not in hits for f in facts):
            continue
        out[c.key] = hits
    return out


def _refs(hits: dict[str, list[dict]]) -> list[str]:
    return [f"Patient/{p}" for p in hits] + [ref(r) for rs in hits.values() for r in rs]


def article(name: str) -> str:
    """"a" or "an" as the name is spoken ("an HPV shot", "an MMR", "a hep B shot", "an influenza vaccine")."""
    if name[:2].isupper():  # an initialism is read letter by letter
        return "an" if name[0] in "AEFHILMNORSX" else "a"
    return "an" if name[0].lower() in "aeiou" else "a"


def _say(rng: random.Random, templates: list[str], **kw: str) -> str:
    t = rng.choice(templates)
    q = t.format(**kw)
    return q[0].upper() + q[1:] if t[0].islower() and rng.random() < 0.5 else q


def generate_from_records(records: list[PatientRecord], seed: int = 0, per_kind: int = 8) -> list[Task]:
    """``per_kind`` questions of each cohort kind, interleaved; the flu-2019 question is always the first."""
    rng = random.Random(f"{seed}:cohort-lay")
    facts = [LayFacts(r) for r in sorted(records, key=lambda r: r.id)]
    tasks: dict[str, list[Task]] = {c: [] for c in CATEGORIES}

    vacc = _vaccine_counts(facts)
    key, year, question = FLU_2019
    if (key, year) in vacc:
        hits = vacc[(key, year)]
        tasks["cohort_vaccine"].append(make_task("cohort_vaccine", None, question, IntegerGold(value=len(hits)),
                                                 _refs(hits), meta={"op": "vaccine_year", "concept": key,
                                                                    "year": year, "name": "flu shot", "style": "lay"}))
    # Recent years only: a population question about 1966 is not one people ask of this data.
    pairs = sorted(k for k, v in vacc.items() if len(v) >= 2 and k != (key, year) and k[1] >= "2000")
    for k, y in rng.sample(pairs, min(per_kind - len(tasks["cohort_vaccine"]), len(pairs))):
        c: Concept = concept(k)
        n = rng.choice(c.names)
        hits = vacc[(k, y)]
        tasks["cohort_vaccine"].append(make_task("cohort_vaccine", None, _say(rng, VACCINE_Q, v=n, y=y, a=article(n)),
                                                 IntegerGold(value=len(hits)), _refs(hits),
                                                 meta={"op": "vaccine_year", "concept": k, "year": y, "name": n,
                                                       "style": "lay"}))
    conds = _condition_counts(facts)
    keys = sorted(k for k, v in conds.items() if len(v) >= 2)
    for k in rng.sample(keys, min(per_kind, len(keys))):
        n = rng.choice(concept(k).names)
        hits = conds[k]
        tasks["cohort_condition"].append(make_task("cohort_condition", None, _say(rng, CONDITION_Q, c=n),
                                                   IntegerGold(value=len(hits)), _refs(hits),
                                                   meta={"op": "condition_ever", "concept": k, "name": n,
                                                         "style": "lay"}))
    stays: dict[tuple[str, str], dict[str, list[dict]]] = defaultdict(dict)
    for f in facts:
        for e in f.rec.of("Encounter"):
            if (e.get("class") or {}).get("code") == "IMP" and clinical_day(e) and f.gender in GROUP:
                stays[(f.gender, clinical_day(e)[:4])].setdefault(f.rec.id, []).append(e)
    cells = sorted(k for k, v in stays.items() if len(v) >= 2 and k[1] >= "2000")
    for i, (g, y) in enumerate(rng.sample(cells, min(per_kind, len(cells)))):
        hits = stays[(g, y)]
        words = rng.choice(GROUP[g])
        if i % 2 == 0:
            q, gold, op = _say(rng, STAY_PATIENTS_Q, g=words, y=y), len(hits), "inpatient_patients"
        else:
            q, gold, op = _say(rng, STAY_COUNT_Q, g=words, y=y), sum(len(v) for v in hits.values()), "inpatient_stays"
        tasks["cohort_inpatient"].append(make_task("cohort_inpatient", None, q, IntegerGold(value=gold), _refs(hits),
                                                   meta={"op": op, "gender": g, "year": y, "style": "lay"}))
    return interleave_categories([t for c in CATEGORIES for t in tasks[c]])


def generate_cohort_lay_tasks(store, seed: int = 0, per_kind: int = 8) -> list[Task]:
    """Cohort lay questions over every patient of ``store``."""
    from .gen_lay import load_all

    return generate_from_records(load_all(store), seed, per_kind)
