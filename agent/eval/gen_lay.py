"""Patient questions as people type them: lay names, pronouns, casual word order, gold from the raw record.

The facts are computed here from the raw FHIR resources of a :class:`~ehr_agent.agent.eval.fhirdata.PatientRecord`
(read through the store as the main generator does), grouped by the evaluation's own lay vocabulary
(:mod:`agent.eval.lay_vocab`). The same computations answer the hand-written questions
(:mod:`agent.eval.handwritten`), so a question's gold never depends on how it is worded.

A question is not emitted when its lay wording would be unclear for the patient: two different values on
the asked day, readings of one concept in two units, a code that overlaps the lay name (a child's DTaP for
"tetanus shot", a combination product for "acetaminophen"), a direction that depends on which reading of
a year one compares.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date

from .fhirdata import PatientRecord, clinical_datetime, clinical_day, ref
from .gen_clinical import age_on
from .gen_common import make_task, tolerance_for
from .lay_vocab import CONDITIONS, DRUGS, EVERYDAY_LABS, PRONOUNS, VACCINES, Concept, concept, spoken_day
from .tasks import AgeGold, DateGold, DirectionGold, IntegerGold, QuantityGold, Task, YesNoGold

#: categories of the lay sample, one per question kind
CATEGORIES = ("history", "age_at_diagnosis", "value_on_day", "up_or_down", "visits_in_year",
              "first_prescription", "last_vaccine")

#: a negative history question is asked only about conditions at least this many patients have
COMMON_CONDITION_PATIENTS = 3
#: smallest relative gap between the two years' readings for an up/down question (closer is too close to call)
MIN_DIRECTION_GAP = 0.03

HISTORY = [
    "any history of {c}?",
    "any hx of {c}?",
    "Has {subj} ever had {c}?",
    "does {subj} have a history of {c}",
    "Ever been diagnosed with {c}?",
    "Is there {c} anywhere in {pos} history?",
    "did {subj} ever have {c}?",
]
AGE = [
    "How old was {subj} when {subj} was diagnosed with {c}?",
    "age at {c} diagnosis?",
    "what age was {subj} diagnosed with {c}",
    "{c}: how old was {subj} at diagnosis?",
    "At what age did {subj} get {c}?",
    "how old when the {c} was first diagnosed?",
]
VALUE = [
    "what was {pos} {n} on {d}?",
    "{n} on {d}?",
    "On {d}, what was {pos} {n}?",
    "{pos} {n} at the {d} visit?",
    "Can you tell me {pos} {n} from {d}?",
    "what did {pos} {n} read on {d}",
]
DIRECTION = [
    "was {pos} {n} up or down from {y1} to {y2}?",
    "did {pos} {n} go up or down between {y1} and {y2}?",
    "{n} {y1} vs {y2}: higher or lower?",
    "Comparing {y1} with {y2}, did {pos} {n} rise or fall?",
    "was {pos} {n} higher or lower in {y2} than in {y1}?",
    "{y1} to {y2}, {n} trending up or down?",
]
VISITS = [
    "how many office visits did {subj} have in {y}?",
    "number of outpatient visits in {y}?",
    "In {y}, how many outpatient appointments did {subj} have?",
    "{y}: how many ambulatory visits?",
    "how many clinic visits (not ER, not hospital stays) did {subj} have in {y}?",
    "How often did {subj} see the doctor as an outpatient in {y}?",
]
FIRST_RX = [
    "when did {subj} start on {m}?",
    "When was {subj} first prescribed {m}?",
    "first {m} prescription - what date?",
    "When did {pos} doctor first put {obj} on {m}?",
    "date {subj} was started on {m}?",
    "What date was {m} first ordered for {obj}?",
]
LAST_VACCINE = [
    "when was {pos} last {v}?",
    "date of {pos} most recent {v}?",
    "When did {subj} last get {pos} {v}?",
    "last {v} - when?",
    "What's the date of {pos} latest {v}?",
    "{v}: when was the last one?",
]


@dataclass(frozen=True)
class Reading:
    """One value of a lab or vital concept (a component of a panel counts, proven by the panel)."""

    when: str
    day: str
    value: float
    unit: str
    ref: str


@dataclass(frozen=True)
class Fact:
    """A computed answer: the gold, the resources that prove it, and how many of them one must read."""

    gold: object
    refs: list[str]
    refs_mode: str = "all"


def codings(cc: dict | None) -> set[str]:
    """``system|code`` of every coding of a CodeableConcept."""
    return {f"{c.get('system', '')}|{c['code']}" for c in (cc or {}).get("coding", []) if c.get("code")}


class LayFacts:
    """One patient's record indexed by the codes the lay vocabulary uses."""

    def __init__(self, rec: PatientRecord):
        self.rec = rec
        self.gender = rec.patient.get("gender")
        self.birth = (rec.patient.get("birthDate") or "")[:10] or None
        self._codes: set[str] = set()
        self.conditions: list[tuple[set[str], dict]] = []
        for c in rec.of("Condition"):
            if clinical_day(c):
                keys = codings(c.get("code"))
                self.conditions.append((keys, c))
                self._codes |= keys
        self.immunizations: list[tuple[set[str], dict]] = []
        for i in rec.of("Immunization"):
            if i.get("status", "completed") == "completed" and clinical_day(i):
                keys = codings(i.get("vaccineCode"))
                self.immunizations.append((keys, i))
                self._codes |= keys
        self.prescriptions: list[tuple[set[str], dict]] = []
        for m in rec.of("MedicationRequest"):
            keys = self._drug_codes(m)
            if clinical_day(m):
                self.prescriptions.append((keys, m))
                self._codes |= keys
        self.readings: dict[str, list[Reading]] = defaultdict(list)
        for o in rec.of("Observation"):
            when = clinical_datetime(o)
            if not when:
                continue
            parts = [(o.get("code"), o.get("valueQuantity"))]
            parts += [(c.get("code"), c.get("valueQuantity")) for c in o.get("component", [])]
            for cc, vq in parts:
                v = (vq or {}).get("value")
                unit = (vq or {}).get("unit") or (vq or {}).get("code")
                if not isinstance(v, (int, float)) or isinstance(v, bool) or not unit:
                    continue
                for key in codings(cc):
                    self.readings[key].append(Reading(when, when[:10], float(v), unit, ref(o)))
                    self._codes.add(key)

    def _drug_codes(self, mr: dict) -> set[str]:
        if mr.get("medicationCodeableConcept"):
            return codings(mr["medicationCodeableConcept"])
        target = (mr.get("medicationReference") or {}).get("reference") or ""
        med = self.rec.medications.get(target)
        return codings(med.get("code")) if med else set()

    def pronouns(self) -> dict[str, str] | None:
        """he/him/his or she/her/her; ``None`` for a gender the phrasings do not cover."""
        return PRONOUNS.get(self.gender or "")

    def unclear(self, c: Concept) -> bool:
        """The patient has a code that overlaps the concept's lay name."""
        return bool(self._codes & c.ambiguous_keys())

    def has_any(self, c: Concept) -> bool:
        return bool(self._codes & c.keys())

    def concept_readings(self, c: Concept) -> list[Reading] | None:
        """Readings of a lab concept sorted by time; ``None`` when unclear (mixed units, overlapping code)."""
        pts = sorted((r for k in sorted(c.keys()) for r in self.readings.get(k, [])), key=lambda r: (r.when, r.ref))
        if not pts or self.unclear(c) or len({p.unit for p in pts}) > 1:
            return None
        return pts

    def of(self, items: list[tuple[set[str], dict]], c: Concept) -> list[dict]:
        return [r for keys, r in items if keys & c.keys()]

    def ambulatory(self) -> list[dict]:
        return [e for e in self.rec.of("Encounter")
                if (e.get("class") or {}).get("code") == "AMB" and clinical_day(e)]


