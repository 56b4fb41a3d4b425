"""Answer-shaped queries over one patient's record: the ``lookup`` tool.

A small model is good at choosing an operation and copying the question's words into a slot, and bad at
scanning forty rows for the newest one or counting visits in a year. So ``lookup`` does the scanning,
picking, counting and comparing in code and returns one short answer line per result, each ending with
the citations that prove it. The model's remaining job is to copy that line into its answer.

``what`` is resolved against the patient's own vocabulary (:mod:`tools.vocabulary`); the output says
which record concept it matched, so a wrong resolution is visible to the model, the user and the claim
check alike.

Every computation honours the session's as-of date (records dated after it are invisible) and its patient
scope (only :meth:`PatientSession.of_type` rows are read).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field, field_validator

from ehr_agent.tools import vocabulary as vocab
from ehr_agent.tools.retrieval.projections import Row, concept_display, render_quantity
from ehr_agent.tools.scope import ref_of
from ehr_agent.tools.store.base import StoreError

Op = Literal["latest", "first", "on_date", "count", "change", "exists", "active_on", "list", "age_at", "ended", "all"]
#: "note": what the clinical notes' text states (tools.note_facts), before any coded record
Kind = Literal["lab", "condition", "medication", "vaccine", "procedure", "visit", "allergy", "careplan", "note", "any"]


_MONTHS = {m: i for i, names in enumerate((
    ("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",), ("jun", "june"),
    ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"), ("oct", "october"), ("nov", "november"),
    ("dec", "december")), start=1) for m in names}
_MONTH = r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"


def iso_date(text: str | None) -> str | None:
    """``text`` as an ISO date prefix (``YYYY-MM-DD``, ``YYYY-MM`` or ``YYYY``) when it is a date written another
    way ("Dec 30 2016", "30 December 2016", "October 2019", "12/30/2016"); anything else unchanged.

    Models copy dates as the question writes them, and a day written in words must still find its reading."""
    if not text:
        return text
    t = text.strip().lower().replace(",", " ")
    if re.fullmatch(r"\d{4}(-\d{2}(-\d{2})?)?(t.*)?", t):
        return text.strip()
    # "13-May-2015", "May-13-2015": a month's name between dashes or slashes reads as with spaces
    t = re.sub(r"[-/]", " ", t) if re.search(r"[a-z]", t) else t
    m = re.fullmatch(r"(\d{4})/(\d{1,2})/(\d{1,2})", t)
    if m:
        return f"{m.group(1)}-{int(m.group(2)):02d}-{int(m.group(3)):02d}"
    m = re.fullmatch(r"(\d{1,2})/(\d{4})", t)  # month/year
    if m and 1 <= int(m.group(1)) <= 12:
        return f"{m.group(2)}-{int(m.group(1)):02d}"
    m = (re.fullmatch(rf"{_MONTH}\s+(\d{{1,2}})(?:st|nd|rd|th)?\s+(\d{{4}})", t)
         or re.fullmatch(rf"(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}\s+(\d{{4}})", t))
    if m:
        a, b, year = m.groups()
        month, day = (a, b) if not a.isdigit() else (b, a)
        return f"{year}-{_MONTHS[month.rstrip('.')]:02d}-{int(day):02d}"
    m = re.fullmatch(rf"{_MONTH}\s+(?:of\s+)?(\d{{4}})", t)
    if m:
        return f"{m.group(2)}-{_MONTHS[m.group(1).rstrip('.')]:02d}"
    m = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})", t)  # US order, as Synthea's people would write it
    if m and 1 <= int(m.group(1)) <= 12 and 1 <= int(m.group(2)) <= 31:
        year = m.group(3) if len(m.group(3)) == 4 else _century(m.group(3))
        return f"{year}-{int(m.group(1)):02d}-{int(m.group(2)):02d}"
    return text


def _century(yy: str) -> str:
    """A two-digit year ("10/23/20") in the century that puts it at or before today."""
    return f"{'20' if int(yy) <= date.today().year % 100 else '19'}{yy}"


_WRITTEN = re.compile(
    rf"\b(\d{{4}}-\d{{2}}-\d{{2}}|\d{{1,2}}/\d{{1,2}}/(?:\d{{4}}|\d{{2}}(?![\d/]))|\d{{4}}/\d{{1,2}}/\d{{1,2}}|\d{{1,2}}/\d{{4}}|"
    rf"\d{{1,2}}[-/]{_MONTH}[-/]\d{{4}}|{_MONTH}[-/]\d{{1,2}}[-/]\d{{4}}|"
    rf"{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}|"
    rf"\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}\s+\d{{4}}|{_MONTH}\s+(?:of\s+)?\d{{4}}|\d{{4}}-\d{{2}})\b", re.I)


def written_dates(text: str) -> list[str]:
    """The days and months ``text`` states, however written, as ISO prefixes in order (years alone are not
    dates here: "in 2016" is a period)."""
    out: list[str] = []
    for m in _WRITTEN.finditer(text or ""):
        iso = iso_date(m.group(1))
        if iso and re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", iso) and iso not in out:
            out.append(iso)
    return out


#: a year as questions write it
YEAR = re.compile(r"\b(1[89]\d\d|20\d\d)\b")
#: a question that asks yes or no ("Is...", "Did...", "Any history of...")
YES_NO = re.compile(r"\s*(is|are|was|were|did|does|do|has|have|had|any)\b", re.I)
_OPEN_RANGE = re.compile(r"\b(since|after|before|until|till|through|from|between|up to|prior to|by|earlier than|"
                         r"later than|older than|younger than)\b", re.I)


def one_year(question: str) -> str | None:
    """The year a question is about when it names exactly one and no open range ("in 2019", "during 2019"),
    else None."""
    years = set(YEAR.findall(question or ""))
    if len(years) != 1 or _OPEN_RANGE.search(question) or written_dates(question):
        return None
    return years.pop()


_FEMALE = re.compile(r"\b(women|woman|females?|girls?|ladies)\b", re.I)
_MALE = re.compile(r"\b(men|man|males?|boys?|gentlemen)\b", re.I)


def one_sex(question: str) -> str | None:
    """"female" or "male" when ``question`` names exactly one sex ("How many male patients..."), else None."""
    f, m = bool(_FEMALE.search(question or "")), bool(_MALE.search(question or ""))
    return "female" if f and not m else ("male" if m and not f else None)


class LookupArgs(BaseModel):
    """Arguments of ``lookup`` (descriptions are short: they cost prompt tokens on every question)."""

    op: Op
    what: str = Field(description="the thing asked about, in the question's words, e.g. 'A1c', 'flu shot'")
    kind: Kind = Field("any", description="kind of record, if clear")
    date: str | None = Field(None, description="YYYY-MM-DD (on_date, active_on)")
    start: str | None = Field(None, description="YYYY[-MM[-DD]]")
    end: str | None = Field(None, description="YYYY[-MM[-DD]]")

    @field_validator("date", "start", "end")
    @classmethod
    def _iso(cls, v: str | None) -> str | None:
        return iso_date(v)

    @field_validator("what")
    @classmethod
    def _spaced(cls, v: str) -> str:
        # A model writes "date_of_birth" or "flu-shot_count" as an identifier: the words are what it means.
        return v.replace("_", " ").strip()


#: where a word of a record's name is searched across the store (the ``:text`` modifier on its code)
TEXT_SEARCHES = (("Condition", "code:text"), ("Procedure", "code:text"), ("MedicationRequest", "code:text"),
                 ("Immunization", "vaccine-code:text"), ("Observation", "code:text"), ("AllergyIntolerance", "code:text"),
                 ("CarePlan", "category:text"), ("Encounter", "type:text"))


class FactSession(Protocol):
    """What ``lookup`` needs from a patient session (implemented by :class:`tools.patient_tools.PatientSession`)."""

    as_of: str
    max_rows: int

    def of_type(self, rtype: str) -> list[dict]: ...
    def row(self, resource: dict) -> Row: ...
    def patient(self) -> dict: ...
    def with_medication(self, resource: dict) -> dict: ...


class Fact(BaseModel):
    """What ``lookup`` returns: text for the model, evidence rows, computed values the answer may state."""

    text: str
    evidence: dict[str, str] = Field(default_factory=dict)
    computed: list[str] = Field(default_factory=list)
    #: the record concepts ``what`` resolved to (labels), for logs and the claim check
    concepts: list[str] = Field(default_factory=list)
    #: computed value -> the references that prove it (see ToolOutput.proofs)
    proofs: dict[str, list[str]] = Field(default_factory=dict)
    #: ``what`` matched only by a few words of longer names (:func:`vocabulary.weak_match`)
    weak: bool = False


# Words in ``what`` that hint at a kind of record when the model left ``kind`` at "any".
_KIND_HINTS: list[tuple[tuple[str, ...], str]] = [
    (("shot", "vaccin", "immuniz", "immunis", "jab", "booster"), "vaccine"),
    (("visit", "encounter", "appointment", "stay", "admission", "admitted", "hospitaliz", "emergency room"),
     "visit"),
    (("allerg", "intoleran"), "allergy"),
    (("prescri", "medication", "meds", "drug", "pill", "tablet"), "medication"),
    (("surgery", "procedure", "operation"), "procedure"),
    (("diagnos", "history of", "hx"), "condition"),
    (("care plan", "careplan"), "careplan"),
]

def kind_word(text: str) -> str | None:
    """The word of ``text`` that names a kind of record ("shots" of "Which shots did he get on Jun 2 2013?"),
    else None."""
    for hints, _kind in _KIND_HINTS:
        for h in hints:
            m = re.search(r"\b" + re.escape(h) + r"[\w-]*", text, re.I)
            if m:
                return m.group(0).lower()
    return None


def guess_kind(what: str) -> str:
    """The kind of record words hint at ("flu shot" -> vaccine, "hospital stays" -> visit), else "any"."""
    for hints, kind in _KIND_HINTS:
        if any(re.search(r"\b" + re.escape(h), what, re.I) for h in hints):
            return kind
    return "any"


_DEMOGRAPHIC = re.compile(r"\b(sex|gender|male|female|man|woman|boy|girl|born|birth\w*|birthday|dob|die|died|death|dead|"
                          r"deceased|alive|age|how old|race|ethnicity|ethnic|marital|married|language|speaks?|"
                          r"address|lives?|city|state|name|demographics?)\b", re.I)

def about_the_patient(text: str) -> bool:
    """Whether ``text`` asks about the patient alone (sex, birth, death, age, address...), naming nothing of
    the record besides ("How old was she on 1963-12-01?", not "age at the asthma diagnosis")."""
    return bool(_DEMOGRAPHIC.search(text)) and not [
        w for w in vocab.named_words(text) if not _DEMOGRAPHIC.fullmatch(w) and w not in ("old", "how", "patient")
        and not re.fullmatch(r"[\d-]+", w)]


_REF_LIMIT = 12  # citations listed per line before "and N more"


def _activities(r: dict) -> str:
    """A care plan's activities as an answer fragment ("; activities: A; B"), else ""."""
    if r.get("resourceType") != "CarePlan":
        return ""
    acts = [concept_display((a.get("detail") or {}).get("code")) for a in r.get("activity") or []]
    acts = [a for a in acts if a]
    return "; activities: " + "; ".join(acts) if acts else ""


