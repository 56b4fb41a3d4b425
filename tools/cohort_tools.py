"""The cohort tools: read-only, typed searches over the WHOLE store (every patient), bounded output.

Where :mod:`tools.patient_tools` confines a session to one patient's compartment, a
:class:`CohortSession` answers population questions ("how many male patients had an inpatient stay in
2010?") with the store's own FHIR search:

* ``count_resources`` - how many resources match (``_summary=count``),
* ``count_patients`` - how many distinct patients those resources belong to,
* ``list_resources`` - a few matching resources as one-line projections,
* ``find_codes`` - which codes exist whose names match some words ("HPV" -> ``cvx|62``).

Every count is recorded under a citation key (``query:Type?params`` for resources, ``patients:Type?params``
for distinct patients) so the cohort citation check (:mod:`agent.cohort_citations`) can verify that a
number the answer states came from a query a tool actually ran, and re-run that query to confirm it.
Only the :class:`tools.store.base.FHIRStore` interface is used, so the tools work on the embedded store
and on a FHIR server over REST.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Literal
from urllib.parse import unquote

from pydantic import BaseModel, Field, field_validator

from ehr_agent.tools.dispatch import dispatch_tool
from ehr_agent.tools.retrieval.projections import project
from ehr_agent.tools.spec import Tool, ToolOutput, ToolSpec, specs_of
from ehr_agent.tools.store.base import FHIRStore, Params, StoreError, normalize_params
from ehr_agent.tools.store.compartment import PATIENT_COMPARTMENT

# Parameters the tools set themselves (paging, result shape); the model must not pass them.
RESERVED_PARAMS = frozenset({"_count", "_offset", "_summary", "_elements", "_include", "_revinclude", "_format",
                             "_contained", "_containedType", "_total"})

#: The element naming "the patient" of a resource, for distinct-patient counts (the first compartment path,
#: except where that path names someone else first).
PATIENT_ELEMENT: dict[str, str] = {t: paths[0].split(".")[0] for t, paths in PATIENT_COMPARTMENT.items() if paths}
PATIENT_ELEMENT.update({"Coverage": "beneficiary", "Provenance": "target"})

#: type -> (token search parameter, element) holding the concept a question names.
CODE_FIELDS: dict[str, tuple[str, str]] = {
    "Immunization": ("vaccine-code", "vaccineCode"),
    "MedicationRequest": ("code", "medicationCodeableConcept"),
    "MedicationAdministration": ("code", "medicationCodeableConcept"),
    "MedicationStatement": ("code", "medicationCodeableConcept"),
    "Encounter": ("type", "type"),
    "DocumentReference": ("type", "type"),
    "CarePlan": ("category", "category"),
    "CareTeam": ("category", "category"),
    "Claim": ("use", "use"),
}

CITE_KINDS = ("query", "patients")
_PREFIX = re.compile(r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)?(\d{4}(?:-\d{2}(?:-\d{2})?)?)")

# ------------------------------------------------------------------------------------------- arguments

ParamsArg = dict[str, str | list[str]] | str


class QueryArgs(BaseModel):
    """A FHIR search over the whole store."""

    resource_type: str = Field(description="FHIR type, e.g. Encounter, Patient, Immunization, Condition")
    params: ParamsArg = Field(default_factory=dict,
                              description='FHIR search params, e.g. {"class":"IMP","date":"2010","patient.gender":"male"} '
                                          'or a query string "class=IMP&date=2010"; a list value repeats the param (AND)')

    @field_validator("resource_type")
    @classmethod
    def _type(cls, v: str) -> str:
        v = v.strip()
        if not re.fullmatch(r"[A-Z][A-Za-z]+", v):
            raise ValueError(f"'{v}' is not a FHIR resource type name (e.g. Encounter)")
        return v

    def pairs(self) -> Params:
        """The parameters as ordered (name, value) pairs."""
        return normalize_params(self.params)


class ListArgs(QueryArgs):
    limit: int = Field(10, ge=1, le=50, description="rows to show")


class FindCodesArgs(BaseModel):
    resource_type: str = Field(description="FHIR type, e.g. Immunization, Condition, Observation, Procedure")
    text: str = Field(description="words of the name, e.g. 'hpv' or 'diabetes'")


# --------------------------------------------------------------------------------------------- results


class CountResult(BaseModel):
    """A count and the citation key that states where it came from."""

    query: str
    kind: Literal["resources", "patients"]
    count: int
    cite: str
    scanned: int | None = None


class ListResult(BaseModel):
    query: str
    total: int
    rows: dict[str, str] = Field(default_factory=dict)
    cite: str


class CodeHit(BaseModel):
    param: str
    system: str | None
    code: str
    display: str
    resources: int

    def search_param(self) -> str:
        """The exact ``param=system|code`` to count with."""
        return f"{self.param}={self.system}|{self.code}" if self.system else f"{self.param}={self.code}"


class CodesResult(BaseModel):
    resource_type: str
    text: str
    matched: int
    scanned: int
    codes: list[CodeHit] = Field(default_factory=list)
    how: str = "phrase"


class CohortCountArgs(BaseModel):
    """Arguments of ``cohort_count`` (the answer-shaped count; short descriptions cost fewer prompt tokens)."""

    what: str = Field(description="what is counted, in the question's words, e.g. 'flu shot', 'diabetes', "
                                  "'inpatient stays'")
    kind: Literal["condition", "medication", "vaccine", "procedure", "visit", "allergy", "patient", "any"] = "any"
    count: Literal["patients", "records"] = Field("patients", description="patients (how many patients) or "
                                                                          "records (how many stays, doses...)")
    start: str | None = Field(None, description="YYYY[-MM[-DD]]; a year Y is start Y, end Y")
    end: str | None = Field(None, description="YYYY[-MM[-DD]]")
    sex: Literal["male", "female", "any"] = "any"


# Patients themselves, counted from the Patient resources ("How many patients have died?", "How many women
# are there?", "How many were born before 1950?").
_DIED = re.compile(r"\b(died|dead|deceased|deaths?|passed away|mortality)\b", re.I)
_BORN = re.compile(r"\b(born|births?|birth ?dates?)\b", re.I)
_PEOPLE = re.compile(r"^\s*(?:(?:the|all|of|in|total|number|patients?|people|persons?|individuals|women|men|"
                     r"females?|males?|population|everyone|everybody|store|database|dataset|data|set|registry|"
                     r"cohort|sample|system|record|records|there|altogether|overall)\s*)+$", re.I)


def _about_patients(what: str) -> bool:
    """Whether ``what`` names the patients themselves (deaths, births, everyone), not a record about them."""
    return bool(_DIED.search(what) or _BORN.search(what) or _PEOPLE.match(what))


def people_word(word: str) -> bool:
    """Whether ``word`` only says who is counted ("women", "patients", "database"), not what."""
    return bool(_PEOPLE.match(word))


def counts_patients_themselves(question: str) -> bool:
    """Whether ``question`` asks about the patients alone (how many died, were born, are women), naming no record
    about them ("how many female patients had covid-19?" names one)."""
    from ehr_agent.tools import vocabulary as vocab

    rest = _BORN.sub(" ", _DIED.sub(" ", question))
    return not [w for w in vocab.content_stems(rest) if not people_word(w) and w not in _WHEN_WORDS]


# Words that place a birth or a death in time ("a birth year earlier than 2021").
_WHEN_WORDS = frozenset("earlier later before after since than year years date dates until prior".split())


#: what ``cohort_count`` counts, in the order it tries them when the kind does not say
COUNTED_TYPES: tuple[str, ...] = ("Condition", "Immunization", "MedicationRequest", "Encounter", "Procedure",
                                  "AllergyIntolerance")

#: type -> the date search parameter that places its records in time
DATE_PARAMS: dict[str, str] = {"Immunization": "date", "Encounter": "date", "Condition": "onset-date",
                               "MedicationRequest": "authoredon", "Procedure": "date",
                               "AllergyIntolerance": "date", "Observation": "date", "CarePlan": "date"}


class CohortToolError(ValueError):
    """A call the tools refuse before asking the store (reserved parameter, scan too large)."""


# ---------------------------------------------------------------------------------------- query keys


def query_text(resource_type: str, params: Params) -> str:
    """The canonical, readable form of a search: ``Type?a=1&b=2`` with parameters sorted, values unescaped."""
    return resource_type + "?" + "&".join(f"{k}={v}" for k, v in sorted(params))


def cite_key(kind: str, resource_type: str, params: Params) -> str:
    """``query:Type?...`` (resources) or ``patients:Type?...`` (distinct patients)."""
    return f"{kind}:{query_text(resource_type, params)}"


def parse_cite(key: str) -> tuple[str, str, Params]:
    """``'query:Encounter?date=2010&class=IMP'`` -> ``('query', 'Encounter', [...])``; canonical order.

    Raises :class:`CohortToolError` when the key is not a cohort citation.
    """
    kind, sep, rest = key.strip().partition(":")
    if not sep or kind not in CITE_KINDS:
        raise CohortToolError(f"'{key}' is not a cohort citation (query:Type?params or patients:Type?params)")
    rtype, _, q = rest.strip().partition("?")
    if not re.fullmatch(r"[A-Z][A-Za-z]+", rtype):
        raise CohortToolError(f"'{key}' does not name a resource type")
    params: Params = []
    for part in q.split("&"):
        if not part.strip():
            continue
        k, eq, v = part.partition("=")
        if not eq:
            raise CohortToolError(f"'{part}' in '{key}' is not name=value")
        params.append((unquote(k.strip()), unquote(v.strip())))
    return kind, rtype, sorted(params)


def canonical_cite(key: str) -> str:
    """A citation key in canonical form (parameter order and URL escapes do not matter)."""
    kind, rtype, params = parse_cite(key)
    return cite_key(kind, rtype, params)


def query_dates(params: Params) -> list[str]:
    """Dates and years written in parameter values (``date=ge2010-01-01`` -> ``2010-01-01``), prefixes dropped."""
    out = []
    for _, v in params:
        for piece in v.split(","):
            m = _PREFIX.match(piece.strip())
            if m and not re.match(r"\d", piece.strip()[len(m.group(0)):] or " "):
                out.append(m.group(2))
    return out


# ------------------------------------------------------------------------------------------- session


class CohortSession:
    """The cohort tools over one store. Records every count it computes under its citation key.

    ``max_rows`` bounds listed rows and codes, ``max_chars`` a result's text, ``max_scan`` the resources a
    distinct-patient count or a code scan reads (beyond it the tool asks for a narrower query).
    """

    def __init__(self, store: FHIRStore, *, max_rows: int = 12, max_chars: int = 2400, max_scan: int = 20000):
        self.store = store
        self.max_rows = max_rows
        self.max_chars = max_chars
        self.max_scan = max_scan
        #: citation key -> count, for every count a tool returned in this session
        self.queries: dict[str, int] = {}
        self._tools: dict[str, Tool] = {
            "count_resources": Tool(QueryArgs, self._count_resources_tool,
                                    "Count resources matching a FHIR search over all patients, e.g. Encounter "
                                    '{"class":"IMP","date":"2010","patient.gender":"male"}.'),
            "count_patients": Tool(QueryArgs, self._count_patients_tool,
                                   "Count distinct patients having resources that match a FHIR search, e.g. "
                                   'Immunization {"vaccine-code":"http://hl7.org/fhir/sid/cvx|62","date":"2015"}.'),
            "list_resources": Tool(ListArgs, self._list_tool, "Show a few matching resources as one-line rows."),
            "cohort_count": Tool(CohortCountArgs, self._cohort_count_tool,
                                 "Count patients (or records) with something, found by name (lay names work), in a "
                                 "period, by sex; runs the FHIR search and returns the number with its citation."),
            "find_codes": Tool(FindCodesArgs, self._codes_tool,
                               "Find the codes whose names contain some words, e.g. Immunization 'hpv', "
                               "and the search parameter to count them with."),
        }

    # ---- model-facing API -----------------------------------------------------------------------
    @property
    def tool_names(self) -> list[str]:
        return list(self._tools)

    def tool_specs(self) -> list[ToolSpec]:
        """The tools as :class:`tools.spec.ToolSpec` (compact JSON schemas)."""
        return specs_of(self._tools)

    def call(self, name: str, arguments: dict | None) -> ToolOutput:
        """Run a tool by name; unknown tools, invalid arguments and rejected searches come back as messages."""
        return dispatch_tool(self._tools, name, arguments, max_chars=self.max_chars, tool_errors=(CohortToolError,))

    #: the tool a constrained first model turn may call: the answer-shaped count
    FIRST_CALL_TOOLS = ("cohort_count",)

    def first_call_tools(self) -> tuple[str, ...]:
        """The tools a constrained first model turn may call (:attr:`FIRST_CALL_TOOLS`)."""
        return self.FIRST_CALL_TOOLS

    def belongs(self, ref: str) -> bool:
        """Whether ``Type/id`` names a resource in the store: the cohort tools read every patient, so any
        resource that exists may be cited (False if it does not, or the store fails)."""
        rtype, _, rid = ref.split("#")[0].partition("/")
        if not rtype or not rid:
            return False
        try:
            self.store.read(rtype, rid)
            return True
        except StoreError:
            return False

    # ---- typed tools ----------------------------------------------------------------------------
    def count_resources(self, a: QueryArgs) -> CountResult:
        """How many resources of ``a.resource_type`` match ``a.params`` (the store's ``_summary=count``)."""
        params = self._params(a)
        n = self.store.count(a.resource_type, params)
        key = cite_key("query", a.resource_type, params)
        self.queries[key] = n
        return CountResult(query=query_text(a.resource_type, params), kind="resources", count=n, cite=key)

    def count_patients(self, a: QueryArgs) -> CountResult:
        """How many distinct patients the matching resources belong to (bounded by ``max_scan``)."""
        params = self._params(a)
        n, scanned = self._distinct_patients(a.resource_type, params)
        key = cite_key("patients", a.resource_type, params)
        self.queries[key] = n
        return CountResult(query=query_text(a.resource_type, params), kind="patients", count=n, cite=key,
                           scanned=scanned)

    def list_resources(self, a: ListArgs) -> ListResult:
        """The first ``limit`` matches (at most ``max_rows``) as projected rows, and the total."""
        params = self._params(a)
        limit = min(a.limit, self.max_rows)
        bundle = self.store.search(a.resource_type, params + [("_count", str(limit))])
        rows: dict[str, str] = {}
        for e in bundle.get("entry", []):
            if e.get("search", {}).get("mode", "match") != "match":
                continue
            r = e.get("resource") or {}
            rows[f"{r.get('resourceType')}/{r.get('id')}"] = project(r)
            if len(rows) >= limit:
                break
        total = bundle.get("total")
        if total is None:
            total = self.store.count(a.resource_type, params)
        key = cite_key("query", a.resource_type, params)
        self.queries[key] = int(total)
        return ListResult(query=query_text(a.resource_type, params), total=int(total), rows=rows, cite=key)

    def find_codes(self, a: FindCodesArgs) -> CodesResult:
        """Codes of ``a.resource_type`` whose display or text has words starting with ``a.text``.

        Tries the phrase, then all of its words (AND), then any of them (OR); reads at most ``max_scan``
        resources and returns the ``max_rows`` most frequent codes.
        """
        rtype = a.resource_type.strip()
        param, element = CODE_FIELDS.get(rtype, ("code", "code"))
        # A comma would make an OR list of the search value; the text is words, not a list.
        words = [w for w in re.split(r"[\s,]+", a.text.strip()) if w]
        if not words:
            raise CohortToolError("find_codes needs some words in 'text'")
        attempts: list[tuple[str, Params]] = [("phrase", [(f"{param}:text", " ".join(words))])]
        if len(words) > 1:
            attempts.append(("all words", [(f"{param}:text", w) for w in words]))
            attempts.append(("any word", [(f"{param}:text", ",".join(words))]))
        for how, params in attempts:
            total = self.store.count(rtype, params)
            if total:
                break
        else:
            return CodesResult(resource_type=rtype, text=a.text, matched=0, scanned=0, how="none")
        counts: Counter[tuple[str | None, str, str]] = Counter()
        scanned = 0
        needle = [w.lower() for w in words]
        for r in self.store.search_all(rtype, params + [("_elements", element), ("_count", "1000")]):
            scanned += 1
            concepts = r.get(element)
            for cc in concepts if isinstance(concepts, list) else [concepts]:
                if not isinstance(cc, dict):
                    continue
                for c in cc.get("coding") or []:
                    if not c.get("code"):
                        continue
                    display = c.get("display") or cc.get("text") or ""
                    # Only the codings whose own name matches: a concept may carry several codings.
                    if how == "phrase" or any(w in display.lower() for w in needle):
                        counts[(c.get("system"), str(c["code"]), display)] += 1
            if scanned >= self.max_scan:
                break
        hits = [CodeHit(param=param, system=s, code=c, display=d, resources=n)
                for (s, c, d), n in counts.most_common(self.max_rows)]
        return CodesResult(resource_type=rtype, text=a.text, matched=total, scanned=scanned, codes=hits, how=how)

    def recount(self, key: str) -> int:
        """Run a cited query again (read-only) and return its count now; raises on a bad key or search."""
        kind, rtype, params = parse_cite(key)
        if kind == "query":
            return self.store.count(rtype, params)
        return self._distinct_patients(rtype, params)[0]

    # ---- the answer-shaped count ------------------------------------------------------------------
    def concepts(self, rtype: str) -> list:
        """Every concept (code) of ``rtype`` in the store, read once per session (bounded by ``max_scan``)."""
        from ehr_agent.tools import vocabulary as vocab

        cache = self.__dict__.setdefault("_concept_cache", {})
        if rtype in cache:
            return cache[rtype]
        param, element = CODE_FIELDS.get(rtype, ("code", "code"))
        if rtype == "Encounter":
            element = "class"
        found: dict[str, vocab.Concept] = {}
        for i, r in enumerate(self.store.search_all(rtype, [("_elements", element), ("_count", "1000")])):
            if i >= self.max_scan * 5:
                break
            if rtype == "Encounter":
                code = (r.get("class") or {}).get("code")
                if code and code not in found:
                    name = {"AMB": "ambulatory", "IMP": "inpatient", "EMER": "emergency"}.get(code, code.lower())
                    found[code] = vocab.Concept(rtype, f"class|{code}", f"{name} encounter (class {code})", {code})
                continue
            cc = r.get(element)
            for c in cc if isinstance(cc, list) else [cc]:
                for cd in (c or {}).get("coding") or [] if isinstance(c, dict) else []:
                    if cd.get("code"):
                        key = f"{cd.get('system')}|{cd['code']}"
                        if key not in found:
                            found[key] = vocab.Concept(rtype, key, cd.get("display") or c.get("text") or key,
                                                       {str(cd["code"]), key})
                        break
        cache[rtype] = list(found.values())
        return cache[rtype]

    def names_something(self, phrase: str) -> bool:
        """Whether ``phrase`` names a concept of the store's conditions, vaccines, drugs, visits, procedures
        or allergies (what ``cohort_count`` can count)."""
        from ehr_agent.tools import vocabulary as vocab

        return _about_patients(phrase) or any(vocab.resolve(phrase, self.concepts(t)) for t in COUNTED_TYPES)

    def _count_patients_themselves(self, a: CohortCountArgs) -> CountResult:
        """Patients counted from their Patient resources: deaths (in a period: the death date's), births (the
        birth date's), or all of them; by sex when asked."""
        params: Params = []
        dp = "death-date" if _DIED.search(a.what) else ("birthdate" if _BORN.search(a.what) else None)
        if dp == "death-date":
            params.append(("deceased", "true"))
        if dp and a.start and a.end and a.start == a.end:
            params.append((dp, a.start))
        elif dp:
            params += [(dp, f"ge{a.start}")] if a.start else []
            params += [(dp, f"le{a.end}")] if a.end else []
        if a.sex != "any":
            params.append(("gender", a.sex))
        return self.count_resources(QueryArgs(resource_type="Patient", params="&".join(f"{k}={v}" for k, v in params)))

    def cohort_count(self, a: CohortCountArgs) -> tuple[CountResult | None, list, str]:
        """Resolve ``a.what`` among the store's codes, build the FHIR search, count; (result, matches, type)."""
        from ehr_agent.tools import vocabulary as vocab
        from ehr_agent.tools.facts import guess_kind

        if _about_patients(a.what):  # (kind "patient" with a record's name, "allergy", counts the record)
            return self._count_patients_themselves(a), [], "Patient"
        kind = a.kind if a.kind not in ("any", "patient") else guess_kind(a.what)
        order = {"condition": ["Condition"], "medication": ["MedicationRequest"], "vaccine": ["Immunization"],
                 "procedure": ["Procedure"], "visit": ["Encounter"], "allergy": ["AllergyIntolerance"]}
        types = order.get(kind, list(COUNTED_TYPES))
        # The kind the model chose first, then the others: "flu shot" with kind medication is still a vaccine.
        rest = [t for t in COUNTED_TYPES if t not in types]
        for rtype in types + rest:
            matches = vocab.resolve(a.what, self.concepts(rtype))
            if matches:
                break
        else:
            return None, [], types[0]
        params: Params = []
        if rtype == "Encounter" and matches[0].concept.key.startswith("class|"):
            codes = [m.concept.key.split("|", 1)[1] for m in matches if m.concept.key.startswith("class|")]
            params.append(("class", ",".join(codes)))
        else:
            param = CODE_FIELDS.get(rtype, ("code", "code"))[0]
            params.append((param, ",".join(m.concept.key for m in matches[:20])))
        dp = DATE_PARAMS.get(rtype, "date")
        if a.start and a.end and a.start == a.end:
            params.append((dp, a.start))
        else:
            if a.start:
                params.append((dp, f"ge{a.start}"))
            if a.end:
                params.append((dp, f"le{a.end}"))
        if a.sex != "any":
            params.append(("patient.gender", a.sex))
        q = QueryArgs(resource_type=rtype, params="&".join(f"{k}={v}" for k, v in params))
        res = self.count_patients(q) if a.count == "patients" else self.count_resources(q)
        return res, matches, rtype

    def _cohort_count_tool(self, a: CohortCountArgs) -> ToolOutput:
        res, matches, rtype = self.cohort_count(a)
        if res is None:
            return ToolOutput(text=f"cohort_count '{a.what}': no code in the store matches it. Try find_codes with "
                                   f"other words.")
        names = "; ".join(sorted({m.concept.display for m in matches})[:6]) or "the Patient resources"
        what = "patients" if a.count == "patients" or rtype == "Patient" else f"{rtype} records"
        span = (f" in {a.start}" if a.start and a.start == a.end else
                (f" from {a.start}" if a.start else "") + (f" to {a.end}" if a.end else ""))
        sex = f" ({a.sex})" if a.sex != "any" else ""
        text = (f"cohort_count '{a.what}' -> matched {names}\n"
                f"Answer: {res.count} {what}{sex}{span} [{res.cite}].")
        return ToolOutput(text=text, evidence={res.cite: f"{res.query}: {res.count} {res.kind}"})

    # ---- helpers --------------------------------------------------------------------------------
    def _params(self, a: QueryArgs) -> Params:
        params = a.pairs()
        bad = sorted({k for k, _ in params if k.split(":")[0] in RESERVED_PARAMS})
        if bad:
            raise CohortToolError(f"parameter(s) {', '.join(bad)} are set by the tool itself; leave them out")
        empty = [k for k, v in params if not str(v).strip()]
        if empty:
            raise CohortToolError(f"parameter(s) {', '.join(empty)} have no value")
        return params

    def _distinct_patients(self, rtype: str, params: Params) -> tuple[int, int]:
        if rtype == "Patient":
            n = self.store.count("Patient", params)
            return n, n
        element = PATIENT_ELEMENT.get(rtype)
        if element is None:
            raise CohortToolError(f"{rtype} resources do not belong to patients; count_resources counts them")
        total = self.store.count(rtype, params)
        if total > self.max_scan:
            raise CohortToolError(
                f"{total} {rtype} resources match, more than count_patients reads ({self.max_scan}); narrow the "
                f"search (a date, a code), or count Patient with a _has:{rtype}:{element}:... parameter")
        patients: set[str] = set()
        scanned = 0
        for r in self.store.search_all(rtype, params + [("_elements", element), ("_count", "1000")]):
            scanned += 1
            refs = r.get(element)
            for ref in refs if isinstance(refs, list) else [refs]:
                target = (ref or {}).get("reference") if isinstance(ref, dict) else None
                if isinstance(target, str) and target.startswith("Patient/"):
                    patients.add(target[len("Patient/"):].split("/_history/")[0])
        return len(patients), scanned

    # ---- text renderings --------------------------------------------------------------------------
    def _count_resources_tool(self, a: QueryArgs) -> ToolOutput:
        r = self.count_resources(a)
        return ToolOutput(text=f"{r.count} {a.resource_type} resources match. Cite as [{r.cite}]",
                          evidence={r.cite: f"{r.query}: {r.count} resources"})

    def _count_patients_tool(self, a: QueryArgs) -> ToolOutput:
        r = self.count_patients(a)
        return ToolOutput(text=f"{r.count} distinct patients have matching {a.resource_type} resources. "
                               f"Cite as [{r.cite}]",
                          evidence={r.cite: f"{r.query}: {r.count} patients"})

    def _list_tool(self, a: ListArgs) -> ToolOutput:
        r = self.list_resources(a)
        lines = [f"{r.total} {a.resource_type} resources match (count cited as [{r.cite}])"]
        lines += list(r.rows.values())
        if r.total > len(r.rows):
            lines.append(f"... {r.total - len(r.rows)} more not shown")
        return ToolOutput(text="\n".join(lines), evidence={r.cite: f"{r.query}: {r.total} resources", **r.rows})

    def _codes_tool(self, a: FindCodesArgs) -> ToolOutput:
        r = self.find_codes(a)
        if not r.codes:
            return ToolOutput(text=f"no {r.resource_type} has a code named with words starting '{a.text}'. "
                                   "Try other or fewer words.")
        head = f"{r.matched} {r.resource_type} resources match '{a.text}' ({r.how})"
        if r.scanned < r.matched:
            head += f"; codes from the first {r.scanned}"
        lines = [head + ". Count with the parameter shown:"]
        lines += [f"{h.search_param()}  \"{h.display}\" ({h.resources} resources)" for h in r.codes]
        return ToolOutput(text="\n".join(lines))