# ---------------------------------------------------------------- the computations (one per op)
def near_birthday(birth: str, on: str) -> bool:
    """``on`` falls within a day of the birthday in its year (or the next/previous one)."""
    b, d = date.fromisoformat(birth), date.fromisoformat(on)
    for y in (d.year - 1, d.year, d.year + 1):
        try:
            anniversary = b.replace(year=y)
        except ValueError:  # 29 February in a common year: the day after 28 February
            anniversary = date(y, 3, 1)
        if abs((d - anniversary).days) <= 1:
            return True
    return False


def fact_ever(f: LayFacts, c: Concept) -> Fact | None:
    """Yes when a condition of the concept is on record; no only when no overlapping code muddies it."""
    hits = f.of(f.conditions, c)
    if not hits and f.unclear(c):
        return None
    return Fact(YesNoGold(value=bool(hits)), [ref(r) for r in hits], "any" if hits else "all")


def fact_age_at_diagnosis(f: LayFacts, c: Concept) -> Fact | None:
    hits = f.of(f.conditions, c)
    if not hits or f.unclear(c) or not f.birth:
        return None
    onset = min(clinical_day(r) for r in hits)
    if onset < f.birth:
        return None
    tol = 1 if near_birthday(f.birth, onset) else 0
    return Fact(AgeGold(value=age_on(f.birth, onset), tolerance=tol),
                [ref(f.rec.patient), *(ref(r) for r in hits if clinical_day(r) == onset)])


