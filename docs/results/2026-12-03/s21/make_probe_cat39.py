"""Probe set s21-cat: 39 single-patient questions, 3 per evaluation category, in clinicians' own wording.

The gold is computed here from the raw Synthea bundles (``/work/shared/data/synthea-blaze-120``, one
``<patient id>.json.bz2`` or ``.json`` per patient), read with bz2/json by this script alone: no project reader,
store or generator is used. The only project code imported is ``make_task``, the gold classes and
``read_tasks`` (to write a valid task file and read it back).

Each question is written by hand in SPECS (category, patient, wording, operation, parameters). The operation
computes the gold from the patient's resources and refuses (raises ``Ambiguous``) when the wording would not
have one clear answer, among others:

* two different values of the asked measurement on the asked day, or readings under two codes / two units;
* an event whose calendar day differs between the record's own offset and UTC (a reader normalising times
  could see another day), for every question that names or answers a day;
* two doses of the asked vaccine on one day, a childhood DTaP next to "tetanus" questions;
* a "current" question for a deceased patient; an active care plan whose addressed condition is resolved;
* a "no" allergy answer for a patient with a related allergy (nut / peanut, fish / shellfish) or an
  inactive allergy entry;
* a condition asked "still active?" or "when resolved?" that has more than one episode;
* several notes on the asked day (or on the latest note day) that disagree;
* a year whose ER or inpatient encounters run back to back (one stay to a reader, several to the record).

Categories follow docs/results/sample104.jsonl (allergies, care_plans, conditions, demographics, encounters,
immunizations, medications, notes, observation_at_date, observation_earliest, observation_latest,
observation_trend, procedures); "today" for the agent is 2026-12-02.

Usage (from the repository root):
    .venv/bin/python docs/results/2026-12-03/s21/make_probe_cat39.py   # writes probe-cat39-tasks.jsonl next to it
"""

from __future__ import annotations

import base64
import bz2
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

from ehr_agent.agent.eval.gen_common import make_task
from ehr_agent.agent.eval.tasks import (AgeGold, ChoiceGold, DateGold, DirectionGold, IntegerGold, QuantityGold,
                                        SetGold, TextGold, YesNoGold, read_tasks)

DATA = Path("/work/shared/data/synthea-blaze-120")
HERE = Path(__file__).resolve().parent
OUT = HERE / "probe-cat39-tasks.jsonl"
SOURCE = "probe-cat-s21"
TODAY = "2026-12-02"

LOINC = "http://loinc.org"
CVX = "http://hl7.org/fhir/sid/cvx"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"


class Ambiguous(ValueError):
    """The question would not have one clear gold answer for this patient."""


# ------------------------------------------------------------------ local vocabulary (codes per lay name)
#: lay name -> LOINC codes (a top-level code or a component code: systolic/diastolic live in a BP panel)
LABS: dict[str, set[str]] = {
    "a1c": {"4548-4"},
    "chol": {"2093-3"},
    "ldl": {"18262-6"},
    "hdl": {"2085-9"},
    "trig": {"2571-8"},
    "weight": {"29463-7"},
    "height": {"8302-2"},
    "bmi": {"39156-5"},
    "pulse": {"8867-4"},
    "resp": {"9279-1"},
    "sbp": {"8480-6"},
    "dbp": {"8462-4"},
    "hgb": {"718-7"},
    "wbc": {"6690-2"},
    "plt": {"777-3"},
    "egfr": {"33914-3"},
    "glucose": {"2339-0", "2345-7"},
    "creat": {"38483-4", "2160-0"},
    "potassium": {"6298-4", "2823-3"},
    "sodium": {"2947-0", "2951-2"},
    "alt": {"1742-6"},
    "pain": {"72514-3"},
}
#: lay names that span two specimen codes: asked only of patients whose readings use one of them
ONE_CODE_ONLY = {"glucose", "creat", "potassium", "sodium"}

#: lay vaccine name -> CVX codes, and codes whose presence makes the lay name unclear
VACCINES: dict[str, set[str]] = {
    "flu": {"140"},
    "tetanus": {"113", "115"},
    "hepb": {"43", "08"},
    "hepa": {"52", "83"},
    "hpv": {"62"},
    "mening": {"114"},
    "pcv13": {"133"},
    "ppsv23": {"33"},
    "pneumo": {"133", "33"},
    "shingles": {"121"},
    "mmr": {"03"},
    "varicella": {"21"},
    "polio": {"10"},
    "dtap": {"20"},
}
VACCINE_CLASH: dict[str, set[str]] = {"tetanus": {"20"}, "dtap": {"113", "115"}}

#: lay drug name -> (RxNorm codes, name fragments that any other product covered by the name would carry)
DRUGS: dict[str, tuple[set[str], tuple[str, ...]]] = {
    "amlodipine": ({"308136", "197361"}, ("amlodipine",)),
}

#: lay condition name -> SNOMED codes
CONDITIONS: dict[str, set[str]] = {
    "hypertension": {"59621000"},
    "ankle_fracture": {"16114001"},
    "anemia": {"271737000"},
}
#: words that, found in another condition of the patient, would make the lay name unclear
CONDITION_KIN: dict[str, tuple[str, ...]] = {
    "hypertension": ("hypertens", "blood pressure"),
    "ankle_fracture": ("fracture of ankle", "ankle fracture", "fracture of foot"),
    "anemia": ("anemia", "anaemia"),
}

#: lay procedure name -> SNOMED codes
PROCEDURES: dict[str, set[str]] = {
    "colonoscopy": {"73761001"},
    "mammogram": {"71651007", "24623002", "241055006"},
    "dexa": {"312681000"},
}

#: lay care-plan name -> SNOMED codes (the plan's category)
PLANS: dict[str, set[str]] = {
    "copd": {"412776001"},
    "asthma": {"699728000"},
}

