"""Probe set s21: 40 patient questions in clinicians' own wording, gold computed here from raw FHIR.

Independent of the agent and of the evaluation's generators: the only project code used is the store opener
(to read raw resources) and the task/gold classes with ``make_task`` (to write a valid task file). Every
code list, reader and ambiguity check below is local to this script.

Each question is hand-written in SPECS (patient, wording, operation, parameters); the operation computes the
gold from the patient's raw resources and refuses (raises ``Ambiguous``) when the wording would not have one
clear answer: two different values on the asked day, a vaccine given twice on one day, a drug name that also
matches a combination product, a "no" for a patient with a related condition, etc.

Usage (from the repository root):
    .venv/bin/python docs/results/2026-12-03/s21/make_probe40.py     # writes probe40-tasks.jsonl next to it
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from ehr_agent.agent.eval.gen_common import make_task
from ehr_agent.agent.eval.tasks import (AgeGold, DateGold, DirectionGold, IntegerGold, QuantityGold, SetGold,
                                        YesNoGold, read_tasks)
from ehr_agent.tools.store import open_store

STORE = "/work/stores/blaze120"
HERE = Path(__file__).resolve().parent
OUT = HERE / "probe40-tasks.jsonl"
SOURCE = "probe-s21"

LOINC = "http://loinc.org"
CVX = "http://hl7.org/fhir/sid/cvx"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"


class Ambiguous(ValueError):
    """The question would not have one clear gold answer for this patient."""


# ------------------------------------------------------------------ local vocabulary (codes per lay name)
LABS: dict[str, set[str]] = {
    "a1c": {"4548-4"},
    "ldl": {"18262-6"},
    "hdl": {"2085-9"},
    "trig": {"2571-8"},
    "chol": {"2093-3"},
    "egfr": {"33914-3"},
    "bmi": {"39156-5"},
    "weight": {"29463-7"},
    "pulse": {"8867-4"},
    "sbp": {"8480-6"},
    "dbp": {"8462-4"},
    "hgb": {"718-7"},
    "glucose": {"2339-0", "2345-7"},
    "creat": {"38483-4", "2160-0"},
}
#: labs whose lay name spans two specimen codes: asked only of patients who have just one of them
ONE_CODE_ONLY = {"glucose", "creat"}

VACCINES: dict[str, set[str]] = {
    "flu": {"140"},
    "tetanus": {"113", "115"},      # Td, Tdap (a child's DTaP makes "tetanus shot" unclear: see VACCINE_CLASH)
    "tdap": {"115"},
    "pneumo": {"133", "33"},
    "shingles": {"121"},
    "hpv": {"62"},
    "mening": {"114"},
    "hepb": {"43", "08"},
    "hepa": {"52", "83"},
    "mmr": {"03"},
    "varicella": {"21"},
    "polio": {"10"},
    "dtap": {"20"},
    "hib": {"49"},
    "covid": {"207", "208", "210", "211", "212", "213", "217", "218", "219", "221", "228", "229", "230", "300",
              "301", "302"},
}
VACCINE_CLASH: dict[str, set[str]] = {"tetanus": {"20"}, "tdap": {"20", "113"}}

# Drugs by generic name: RxNorm codes, plus name fragments used to spot any other product (a combination,
# a hospital Medication resource) that the generic name would also cover.
DRUGS: dict[str, tuple[set[str], tuple[str, ...]]] = {
    "metformin": ({"860975"}, ("metformin",)),
    "lisinopril": ({"314076", "314077"}, ("lisinopril",)),
    "simvastatin": ({"314231", "312961"}, ("simvastatin",)),
    "amlodipine": ({"308136", "197361"}, ("amlodipine",)),
    "hctz": ({"310798"}, ("hydrochlorothiazide",)),
    "clopidogrel": ({"309362"}, ("clopidogrel",)),
    "warfarin": ({"855332"}, ("warfarin",)),
    "digoxin": ({"197604"}, ("digoxin",)),
    "verapamil": ({"897718"}, ("verapamil",)),
    "insulin": ({"106892"}, ("insulin",)),
    "nitroglycerin": ({"705129"}, ("nitroglycerin",)),
    "alendronate": ({"904419"}, ("alendron",)),
    "donepezil": ({"997223", "1100184"}, ("donepezil",)),
    "galantamine": ({"310436"}, ("galantamine",)),
    "memantine": ({"996740"}, ("memantine",)),
    "tramadol": ({"835603"}, ("tramadol",)),
    "ferrous": ({"310325"}, ("ferrous",)),
    "naproxen": ({"849574", "198014"}, ("naproxen",)),
    "fentanyl": ({"245134"}, ("fentanyl",)),
    "fluticasone": ({"895994"}, ("fluticasone",)),
    "loratadine": ({"665078"}, ("loratadine",)),
    "albuterol": ({"2123111", "245314"}, ("albuterol",)),
    "furosemide": ({"313988"}, ("furosemide",)),
    "carvedilol": ({"200033"}, ("carvedilol",)),
    "fluoxetine": ({"310385"}, ("fluoxetine",)),
}

# Conditions: SNOMED codes for the lay name, and words that, found in any other condition of the patient,
# make a "no" unclear (a prediabetic asked "diabetes?", a diabetic-kidney patient asked "kidney disease?").
CONDITIONS: dict[str, tuple[set[str], tuple[str, ...]]] = {
    "hypertension": ({"59621000"}, ("hypertens", "eclampsia", "blood pressure")),
    "diabetes": ({"44054006"}, ("diabet", "hyperglyc")),
    "prediabetes": ({"15777000"}, ("diabet", "hyperglyc")),
    "hyperlipidemia": ({"55822004"}, ("lipid", "cholesterol", "triglycer", "metabolic syndrome")),
    "ckd": ({"431855005", "431856006"}, ("kidney", "renal", "nephr", "microalbumin")),
    "asthma": ({"195967001", "233678006"}, ("asthma", "wheez")),
    "copd": ({"185086009", "87433001"}, ("obstructive", "emphysema", "chronic bronchitis")),
    "afib": ({"49436004"}, ("fibrillation", "arrhythm", "flutter")),
    "cad": ({"53741008"}, ("coronary", "heart", "cardiac", "myocard", "angina")),
    "stroke": ({"230690007"}, ("stroke", "cerebr", "infarct", "ischemic attack")),
    "osteoporosis": ({"64859006"}, ("osteopor", "osteopenia")),
    "alzheimers": ({"26929004"}, ("alzheim", "dementia", "cognitive")),
    "depression": ({"370143000"}, ("depress",)),
    "anemia": ({"271737000"}, ("anemia", "anaemia")),
    "seizure": ({"128613002"}, ("seizure", "epilep")),
    "osteoarthritis": ({"239873007", "239872002", "201834006"}, ("arthritis",)),
    "allergic_rhinitis": ({"232353008", "446096008", "367498001"}, ("rhinitis",)),
    "breast_cancer": ({"254837009"}, ("neoplasm", "cancer", "carcinoma", "malignan", "tumor")),
    "pe": ({"706870000"}, ("embol", "thromb")),
    "appendicitis": ({"74400008"}, ("append",)),
    "heart_failure": ({"84114007", "88805009"}, ("heart failure", "cardiac")),
    "eczema": ({"24079001"}, ("dermatitis", "eczema")),
    "obesity": ({"162864005", "408512008"}, ("obes", "body mass index")),
    "migraine": ({"124171000119105"}, ("migraine",)),
}

#: wellness visits (checkups): encounter types; "Encounter for check up" (185349003) is left out and a year
#: that has one is not asked about (it is used for more than routine checkups)
WELLNESS_TYPES = {"162673000", "410620009"}
UNCLEAR_CHECKUP_TYPES = {"185349003"}


# ------------------------------------------------------------------ raw readers
def codes(cc: dict | None, system: str | None = None) -> set[str]:
    return {c["code"] for c in (cc or {}).get("coding", [])
            if c.get("code") and (system is None or c.get("system") == system)}


def display(cc: dict | None) -> str:
    if not cc:
        return ""
    if cc.get("text"):
        return cc["text"].strip()
    for c in cc.get("coding", []):
        if c.get("display"):
            return c["display"].strip()
    return ""


def day_of(value: str | None) -> str | None:
    return value[:10] if isinstance(value, str) and len(value) >= 10 else None


def rid(r: dict) -> str:
    return f"{r['resourceType']}/{r['id']}"


def completed_years(birth: str, on: str) -> int:
    b, d = date.fromisoformat(birth), date.fromisoformat(on)
    return d.year - b.year - ((d.month, d.day) < (b.month, b.day))


def near_birthday(birth: str, on: str) -> bool:
    b, d = date.fromisoformat(birth), date.fromisoformat(on)
    for y in (d.year - 1, d.year, d.year + 1):
        try:
            anniv = b.replace(year=y)
        except ValueError:
            anniv = date(y, 3, 1)
        if abs((d - anniv).days) <= 1:
            return True
    return False


def tol(v: float) -> float:
    """Half a unit of the last decimal written (at most two decimals kept)."""
    s = repr(float(v))
    dec = 0 if "e" in s else len(s.split(".")[1].rstrip("0"))
    return 0.5 * 10 ** -min(dec, 2)


@dataclass
class Reading:
    day: str
    value: float
    unit: str
    code: str
    ref: str


@dataclass
class Rec:
    patient: dict
    by_type: dict[str, list[dict]] = field(default_factory=dict)
    med_names: dict[str, tuple[set[str], str]] = field(default_factory=dict)  # MR ref -> (rxnorm codes, name)

    @property
    def id(self) -> str:
        return self.patient["id"]

    def of(self, t: str) -> list[dict]:
        return self.by_type.get(t, [])

    @property
    def birth(self) -> str:
        return self.patient["birthDate"]

    @property
    def deceased(self) -> bool:
        return bool(self.patient.get("deceasedDateTime") or self.patient.get("deceasedBoolean"))

    @property
    def gender(self) -> str:
        return self.patient.get("gender", "")

    # labs and vitals -------------------------------------------------------------------------------
    def readings(self, lab: str) -> list[Reading]:
        want = LABS[lab]
        out = []
        for o in self.of("Observation"):
            if o.get("status") not in (None, "final", "amended", "corrected"):
                continue
            d = day_of(o.get("effectiveDateTime") or (o.get("effectivePeriod") or {}).get("start"))
            if not d:
                continue
            top = codes(o.get("code"), LOINC) & want
            vq = o.get("valueQuantity")
            if top and vq and "value" in vq:
                out.append(Reading(d, float(vq["value"]), vq.get("unit") or vq.get("code") or "", sorted(top)[0],
                                   rid(o)))
            for comp in o.get("component", []):
                cc = codes(comp.get("code"), LOINC) & want
                cq = comp.get("valueQuantity")
                if cc and cq and "value" in cq:
                    out.append(Reading(d, float(cq["value"]), cq.get("unit") or cq.get("code") or "",
                                       sorted(cc)[0], rid(o)))
        out.sort(key=lambda r: (r.day, r.ref))
        if out and lab in ONE_CODE_ONLY and len({r.code for r in out}) > 1:
            raise Ambiguous(f"{lab}: readings under two codes")
        if len({r.unit for r in out}) > 1:
            raise Ambiguous(f"{lab}: readings in two units {sorted({r.unit for r in out})}")
        return out

    # immunizations ---------------------------------------------------------------------------------
    def shots(self, vac: str) -> list[tuple[str, dict]]:
        want = VACCINES[vac]
        clash = VACCINE_CLASH.get(vac, set())
        hits, all_imm = [], []
        for im in self.of("Immunization"):
            if im.get("status", "completed") != "completed":
                continue
            d = day_of(im.get("occurrenceDateTime"))
            cs = codes(im.get("vaccineCode"), CVX)
            all_imm.append(cs)
            if cs & want and d:
                hits.append((d, im))
        if any(cs & clash for cs in all_imm):
            raise Ambiguous(f"{vac}: patient also has {sorted(clash)}")
        hits.sort(key=lambda x: x[0])
        days = Counter(d for d, _ in hits)
        if any(n > 1 for n in days.values()):
            raise Ambiguous(f"{vac}: two doses on one day")
        return hits

    # medications -----------------------------------------------------------------------------------
    def mr_codes_name(self, mr: dict) -> tuple[set[str], str]:
        if mr.get("medicationCodeableConcept"):
            cc = mr["medicationCodeableConcept"]
            return codes(cc, RXNORM), display(cc)
        return self.med_names.get(rid(mr), (set(), ""))

    def prescriptions(self, drug: str) -> list[tuple[str, dict]]:
        want, frags = DRUGS[drug]
        hits = []
        for mr in self.of("MedicationRequest"):
            cs, name = self.mr_codes_name(mr)
            low = name.lower()
            named = any(f in low for f in frags)
            if cs & want:
                d = day_of(mr.get("authoredOn"))
                if d:
                    hits.append((d, mr))
            elif named:
                raise Ambiguous(f"{drug}: other product also named so: {name}")
        hits.sort(key=lambda x: x[0])
        return hits

    # conditions ------------------------------------------------------------------------------------
    def condition_hits(self, cond: str) -> list[dict]:
        want, _ = CONDITIONS[cond]
        return [c for c in self.of("Condition") if codes(c.get("code"), SNOMED) & want]

    def related_conditions(self, cond: str) -> list[str]:
        want, words = CONDITIONS[cond]
        out = []
        for c in self.of("Condition"):
            name = display(c.get("code")).lower()
            if not (codes(c.get("code"), SNOMED) & want) and any(w in name for w in words):
                out.append(display(c.get("code")))
        return out


def load_record(store, pid: str) -> Rec:
    rec = Rec(patient=store.read("Patient", pid))
    for t in ("Condition", "Observation", "Encounter", "Immunization", "MedicationRequest",
              "AllergyIntolerance"):
        rec.by_type[t] = list(store.search_all(t, {"patient": pid, "_count": "1000"}))
    cache: dict[str, dict] = {}
    for mr in rec.of("MedicationRequest"):
        ref = (mr.get("medicationReference") or {}).get("reference")
        if not ref:
            continue
        if ref not in cache:
            typ, _, mid = ref.partition("/")
            cache[ref] = store.read(typ, mid)
        med = cache[ref]
        rec.med_names[rid(mr)] = (codes(med.get("code"), RXNORM), display(med.get("code")))
    return rec


# ------------------------------------------------------------------ operations (gold + refs)
def op_latest(rec: Rec, lab: str):
    rs = rec.readings(lab)
    if not rs:
        raise Ambiguous(f"no {lab}")
    return op_value_on(rec, lab, rs[-1].day)


def op_value_on(rec: Rec, lab: str, day: str):
    same = [r for r in rec.readings(lab) if r.day == day]
    if not same:
        raise Ambiguous(f"no {lab} on {day}")
    if len({r.value for r in same}) > 1:
        raise Ambiguous(f"{lab}: two values on {day}")
    v = same[0]
    return QuantityGold(value=v.value, unit=v.unit, tolerance=tol(v.value)), [r.ref for r in same], {"day": day}


def op_value_in_month(rec: Rec, lab: str, month: str):
    days = sorted({r.day for r in rec.readings(lab) if r.day[:7] == month})
    if len(days) != 1:
        raise Ambiguous(f"{lab}: {len(days)} reading days in {month}")
    return op_value_on(rec, lab, days[0])


MIN_GAP = 0.05


def op_direction(rec: Rec, lab: str, y1: str, y2: str):
    rs = rec.readings(lab)
    a = [r for r in rs if r.day[:4] == y1]
    b = [r for r in rs if r.day[:4] == y2]
    if not a or not b or y1 >= y2:
        raise Ambiguous(f"{lab}: no readings in {y1} or {y2}")
    hi_a, lo_a = max(r.value for r in a), min(r.value for r in a)
    hi_b, lo_b = max(r.value for r in b), min(r.value for r in b)
    if lo_b >= hi_a * (1 + MIN_GAP):
        g = "up"
    elif hi_b <= lo_a * (1 - MIN_GAP):
        g = "down"
    else:
        raise Ambiguous(f"{lab}: {y1}->{y2} too close or mixed")
    return DirectionGold(value=g), [r.ref for r in a + b], {"start_year": y1, "end_year": y2}


def op_last_vaccine(rec: Rec, vac: str):
    hits = rec.shots(vac)
    if not hits:
        raise Ambiguous(f"no {vac}")
    d, im = hits[-1]
    return DateGold(value=d), [rid(im)], {}


def op_first_vaccine(rec: Rec, vac: str):
    hits = rec.shots(vac)
    if not hits:
        raise Ambiguous(f"no {vac}")
    d, im = hits[0]
    return DateGold(value=d), [rid(im)], {}


def op_vaccine_count(rec: Rec, vac: str):
    hits = rec.shots(vac)
    refs = [rid(im) for _, im in hits] or [rid(rec.patient)]
    return IntegerGold(value=len(hits)), refs, {}


def op_first_rx(rec: Rec, drug: str):
    hits = rec.prescriptions(drug)
    if not hits:
        raise Ambiguous(f"no {drug}")
    first = hits[0][0]
    return DateGold(value=first), [rid(mr) for d, mr in hits if d == first], {}


def op_ever(rec: Rec, cond: str):
    hits = rec.condition_hits(cond)
    if hits:
        return YesNoGold(value=True), [rid(c) for c in hits], {"refs_mode": "any"}
    related = rec.related_conditions(cond)
    if related:
        raise Ambiguous(f"{cond}: no, but related {related}")
    return YesNoGold(value=False), [rid(rec.patient)], {}


def op_age_at_dx(rec: Rec, cond: str):
    hits = rec.condition_hits(cond)
    if not hits:
        raise Ambiguous(f"no {cond}")
    onsets = sorted((day_of(c.get("onsetDateTime") or c.get("recordedDate")), c) for c in hits)
    onset = onsets[0][0]
    if onset < rec.birth:
        raise Ambiguous("onset before birth")
    t = 1 if near_birthday(rec.birth, onset) else 0
    refs = [rid(rec.patient)] + [rid(c) for d, c in onsets if d == onset]
    return AgeGold(value=completed_years(rec.birth, onset), tolerance=t), refs, {"onset": onset}


def _encs(rec: Rec, kind: str, year: str) -> list[dict]:
    out = []
    for e in rec.of("Encounter"):
        d = day_of((e.get("period") or {}).get("start"))
        if not d or d[:4] != year:
            continue
        cls = (e.get("class") or {}).get("code")
        types = set().union(*(codes(t) for t in e.get("type", []))) if e.get("type") else set()
        if kind == "wellness":
            if cls == "AMB" and types & UNCLEAR_CHECKUP_TYPES:
                raise Ambiguous(f"{year}: an 'encounter for check up' makes the checkup count unclear")
            if cls == "AMB" and types & WELLNESS_TYPES:
                out.append(e)
        elif cls == kind:
            out.append(e)
    return out


def op_encounters(rec: Rec, kind: str, year: str):
    hits = _encs(rec, kind, year)
    if kind in ("IMP", "EMER"):
        # back-to-back encounters (isolation ward -> ICU -> observation) are one stay to a reader, several
        # encounters to the record: such a year has no single count
        spans = sorted(((e.get("period") or {}).get("start", ""), (e.get("period") or {}).get("end", "")) for e in hits)
        for (s1, e1), (s2, _) in zip(spans, spans[1:]):
            if s2[:10] <= (e1 or s1)[:10]:
                raise Ambiguous(f"{kind} {year}: contiguous encounters {s1[:10]} / {s2[:10]}")
    refs = [rid(e) for e in hits] or [rid(rec.patient)]
    return IntegerGold(value=len(hits)), refs, {"class": kind, "year": year}


def op_active_meds(rec: Rec):
    if rec.deceased:
        raise Ambiguous("deceased: no 'current' list")
    active, stopped, refs = set(), set(), []
    for mr in rec.of("MedicationRequest"):
        cs, name = rec.mr_codes_name(mr)
        if mr.get("status") == "active":
            if mr.get("medicationReference"):
                raise Ambiguous(f"active hospital medication left open: {name}")
            active.add(name)
            refs.append(rid(mr))
        else:
            stopped.add(name)
    if not active:
        raise Ambiguous("no active medication")
    return SetGold(items=sorted(active), distractors=sorted(stopped - active)), refs, {}


def op_allergies(rec: Rec, vocabulary: set[str]):
    items, refs = set(), []
    for a in rec.of("AllergyIntolerance"):
        st = codes(a.get("clinicalStatus"))
        if st != {"active"}:
            raise Ambiguous(f"allergy not active: {display(a.get('code'))} {st}")
        items.add(display(a.get("code")))
        refs.append(rid(a))
    if not items:
        raise Ambiguous("no allergies")
    return SetGold(items=sorted(items), distractors=sorted(vocabulary - items)), refs, {}


OPS = {
    "latest": op_latest,
    "value_on": op_value_on,
    "value_in_month": op_value_in_month,
    "direction": op_direction,
    "last_vaccine": op_last_vaccine,
    "first_vaccine": op_first_vaccine,
    "vaccine_count": op_vaccine_count,
    "first_rx": op_first_rx,
    "ever": op_ever,
    "age_at_diagnosis": op_age_at_dx,
    "encounters": op_encounters,
    "active_meds": op_active_meds,
    "allergies": op_allergies,
}

# ------------------------------------------------------------------ the 40 questions
P = {
    "5ad53a48": "5ad53a48-97ae-ca72-0ed8-0a31497f06cf",
    "098fc002": "098fc002-b87e-49dc-4b8e-8900a1bc8661",
    "ab5537a3": "ab5537a3-8608-5f56-53f5-d10b00eb4680",
    "897eba7c": "897eba7c-8b8c-7022-634f-8c69f0702b30",
    "da203ade": "da203ade-58db-ae38-3608-f20843a86759",
    "72b9ff2f": "72b9ff2f-b285-2dd1-b020-eb672210c016",
    "c1933e20": "c1933e20-95c2-61c5-684b-7554a943648b",
    "e8247f30": "e8247f30-fc71-a582-66e5-1c2c0c097fc8",
    "a47131c6": "a47131c6-a60c-4a8e-f099-0ae21c7969ff",
    "a8376487": "a8376487-72d8-ac29-a654-91f3622cc7a4",
    "effb1622": "effb1622-6779-27de-dd68-ba7a53a99eb2",
    "0696ac49": "0696ac49-3128-87d3-7344-04510aa4f324",
    "4b86befa": "4b86befa-fa7e-9285-615f-e081dab3f93c",
    "72376f6f": "72376f6f-a404-ee42-7c9a-45a6b0bdc9f2",
    "e1404dc3": "e1404dc3-4e21-84ae-cdcf-89d04084020c",
    "9478e08e": "9478e08e-4573-88e1-7ea2-1b757771da8b",
    "e3ba24ed": "e3ba24ed-aad7-86db-2646-4c510dfd7280",
    "ea84fe02": "ea84fe02-2e40-bf0f-da50-56d2786b8162",
    "1363ed76": "1363ed76-25b9-dc4f-6de7-6ee133d82db3",
    "c94995d9": "c94995d9-8ee6-7c32-2b54-acb14e716901",
    "dd92a3e7": "dd92a3e7-d1db-c15a-f8fe-e3847b7f07b1",
    "e660ef94": "e660ef94-5bfc-04d6-c321-c5baaf41cfb8",
    "ac22410a": "ac22410a-b0e0-31eb-5ff2-2a3a47f1cff0",
    "4fa27f17": "4fa27f17-62da-04b8-fcb6-81ba9f5e15af",
    "6a63e007": "6a63e007-a6e5-9252-0155-79221cb61b60",
    "897a61e0": "897a61e0-353b-25d1-7806-2a21710cb764",
    "a97a7383": "a97a7383-b712-e276-4cc1-51e4b4e84c13",
    "99e6bacf": "99e6bacf-7def-f6b6-5f1b-888241c8729a",
    "b6f92fa3": "b6f92fa3-b989-fa1b-aad8-aafb1020a5e9",
    "18be282b": "18be282b-67b9-d958-226a-c5510e5ef0c2",
    "36ab6ed1": "36ab6ed1-e43f-2903-2a7e-62df3a06702c",
    "83c9c542": "83c9c542-0421-9ccb-34f6-8c6876fe04e5",
    "9fa1e332": "9fa1e332-a3eb-52e2-d79a-62042a485967",
    "fee04478": "fee04478-ddcd-4fe8-02c4-d15fe97bbce3",
    "b08d10a2": "b08d10a2-5031-379f-0157-ddceb2196440",
}

# (category, patient, question, op, params)
SPECS: list[tuple[str, str, str, str, dict]] = [
    # latest value of a lab or vital (latest on record)
    ("latest_value", P["5ad53a48"], "Where is her LDL sitting these days? Give me the most recent number.",
     "latest", {"lab": "ldl"}),
    ("latest_value", P["098fc002"], "Pull up his most recent eGFR for me.", "latest", {"lab": "egfr"}),
    ("latest_value", P["ab5537a3"], "Last A1c we have on him?", "latest", {"lab": "a1c"}),
    ("latest_value", P["897eba7c"], "What did he weigh in at most recently?", "latest", {"lab": "weight"}),
    # value on a given day, or in a month that has a single reading day
    ("value_on_day", P["da203ade"], "His lipid panel from October 2013 - what was the LDL?",
     "value_in_month", {"lab": "ldl", "month": "2013-10"}),
    ("value_on_day", P["72b9ff2f"], "At the 5th of March 2016 encounter, how high was his systolic?",
     "value_on", {"lab": "sbp", "day": "2016-03-05"}),
    ("value_on_day", P["c1933e20"], "Need her Hgb from the labs drawn 13-May-2015.",
     "value_on", {"lab": "hgb", "day": "2015-05-13"}),
    ("value_on_day", P["e8247f30"], "What was his GFR back in May of 2019?",
     "value_in_month", {"lab": "egfr", "month": "2019-05"}),
    # direction between two years (every reading of one year beyond every reading of the other by 5%)
    ("up_or_down", P["a47131c6"], "Trend check on his triglycerides, 2014 -> 2020: which way did they go?",
     "direction", {"lab": "trig", "y1": "2014", "y2": "2020"}),
    ("up_or_down", P["a8376487"], "Between his 2013 and 2021 lipid panels, has the LDL been creeping up or improving?",
     "direction", {"lab": "ldl", "y1": "2013", "y2": "2021"}),
    ("up_or_down", P["effb1622"], "BMI trajectory from 2018 to 2021 for her - heading up or down?",
     "direction", {"lab": "bmi", "y1": "2018", "y2": "2021"}),
    ("up_or_down", P["0696ac49"], "Is her kidney function getting worse? Compare her eGFR in 2013 against 2019.",
     "direction", {"lab": "egfr", "y1": "2013", "y2": "2019"}),
    # first prescription of a drug (generic name)
    ("first_prescription", P["4b86befa"], "How long has he been on metformin? I need the original start date.",
     "first_rx", {"drug": "metformin"}),
    ("first_prescription", P["da203ade"], "When did we first put him on a statin (simvastatin)?",
     "first_rx", {"drug": "simvastatin"}),
    ("first_prescription", P["72376f6f"], "Date of her initial warfarin order?", "first_rx", {"drug": "warfarin"}),
    ("first_prescription", P["e1404dc3"], "Remind me when amlodipine got added to his regimen?",
     "first_rx", {"drug": "amlodipine"}),
    # ever diagnosed: 3 yes, 2 true negatives
    ("history", P["9478e08e"], "Does she carry a diagnosis of COPD?", "ever", {"cond": "copd"}),
    ("history", P["e3ba24ed"], "Any prior CVA for her?", "ever", {"cond": "stroke"}),
    ("history", P["ea84fe02"], "Is a seizure disorder documented for her?", "ever", {"cond": "seizure"}),
    ("history", P["1363ed76"], "Is he diabetic or not?", "ever", {"cond": "diabetes"}),
    ("history", P["c94995d9"], "Any kidney disease documented for her?", "ever", {"cond": "ckd"}),
    # age at diagnosis (completed years at the first onset)
    ("age_at_diagnosis", P["897eba7c"], "He's got chronic migraines - what age was he when they were first diagnosed?",
     "age_at_diagnosis", {"cond": "migraine"}),
    ("age_at_diagnosis", P["dd92a3e7"], "How old was she at her breast cancer dx?",
     "age_at_diagnosis", {"cond": "breast_cancer"}),
    ("age_at_diagnosis", P["e660ef94"], "AFib onset - how old was he?", "age_at_diagnosis", {"cond": "afib"}),
    ("age_at_diagnosis", P["ac22410a"], "She was diagnosed with asthma as an adult, right? At what age?",
     "age_at_diagnosis", {"cond": "asthma"}),
    # encounters of a class in a year
    ("visits_in_year", P["4fa27f17"], "Count of her ambulatory encounters during calendar year 2016?",
     "encounters", {"kind": "AMB", "year": "2016"}),
    ("visits_in_year", P["6a63e007"], "How many well-child checkups did she have in 2013?",
     "encounters", {"kind": "wellness", "year": "2013"}),
    ("encounters", P["897a61e0"], "How many times did she end up in the ER in 2016?",
     "encounters", {"kind": "EMER", "year": "2016"}),
    ("encounters", P["a97a7383"], "Was she admitted to the hospital in 2017, and if so how many times?",
     "encounters", {"kind": "IMP", "year": "2017"}),
    # vaccines: last dose, first dose, number of doses
    ("last_vaccine", P["99e6bacf"], "She had the shingles vaccine - when was the latest dose given?",
     "last_vaccine", {"vac": "shingles"}),
    ("last_vaccine", P["b6f92fa3"], "Is his pneumonia shot recent? When did he last receive one?",
     "last_vaccine", {"vac": "pneumo"}),
    ("last_vaccine", P["dd92a3e7"], "When was her last Td/Tdap booster given?", "last_vaccine", {"vac": "tetanus"}),
    ("immunizations", P["18be282b"], "When did he get his first hepatitis B dose?", "first_vaccine", {"vac": "hepb"}),
    ("vaccine_count", P["36ab6ed1"], "How many doses of the HPV vaccine does he have on record?",
     "vaccine_count", {"vac": "hpv"}),
    ("vaccine_count", P["83c9c542"], "Total number of flu vaccines he's received?", "vaccine_count", {"vac": "flu"}),
    ("vaccine_count", P["9fa1e332"], "How many COVID shots has she gotten?", "vaccine_count", {"vac": "covid"}),
    # lists: active medication orders, allergies
    ("medications", P["99e6bacf"], "What meds is she currently taking?", "active_meds", {}),
    ("medications", P["098fc002"], "Can you list his active prescriptions?", "active_meds", {}),
    ("allergies", P["fee04478"], "What's she allergic to?", "allergies", {}),
    ("allergies", P["b08d10a2"], "Does he have any allergies I should know about? List them.", "allergies", {}),
]


# ------------------------------------------------------------------ main
def allergy_vocabulary(store) -> set[str]:
    """Every allergy name in the store: the distractors of an allergy list."""
    return {display(a.get("code")) for a in store.search_all("AllergyIntolerance", {"_count": "1000"})}


def check_pronouns(rec: Rec, question: str) -> None:
    words = set(re.findall(r"[a-z']+", question.lower()))
    male, female = words & {"he", "his", "him", "he's"}, words & {"she", "her", "hers", "she's"}
    if (rec.gender == "male" and female) or (rec.gender == "female" and male):
        raise Ambiguous(f"pronouns of {question!r} do not match a {rec.gender} patient")


def build(recs: dict[str, Rec], vocab: set[str]):
    tasks = []
    for category, pid, question, op, params in SPECS:
        rec = recs[pid]
        if rec.deceased:
            raise Ambiguous(f"{pid}: deceased patient")
        check_pronouns(rec, question)
        args = dict(params)
        if op == "allergies":
            args["vocabulary"] = vocab
        gold, refs, extra = OPS[op](rec, **args)
        meta = {"op": op, **params, **{k: v for k, v in extra.items() if k != "refs_mode"}, "source": SOURCE}
        mode = extra.get("refs_mode", "any")
        task = make_task(category, pid, question, gold, refs, meta=meta, refs_mode=mode)
        tasks.append(task.model_copy(update={"source": "handwritten"}))  # hand-written wording, computed gold
    return tasks


def main() -> None:
    store = open_store(STORE)
    known = set(store.patient_ids())
    recs = {}
    for pid in dict.fromkeys(pid for _, pid, _, _, _ in SPECS):
        if pid not in known:
            raise SystemExit(f"patient {pid} is not in {STORE}")
        recs[pid] = load_record(store, pid)
    tasks = build(recs, allergy_vocabulary(store))
    OUT.write_text("".join(t.model_dump_json() + "\n" for t in tasks), encoding="utf-8")
    back = read_tasks(OUT)
    print(f"wrote {len(back)} tasks to {OUT}")
    print(dict(Counter(t.category for t in back)), "patients:", len({t.patient for t in back}))
    for t in back:
        print(f"{t.category:18} {t.patient[:8]} {t.question}  =>  {t.answer.display()}")


if __name__ == "__main__":
    main()