def fact_value_on(f: LayFacts, c: Concept, day: str) -> Fact | None:
    pts = f.concept_readings(c)
    same = [p for p in pts or [] if p.day == day]
    if not same or len({p.value for p in same}) > 1:
        return None
    v = same[0]
    return Fact(QuantityGold(value=v.value, unit=v.unit, tolerance=tolerance_for(v.value)), [p.ref for p in same])


def fact_latest(f: LayFacts, c: Concept) -> Fact | None:
    pts = f.concept_readings(c)
    return fact_value_on(f, c, pts[-1].day) if pts else None


def fact_direction(f: LayFacts, c: Concept, y1: str, y2: str) -> Fact | None:
    """Up or down from year ``y1`` to ``y2``: asked only when every reading of ``y2`` is above (or below)
    every reading of ``y1`` by at least :data:`MIN_DIRECTION_GAP`, so any pair one compares agrees."""
    pts = f.concept_readings(c) or []
    a = [p for p in pts if p.day[:4] == y1]
    b = [p for p in pts if p.day[:4] == y2]
    if not a or not b or y1 >= y2:
        return None
    lo_a, hi_a = min(p.value for p in a), max(p.value for p in a)
    lo_b, hi_b = min(p.value for p in b), max(p.value for p in b)
    if hi_a and (lo_b - hi_a) / abs(hi_a) >= MIN_DIRECTION_GAP:
        direction = "up"
    elif lo_a and (lo_a - hi_b) / abs(lo_a) >= MIN_DIRECTION_GAP:
        direction = "down"
    else:
        return None
    return Fact(DirectionGold(value=direction), [p.ref for p in a + b])


def fact_visits(f: LayFacts, year: str) -> Fact | None:
    hits = [e for e in f.ambulatory() if clinical_day(e)[:4] == year]
    return Fact(IntegerGold(value=len(hits)), [ref(e) for e in hits]) if hits else None


def fact_first_rx(f: LayFacts, c: Concept) -> Fact | None:
    hits = f.of(f.prescriptions, c)
    if not hits or f.unclear(c):
        return None
    first = min(clinical_day(r) for r in hits)
    return Fact(DateGold(value=first), [ref(r) for r in hits if clinical_day(r) == first])


def fact_last_vaccine(f: LayFacts, c: Concept) -> Fact | None:
    hits = f.of(f.immunizations, c)
    if not hits or f.unclear(c):
        return None
    last = max(clinical_day(r) for r in hits)
    return Fact(DateGold(value=last), [ref(r) for r in hits if clinical_day(r) == last])