#: allergy asked by lay name -> (SNOMED codes, words of related allergies that would make a "no" unclear)
ALLERGIES: dict[str, tuple[set[str], tuple[str, ...]]] = {
    "bee_sting": ({"424213003"}, ("bee", "venom", "insect", "wasp", "sting")),
}

# Phrases per option of the note questions (the answer must use one of its option's phrases and none of another's)
SMOKING_OPTIONS = {
    "current smoker": ["active smoker", "current smoker", "currently smokes", "still smokes", "is a smoker",
                       "actively smoking", "current tobacco use", "smoking currently", "smokes daily"],
    "former smoker": ["former smoker", "ex-smoker", "quit smoking", "quite smoking", "stopped smoking",
                      "no longer smokes", "past smoker", "previously smoked"],
    "never smoker": ["never smoked", "never smoker", "never a smoker", "non-smoker", "nonsmoker",
                     "does not smoke", "doesn't smoke"],
}
EDUCATION_OPTIONS = {
    "less than high school": ["did not finish high school", "no high school diploma", "less than high school",
                              "did not complete high school", "without a high school", "didn't finish high school"],
    "high school": ["high school education", "high school graduate", "high school diploma", "finished high school",
                    "completed high school"],
    "some college": ["some college", "college courses", "partial college"],
    "college graduate": ["college graduate", "college degree", "graduated from college", "bachelor"],
}
EDUCATION_LINES = {
    "Patient did not finish high school.": "less than high school",
    "Patient has a high school education.": "high school",
    "Patient has completed some college courses.": "some college",
    "Patient is a college graduate.": "college graduate",
}


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


def rid(r: dict) -> str:
    return f"{r['resourceType']}/{r['id']}"


def local_day(value: str | None) -> str | None:
    return value[:10] if isinstance(value, str) and len(value) >= 10 else None


def safe_day(value: str | None) -> str:
    """The record's own calendar day of a timestamp, refused when UTC would put it on another day."""
    d = local_day(value)
    if not d:
        raise Ambiguous(f"no day in {value!r}")
    if len(value) > 10 and "T" in value:
        try:
            t = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise Ambiguous(f"unreadable time {value!r}") from None
        if t.tzinfo is not None and t.astimezone(timezone.utc).date().isoformat() != d:
            raise Ambiguous(f"{value} is another day in UTC")
    return d


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


def half_last_digit(v: float) -> float:
    """Half a unit of the last decimal written (at most two decimals kept)."""
    s = repr(float(v))
    dec = 0 if "e" in s or "." not in s else len(s.split(".")[1].rstrip("0"))
    return 0.5 * 10 ** -min(dec, 2)


def note_text(doc: dict) -> str:
    for c in doc.get("content", []):
        att = c.get("attachment") or {}
        if att.get("data"):
            return base64.b64decode(att["data"]).decode("utf-8", "replace")
    return ""


def note_section(text: str, title: str) -> str:
    m = re.search(rf"^# {re.escape(title)}\s*\n(.*?)(?=^# |\Z)", text, re.S | re.M)
    return m.group(1).strip() if m else ""


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
    meds: dict[str, dict] = field(default_factory=dict)  # Medication id -> resource

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
            when = o.get("effectiveDateTime") or (o.get("effectivePeriod") or {}).get("start")
            d = local_day(when)
            if not d:
                continue
            hit = codes(o.get("code"), LOINC) & want
            vq = o.get("valueQuantity")
            if hit and vq and "value" in vq:
                out.append(Reading(d, float(vq["value"]), vq.get("unit") or vq.get("code") or "", min(hit), rid(o)))
            for comp in o.get("component", []):
                ch = codes(comp.get("code"), LOINC) & want
                cq = comp.get("valueQuantity")
                if ch and cq and "value" in cq:
                    out.append(Reading(d, float(cq["value"]), cq.get("unit") or cq.get("code") or "", min(ch),
                                       rid(o)))
        out.sort(key=lambda r: (r.day, r.ref))
        if out and lab in ONE_CODE_ONLY and len({r.code for r in out}) > 1:
            raise Ambiguous(f"{lab}: readings under two codes")
        if len({r.unit for r in out}) > 1:
            raise Ambiguous(f"{lab}: readings in two units {sorted({r.unit for r in out})}")
        return out

    def obs_when(self, ref: str) -> str | None:
        for o in self.of("Observation"):
            if rid(o) == ref:
                return o.get("effectiveDateTime") or (o.get("effectivePeriod") or {}).get("start")
        return None

    # immunizations ---------------------------------------------------------------------------------
    def completed_shots(self) -> list[dict]:
        return [im for im in self.of("Immunization") if im.get("status", "completed") == "completed"]

    def shots(self, vac: str) -> list[tuple[str, dict]]:
        want, clash = VACCINES[vac], VACCINE_CLASH.get(vac, set())
        hits = []
        for im in self.completed_shots():
            cs = codes(im.get("vaccineCode"), CVX)
            if cs & clash:
                raise Ambiguous(f"{vac}: patient also has {sorted(cs & clash)}")
            if cs & want:
                hits.append((local_day(im.get("occurrenceDateTime")), im))
        if any(d is None for d, _ in hits):
            raise Ambiguous(f"{vac}: a dose without a day")
        hits.sort(key=lambda x: x[0])
        if any(n > 1 for n in Counter(d for d, _ in hits).values()):
            raise Ambiguous(f"{vac}: two doses on one day")
        return hits

    # medications -----------------------------------------------------------------------------------
    def med_name(self, mr: dict) -> tuple[set[str], str]:
        if mr.get("medicationCodeableConcept"):
            cc = mr["medicationCodeableConcept"]
            return codes(cc, RXNORM), display(cc)
        ref = (mr.get("medicationReference") or {}).get("reference", "")
        med = self.meds.get(ref.rsplit(":", 1)[-1].rsplit("/", 1)[-1])
        if not med:
            raise Ambiguous(f"medication reference not found: {ref}")
        return codes(med.get("code"), RXNORM), display(med.get("code"))

    # conditions ------------------------------------------------------------------------------------
    def conditions(self, cond: str) -> list[dict]:
        want = CONDITIONS[cond]
        hits = [c for c in self.of("Condition") if codes(c.get("code"), SNOMED) & want]
        kin = [display(c.get("code")) for c in self.of("Condition") if not (codes(c.get("code"), SNOMED) & want)
               and any(w in display(c.get("code")).lower() for w in CONDITION_KIN.get(cond, ()))]
        if kin:
            raise Ambiguous(f"{cond}: related conditions {kin}")
        return hits

    # encounters ------------------------------------------------------------------------------------
    def encounters(self, cls: str) -> list[dict]:
        return sorted((e for e in self.of("Encounter") if (e.get("class") or {}).get("code") == cls),
                      key=lambda e: (e.get("period") or {}).get("start", ""))

    # procedures ------------------------------------------------------------------------------------
    def procedures(self, proc: str) -> list[tuple[str, dict]]:
        want = PROCEDURES[proc]
        hits = []
        for p in self.of("Procedure"):
            if p.get("status", "completed") != "completed" or not (codes(p.get("code"), SNOMED) & want):
                continue
            when = p.get("performedDateTime") or (p.get("performedPeriod") or {}).get("start")
            hits.append((when, p))
        if any(not w for w, _ in hits):
            raise Ambiguous(f"{proc}: a procedure without a time")
        return sorted(hits, key=lambda x: x[0])

    # notes -----------------------------------------------------------------------------------------
    def notes(self) -> list[tuple[str, dict, str]]:
        out = []
        for d in self.of("DocumentReference"):
            if d.get("status", "current") != "current":
                continue
            when = d.get("date") or ((d.get("context") or {}).get("period") or {}).get("start")
            out.append((when, d, note_text(d)))
        return sorted(out, key=lambda x: x[0])