# --------------------------------------------------------------------------------------------------
# Concepts of a record


def _codings(concept: Any) -> list[dict]:
    out: list[dict] = []
    for c in concept if isinstance(concept, list) else [concept]:
        if isinstance(c, dict):
            out.extend(cd for cd in c.get("coding") or [] if isinstance(cd, dict))
    return out


def _concept_field(resource: dict) -> Any:
    t = resource.get("resourceType")
    if t == "Immunization":
        return resource.get("vaccineCode")
    if t in ("MedicationRequest", "MedicationStatement", "MedicationAdministration", "MedicationDispense"):
        return resource.get("medicationCodeableConcept")
    if t == "Encounter":
        return (resource.get("type") or [None])[0]
    if t == "CarePlan":
        cats = [c for c in resource.get("category") or [] if concept_display(c)]
        return cats[-1] if cats else None
    return resource.get("code")


def record_concepts(session: FactSession, types: Sequence[str]) -> list[vocab.Concept]:
    """The concepts (type + code) that occur in the visible record, each with the references that carry it."""
    out: dict[tuple[str, str], vocab.Concept] = {}

    def add(rtype: str, key: str, display: str, codes: set[str], ref: str) -> None:
        c = out.get((rtype, key))
        if c is None:
            c = out[(rtype, key)] = vocab.Concept(type=rtype, key=key, display=display, codes=set(codes))
        c.refs.append(ref)

    for rtype in types:
        for r in session.of_type(rtype):
            ref = ref_of(r)
            field = _concept_field(session.with_medication(r))
            cds = _codings(field)
            display = concept_display(field) or (field or {}).get("text") if isinstance(field, dict) else None
            if cds or display:
                codes = {str(cd.get("code")) for cd in cds if cd.get("code")}
                codes |= {f"{cd.get('system')}|{cd.get('code')}" for cd in cds if cd.get("code") and cd.get("system")}
                key = next((f"{cd.get('system')}|{cd.get('code')}" for cd in cds if cd.get("code")), None) or str(display)
                add(rtype, key, str(display or key), codes, ref)
            if rtype == "Observation":
                # Panels (blood pressure) carry their readings as components: each is a concept of its own,
                # so "diastolic" resolves to the diastolic reading of every panel.
                for comp in r.get("component") or []:
                    ccds = _codings(comp.get("code"))
                    cdisp = concept_display(comp.get("code"))
                    if ccds and cdisp and (comp.get("valueQuantity") or {}).get("value") is not None:
                        ccodes = {str(cd.get("code")) for cd in ccds if cd.get("code")}
                        add(rtype, "component|" + "|".join(sorted(ccodes)), str(cdisp), ccodes, ref)
            if rtype == "Encounter":
                cls = r.get("class") or {}
                code = cls.get("code")
                if code:
                    name = {"AMB": "ambulatory", "IMP": "inpatient", "EMER": "emergency", "ACUTE": "inpatient acute",
                            "OBSENC": "observation", "HH": "home health", "VR": "virtual"}.get(code, str(code).lower())
                    add(rtype, f"class|{code}", f"{name} encounter (class {code})", {str(code)}, ref)
    return list(out.values())