def fact_vaccine_count(f: LayFacts, c: Concept, year: str | None = None) -> Fact | None:
    hits = [r for r in f.of(f.immunizations, c) if year is None or clinical_day(r)[:4] == year]
    if f.unclear(c) or not f.of(f.immunizations, c):
        return None
    return Fact(IntegerGold(value=len(hits)), [ref(r) for r in hits] or [ref(f.rec.patient)])


OPS: dict[str, Callable[..., Fact | None]] = {
    "ever": lambda f, p: fact_ever(f, concept(p["concept"])),
    "age_at_diagnosis": lambda f, p: fact_age_at_diagnosis(f, concept(p["concept"])),
    "value_on": lambda f, p: fact_value_on(f, concept(p["concept"]), p["day"]),
    "latest": lambda f, p: fact_latest(f, concept(p["concept"])),
    "direction": lambda f, p: fact_direction(f, concept(p["concept"]), p["start_year"], p["end_year"]),
    "visits_year": lambda f, p: fact_visits(f, p["year"]),
    "first_rx": lambda f, p: fact_first_rx(f, concept(p["concept"])),
    "last_vaccine": lambda f, p: fact_last_vaccine(f, concept(p["concept"])),
    "vaccine_count": lambda f, p: fact_vaccine_count(f, concept(p["concept"]), p.get("year")),
}


def compute(facts: LayFacts, op: str, params: dict) -> Fact | None:
    """The answer to ``op`` with ``params`` for one patient; ``None`` when the question would be unclear."""
    if op not in OPS:
        raise KeyError(f"unknown lay op {op!r} (known: {', '.join(sorted(OPS))})")
    return OPS[op](facts, params)


# ---------------------------------------------------------------- phrasing and candidates
def _say(rng: random.Random, templates: list[str], pr: dict[str, str], **kw: str) -> str:
    """One phrasing, filled in; a template that opens with a plain word is capitalised half the time (people
    type both), one that opens with a name keeps the name's own case ("eGFR", "A1c")."""
    t = rng.choice(templates)
    q = t.format(**pr, **kw)
    return q[0].upper() + q[1:] if t[0].islower() and rng.random() < 0.5 else q


def _task(category: str, f: LayFacts, question: str, fact: Fact, meta: dict) -> Task:
    return make_task(category, f.rec.id, question, fact.gold, fact.refs, meta={**meta, "style": "lay"},
                     refs_mode=fact.refs_mode)


def common_conditions(facts: Iterable[LayFacts], minimum: int = COMMON_CONDITION_PATIENTS) -> list[str]:
    """Keys of the condition concepts at least ``minimum`` patients have (for true-negative questions)."""
    counts = Counter(c.key for f in facts for c in CONDITIONS if f.of(f.conditions, c))
    return sorted(k for k, n in counts.items() if n >= minimum)