def bundle_path(pid: str) -> Path:
    for name in (f"{pid}.json.bz2", f"{pid}.json"):
        if (DATA / name).is_file():
            return DATA / name
    raise SystemExit(f"no bundle for patient {pid} in {DATA}")


def read_bundle(path: Path) -> list[dict]:
    raw = bz2.decompress(path.read_bytes()) if path.suffix == ".bz2" else path.read_bytes()
    b = json.loads(raw)
    return [e["resource"] for e in b.get("entry", []) if "resource" in e]


def load_record(pid: str) -> Rec:
    res = read_bundle(bundle_path(pid))
    pts = [r for r in res if r["resourceType"] == "Patient"]
    if len(pts) != 1 or pts[0]["id"] != pid:
        raise SystemExit(f"bundle of {pid} does not hold that one patient")
    rec = Rec(patient=pts[0])
    for r in res:
        rec.by_type.setdefault(r["resourceType"], []).append(r)
    rec.meds = {m["id"]: m for m in rec.of("Medication")}
    return rec


def all_patient_ids() -> list[str]:
    out = []
    for p in sorted(DATA.iterdir()):
        m = re.fullmatch(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.json(\.bz2)?", p.name)
        if m:
            out.append(m.group(1))
    return out


# ------------------------------------------------------------------ operations: (gold, refs, extra meta)
# allergies ------------------------------------------------------------------------------------------
def op_allergy_list(rec: Rec, vocabulary: set[str]):
    items, refs = set(), []
    for a in rec.of("AllergyIntolerance"):
        st = codes(a.get("clinicalStatus"))
        if st != {"active"}:
            raise Ambiguous(f"allergy entry not active: {display(a.get('code'))} {sorted(st)}")
        items.add(display(a.get("code")))
        refs.append(rid(a))
    if not items:
        raise Ambiguous("no allergies")
    return SetGold(items=sorted(items), distractors=sorted(vocabulary - items)), refs, {}


def op_allergy_has(rec: Rec, allergy: str):
    snomed, related = ALLERGIES[allergy]
    hits, others = [], []
    for a in rec.of("AllergyIntolerance"):
        name = display(a.get("code"))
        if codes(a.get("code"), SNOMED) & snomed:
            if codes(a.get("clinicalStatus")) != {"active"}:
                raise Ambiguous(f"asked allergy not active: {name}")
            hits.append(a)
        elif any(w in name.lower() for w in related):
            others.append(name)
    if hits:
        return YesNoGold(value=True), [rid(a) for a in hits], {"name": display(hits[0].get("code"))}
    if others:
        raise Ambiguous(f"no, but related allergies {others}")
    refs = [rid(a) for a in rec.of("AllergyIntolerance")] or [rid(rec.patient)]
    return YesNoGold(value=False), refs, {}


# care plans -----------------------------------------------------------------------------------------
def plan_name(cp: dict) -> str:
    names = [display(c) for c in cp.get("category", []) if codes(c, SNOMED)]
    if len(names) != 1:
        raise Ambiguous(f"care plan {cp['id']} has {len(names)} names")
    return names[0]


def op_plans_active(rec: Rec):
    if rec.deceased:
        raise Ambiguous("deceased: no 'current' care plans")
    conds = {c["id"]: c for c in rec.of("Condition")}
    active, other, refs = set(), set(), []
    for cp in rec.of("CarePlan"):
        name = plan_name(cp)
        if cp.get("status") == "active":
            if "record artifact" in name:
                raise Ambiguous(f"active record-artifact plan {name}")
            if not cp.get("addresses"):
                # an "active" plan that addresses nothing (antenatal care left open for decades, a generic
                # self-care plan) is not clearly current
                raise Ambiguous(f"active plan {name} addresses no condition")
            for a in cp.get("addresses", []):
                cid = a.get("reference", "").rsplit(":", 1)[-1].rsplit("/", 1)[-1]
                c = conds.get(cid)
                if c is None:
                    raise Ambiguous(f"{name}: addressed condition {cid} not found")
                if c.get("abatementDateTime") or codes(c.get("clinicalStatus")) - {"active"}:
                    raise Ambiguous(f"active plan {name} addresses a resolved condition")
            active.add(name)
            refs.append(rid(cp))
        else:
            other.add(name)
    if not active:
        raise Ambiguous("no active care plan")
    return SetGold(items=sorted(active), distractors=sorted(other - active)), refs, {}


def _one_plan(rec: Rec, plan: str) -> dict:
    plan_codes = PLANS[plan]
    hits = [cp for cp in rec.of("CarePlan")
            if any(codes(c, SNOMED) & plan_codes for c in cp.get("category", []))]
    if len(hits) != 1:
        raise Ambiguous(f"{len(hits)} care plans with codes {sorted(plan_codes)}")
    return hits[0]


def op_plan_activities(rec: Rec, plan: str):
    cp = _one_plan(rec, plan)
    acts = {display((a.get("detail") or {}).get("code")) for a in cp.get("activity", [])} - {""}
    if not acts:
        raise Ambiguous("plan without activities")
    return SetGold(items=sorted(acts), distractors=[]), [rid(cp)], {"name": plan_name(cp)}


def op_plan_start(rec: Rec, plan: str):
    cp = _one_plan(rec, plan)
    d = safe_day((cp.get("period") or {}).get("start"))
    return DateGold(value=d), [rid(cp)], {"name": plan_name(cp)}


# conditions -----------------------------------------------------------------------------------------
def op_cond_onset(rec: Rec, cond: str):
    hits = rec.conditions(cond)
    if not hits:
        raise Ambiguous(f"no {cond}")
    days = sorted((safe_day(c.get("onsetDateTime") or c.get("recordedDate")), c) for c in hits)
    first = days[0][0]
    return DateGold(value=first), [rid(c) for d, c in days if d == first], {"name": display(days[0][1].get("code"))}


def op_cond_resolved_on(rec: Rec, cond: str):
    hits = rec.conditions(cond)
    if len(hits) != 1:
        raise Ambiguous(f"{cond}: {len(hits)} episodes")
    c = hits[0]
    if not c.get("abatementDateTime"):
        raise Ambiguous(f"{cond}: not resolved")
    return DateGold(value=safe_day(c["abatementDateTime"])), [rid(c)], {"name": display(c.get("code"))}


def op_cond_still_active(rec: Rec, cond: str):
    if rec.deceased:
        raise Ambiguous("deceased: no 'still active'")
    hits = rec.conditions(cond)
    if len(hits) != 1:
        raise Ambiguous(f"{cond}: {len(hits)} episodes")
    c = hits[0]
    status = codes(c.get("clinicalStatus"))
    resolved = bool(c.get("abatementDateTime"))
    if resolved != bool(status & {"resolved", "inactive", "remission"}) or len(status) != 1:
        raise Ambiguous(f"{cond}: status {sorted(status)} vs abatement {c.get('abatementDateTime')}")
    return YesNoGold(value=not resolved), [rid(c)], {"name": display(c.get("code"))}


# demographics ---------------------------------------------------------------------------------------
def op_age_at_death(rec: Rec):
    when = rec.patient.get("deceasedDateTime")
    if not when:
        raise Ambiguous("not deceased (or no death date)")
    d = safe_day(when)
    t = 1 if near_birthday(rec.birth, d) else 0
    return AgeGold(value=completed_years(rec.birth, d), tolerance=t), [rid(rec.patient)], {"death_day": d}


def op_birth_date(rec: Rec):
    return DateGold(value=rec.birth), [rid(rec.patient)], {}


def op_language(rec: Rec, accept: list[str]):
    langs = {display(c.get("language")) for c in rec.patient.get("communication", [])}
    if len(langs) != 1:
        raise Ambiguous(f"languages {sorted(langs)}")
    lang = langs.pop()
    if lang.lower() not in {a.lower() for a in accept}:
        raise Ambiguous(f"language {lang} is not one of {accept}")
    return TextGold(value=lang, accept=[a for a in accept if a.lower() != lang.lower()]), [rid(rec.patient)], {}


def op_marital(rec: Rec):
    ms = codes(rec.patient.get("maritalStatus"))
    options = {"married": ["married"], "not married": ["single", "never married", "unmarried", "not married",
                                                        "divorced", "widowed"]}
    if ms == {"M"}:
        return ChoiceGold(value="married", options=options), [rid(rec.patient)], {}
    raise Ambiguous(f"marital status {sorted(ms)} is not asked")


# encounters -----------------------------------------------------------------------------------------
def _no_back_to_back(encs: list[dict], what: str) -> None:
    spans = sorted(((e.get("period") or {}).get("start", ""), (e.get("period") or {}).get("end", "")) for e in encs)
    for (s1, e1), (s2, _) in zip(spans, spans[1:]):
        if s2[:10] <= (e1 or s1)[:10]:
            raise Ambiguous(f"{what}: back-to-back encounters {s1[:10]} / {s2[:10]}")


def op_enc_count_year(rec: Rec, cls: str, year: str):
    encs = rec.encounters(cls)
    hits = []
    for e in encs:
        start = (e.get("period") or {}).get("start")
        if local_day(start)[:4] == year:
            if start[:4] != safe_day(start)[:4]:
                raise Ambiguous("year boundary")
            hits.append(e)
        elif local_day(start)[5:] in ("12-31", "01-01"):
            safe_day(start)  # a visit on New Year's eve/day that UTC would move into (or out of) the year
    if cls in ("EMER", "IMP"):
        _no_back_to_back(hits, f"{cls} {year}")
    return IntegerGold(value=len(hits)), [rid(e) for e in hits] or [rid(rec.patient)], {}


def op_enc_count_all(rec: Rec, cls: str):
    hits = rec.encounters(cls)
    if cls in ("EMER", "IMP"):
        _no_back_to_back(hits, cls)
    return IntegerGold(value=len(hits)), [rid(e) for e in hits] or [rid(rec.patient)], {}


def op_enc_last(rec: Rec, cls: str):
    hits = rec.encounters(cls)
    if not hits:
        raise Ambiguous(f"no {cls} encounter")
    d = safe_day(hits[-1]["period"]["start"])
    same = [e for e in hits if local_day(e["period"]["start"]) == d]
    return DateGold(value=d), [rid(e) for e in same], {}


# immunizations --------------------------------------------------------------------------------------
def op_shots_on_day(rec: Rec, day: str):
    on, other = [], set()
    for im in rec.completed_shots():
        when = im.get("occurrenceDateTime")
        if local_day(when) == day:
            safe_day(when)
            on.append(im)
        else:
            other.add(display(im.get("vaccineCode")))
    if not on:
        raise Ambiguous(f"no vaccine on {day}")
    names = [display(im.get("vaccineCode")) for im in on]
    if len(set(names)) != len(names):
        raise Ambiguous(f"same vaccine twice on {day}")
    return SetGold(items=sorted(names), distractors=sorted(other - set(names))), [rid(im) for im in on], {"day": day}


def op_shot_first(rec: Rec, vac: str):
    hits = rec.shots(vac)
    if not hits:
        raise Ambiguous(f"no {vac}")
    d, im = hits[0]
    return DateGold(value=safe_day(im["occurrenceDateTime"])), [rid(im)], {"doses": len(hits)}


def op_shot_last(rec: Rec, vac: str):
    hits = rec.shots(vac)
    if not hits:
        raise Ambiguous(f"no {vac}")
    d, im = hits[-1]
    return DateGold(value=safe_day(im["occurrenceDateTime"])), [rid(im)], {"doses": len(hits)}


# medications ----------------------------------------------------------------------------------------
def op_meds_active(rec: Rec):
    if rec.deceased:
        raise Ambiguous("deceased: no 'current' medications")
    active, stopped, refs = set(), set(), []
    for mr in rec.of("MedicationRequest"):
        _, name = rec.med_name(mr)
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


def _drug_orders(rec: Rec, drug: str) -> list[tuple[str, dict]]:
    want, frags = DRUGS[drug]
    hits = []
    for mr in rec.of("MedicationRequest"):
        cs, name = rec.med_name(mr)
        if cs & want:
            hits.append((mr.get("authoredOn"), mr))
        elif any(f in name.lower() for f in frags):
            raise Ambiguous(f"{drug}: another product also carries the name: {name}")
    if any(not w for w, _ in hits):
        raise Ambiguous(f"{drug}: an order without a day")
    return sorted(hits, key=lambda x: x[0])


def op_rx_first(rec: Rec, drug: str):
    hits = _drug_orders(rec, drug)
    if not hits:
        raise Ambiguous(f"no {drug}")
    first = safe_day(hits[0][0])
    return DateGold(value=first), [rid(mr) for w, mr in hits if local_day(w) == first], {"orders": len(hits)}


def op_rx_in_year(rec: Rec, year: str):
    items, other, refs = set(), set(), []
    for mr in rec.of("MedicationRequest"):
        _, name = rec.med_name(mr)
        w = mr.get("authoredOn")
        if local_day(w)[:4] == year:
            if safe_day(w)[:4] != year:
                raise Ambiguous("year boundary")
            items.add(name)
            refs.append(rid(mr))
        else:
            other.add(name)
    if not items:
        raise Ambiguous(f"nothing ordered in {year}")
    return SetGold(items=sorted(items), distractors=sorted(other - items)), refs, {"year": year}


# notes ----------------------------------------------------------------------------------------------
def smoking_of(text: str) -> str | None:
    social = note_section(text, "Social History").lower()
    found = set()
    if "active smoker" in social or "smokes tobacco daily" in social:
        found.add("current smoker")
    if "never smoked" in social:
        found.add("never smoker")
    if re.search(r"quit[e]? smoking", social):
        found.add("former smoker")
    if len(found) > 1:
        raise Ambiguous(f"note states {sorted(found)}")
    return found.pop() if found else None


def education_of(text: str) -> str | None:
    found = {v for k, v in EDUCATION_LINES.items() if k in text}
    if len(found) > 1:
        raise Ambiguous(f"note states {sorted(found)}")
    return found.pop() if found else None


def _latest_notes(rec: Rec, reader) -> tuple[str, list[dict], str]:
    """The stated value of the latest notes that state one (all notes of that day must agree)."""
    stated = [(w, d, reader(t)) for w, d, t in rec.notes()]
    stated = [(w, d, v) for w, d, v in stated if v is not None]
    if not stated:
        raise Ambiguous("no note states it")
    last_day = safe_day(stated[-1][0])
    same = [(d, v) for w, d, v in stated if local_day(w) == last_day]
    if len({v for _, v in same}) != 1:
        raise Ambiguous(f"notes of {last_day} disagree")
    return same[0][1], [d for d, _ in same], last_day


def op_note_smoking(rec: Rec):
    if rec.deceased:
        raise Ambiguous("deceased")
    value, docs, last_day = _latest_notes(rec, smoking_of)
    return ChoiceGold(value=value, options=SMOKING_OPTIONS), [rid(d) for d in docs], {"note_day": last_day}


def op_note_education(rec: Rec):
    value, docs, last_day = _latest_notes(rec, education_of)
    return ChoiceGold(value=value, options=EDUCATION_OPTIONS), [rid(d) for d in docs], {"note_day": last_day}


def op_note_complaint(rec: Rec, day: str, accept: dict[str, list[str]] | None = None):
    """Chief complaint(s) of the note(s) of ``day``: one complaint -> TextGold, several -> SetGold."""
    found, docs = [], []
    for w, d, t in rec.notes():
        if local_day(w) != day:
            continue
        safe_day(w)
        sec = note_section(t, "Chief Complaint")
        items = [ln.strip()[1:].strip() for ln in sec.splitlines() if ln.strip().startswith("-")]
        if not items:
            raise Ambiguous(f"note of {day} without listed complaints: {sec[:60]!r}")
        found.append(tuple(items))
        docs.append(d)
    if not found:
        raise Ambiguous(f"no note on {day}")
    if len(set(found)) != 1:
        raise Ambiguous(f"notes of {day} list different complaints")
    items = list(found[0])
    refs = [rid(d) for d in docs]
    if len(items) == 1:
        acc = (accept or {}).get(items[0], [])
        return TextGold(value=items[0], accept=acc), refs, {"day": day}
    return SetGold(items=sorted(items), distractors=[]), refs, {"day": day}


# observations ---------------------------------------------------------------------------------------
def _value_on(rec: Rec, lab: str, day: str):
    same = [r for r in rec.readings(lab) if r.day == day]
    if not same:
        raise Ambiguous(f"no {lab} on {day}")
    if len({r.value for r in same}) > 1:
        raise Ambiguous(f"{lab}: two values on {day}")
    for r in same:
        safe_day(rec.obs_when(r.ref))
    v = same[0]
    return QuantityGold(value=v.value, unit=v.unit, tolerance=half_last_digit(v.value)), sorted({r.ref for r in same})


def op_obs_on(rec: Rec, lab: str, day: str):
    g, refs = _value_on(rec, lab, day)
    return g, refs, {"day": day}


def op_obs_in_month(rec: Rec, lab: str, month: str):
    days = sorted({r.day for r in rec.readings(lab) if r.day[:7] == month})
    if len(days) != 1:
        raise Ambiguous(f"{lab}: {len(days)} reading days in {month}")
    g, refs = _value_on(rec, lab, days[0])
    return g, refs, {"day": days[0]}


def op_obs_earliest(rec: Rec, lab: str):
    rs = rec.readings(lab)
    if not rs:
        raise Ambiguous(f"no {lab}")
    g, refs = _value_on(rec, lab, rs[0].day)
    return g, refs, {"day": rs[0].day, "n": len(rs)}


def op_obs_latest(rec: Rec, lab: str):
    rs = rec.readings(lab)
    if not rs:
        raise Ambiguous(f"no {lab}")
    g, refs = _value_on(rec, lab, rs[-1].day)
    return g, refs, {"day": rs[-1].day, "n": len(rs)}


#: every reading of the later year must lie beyond every reading of the earlier one by this fraction
MIN_GAP = 0.05


def op_obs_trend(rec: Rec, lab: str, y1: str, y2: str):
    rs = rec.readings(lab)
    a = [r for r in rs if r.day[:4] == y1]
    b = [r for r in rs if r.day[:4] == y2]
    if not a or not b or y1 >= y2:
        raise Ambiguous(f"{lab}: no readings in {y1} or {y2}")
    for r in a + b:
        if r.day[5:] in ("01-01", "12-31"):
            safe_day(rec.obs_when(r.ref))
    lo_a, hi_a = min(r.value for r in a), max(r.value for r in a)
    lo_b, hi_b = min(r.value for r in b), max(r.value for r in b)
    if lo_b >= hi_a * (1 + MIN_GAP):
        g = "up"
    elif hi_b <= lo_a * (1 - MIN_GAP):
        g = "down"
    else:
        raise Ambiguous(f"{lab}: {y1}->{y2} too close or mixed")
    return (DirectionGold(value=g), sorted({r.ref for r in a + b}),
            {"start_year": y1, "end_year": y2, "values": [[r.day, r.value] for r in a + b]})


# procedures -----------------------------------------------------------------------------------------
def op_proc_last(rec: Rec, proc: str):
    hits = rec.procedures(proc)
    if not hits:
        raise Ambiguous(f"no {proc}")
    d = safe_day(hits[-1][0])
    return DateGold(value=d), [rid(p) for w, p in hits if local_day(w) == d], {"times": len(hits)}


def op_proc_first(rec: Rec, proc: str):
    hits = rec.procedures(proc)
    if not hits:
        raise Ambiguous(f"no {proc}")
    d = safe_day(hits[0][0])
    return DateGold(value=d), [rid(p) for w, p in hits if local_day(w) == d], {"times": len(hits)}


def op_proc_count(rec: Rec, proc: str):
    hits = rec.procedures(proc)
    return IntegerGold(value=len(hits)), [rid(p) for _, p in hits] or [rid(rec.patient)], {}


OPS = {
    "allergy_list": op_allergy_list,
    "allergy_has": op_allergy_has,
    "plans_active": op_plans_active,
    "plan_activities": op_plan_activities,
    "plan_start": op_plan_start,
    "cond_onset": op_cond_onset,
    "cond_resolved_on": op_cond_resolved_on,
    "cond_still_active": op_cond_still_active,
    "age_at_death": op_age_at_death,
    "birth_date": op_birth_date,
    "language": op_language,
    "marital": op_marital,
    "enc_count_year": op_enc_count_year,
    "enc_count_all": op_enc_count_all,
    "enc_last": op_enc_last,
    "shots_on_day": op_shots_on_day,
    "shot_first": op_shot_first,
    "shot_last": op_shot_last,
    "meds_active": op_meds_active,
    "rx_first": op_rx_first,
    "rx_in_year": op_rx_in_year,
    "note_smoking": op_note_smoking,
    "note_education": op_note_education,
    "note_complaint": op_note_complaint,
    "obs_on": op_obs_on,
    "obs_in_month": op_obs_in_month,
    "obs_earliest": op_obs_earliest,
    "obs_latest": op_obs_latest,
    "obs_trend": op_obs_trend,
    "proc_last": op_proc_last,
    "proc_first": op_proc_first,
    "proc_count": op_proc_count,
}

# ------------------------------------------------------------------ the 39 questions
P = {
    "1ae8d602": "1ae8d602-4b41-4571-8c49-b460a22892c2",
    "88e4bac8": "88e4bac8-2609-3c28-a354-ab29f69153f4",
    "b3664f86": "b3664f86-0ce9-4a2c-ae85-4d390d438512",
    "dd4d5564": "dd4d5564-3cdd-19ce-8efc-f30e5395f5c6",
    "fcd31792": "fcd31792-91d8-982e-8e28-ef1eb284e260",
    "7278ffc8": "7278ffc8-5b59-8cb5-8419-294639a9908f",
    "9fe7994a": "9fe7994a-5fec-874c-8452-e45786bcfb0a",
    "a1935ff2": "a1935ff2-8d78-6259-e537-1036c451d997",
    "8682665a": "8682665a-3515-ffeb-39d5-3802f6f36932",
    "057aa36e": "057aa36e-b892-9964-75b9-ffb46b097e34",
    "8dd4ed1f": "8dd4ed1f-108e-64ad-ce09-926c83ce7f76",
    "e2053282": "e2053282-a9da-7d0c-8683-481ae0b8c75c",
    "4004a424": "4004a424-c33b-6ced-23c3-c1318e45c419",
    "fa7ff0de": "fa7ff0de-a190-28a1-ccb8-515bc6ee8541",
    "ad0b4b7a": "ad0b4b7a-2285-7a3c-5fd2-edbe4d67b7e7",
    "6c8f3e83": "6c8f3e83-c351-ed33-c38d-6be101c275d2",
    "5035bbae": "5035bbae-27fc-b927-4a9b-7af7fdd536eb",
    "738c6a70": "738c6a70-cd4d-1ec9-077e-1828484674b4",
    "44717d84": "44717d84-17d5-cefa-acf9-fe51fddc5d1c",
    "e78fd9c5": "e78fd9c5-5c89-26ca-d397-e9da30700444",
    "7d8cb13b": "7d8cb13b-3ec2-91af-cfdd-3bb3a0d07039",
    "7277a553": "7277a553-d195-6596-0124-b482d859691e",
    "8708d3e1": "8708d3e1-f718-96bb-03f0-f2a6564ae1cd",
    "451e7c69": "451e7c69-78b8-9bc9-b8a7-030c4a968215",
    "1c574eeb": "1c574eeb-0f08-37cd-475e-fa4021b62ad3",
    "acd56837": "acd56837-aaab-5825-8f24-784319fc02df",
    "76f217df": "76f217df-3176-7627-8fef-e60a9b3574c2",
    "24d82e9b": "24d82e9b-4114-f230-4318-60474031ec4d",
    "b9590b16": "b9590b16-804d-3d9f-0de0-b80b794f1017",
    "085e81c0": "085e81c0-7a95-ef02-16ef-aa1b4344deed",
    "b7dbbc09": "b7dbbc09-0370-0e9f-dc4b-46f41e48b82d",
    "9a174f9e": "9a174f9e-ed67-6617-0106-745fb1f9a344",
    "be9d18f7": "be9d18f7-f230-dadc-049e-c13d3a4ac079",
    "13956cdf": "13956cdf-f7cc-1cd7-9c99-eb796db62ec7",
    "23275f24": "23275f24-df5a-6bcf-17cc-ff6507270b1c",
    "2fcbe29d": "2fcbe29d-94f0-ec20-dcf3-740c45bc08ba",
    "718007d0": "718007d0-218e-d904-c3ec-0f23d4d2cd8b",
    "2ad91c08": "2ad91c08-1b48-0562-dbb2-79f23c1b692b",
}

#: (category, patient, question, operation, parameters); 3 per category, none of probe40's patients
SPECS: list[tuple[str, str, str, str, dict]] = [
    # allergies: the structured allergy list (every entry active), and one "is she allergic to ..."
    ("allergies", P["1ae8d602"], "allergies on file for her?", "allergy_list", {}),
    ("allergies", P["88e4bac8"], "What's he allergic to?", "allergy_list", {}),
    ("allergies", P["b3664f86"], "Is she allergic to bee stings?", "allergy_has", {"allergy": "bee_sting"}),
    # care plans: what is active now (each active plan addresses a still-active condition), what a plan
    # involves, when a plan started
    ("care_plans", P["dd4d5564"], "What care plans is she on right now?", "plans_active", {}),
    ("care_plans", P["fcd31792"], "What does her COPD care plan involve?", "plan_activities", {"plan": "copd"}),
    ("care_plans", P["7278ffc8"], "When did his asthma care plan start?", "plan_start", {"plan": "asthma"}),
    # conditions: first diagnosis, resolution date, still active (single episode)
    ("conditions", P["9fe7994a"], "When was his HTN first dx'd?", "cond_onset", {"cond": "hypertension"}),
    ("conditions", P["a1935ff2"], "Her broken ankle - when was that marked resolved?", "cond_resolved_on",
     {"cond": "ankle_fracture"}),
    ("conditions", P["8682665a"], "Is her anemia still an active problem?", "cond_still_active", {"cond": "anemia"}),
    # demographics (Patient resource)
    ("demographics", P["057aa36e"], "How old was she when she passed?", "age_at_death", {}),
    ("demographics", P["8dd4ed1f"], "pt's DOB?", "birth_date", {}),
    ("demographics", P["e2053282"], "What's her preferred language?", "language", {"accept": ["Spanish", "Espanol",
                                                                                          "Español"]}),
    # encounters: ER visits in a year, last ER visit, hospital admissions
    ("encounters", P["4004a424"], "How many ER visits did she have in 2018?", "enc_count_year",
     {"cls": "EMER", "year": "2018"}),
    ("encounters", P["fa7ff0de"], "When was his last ER visit?", "enc_last", {"cls": "EMER"}),
    ("encounters", P["ad0b4b7a"], "How many times has he been admitted to the hospital?", "enc_count_all",
     {"cls": "IMP"}),
    # immunizations: shots given on a day, first dose, last dose
    ("immunizations", P["6c8f3e83"], "Which shots did he get on Jun 2 2013?", "shots_on_day", {"day": "2013-06-02"}),
    ("immunizations", P["5035bbae"], "When did she get her first hep B shot?", "shot_first", {"vac": "hepb"}),
    ("immunizations", P["738c6a70"], "When was his last pneumonia vaccine?", "shot_last", {"vac": "pneumo"}),
    # medications: current list, first order of a drug, orders of a year
    ("medications", P["44717d84"], "What meds is she currently on?", "meds_active", {}),
    ("medications", P["e78fd9c5"], "When was amlodipine first prescribed for him?", "rx_first", {"drug": "amlodipine"}),
    ("medications", P["7d8cb13b"], "What was she prescribed in 2021?", "rx_in_year", {"year": "2021"}),
    # notes (DocumentReference text): smoking and education as the latest note states them, complaint of a visit
    ("notes", P["7277a553"], "Per her most recent note, does she smoke?", "note_smoking", {}),
    ("notes", P["8708d3e1"], "What's his education level according to the notes?", "note_education", {}),
    ("notes", P["451e7c69"], "Chief complaint at her 9/16/2020 visit?", "note_complaint",
     {"day": "2020-09-16", "accept": {"Nasal Congestion": ["congestion", "congested", "stuffy nose"]}}),
    # observation on a day (or in a month with a single reading day)
    ("observation_at_date", P["1c574eeb"], "Her Hgb on May 8, 2021?", "obs_on", {"lab": "hgb", "day": "2021-05-08"}),
    ("observation_at_date", P["acd56837"], "What was her systolic BP on 10/23/20?", "obs_on",
     {"lab": "sbp", "day": "2020-10-23"}),
    ("observation_at_date", P["76f217df"], "LDL from his March 2021 labs?", "obs_in_month",
     {"lab": "ldl", "month": "2021-03"}),
    # earliest value on record
    ("observation_earliest", P["24d82e9b"], "What was her first recorded weight?", "obs_earliest", {"lab": "weight"}),
    ("observation_earliest", P["b9590b16"], "First LDL we have on her?", "obs_earliest", {"lab": "ldl"}),
    ("observation_earliest", P["085e81c0"], "Earliest hemoglobin on file for him?", "obs_earliest", {"lab": "hgb"}),
    # latest value on record
    ("observation_latest", P["b7dbbc09"], "Most recent A1c?", "obs_latest", {"lab": "a1c"}),
    ("observation_latest", P["9a174f9e"], "What's his latest creatinine?", "obs_latest", {"lab": "creat"}),
    ("observation_latest", P["be9d18f7"], "Most recent weight on file for him?", "obs_latest", {"lab": "weight"}),
    # trend between two years (every reading of the later year beyond every reading of the earlier by 5%)
    ("observation_trend", P["13956cdf"], "Her BMI, 2011 vs 2020 - up or down?", "obs_trend",
     {"lab": "bmi", "y1": "2011", "y2": "2020"}),
    ("observation_trend", P["23275f24"], "Has her A1c gone up or down between 2014 and 2020?", "obs_trend",
     {"lab": "a1c", "y1": "2014", "y2": "2020"}),
    ("observation_trend", P["2fcbe29d"], "Trigs from 2013 to 2021: up or down?", "obs_trend",
     {"lab": "trig", "y1": "2013", "y2": "2021"}),
    # procedures: last time, how many times, first time
    ("procedures", P["718007d0"], "When was his last colonoscopy?", "proc_last", {"proc": "colonoscopy"}),
    ("procedures", P["44717d84"], "How many mammograms has she had?", "proc_count", {"proc": "mammogram"}),
    ("procedures", P["2ad91c08"], "When did she have her first bone density scan?", "proc_first", {"proc": "dexa"}),
]


# ------------------------------------------------------------------ main
def allergy_vocabulary() -> set[str]:
    """Every allergy name of the 120 patients: the distractors of an allergy list."""
    out = set()
    for pid in all_patient_ids():
        for r in read_bundle(bundle_path(pid)):
            if r["resourceType"] == "AllergyIntolerance":
                out.add(display(r.get("code")))
    return out


def check_pronouns(rec: Rec, question: str) -> None:
    words = set(re.findall(r"[a-z']+", question.lower()))
    male, female = words & {"he", "his", "him", "he's"}, words & {"she", "her", "hers", "she's"}
    if (rec.gender == "male" and female) or (rec.gender == "female" and male):
        raise Ambiguous(f"pronouns of {question!r} do not match a {rec.gender} patient")


def build(specs=None):
    specs = SPECS if specs is None else specs
    recs: dict[str, Rec] = {}
    vocab = None
    tasks = []
    for category, pid, question, op, params in specs:
        rec = recs.get(pid) or recs.setdefault(pid, load_record(pid))
        check_pronouns(rec, question)
        args = dict(params)
        if op == "allergy_list":
            vocab = vocab if vocab is not None else allergy_vocabulary()
            args["vocabulary"] = vocab
        gold, refs, extra = OPS[op](rec, **args)
        meta = {"op": op, **{k: (sorted(v) if isinstance(v, set) else v) for k, v in params.items()
                             if k not in ("accept",)},
                **extra, "source": SOURCE}
        task = make_task(category, pid, question, gold, refs, meta=meta, refs_mode="any")
        tasks.append(task.model_copy(update={"source": "handwritten"}))  # hand-written wording, computed gold
    return tasks


def main() -> None:
    tasks = build()
    OUT.write_text("".join(t.model_dump_json() + "\n" for t in tasks), encoding="utf-8")
    back = read_tasks(OUT)
    print(f"wrote {len(back)} tasks to {OUT}")
    print(dict(Counter(t.category for t in back)), "patients:", len({t.patient for t in back}))
    for t in back:
        print(f"{t.category:20} {t.patient[:8]} {t.question}  =>  {t.answer.display()}")


if __name__ == "__main__":
    main()