# --------------------------------------------------------------------------------------------------
# Values and dates


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def value_text(resource: dict) -> str | None:
    """The value an observation states, as the row writes it ("6.5 %", "120/80 mm[Hg]", "Never smoker")."""
    q = render_quantity(resource.get("valueQuantity"))
    if q:
        return q
    if resource.get("valueCodeableConcept"):
        return concept_display(resource["valueCodeableConcept"])
    for key in ("valueString", "valueInteger", "valueBoolean", "valueDateTime"):
        if key in resource:
            return str(resource[key])
    comps = []
    for c in resource.get("component") or []:
        v = render_quantity(c.get("valueQuantity")) or concept_display(c.get("valueCodeableConcept"))
        if v:
            comps.append(f"{concept_display(c.get('code'))} {v}")
    return "; ".join(comps) or None


def numeric_value(resource: dict) -> float | None:
    """The number a measurement states (the first component's for a panel such as blood pressure)."""
    v = _num((resource.get("valueQuantity") or {}).get("value"))
    if v is not None:
        return v
    for c in resource.get("component") or []:
        v = _num((c.get("valueQuantity") or {}).get("value"))
        if v is not None:
            return v
    return None


def _end_date(resource: dict) -> str | None:
    for key in ("abatementDateTime",):
        if resource.get(key):
            return str(resource[key])[:10]
    for key in ("abatementPeriod", "period", "performedPeriod", "effectivePeriod"):
        p = resource.get(key)
        if isinstance(p, dict) and p.get("end"):
            return str(p["end"])[:10]
    dr = (resource.get("dispenseRequest") or {}).get("validityPeriod") or {}
    if dr.get("end"):
        return str(dr["end"])[:10]
    return None