def candidates(f: LayFacts, rng: random.Random, common: list[str]) -> list[Task]:
    """This patient's lay questions, at most one per kind (two for history: one yes, one no)."""
    pr = f.pronouns()
    if pr is None:
        return []
    out: list[Task] = []

    def name(c: Concept) -> str:
        return rng.choice(c.names)

    present = [c for c in CONDITIONS if f.of(f.conditions, c)]
    if present:
        c = rng.choice(present)
        fact = fact_ever(f, c)
        out.append(_task("history", f, _say(rng, HISTORY, pr, c=name(c)), fact,
                         {"op": "ever", "concept": c.key, "stratum": "yes"}))
    absent = [concept(k) for k in common if not concept(k).keys() & f._codes and not f.unclear(concept(k))]
    if absent:
        c = rng.choice(absent)
        fact = fact_ever(f, c)
        out.append(_task("history", f, _say(rng, HISTORY, pr, c=name(c)), fact,
                         {"op": "ever", "concept": c.key, "stratum": "no"}))
    chronic = [c for c in present if c.chronic and not f.unclear(c)]
    if chronic:
        c = rng.choice(chronic)
        if (fact := fact_age_at_diagnosis(f, c)):
            out.append(_task("age_at_diagnosis", f, _say(rng, AGE, pr, c=name(c)), fact,
                             {"op": "age_at_diagnosis", "concept": c.key, "stratum": c.key}))
    labs = [concept(k) for k in EVERYDAY_LABS if f.concept_readings(concept(k))]
    if labs:
        c = rng.choice(labs)
        n = name(c)
        d = rng.choice(f.concept_readings(c)).day
        if (fact := fact_value_on(f, c, d)):
            q = _say(rng, VALUE, pr, n=n, d=spoken_day(d, rng.randrange(5)))
            out.append(_task("value_on_day", f, q, fact,
                             {"op": "value_on", "concept": c.key, "day": d, "name": n, "stratum": c.key}))
        trend = [c for c in labs if len({p.day[:4] for p in f.concept_readings(c)}) >= 2]
        rng.shuffle(trend)
        for c in trend[:3]:
            years = sorted({p.day[:4] for p in f.concept_readings(c)})
            pairs = [(a, b) for i, a in enumerate(years) for b in years[i + 1:]
                     if fact_direction(f, c, a, b) is not None]
            if pairs:
                y1, y2 = rng.choice(pairs)
                n = name(c)
                out.append(_task("up_or_down", f, _say(rng, DIRECTION, pr, n=n, y1=y1, y2=y2),
                                 fact_direction(f, c, y1, y2),
                                 {"op": "direction", "concept": c.key, "start_year": y1, "end_year": y2, "name": n,
                                  "stratum": fact_direction(f, c, y1, y2).gold.value}))
                break
    years = sorted({clinical_day(e)[:4] for e in f.ambulatory()})
    if years:
        y = rng.choice(years)
        out.append(_task("visits_in_year", f, _say(rng, VISITS, pr, y=y), fact_visits(f, y),
                         {"op": "visits_year", "year": y, "stratum": "many" if fact_visits(f, y).gold.value > 3
                          else "few"}))
    drugs = [c for c in DRUGS if f.of(f.prescriptions, c) and not f.unclear(c)]
    if drugs:
        c = rng.choice(drugs)
        out.append(_task("first_prescription", f, _say(rng, FIRST_RX, pr, m=name(c)), fact_first_rx(f, c),
                         {"op": "first_rx", "concept": c.key, "stratum": c.key}))
    vaccines = [c for c in VACCINES if f.of(f.immunizations, c) and not f.unclear(c)]
    if vaccines:
        c = rng.choice(vaccines)
        out.append(_task("last_vaccine", f, _say(rng, LAST_VACCINE, pr, v=name(c)), fact_last_vaccine(f, c),
                         {"op": "last_vaccine", "concept": c.key, "stratum": c.key}))
    return out


def generate_from_records(records: list[PatientRecord], seed: int = 0) -> list[Task]:
    """Lay questions for every record (negatives drawn from conditions common among ``records``)."""
    facts = [LayFacts(r) for r in sorted(records, key=lambda r: r.id)]
    common = common_conditions(facts)
    tasks: list[Task] = []
    for f in facts:
        tasks.extend(candidates(f, random.Random(f"{seed}:{f.rec.id}:lay"), common))
    return tasks


def load_all(store, progress: Callable[[int, int], None] | None = None) -> list[PatientRecord]:
    """Every patient of a store as raw records (as the main generator reads them)."""
    from .generator import load_record

    ids = store.patient_ids()
    out = []
    for i, pid in enumerate(ids, 1):
        out.append(load_record(store, pid))
        if progress:
            progress(i, len(ids))
    return out


def generate_lay_tasks(store, seed: int = 0) -> list[Task]:
    """Lay questions over every patient of ``store``."""
    return generate_from_records(load_all(store), seed)


__all__ = ["CATEGORIES", "LayFacts", "Fact", "compute", "generate_from_records", "generate_lay_tasks", "load_all",
           "near_birthday"]
