"""Questions written by hand over specific synthea-blaze-120 patients, answered by code.

The wording of each question is ours, typed as a clinician or a relative might type it; no template is
shared with :mod:`agent.eval.gen_lay`. The gold is NOT typed here: each question names the computation
(``op`` and its parameters, the same ones the generated lay questions use) and
:func:`build_handwritten` computes the answer and its proof from the store. A question whose computation
has no clear answer in the store (a changed data set, a typo in a parameter) stops the build with its
number, instead of shipping a wrong gold.

Tasks carry ``source = "handwritten"`` and ``meta.style = "lay-handwritten"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .gen_common import make_task
from .gen_lay import LayFacts, compute
from .lay_vocab import concept
from .tasks import Task

# Patients (synthea-blaze-120 ids), named for readability only.
KA = "acd56837-aaab-5825-8f24-784319fc02df"          # woman, born 1965: prediabetes, A1c and LDL series
RAFAEL = "a47131c6-a60c-4a8e-f099-0ae21c7969ff"      # man, born 1963: high cholesterol on simvastatin
KARREN = "effb1622-6779-27de-dd68-ba7a53a99eb2"      # woman, born 1948: COPD, stroke in 2020
FOSTER = "7278ffc8-5b59-8cb5-8419-294639a9908f"      # boy, born 2012: asthma
DELICIA = "c94995d9-8ee6-7c32-2b54-acb14e716901"     # woman, born 1988: hypertension since her teens
SUDIE = "f0f322e5-2683-5a04-0e17-3b765f92072f"       # woman, born 1994: pulmonary embolism in 2020
BERENICE = "451e7c69-78b8-9bc9-b8a7-030c4a968215"    # girl, born 2011: strep, hay fever
NUMBERS = "a8376487-72d8-ac29-a654-91f3622cc7a4"     # man, born 1969: appendicitis as a teenager
RAYMUNDO = "3edde3b8-c705-5e74-5994-e69463d9fc69"    # boy, born 2010: sprained ankle
ERNESTO = "36ab6ed1-e43f-2903-2a7e-62df3a06702c"     # young man, born 2002: HPV series, broken ankle


@dataclass(frozen=True)
class Spec:
    """One hand-written question and the computation that answers it."""

    patient: str
    question: str
    category: str
    op: str
    params: dict = field(default_factory=dict)
    #: the question names a month, not a day: there must be exactly one reading in that month
    month_only: bool = False


SPECS: tuple[Spec, ...] = (
    # Ka
    Spec(KA, "She's prediabetic, right? How old was she when that was first picked up?", "age_at_diagnosis",
         "age_at_diagnosis", {"concept": "prediabetes"}),
    Spec(KA, "What was her A1c at the October 2019 checkup?", "value_on_day", "value_on",
         {"concept": "a1c", "day": "2019-10-18"}, month_only=True),
    Spec(KA, "her LDL from 2016 to 2019 - did it go up or come down?", "up_or_down", "direction",
         {"concept": "ldl", "start_year": "2016", "end_year": "2019"}),
    Spec(KA, "Since when has she been taking hydrochlorothiazide?", "first_prescription", "first_rx",
         {"concept": "hydrochlorothiazide"}),
    Spec(KA, "Did she get the shingles vaccine? Date of the last dose please", "last_vaccine", "last_vaccine",
         {"concept": "shingles"}),
    Spec(KA, "any asthma in her chart", "history", "ever", {"concept": "asthma"}),
    Spec(KA, "What's her most recent A1c?", "latest_value", "latest", {"concept": "a1c"}),
    # Rafael
    Spec(RAFAEL, "When was he put on simvastatin?", "first_prescription", "first_rx", {"concept": "simvastatin"}),
    Spec(RAFAEL, "He has high cholesterol - at what age was that diagnosed?", "age_at_diagnosis", "age_at_diagnosis",
         {"concept": "hyperlipidemia"}),
    Spec(RAFAEL, "kidney function (eGFR) in Nov 2017?", "value_on_day", "value_on",
         {"concept": "egfr", "day": "2017-11-13"}, month_only=True),
    Spec(RAFAEL, "A1c 2014 vs 2016, which way did it move?", "up_or_down", "direction",
         {"concept": "a1c", "start_year": "2014", "end_year": "2016"}),
    Spec(RAFAEL, "How many times did he see a doctor outside the hospital in 2013?", "visits_in_year", "visits_year",
         {"year": "2013"}),
    Spec(RAFAEL, "has he got diabetes?", "history", "ever", {"concept": "diabetes"}),
    # Karren
    Spec(KARREN, "did she have a stroke at some point?", "history", "ever", {"concept": "stroke"}),
    Spec(KARREN, "when was clopidogrel started for her", "first_prescription", "first_rx", {"concept": "clopidogrel"}),
    Spec(KARREN, "Did her weight drop or go up between 2019 and 2021?", "up_or_down", "direction",
         {"concept": "weight", "start_year": "2019", "end_year": "2021"}),
    Spec(KARREN, "pneumonia vaccine - when did she last have one?", "last_vaccine", "last_vaccine",
         {"concept": "pneumococcal"}),
    Spec(KARREN, "How old was she when her COPD was diagnosed?", "age_at_diagnosis", "age_at_diagnosis",
         {"concept": "copd"}),
    Spec(KARREN, "Systolic at her March 4th 2020 visit?", "value_on_day", "value_on",
         {"concept": "systolic", "day": "2020-03-04"}),
    # Foster
    Spec(FOSTER, "how old was the little guy when they diagnosed his asthma?", "age_at_diagnosis",
         "age_at_diagnosis", {"concept": "asthma"}),
    Spec(FOSTER, "When did they first give him an albuterol inhaler?", "first_prescription", "first_rx",
         {"concept": "albuterol"}),
    Spec(FOSTER, "When did he have his last MMR?", "last_vaccine", "last_vaccine", {"concept": "mmr"}),
    Spec(FOSTER, "What did he weigh at the Dec 30 2016 visit?", "value_on_day", "value_on",
         {"concept": "weight", "day": "2016-12-30"}),
    Spec(FOSTER, "Has he had ear infections?", "history", "ever", {"concept": "ear_infection"}),
    # Delicia
    Spec(DELICIA, "She's on lisinopril - when was it first ordered?", "first_prescription", "first_rx",
         {"concept": "lisinopril"}),
    Spec(DELICIA, "Has she ever been diagnosed with diabetes?", "history", "ever", {"concept": "diabetes"}),
    Spec(DELICIA, "how many outpatient visits did she have in 2019", "visits_in_year", "visits_year",
         {"year": "2019"}),
    Spec(DELICIA, "Did her BMI go up or down from 2015 to 2018?", "up_or_down", "direction",
         {"concept": "bmi", "start_year": "2015", "end_year": "2018"}),
    Spec(DELICIA, "last tetanus shot?", "last_vaccine", "last_vaccine", {"concept": "tetanus"}),
    # Sudie
    Spec(SUDIE, "Did she ever have a blood clot in her lungs?", "history", "ever", {"concept": "pulmonary_embolism"}),
    Spec(SUDIE, "When did she finish her hep B shots (date of the last one)?", "last_vaccine", "last_vaccine",
         {"concept": "hep_b"}),
    Spec(SUDIE, "When was she started on enoxaparin injections?", "first_prescription", "first_rx",
         {"concept": "enoxaparin"}),
    Spec(SUDIE, "how old was she when her blood pressure problem was diagnosed", "age_at_diagnosis",
         "age_at_diagnosis", {"concept": "hypertension"}),
    # Berenice
    Spec(BERENICE, "Has she had strep throat?", "history", "ever", {"concept": "strep"}),
    Spec(BERENICE, "when was she first prescribed penicillin", "first_prescription", "first_rx",
         {"concept": "penicillin"}),
    Spec(BERENICE, "Seasonal allergies - how old was she when diagnosed?", "age_at_diagnosis", "age_at_diagnosis",
         {"concept": "allergic_rhinitis"}),
    Spec(BERENICE, "How many office visits did she have in 2017?", "visits_in_year", "visits_year", {"year": "2017"}),
    # Numbers
    Spec(NUMBERS, "appendicitis ever?", "history", "ever", {"concept": "appendicitis"}),
    Spec(NUMBERS, "When did he get his most recent shingles shot?", "last_vaccine", "last_vaccine",
         {"concept": "shingles"}),
    Spec(NUMBERS, "Any history of high blood pressure for him?", "history", "ever", {"concept": "hypertension"}),
    Spec(NUMBERS, "How many flu shots has he had in total?", "vaccine_count", "vaccine_count", {"concept": "flu"}),
    # Raymundo
    Spec(RAYMUNDO, "Did he ever sprain his ankle?", "history", "ever", {"concept": "ankle_sprain"}),
    Spec(RAYMUNDO, "his last polio vaccine was when?", "last_vaccine", "last_vaccine", {"concept": "polio"}),
    # Ernesto
    Spec(ERNESTO, "Date of his last HPV dose?", "last_vaccine", "last_vaccine", {"concept": "hpv"}),
    Spec(ERNESTO, "has he ever broken his ankle", "history", "ever", {"concept": "ankle_fracture"}),
    Spec(ERNESTO, "How many HPV shots did he get?", "vaccine_count", "vaccine_count", {"concept": "hpv"}),
)


class HandwrittenError(ValueError):
    """A hand-written question that the store cannot answer clearly."""


def build_handwritten(records_by_id: dict, specs: tuple[Spec, ...] = SPECS) -> list[Task]:
    """The hand-written tasks, gold computed from ``records_by_id`` (patient id -> PatientRecord)."""
    out: list[Task] = []
    for i, s in enumerate(specs, 1):
        rec = records_by_id.get(s.patient)
        if rec is None:
            raise HandwrittenError(f"handwritten question {i} ({s.question!r}): patient {s.patient} is not in the store")
        facts = LayFacts(rec)
        fact = compute(facts, s.op, s.params)
        if fact is None:
            raise HandwrittenError(f"handwritten question {i} ({s.question!r}): no clear answer for {s.op} {s.params}")
        if s.month_only:
            days = {p.day for p in facts.concept_readings(concept(s.params["concept"])) or [] if p.day[:7] == s.params["day"][:7]}
            if len(days) != 1:
                raise HandwrittenError(f"handwritten question {i} ({s.question!r}): {len(days)} reading days in "
                                       f"{s.params['day'][:7]}, the month does not name one day")
        t = make_task(s.category, s.patient, s.question, fact.gold, fact.refs,
                      meta={"op": s.op, **s.params, "style": "lay-handwritten"}, refs_mode=fact.refs_mode)
        out.append(t.model_copy(update={"source": "handwritten"}))
    return out


def handwritten_tasks(store) -> list[Task]:
    """The hand-written tasks over a store (only their patients are read)."""
    from .generator import load_record

    ids = sorted({s.patient for s in SPECS})
    known = set(store.patient_ids())
    missing = [p for p in ids if p not in known]
    if missing:
        raise HandwrittenError(f"patient(s) of the handwritten questions not in the store: {', '.join(missing)} "
                               "(they are synthea-blaze-120 patients)")
    return build_handwritten({p: load_record(store, p) for p in ids})