def _status(resource: dict) -> str:
    for key in ("clinicalStatus", "verificationStatus"):
        for cd in _codings(resource.get(key)):
            if cd.get("code"):
                return str(cd["code"])
    return str(resource.get("status") or "")


def _in_window(d: str | None, start: str | None, end: str | None) -> bool:
    if start and (not d or d[: len(start)] < start):
        return False
    if end and (not d or d[: len(end)] > end):
        return False
    return True


def _fmt(x: float) -> str:
    return f"{x:.10g}" if abs(x) >= 1 or x == 0 else f"{x:.4g}"


def age_between(birth: str, on: str) -> int:
    """Whole years from ``birth`` to ``on`` (both ``YYYY-MM-DD``)."""
    b, o = date.fromisoformat(birth[:10]), date.fromisoformat(on[:10])
    return o.year - b.year - ((o.month, o.day) < (b.month, b.day))


# --------------------------------------------------------------------------------------------------
# lookup


class Lookup:
    """The ``lookup`` tool over one session."""

    def __init__(self, session: FactSession):
        self.s = session
        self._concepts: dict[tuple[str, ...], list[vocab.Concept]] = {}
        #: component codes of the concept being answered (a panel's reading), set by :meth:`resolve`
        self.component: set[str] = set()

    def _comp(self, r: dict) -> dict | None:
        """The component of ``r`` that is the concept being answered (a panel's reading), if any."""
        for comp in r.get("component") or [] if self.component else []:
            if {str(cd.get("code")) for cd in _codings(comp.get("code"))} & self.component:
                return comp
        return None

    def value(self, r: dict) -> str | None:
        """The value of ``r`` for the concept being answered (a component's when it is one)."""
        comp = self._comp(r)
        return render_quantity(comp.get("valueQuantity")) if comp else value_text(r)

    def number(self, r: dict) -> float | None:
        """The number of ``r`` for the concept being answered."""
        comp = self._comp(r)
        return _num((comp.get("valueQuantity") or {}).get("value")) if comp else numeric_value(r)

    def concepts(self, types: Sequence[str]) -> list[vocab.Concept]:
        key = tuple(types)
        if key not in self._concepts:
            self._concepts[key] = record_concepts(self.s, types)
        return self._concepts[key]

    # ---- resolution ------------------------------------------------------------------------------
    def _kind(self, a: LookupArgs) -> str:
        return a.kind if a.kind != "any" else guess_kind(a.what)

    def resolve(self, a: LookupArgs) -> tuple[list[vocab.Match], list[dict], str]:
        """Concept matches, their visible resources (newest first), and the kind used."""
        self.component = set()
        # "medications prescribed in 2016": the year is the window (start/end), not part of a name.
        bare = re.sub(r"\b(?:in|on|during|since|before|after|from)?\s*(?:1[89]\d\d|20\d\d)(?:-\d\d){0,2}\b", " ", a.what)
        if bare.strip() and bare != a.what:
            a = a.model_copy(update={"what": " ".join(bare.split())})
        kind = self._kind(a)
        types = vocab.KIND_TYPES.get(kind, vocab.ALL_TYPES) if kind != "any" else vocab.ALL_TYPES
        tried = [types] if types == vocab.ALL_TYPES else [types, vocab.ALL_TYPES]
        if kind != "any" and a.op in ("exists", "age_at"):
            tried = [types]  # a yes/no about diagnoses must not turn into a screening test that names it
        if kind == "any" and a.op in ("exists", "age_at", "active_on", "ended"):
            # "Any history of diabetes?" is about diagnoses (then drugs, vaccines, allergies), not about a
            # screening test or a care plan that happens to carry the word.
            tried = [("Condition",), ("Condition", "MedicationRequest", "MedicationStatement", "Immunization",
                                      "AllergyIntolerance")]
        for ts in tried:
            concepts = self.concepts(ts)
            if not vocab.named_words(a.what) and not vocab.lay_phrases(a.what) and kind != "any" and ts is types:
                # "allergies", "medications", "visits": the whole kind.
                res = [r for t in ts for r in self.s.of_type(t)]
                res.sort(key=lambda r: self.s.row(r).date or "", reverse=True)
                return [vocab.Match(c, 1.0, f"every {kind} record") for c in concepts], res, kind
            matches = (vocab.resolve(a.what, concepts) if a.op == "exists" else vocab.resolve_phrases(a.what, concepts))
            if matches:
                # A measurement is one series; other kinds take every concept the words name (all flu vaccines).
                top = matches[0]
                if top.why.startswith("name "):
                    # The words are a record's whole name ("Seizure disorder"): that record, not another that
                    # shares a word with it ("History of single seizure").
                    matches = [m for m in matches if m.why.startswith("name ")]
                if top.concept.key.startswith("component|"):
                    self.component = set(top.concept.codes)
                if top.concept.type == "Observation":
                    # One lay name for one analyte coded two ways ("creat": LOINC 2160-0 in serum, 38483-4 in
                    # blood) is one series; anything else a measurement matched is another series.
                    origin = top.why.split(" -> code ")[0] if " -> code " in top.why else None
                    matches = [m for m in matches if m.concept.key == top.concept.key or (
                        origin is not None and m.score == top.score and m.why.startswith(origin + " -> code ")
                        and not m.concept.key.startswith("component|") and not top.concept.key.startswith("component|"))]
                else:
                    matches = [m for m in matches if m.concept.type == top.concept.type or
                               (kind != "any" and m.concept.type in types)]
                refs = {ref for m in matches for ref in m.concept.refs}
                res = [r for t in {m.concept.type for m in matches} for r in self.s.of_type(t) if ref_of(r) in refs]
                res.sort(key=lambda r: self.s.row(r).date or "", reverse=True)
                if len(matches) > 1 and top.concept.type == "Observation":
                    # Merged codes compare only in one unit: the newest reading's.
                    unit = (res[0].get("valueQuantity") or {}).get("unit") if res else None
                    res = [r for r in res if (r.get("valueQuantity") or {}).get("unit") == unit]
                return matches, res, kind
        return [], [], kind

    def _near_names(self, what: str) -> list[str]:
        stems = vocab.content_stems(what)
        out = []
        for c in self.concepts(vocab.ALL_TYPES):
            ds = {vocab.stem(w) for w in vocab.words(c.display)}
            if any(s[:4] == d[:4] for s in stems for d in ds if len(s) >= 4 and len(d) >= 4):
                out.append(c.display)
        return sorted(set(out))[:5]

    # ---- the tool --------------------------------------------------------------------------------
    def __call__(self, a: LookupArgs) -> Fact:
        named = [w for w in vocab.named_words(a.what) if not _DEMOGRAPHIC.fullmatch(w) and w not in ("old", "how")]
        if _DEMOGRAPHIC.search(a.what) and not named and not vocab.lay_phrases(a.what):
            # Sex, birth, death, age, race, language, address: the Patient resource answers them.
            patient = self.s.patient()
            row = self.s.row(patient)
            extra: list[str] = []
            born = patient.get("birthDate")
            if born:
                died = (patient.get("deceasedDateTime") or "")[:10]
                end = died if died and died < self.s.as_of else self.s.as_of
                # "How old was she on 1963-12-01?": the age on the day asked, not today's.
                on = a.date[:10] if a.date and len(a.date) >= 10 and a.date[:10] < end else end
                extra.append(str(age_between(born, on)))
                when = f"on {on}" if on != end else (f"at death on {end}" if died and end == died else f"as of {end}")
            answer = row.text
            if extra and (re.search(r"\b(age|old|aged)\b", a.what, re.I) or a.op == "age_at"):
                answer = (f"The patient {'is' if when.startswith('as of') else 'was'} {extra[0]} years old {when} "
                          f"(born {born[:10]}) [{row.ref}].")
            return Fact(text=f"lookup {a.op} '{a.what}' -> the patient's own record\nAnswer: {answer}"
                             + (f"\n(age {extra[0]} {when})" if extra and answer == row.text else ""),
                        evidence={row.ref: row.text}, computed=extra, concepts=["Patient"])
        start, end = a.start, a.end
        if a.op in ("count", "list", "change", "all") and a.date and not (start or end):
            start = end = a.date  # "how many on 2019-05-01"
        matches, res, kind = self.resolve(a)
        labels = sorted({m.concept.label for m in matches})[:6]
        head = f"lookup {a.op} '{a.what}'"
        if not matches or not res:
            near = self._near_names(a.what)
            text = (f"{head}: nothing in the record (as of {self.s.as_of}) matches '{a.what}'"
                    + (f" among {kind} records" if kind != "any" else "") + ".")
            if near:
                text += " Similar names in the record: " + "; ".join(near) + "."
            unknown = self.unknown_words(a.what) if a.op in ("exists", "count") and a.kind != "note" else []
            if unknown:
                # No answer from a word nothing is named by: it may be written another way in this record.
                text += (f"\nNo record of this store is named by {', '.join(unknown)}: it may be written another way "
                         "(its full name, or search_record).")
            elif a.op == "exists":
                text += f"\nAnswer: No, the record has no {a.what}."
            elif a.op == "count" and vocab.lay_phrases(a.what):
                # A thing the vocabulary knows by its codes, of which this record holds none.
                text += f"\nAnswer: 0: the record has no {a.what}."
                return Fact(text=text, computed=["0"])
            return Fact(text=text)
        matched = "; ".join(labels) + (f" (+{len(matches) - 6} more)" if len(matches) > 6 else "")
        fn: Callable[..., Fact] = getattr(self, f"_op_{a.op}")
        fact = fn(a, res, start, end)
        fact.text = f"{head} -> matched {matched}\n{fact.text}"
        fact.concepts = labels
        fact.weak = all(vocab.weak_match(m) for m in matches)
        return fact

    def unknown_words(self, what: str) -> list[str]:
        """The abbreviations of ``what`` that name nothing in the whole store (no code's display or text holds
        them) and that the vocabulary does not know ("CVA": the record writes "Stroke"), when ``what`` has no word
        a record or a lay name knows. A thing named only so cannot be looked for, so "the record has no X" cannot
        be shown. [] when the session has no store, or the store cannot search text."""
        store = getattr(self.s, "store", None)
        if store is None:
            return []
        if vocab.lay_phrases(what):
            return []  # a name the vocabulary knows ("covid shot"): looked for by its codes
        stems = vocab.content_stems(what)
        caps = {w.lower() for w in re.findall(r"\b[A-Z][A-Z0-9]{1,5}\b", what)}
        out = []
        for w in dict.fromkeys(vocab.words(what)):
            if vocab.stem(w) not in stems or w in vocab.QUALIFIERS:
                continue
            if len(w) > 4 and w not in caps:
                # A word written out ("tuberculosis") names the thing itself; what no record holds is absent. The
                # risk is in abbreviations ("CVA", "SAH"), which a record writes out.
                return []
            try:
                if any(store.count(t, {p: w}) for t, p in TEXT_SEARCHES):
                    # One word some record is named by is enough to look for the thing (the others may be the
                    # question's own words: "gotten", "about").
                    return []
            except StoreError:
                return []
            out.append(w)
        return out

    # ---- helpers ---------------------------------------------------------------------------------
    def _ev(self, rs: Sequence[dict]) -> dict[str, str]:
        return {ref_of(r): self.s.row(r).text for r in rs}

    def _d(self, r: dict) -> str:
        return (self.s.row(r).date or "")[:10]

    def _name(self, r: dict) -> str:
        comp = self._comp(r)
        if comp:
            # A panel's reading is named as the reading ("Systolic Blood Pressure"), not as the panel.
            return concept_display(comp.get("code")) or "reading"
        return concept_display(_concept_field(self.s.with_medication(r))) or r.get("resourceType", "record")

    def _cite(self, rs: Sequence[dict]) -> str:
        refs = [f"[{ref_of(r)}]" for r in rs[:_REF_LIMIT]]
        more = f" and {len(rs) - _REF_LIMIT} more" if len(rs) > _REF_LIMIT else ""
        return " ".join(refs) + more

    def _describe(self, r: dict) -> str:
        """One record as an answer fragment: what it is, its value or kind of date, and its end if it ended."""
        t, d, name = r.get("resourceType"), self._d(r), self._name(r)
        if t == "Observation":
            v = self.value(r)
            return f"{name} was {v} on {d}" if v else f"{name} was on {d}"
        if t == "Encounter":
            return f"{name} ({(r.get('class') or {}).get('code', '')}) was on {d}"
        end = _end_date(r)
        verb = {"Condition": "onset", "MedicationRequest": "prescribed", "Immunization": "given",
                "Procedure": "performed", "CarePlan": "started", "AllergyIntolerance": "recorded"}.get(t, "on")
        text = f"{name}, {verb} {d}"
        if end and t in ("Condition", "CarePlan", "MedicationRequest", "AllergyIntolerance"):
            text += f", {'resolved' if t == 'Condition' else 'ended'} {end}"
        elif t == "MedicationRequest" and r.get("status"):
            text += f", status {r['status']}"
        return text + _activities(r)

    def _earlier(self, rs: Sequence[dict], n: int = 4) -> str:
        """Earlier readings of a measurement, so "how has it moved" can be answered from the same result."""
        rs = [r for r in rs if r.get("resourceType") == "Observation"][:n]
        if not rs:
            return ""
        return "\nEarlier: " + "; ".join(f"{self.value(r)} on {self._d(r)} [{ref_of(r)}]" for r in rs)

    def _trend(self, rs: Sequence[dict]) -> tuple[str, list[dict]]:
        """How a numeric series moved from its first to its last reading (rs newest first)."""
        num = [r for r in rs if r.get("resourceType") == "Observation" and self.number(r) is not None]
        if len(num) < 2:
            return "", []
        first, last = num[-1], num[0]
        d = (self.number(last) or 0) - (self.number(first) or 0)
        word = "went up" if d > 0 else "went down" if d < 0 else "did not change"
        return (f"\nOver the record it {word}: from {self.value(first)} on {self._d(first)} [{ref_of(first)}] to "
                f"{self.value(last)} on {self._d(last)} [{ref_of(last)}]."), [first]

    def _age_note(self, r: dict) -> tuple[str, list[str]]:
        """" (age N)" for an event of a patient with a birth date: age questions then need no arithmetic."""
        if r.get("resourceType") == "Observation":
            return "", []
        birth = self.s.patient().get("birthDate")
        d = self._d(r)
        if not birth or not d:
            return "", []
        age = age_between(birth, d)
        return f" (age {age})", [str(age)]

    def _window(self, res: list[dict], start: str | None, end: str | None) -> list[dict]:
        return [r for r in res if _in_window(self._d(r), start, end)]

    @staticmethod
    def _span(start: str | None, end: str | None) -> str:
        if start and end and start[:4] == end[:4] and start[4:] in ("", "-01", "-01-01") and end[4:] in (
                "", "-12", "-12-31"):
            return f" in {start[:4]}"  # a whole year, however the model wrote it
        if start and end:
            return f" in {start}" if start == end else f" from {start} to {end}"
        if start:
            return f" since {start}"
        if end:
            return f" up to {end}"
        return ""

    # ---- operations (res is newest first) --------------------------------------------------------
    def _op_latest(self, a: LookupArgs, res, start, end) -> Fact:
        rs = self._window(res, start, end) or []
        if not rs:
            return Fact(text=f"none{self._span(start, end)}.\nAnswer: none{self._span(start, end)}.")
        r = rs[0]
        same_day = [x for x in rs if self._d(x) == self._d(r)]
        age, computed = self._age_note(r)
        trend, extra = self._trend(rs)
        text = (f"Answer: The latest {self._describe(r)}{age} {self._cite([r])}."
                f"\n({len(rs)} in the record{self._span(start, end)}, from {self._d(rs[-1])} to {self._d(r)}; as of "
                f"{self.s.as_of})" + self._earlier(rs[1:]) + trend)
        if len(same_day) > 1 and r.get("resourceType") != "Observation":
            text = (f"Answer: The latest, on {self._d(r)}: " + "; ".join(self._name(x) for x in same_day) + " "
                    + self._cite(same_day) + f".\n({len(rs)} in the record; as of {self.s.as_of})")
            return Fact(text=text, evidence=self._ev(same_day))
        shown = [r] + [x for x in rs[1:5] if x.get("resourceType") == "Observation"] + extra
        return Fact(text=text, evidence=self._ev(shown), computed=computed)

    def _op_first(self, a: LookupArgs, res, start, end) -> Fact:
        rs = self._window(res, start, end)
        if not rs:
            return Fact(text=f"none{self._span(start, end)}.\nAnswer: none{self._span(start, end)}.")
        r = rs[-1]
        same_day = [x for x in rs if self._d(x) == self._d(r)]
        if len(same_day) > 1 and r.get("resourceType") != "Observation":
            return Fact(text=f"Answer: The first, on {self._d(r)}: " + "; ".join(self._name(x) for x in same_day)
                        + " " + self._cite(same_day) + f".\n({len(rs)} in the record)", evidence=self._ev(same_day))
        age, computed = self._age_note(r)
        return Fact(text=f"Answer: The first {self._describe(r)}{age} {self._cite([r])}.\n({len(rs)} in the record"
                         f"{self._span(start, end)}, from {self._d(r)} to {self._d(rs[0])})",
                    evidence=self._ev([r]), computed=computed)

    def _op_all(self, a: LookupArgs, res, start, end) -> Fact:
        rs = self._window(res, start, end)
        page = rs[: self.s.max_rows]
        lines = [f"{len(rs)} found{self._span(start, end)}, newest first:"] + [
            f"- {self._describe(r)} [{ref_of(r)}]" for r in page]
        if len(rs) > len(page):
            lines.append(f"{len(rs) - len(page)} more (narrow with start/end)")
        return Fact(text="\n".join(lines), evidence=self._ev(page))

    def _op_on_date(self, a: LookupArgs, res, start, end) -> Fact:
        day = (a.date or start or end or "")[:10]
        if not day:
            return Fact(text="error: on_date needs date YYYY-MM-DD")
        rs = [r for r in res if self._d(r).startswith(day)]
        if rs:
            return Fact(text=f"Answer: On {day}: " + "; ".join(self._describe(r) for r in rs[:6]) + " "
                             + self._cite(rs[:6]) + ".", evidence=self._ev(rs[:6]))
        before = next((r for r in res if self._d(r) < day), None)
        after = next((r for r in reversed(res) if self._d(r) > day), None)
        near = [x for x in (before, after) if x is not None]
        text = f"Answer: none recorded on {day}."
        if near:
            text += " Nearest: " + "; ".join(f"{self._describe(r)} [{ref_of(r)}]" for r in near)
        return Fact(text=text, evidence=self._ev(near))

    def _op_count(self, a: LookupArgs, res, start, end) -> Fact:
        rs = self._window(res, start, end)
        n = len(rs)
        span = self._span(start, end)
        what = a.what.strip() or "records"
        lines = [f"Answer: {n} ({what}){span} " + (self._cite(rs) + "." if rs else f"(as of {self.s.as_of}).")]
        lines += [f"- {self._describe(r)} [{ref_of(r)}]" for r in rs[: self.s.max_rows]]
        if n > self.s.max_rows:
            lines.append(f"... {n - self.s.max_rows} more")
        return Fact(text="\n".join(lines), evidence=self._ev(rs[: max(self.s.max_rows, _REF_LIMIT)]),
                    computed=[str(n)], proofs={str(n): [ref_of(r) for r in rs[:_REF_LIMIT]]} if rs else {})

    def _op_change(self, a: LookupArgs, res, start, end) -> Fact:
        rs = [r for r in self._window(res, start, end) if self.number(r) is not None]
        if len(rs) < 2:
            return Fact(text=f"Answer: fewer than two numeric readings{self._span(start, end)}; no change can be "
                             f"stated." + (f" Only: {self._describe(rs[0])} [{ref_of(rs[0])}]" if rs else ""),
                        evidence=self._ev(rs))
        first, last = rs[-1], rs[0]
        v1, v2 = self.number(first), self.number(last)
        assert v1 is not None and v2 is not None
        delta = v2 - v1
        word = "went up" if delta > 0 else "went down" if delta < 0 else "did not change"
        text = (f"Answer: {self._name(last)} {word}{self._span(start, end)}: from {self.value(first)} on "
                f"{self._d(first)} [{ref_of(first)}] to {self.value(last)} on {self._d(last)} [{ref_of(last)}]."
                f"\n(change {delta:+.4g}; {len(rs)} readings in the period)")
        return Fact(text=text, evidence=self._ev([first, last]), computed=[_fmt(abs(delta)), _fmt(delta)])

    def _op_exists(self, a: LookupArgs, res, start, end) -> Fact:
        rs = self._window(res, start, end)
        span = self._span(start, end)
        if not rs:
            return Fact(text=f"Answer: No, none{span} (the record has {len(res)} at other times).",
                        evidence=self._ev(res[:1]))
        first, last = rs[-1], rs[0]
        names = sorted({self._name(r) for r in rs})
        age, computed = self._age_note(first)
        text = (f"Answer: Yes, {'; '.join(names[: self.s.max_rows])}{span}: first on {self._d(first)}{age} [{ref_of(first)}]"
                + (f", latest on {self._d(last)} [{ref_of(last)}]" if last is not first else "") + "."
                + f"\n({len(rs)} record(s))")
        return Fact(text=text, evidence=self._ev([first, last]), computed=[str(len(rs)), *computed])

    def _op_active_on(self, a: LookupArgs, res, start, end) -> Fact:
        day = (a.date or start or end or self.s.as_of)[:10]
        active, other = [], []
        for r in res:
            s, e = self._d(r), _end_date(r)
            if s and s <= day and (e is None or e >= day):
                if e is None and _status(r) in ("resolved", "inactive", "stopped", "completed", "entered-in-error") \
                        and r.get("resourceType") not in ("Condition", "AllergyIntolerance"):
                    other.append(r)
                    continue
                active.append(r)
            else:
                other.append(r)
        if active:
            parts = [f"{self._name(r)} since {self._d(r)}" + (f" until {_end_date(r)}" if _end_date(r) else
                                                               " (not ended)") for r in active[:5]]
            # "as of" marks the day as the moment asked about, not a date the cited rows must show.
            return Fact(text=f"Answer: Yes, active as of {day}: " + "; ".join(parts) + " " + self._cite(active[:5]) + ".",
                        evidence=self._ev(active[:5]), computed=[day])
        parts = [f"{self._name(r)} from {self._d(r)}" + (f" to {_end_date(r)}" if _end_date(r) else "") for r in other[:3]]
        return Fact(text=f"Answer: No, not active as of {day}." + (" Records: " + "; ".join(parts) + " "
                                                               + self._cite(other[:3]) if other else ""),
                    evidence=self._ev(other[:3]))

    def _op_list(self, a: LookupArgs, res, start, end) -> Fact:
        rs = self._window(res, start, end)
        by_name: dict[str, list[dict]] = {}
        for r in rs:
            by_name.setdefault(self._name(r), []).append(r)
        names = sorted(by_name)
        page = names[: self.s.max_rows]
        # Each name cites its latest record, so the answer line stands on its own (and can be the answer).
        lines = [f"Answer: {len(names)} distinct{self._span(start, end)}: "
                 + "; ".join(f"{n} [{ref_of(by_name[n][0])}]" for n in page)]
        if len(names) == 1 and _activities(by_name[names[0]][0]):
            # One care plan named: its activities are what "what does the plan involve" asks for.
            lines[0] += _activities(by_name[names[0]][0]) + f" [{ref_of(by_name[names[0]][0])}]"
        shown: list[dict] = []
        for n in page:
            group = by_name[n]
            status = _status(group[0])
            lines.append(f"- {n}: {len(group)}x, {self._d(group[-1])}" + (f" to {self._d(group[0])}" if len(group) > 1 else "")
                         + (f", {status}" if status else "") + _activities(group[0]) + f" [{ref_of(group[0])}]")
            shown.append(group[0])
        if len(names) > len(page):
            lines.append(f"{len(names) - len(page)} more names (narrow with start/end)")
        return Fact(text="\n".join(lines), evidence=self._ev(shown), computed=[str(len(names))])

    def _op_age_at(self, a: LookupArgs, res, start, end) -> Fact:
        rs = self._window(res, start, end)
        if not rs:
            return Fact(text="Answer: none found, so no age.")
        first = rs[-1]
        patient = self.s.patient()
        birth = patient.get("birthDate")
        if not birth or not self._d(first):
            return Fact(text="Answer: the birth date or the event date is missing.", evidence=self._ev([first]))
        age = age_between(birth, self._d(first))
        pref = f"Patient/{patient.get('id')}"
        text = (f"Answer: The patient was {age} years old at the first {self._name(first)} on {self._d(first)} "
                f"[{ref_of(first)}] (born {birth[:10]} [{pref}]).")
        ev = self._ev([first]) | {pref: self.s.row(patient).text}
        return Fact(text=text, evidence=ev, computed=[str(age)])

    def _op_ended(self, a: LookupArgs, res, start, end) -> Fact:
        rs = self._window(res, start, end)
        ended = [r for r in rs if _end_date(r)]
        if not ended:
            st = _status(rs[0]) if rs else ""
            return Fact(text=f"Answer: no end date recorded" + (f"; status {st}" if st else "") + " "
                             + self._cite(rs[:1]), evidence=self._ev(rs[:1]))
        ended.sort(key=lambda r: _end_date(r) or "", reverse=True)
        r = ended[0]
        return Fact(text=f"Answer: {self._name(r)} ended on {_end_date(r)} (started {self._d(r)}) [{ref_of(r)}].",
                    evidence=self._ev([r]))
