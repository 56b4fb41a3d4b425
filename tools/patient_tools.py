"""The agent's tools: read-only, typed, and scoped to one patient.

A :class:`PatientSession` holds the store, the patient id and the as-of date, and exposes the tools
the model may call (:meth:`PatientSession.tool_specs`, :meth:`PatientSession.call`). Whatever ids or
parameters the model passes, a tool returns only resources in this patient's compartment, or shared
resources (Practitioner, Medication...) that this patient's data references; anything else is refused
with a message that says so. Every result is bounded (``max_rows`` rows, then "N more; page with
offset=..."), and rows are compact one-line projections ending in ``[Type/id]`` (never raw FHIR).

Only the :class:`tools.store.base.FHIRStore` interface is used, so the same tools run on the embedded
store and on a FHIR server over REST.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from ehr_agent.tools import calculator
from ehr_agent.tools.facts import LookupArgs, Lookup
from ehr_agent.tools.retrieval.errors import RetrievalError
from ehr_agent.tools.retrieval.lexical import LexicalIndex
from ehr_agent.tools.retrieval.manifest import build_manifest
from ehr_agent.tools.retrieval.notes import note_chunks as _note_chunks
from ehr_agent.tools.retrieval.projections import Row, project_row
from ehr_agent.tools.store.base import FHIRStore, NotFound, SearchError, StoreError, normalize_params
from ehr_agent.tools.store.compartment import PATIENT_COMPARTMENT, SHARED_TYPES, patient_compartments

# --------------------------------------------------------------------------------------------------
# Results


class ToolOutput(BaseModel):
    """What one tool call returns: the text the model reads plus what the graph records.

    ``evidence`` maps each reference returned (``Type/id`` or ``DocumentReference/id#n``) to its
    projection line, which is what the citation check compares a cited sentence against.
    ``computed`` holds calculator values a cited sentence may state.
    """

    text: str
    evidence: dict[str, str] = Field(default_factory=dict)
    computed: list[str] = Field(default_factory=list)
    #: a computed value -> the references that prove it (a count -> the records counted), so an answer that
    #: states the value without citing can be cited by code, and the claim check then recounts them
    proofs: dict[str, list[str]] = Field(default_factory=dict)
    refused: bool = False
    error: bool = False


# --------------------------------------------------------------------------------------------------
# Arguments (the schemas the model sees; keep descriptions short: they cost prompt tokens)

RecordKind = Literal["conditions", "medications", "immunizations", "procedures", "encounters", "allergies",
                     "reports", "careplans", "devices", "notes"]

KIND_TYPES: dict[str, tuple[str, ...]] = {
    "conditions": ("Condition",),
    "medications": ("MedicationRequest", "MedicationStatement"),
    "immunizations": ("Immunization",),
    "procedures": ("Procedure",),
    "encounters": ("Encounter",),
    "allergies": ("AllergyIntolerance",),
    "reports": ("DiagnosticReport",),
    "careplans": ("CarePlan",),
    "devices": ("Device",),
    "notes": ("DocumentReference",),
}


class NoArgs(BaseModel):
    """No arguments."""


class ObservationArgs(BaseModel):
    code: str | None = Field(None, description="LOINC code, e.g. 4548-4")
    text: str | None = Field(None, description="words in the name, e.g. 'hemoglobin a1c'")
    mode: Literal["latest", "earliest", "all"] = Field(
        "latest", description="latest: newest per kind; earliest: oldest per kind; all: every value, newest first")
    start: str | None = Field(None, description="from date YYYY[-MM[-DD]]")
    end: str | None = Field(None, description="to date")
    offset: int = Field(0, ge=0)


class RecordsArgs(BaseModel):
    kind: RecordKind
    text: str | None = Field(None, description="words in the name")
    status: str | None = Field(None, description="e.g. active, resolved, completed, stopped")
    start: str | None = Field(None, description="from date YYYY[-MM[-DD]]")
    end: str | None = Field(None, description="to date")
    offset: int = Field(0, ge=0)


class SearchArgs(BaseModel):
    resource_type: str = Field(description="FHIR type, e.g. Observation")
    params: dict[str, str] = Field(default_factory=dict, description="FHIR search params, e.g. {\"code\": \"8867-4\"}")
    offset: int = Field(0, ge=0)


class ReadArgs(BaseModel):
    reference: str = Field(description="Type/id")


class RecordSearchArgs(BaseModel):
    query: str = Field(description="what to look for, in words")
    types: list[str] | None = Field(None, description="limit to FHIR types")
    since: str | None = Field(None, description="only on/after date")
    k: int = Field(6, ge=1, le=20)


# --------------------------------------------------------------------------------------------------
# Resource helpers (projection, dates and note chunks come from retrieval, so rows match its index)


def ref_of(resource: dict) -> str:
    """``Type/id`` of a resource."""
    return f"{resource.get('resourceType')}/{resource.get('id')}"


def _codes(resource: dict) -> list[str]:
    out: list[str] = []
    for key in ("code", "vaccineCode", "medicationCodeableConcept", "type"):
        cc = resource.get(key)
        for c in (cc if isinstance(cc, list) else [cc]):
            if isinstance(c, dict):
                for cd in c.get("coding", []) or []:
                    if cd.get("code"):
                        out.append(str(cd["code"]))
                        if cd.get("system"):
                            out.append(f"{cd['system']}|{cd['code']}")
    return out


def _references(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        r = node.get("reference")
        if isinstance(r, str):
            out.add(r.split("/_history/")[0])
        for v in node.values():
            if isinstance(v, (dict, list)):
                _references(v, out)
    elif isinstance(node, list):
        for x in node:
            _references(x, out)


def _status(resource: dict) -> str:
    for key in ("clinicalStatus", "verificationStatus"):
        cc = resource.get(key)
        if isinstance(cc, dict):
            for cd in cc.get("coding", []) or []:
                if cd.get("code"):
                    return str(cd["code"])
    return str(resource.get("status", ""))


def note_chunks(resource: dict) -> list[tuple[str, str]]:
    """``(DocumentReference/id#n, line)`` chunks of a clinical note, as retrieval cuts them."""
    rows, _warnings = _note_chunks(resource)
    return [(r.ref, r.text) for r in rows]


_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def _in_range(d: str | None, start: str | None, end: str | None) -> bool:
    if start and (not d or d[: len(start)] < start):
        return False
    if end and (not d or d[: len(end)] > end):
        return False
    return True


# --------------------------------------------------------------------------------------------------
# Per-store record cache
#
# Evaluation and notebooks ask many questions about the same patient, each in a fresh session; reading a
# long record ($everything, manifest) costs far more than the rest of a question, so raw reads are kept
# per store object (weakly: a closed and dropped store takes its cache with it), for a few patients.
# Loading data into a store while a process keeps asking questions needs clear_record_cache().


class _PatientCache:
    def __init__(self) -> None:
        self.everything: list[dict] | None = None
        self.refs: set[str] | None = None
        self.by_type: dict[str, list[dict]] = {}
        self.manifest: dict[int, str] = {}
        self.rows: dict[str, Row] = {}
        self.words: dict[str, set[str]] = {}
        self.allowed: dict[str, bool] = {}
        self.bm25: dict[int, tuple[LexicalIndex, dict[str, Row]]] = {}


_CACHE_PATIENTS = 4
_SPECS: list | None = None
_CACHES: "weakref.WeakKeyDictionary[Any, OrderedDict[str, _PatientCache]]" = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def _patient_cache(store: FHIRStore, patient_id: str) -> _PatientCache:
    with _CACHE_LOCK:
        try:
            per_store = _CACHES.setdefault(store, OrderedDict())
        except TypeError:  # a store that cannot be weakly referenced simply is not cached
            return _PatientCache()
        pc = per_store.get(patient_id)
        if pc is None:
            pc = per_store[patient_id] = _PatientCache()
            while len(per_store) > _CACHE_PATIENTS:
                per_store.popitem(last=False)
        else:
            per_store.move_to_end(patient_id)
        return pc


def clear_record_cache(store: FHIRStore | None = None) -> None:
    """Forget cached record reads (of one store, or of all): call after loading new data into a live store."""
    with _CACHE_LOCK:
        if store is None:
            _CACHES.clear()
        else:
            _CACHES.pop(store, None)


def _everything(store: FHIRStore, patient_id: str) -> list[dict]:
    # Large pages where the store allows it: the embedded store's default page is small.
    try:
        first = store.everything(patient_id, count=1000)  # type: ignore[call-arg]
    except TypeError:
        first = store.everything(patient_id)
    return [e["resource"] for page in store.pages(first) for e in page.get("entry", [])]


# --------------------------------------------------------------------------------------------------
# The session


class PatientSession:
    """The tools of one question about one patient.

    ``as_of`` (``YYYY-MM-DD``, default today) is "now": records dated after it are invisible, "latest"
    means latest on or before it, ages are computed at it. ``index`` is an optional
    :class:`tools.retrieval.HybridIndex` for ``search_record``; without it a lexical scan is used.
    """

    FORBIDDEN_PARAMS = frozenset({"patient", "subject", "_include", "_revinclude", "_has", "_contained",
                                  "_containedType", "_count", "_offset", "_summary", "_elements", "_format"})

    def __init__(self, store: FHIRStore, patient_id: str, as_of: str | None = None, index: Any = None, *,
                 max_rows: int = 12, max_chars: int = 2400, manifest_top: int = 3):
        self.store = store
        self.patient_id = patient_id
        self.as_of = as_of or date.today().isoformat()
        self.index = index
        self.max_rows = max_rows
        self.max_chars = max_chars
        self.manifest_top = manifest_top
        self._by_type: dict[str, list[dict]] = {}
        self._cache = _patient_cache(store, patient_id) if store is not None else _PatientCache()
        self._patient: dict | None = None
        self._lookup = Lookup(self)
        self._tools: dict[str, tuple[type[BaseModel], Callable[[Any], ToolOutput], str]] = {
            "lookup": (LookupArgs, self.lookup,
                       "Finds what the question names (lay names work) and computes the answer, with citations."),
            "record_overview": (NoArgs, lambda a: self.record_overview(),
                                "What kinds of data this patient's record holds, with counts and date ranges."),
            "observations": (ObservationArgs, self.observations,
                             "Lab results and vital signs by LOINC code or name words; latest per kind or all values."),
            "records": (RecordsArgs, self.records,
                        "List one kind of record, filtered by name words, status, dates."),
            "search_fhir": (SearchArgs, self.search_fhir,
                            "FHIR search within this patient's record, e.g. resource_type Observation, "
                            "params {\"code\":\"8867-4\",\"date\":\"ge2020\"}."),
            "read_resource": (ReadArgs, self.read_resource, "Read one resource by reference, e.g. Practitioner/123."),
            "search_record": (RecordSearchArgs, self.search_record,
                              "Search the whole record and its clinical notes by meaning (free text)."),
            "calculate": (calculator.CalcArgs, self.calculate,
                          "Date and number arithmetic: age (at end, default as-of), interval between dates, "
                          "stats (count/min/max/mean), trend (slope per year), shift a date by days."),
        }

    # ---- model-facing API -----------------------------------------------------------------------
    #: The tools the model is shown, in this order: the answer-shaped ``lookup`` first (the system prompt
    #: steers to it, and the constrained first turn may only call it or ``search_record``), then the
    #: general ones for what it does not cover.
    MODEL_TOOLS = ("lookup", "search_record", "observations", "records", "read_resource", "calculate",
                   "search_fhir", "record_overview")

    @property
    def tool_names(self) -> list[str]:
        return list(self._tools)

    def all_tool_specs(self):
        """Every tool as :class:`agent.models.base.ToolSpec` (compact JSON schemas; built once per process)."""
        global _SPECS
        if _SPECS is None:
            from ehr_agent.agent.models.base import ToolSpec

            _SPECS = [ToolSpec(name=n, description=d, parameters=compact_schema(m))
                      for n, (m, _, d) in self._tools.items()]
        return [s.model_copy(deep=True) for s in _SPECS]

    def tool_specs(self, names: tuple[str, ...] | None = None):
        """The tools the model is shown (``names``, default :attr:`MODEL_TOOLS`), in that order."""
        names = self.MODEL_TOOLS if names is None else names
        by_name = {s.name: s for s in self.all_tool_specs()}
        return [by_name[n] for n in names if n in by_name]

    def call(self, name: str, arguments: dict | None) -> ToolOutput:
        """Run a tool by name; unknown tools, invalid arguments and store errors come back as messages."""
        return dispatch_tool(self._tools, name, arguments, max_chars=self.max_chars,
                             tool_errors=(calculator.CalcError,))

    # ---- scoping --------------------------------------------------------------------------------
    def patient(self) -> dict:
        """This patient's Patient resource (raises :class:`NotFound` if there is none)."""
        if self._patient is None:
            self._patient = self.store.read("Patient", self.patient_id)
        return self._patient

    def exists(self) -> bool:
        """Whether the store holds this patient."""
        try:
            self.patient()
            return True
        except NotFound:
            return False

    def _compartment_refs(self) -> set[str]:
        # Every reference made by this patient's own resources: a shared resource is readable only if in here.
        if self._cache.refs is None:
            refs: set[str] = set()
            for r in self.everything():
                if self.patient_id in patient_compartments(r):
                    _references(r, refs)
            self._cache.refs = refs
        return self._cache.refs

    def allowed(self, resource: dict) -> bool:
        """True if ``resource`` is in this patient's compartment, or a shared resource this patient's data references."""
        key = ref_of(resource)
        ok = self._cache.allowed.get(key)
        if ok is None:
            if self.patient_id in patient_compartments(resource):
                ok = True
            elif resource.get("resourceType") in SHARED_TYPES:
                ok = key in self._compartment_refs()
            else:
                ok = False
            self._cache.allowed[key] = ok
        return ok

    def belongs(self, ref: str) -> bool:
        """Whether ``Type/id`` names a resource this patient's session may read (False if it does not exist)."""
        rtype, _, rid = ref.split("#")[0].partition("/")
        try:
            return self.allowed(self.store.read(rtype, rid))
        except StoreError:
            return False

    def row(self, resource: dict) -> Row:
        """The projected row of a resource (cached with the record)."""
        key = ref_of(resource)
        r = self._cache.rows.get(key)
        if r is None:
            r = self._cache.rows[key] = project_row(self._with_medication(resource))
        return r

    def _words_of(self, resource: dict) -> set[str]:
        key = ref_of(resource)
        w = self._cache.words.get(key)
        if w is None:
            w = self._cache.words[key] = _words(self.row(resource).text + " " + " ".join(_codes(resource)))
        return w

    def visible(self, resource: dict) -> bool:
        """Allowed and not dated after as-of."""
        d = self.row(resource).date
        return self.allowed(resource) and not (d and d[:10] > self.as_of)

    # ---- data access (cached per session) ---------------------------------------------------------
    def of_type(self, rtype: str) -> list[dict]:
        """Every visible resource of a type in the compartment, newest first."""
        if rtype not in self._by_type:
            raw = self._cache.by_type.get(rtype)
            if raw is None:
                raw = self._cache.by_type[rtype] = list(
                    self.store.search_all(rtype, {"_count": "1000"}, compartment=("Patient", self.patient_id)))
            rows = [r for r in raw if self.visible(r)]
            rows.sort(key=lambda r: self.row(r).date or "", reverse=True)
            self._by_type[rtype] = rows
        return self._by_type[rtype]

    def everything(self) -> list[dict]:
        """The whole compartment (not as-of filtered)."""
        if self._cache.everything is None:
            self._cache.everything = _everything(self.store, self.patient_id)
        return self._cache.everything

    def manifest(self, top: int | None = None) -> str:
        """The record overview (retrieval's manifest, ``top`` most frequent codes per type), cached with the record."""
        top = self.manifest_top if top is None else top
        text = self._cache.manifest.get(top)
        if text is None:
            text = self._cache.manifest[top] = manifest_text(self.store, self.patient_id, top=top)
        return text

    def last_record_date(self) -> str | None:
        """The latest clinical date anywhere in the record (for the ``last_record`` as-of policy)."""
        ds = [d[:10] for d in (self.row(r).date for r in self.everything()) if d]
        return max(ds) if ds else None

    # ---- output helpers -------------------------------------------------------------------------
    def with_medication(self, resource: dict) -> dict:
        """The resource with its drug's code inlined when it names a shared Medication."""
        return self._with_medication(resource)

    def _with_medication(self, resource: dict) -> dict:
        # A MedicationRequest naming a shared Medication shows the drug's name, so its row can back a citation.
        ref = (resource.get("medicationReference") or {}).get("reference")
        if not isinstance(ref, str) or "medicationCodeableConcept" in resource or not ref.startswith("Medication/"):
            return resource
        try:
            med = self.store.read("Medication", ref.split("/", 1)[1])
        except StoreError:
            return resource
        if not med.get("code"):
            return resource
        return {**resource, "medicationCodeableConcept": med["code"]}

    def _rows(self, resources: list[dict], offset: int, header: str, *, total: int | None = None) -> ToolOutput:
        total = len(resources) if total is None else total
        page = resources[offset: offset + self.max_rows]
        ev = {ref_of(r): self.row(r).text for r in page}
        lines = [header + f" ({total} found)" if total else header + ": none found (as of " + self.as_of + ")"]
        lines += list(ev.values())
        more = total - offset - len(page)
        if more > 0:
            lines.append(f"{more} more; page with offset={offset + len(page)}")
        return ToolOutput(text="\n".join(lines), evidence=ev)

    # ---- tools ----------------------------------------------------------------------------------
    def record_overview(self) -> ToolOutput:
        """What the record holds (retrieval's manifest)."""
        text = self.manifest()
        return ToolOutput(text=text)

    def observations(self, a: ObservationArgs) -> ToolOutput:
        """Observations matching a code or name words, latest per kind or all, within dates."""
        words = _words(a.text) if a.text else set()
        hits = []
        for r in self.of_type("Observation"):
            if a.code and a.code not in _codes(r):
                continue
            if words and not words <= self._words_of(r):
                continue
            if not _in_range(self.row(r).date, a.start, a.end):
                continue
            hits.append(r)
        if a.mode in ("latest", "earliest"):
            seen, picked = set(), []
            # hits are newest first: the first of each kind is its latest, the last its earliest
            for r in (hits if a.mode == "latest" else reversed(hits)):
                key = self.row(r).code or self.row(r).display or ref_of(r)
                if key not in seen:
                    seen.add(key)
                    picked.append(r)
            hits = picked
        what = " ".join(x for x in (a.code, a.text) if x) or "all"
        if not hits and (a.code or words):
            # Small models send a condition's or vaccine's code here; an empty answer makes them give up.
            # Show where that code or name does occur, so the next step can answer from those rows.
            elsewhere = self._matches_in_other_types(a.code, words, a.start, a.end)
            if elsewhere:
                return self._rows(elsewhere, 0, f"no Observation matches '{what}'; records of other types that do")
        return self._rows(hits, a.offset, f"observations '{what}' {a.mode}")

    def _matches_in_other_types(self, code: str | None, words: set[str], start: str | None, end: str | None) -> list[dict]:
        out = []
        for t in sorted({t for ts in KIND_TYPES.values() for t in ts if t != "DocumentReference"}):
            for r in self.of_type(t):
                if code and code not in _codes(r):
                    continue
                if words and not words <= self._words_of(r):
                    continue
                if _in_range(self.row(r).date, start, end):
                    out.append(r)
        out.sort(key=lambda r: self.row(r).date or "", reverse=True)
        return out

    def records(self, a: RecordsArgs) -> ToolOutput:
        """Conditions, medications... filtered by text, status and date range."""
        words = _words(a.text) if a.text else set()
        hits = []
        for t in KIND_TYPES[a.kind]:
            for r in self.of_type(t):
                if words and not words <= self._words_of(r):
                    continue
                if a.status and a.status.lower() != _status(r).lower():
                    continue
                if not _in_range(self.row(r).date, a.start, a.end):
                    continue
                hits.append(r)
        hits.sort(key=lambda r: self.row(r).date or "", reverse=True)
        return self._rows(hits, a.offset, f"{a.kind}")

    def search_fhir(self, a: SearchArgs) -> ToolOutput:
        """A FHIR search run by the store's engine, restricted to the compartment, results re-checked."""
        rtype = a.resource_type.strip()
        if rtype in SHARED_TYPES:
            return ToolOutput(text=f"error: {rtype} is shared, not part of one record; read the {rtype} a record "
                                   f"references with read_resource.", error=True)
        if rtype not in PATIENT_COMPARTMENT:
            return ToolOutput(text=f"error: unknown or unsupported resource type '{rtype}'. Use one of: "
                                   + ", ".join(sorted(PATIENT_COMPARTMENT)) + ".", error=True)
        params = normalize_params(a.params)
        bad = sorted({k for k, _ in params if k.split(":")[0].split(".")[0] in self.FORBIDDEN_PARAMS})
        if bad:
            return ToolOutput(text=f"error: parameter(s) {', '.join(bad)} not allowed here (the search is already "
                                   f"limited to this patient; paging uses offset).", error=True)
        params.append(("_count", "100"))
        first = self.store.search(rtype, params, compartment=("Patient", self.patient_id))
        rows: list[dict] = []
        refused = 0
        need = a.offset + self.max_rows
        for page in self.store.pages(first):
            for e in page.get("entry", []):
                if e.get("search", {}).get("mode") == "include":
                    continue
                r = e.get("resource", {})
                if not self.allowed(r):
                    refused += 1  # defence in depth: a store that ignored the compartment must not leak
                    continue
                if self.visible(r):
                    rows.append(r)
            if len(rows) > need and first.get("total") is not None:
                break
        total = len(rows)
        if first.get("total") is not None and len(rows) > need:
            total = max(total, int(first["total"]) - refused)
        out = self._rows(rows, a.offset, f"{rtype}?{'&'.join(f'{k}={v}' for k, v in params[:-1])}", total=total)
        return out

    def read_resource(self, a: ReadArgs) -> ToolOutput:
        """One resource by reference, if it belongs to this patient's record."""
        ref = a.reference.strip().strip("[]")
        m = re.fullmatch(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:#(\d+))?", ref)
        if not m:
            return ToolOutput(text=f"error: '{a.reference}' is not a reference; give Type/id.", error=True)
        rtype, rid, chunk = m.groups()
        refusal = ToolOutput(text=f"refused: {rtype}/{rid} is not part of patient {self.patient_id}'s record; "
                                  f"this session can only read that patient's data.", refused=True)
        try:
            r = self.store.read(rtype, rid)
        except NotFound:
            return ToolOutput(text=f"not found: {rtype}/{rid} does not exist.", error=True)
        if not self.allowed(r):
            return refusal
        d = self.row(r).date
        if d and d[:10] > self.as_of:
            return ToolOutput(text=f"{rtype}/{rid} is dated {d[:10]}, after the as-of date {self.as_of}.", error=True)
        if rtype == "DocumentReference":
            chunks = note_chunks(r)
            if chunk is not None:
                chunks = [c for c in chunks if c[0].endswith(f"#{chunk}")]
            ev = {ref_of(r): self.row(r).text}
            lines = [self.row(r).text]
            budget = self.max_chars - 200
            for cref, line in chunks:
                if budget - len(line) < 0:
                    lines.append(f"... more note text; read {ref_of(r)}#n for chunk n")
                    break
                budget -= len(line)
                ev[cref] = line
                lines.append(line)
            return ToolOutput(text="\n".join(lines), evidence=ev)
        line = self.row(r).text
        return ToolOutput(text=line, evidence={ref_of(r): line})

    def search_record(self, a: RecordSearchArgs) -> ToolOutput:
        """Hybrid (semantic + keyword) search over the record and its notes."""
        from ehr_agent.tools.vocabulary import expand_note_query

        a = a.model_copy(update={"query": expand_note_query(a.query)})
        if self.index is not None:
            mode = "hybrid" if getattr(self.index, "use_dense", True) else "lexical"
            try:
                hits = self.index.search(self.patient_id, a.query, k=a.k, types=a.types, since=a.since,
                                         until=self.as_of, mode=mode)
            except RetrievalError as e:
                return ToolOutput(text=f"search_record failed: {e}", error=True)
            lines, ev = [], {}
            for h in hits:
                ref = str(getattr(h, "ref", None) or (h.get("ref") if isinstance(h, dict) else ""))
                text = str(getattr(h, "text", None) or (h.get("text") if isinstance(h, dict) else ""))
                base = ref.split("#")[0]
                if not ref or not self._ref_visible(base):
                    continue
                line = text if text.rstrip().endswith(f"[{ref}]") else f"{text.strip()} [{ref}]"
                ev[ref] = line
                lines.append(line)
            head = f"search '{a.query}'" + (f": {len(lines)} hits" if lines else ": nothing found")
            return ToolOutput(text="\n".join([head] + lines), evidence=ev)
        return self._lexical_search(a)

    def _ref_visible(self, ref: str) -> bool:
        rtype, _, rid = ref.partition("/")
        try:
            return self.visible(self.store.read(rtype, rid))
        except NotFound:
            return False

    def _bm25(self) -> tuple[LexicalIndex, dict[str, Row]]:
        # Without a HybridIndex: a throw-away in-memory BM25 index (retrieval's LexicalIndex) of the
        # patient's allowed rows and note chunks, built once per record and thread (SQLite connections
        # stay in the thread that made them).
        key = threading.get_ident()
        hit = self._cache.bm25.get(key)
        if hit is None:
            rows: dict[str, Row] = {}
            for r in self.everything():
                if not self.allowed(r):
                    continue
                row = self.row(r)
                rows[row.ref] = row
                if r.get("resourceType") == "DocumentReference":
                    for chunk in _note_chunks(r)[0]:
                        rows[chunk.ref] = chunk
            index = LexicalIndex(":memory:")
            index.apply(self.patient_id, list(rows.values()), [])
            hit = self._cache.bm25[key] = (index, rows)
        return hit

    def _lexical_search(self, a: RecordSearchArgs) -> ToolOutput:
        index, rows = self._bm25()
        # Undated rows (Medication, CareTeam...) stay searchable, so the as-of cut is applied here, not in SQL.
        hits = index.search(self.patient_id, a.query, limit=a.k * 4, types=a.types, since=a.since)
        ev: dict[str, str] = {}
        for ref, _score in hits:
            row = rows.get(ref)
            if row is None or (row.date and row.date[:10] > self.as_of):
                continue
            ev[ref] = row.text
            if len(ev) >= a.k:
                break
        head = f"search '{a.query}'" + (f": {len(ev)} hits" if ev else ": nothing found")
        return ToolOutput(text="\n".join([head] + list(ev.values())), evidence=ev)

    def lookup(self, a: LookupArgs) -> ToolOutput:
        """Answer-shaped query (tools.facts): resolves ``what`` in this record and computes the answer."""
        fact = self._lookup(a)
        if not fact.evidence and not fact.concepts and a.op != "exists":
            # Nothing coded matches: facts that only clinical notes hold (education, complaints) are found by
            # searching the text, so the model gets rows instead of a dead end.
            found = self.search_record(RecordSearchArgs(query=a.what, k=4))
            if found.evidence:
                text = fact.text + "\nRows and clinical notes that mention it:\n" + "\n".join(found.evidence.values())
                return ToolOutput(text=text, evidence=found.evidence, computed=fact.computed)
        return ToolOutput(text=fact.text, evidence=fact.evidence, computed=fact.computed, proofs=fact.proofs)

    def calculate(self, a: calculator.CalcArgs) -> ToolOutput:
        """Arithmetic on dates and series; the patient's birth date is the default for ``age``."""
        birth = self.patient().get("birthDate") if a.op == "age" and not a.start else None
        res = calculator.calculate(a, as_of=self.as_of, birth_date=birth)
        return ToolOutput(text=res.text, computed=[str(v) for v in res.values.values()])



def manifest_text(store: FHIRStore, patient_id: str, *, top: int = 4) -> str:
    """The record overview as text (retrieval's manifest, ``top`` most frequent codes per type)."""
    return build_manifest(store, patient_id, top=top).render()


def dispatch_tool(
    tools: dict[str, tuple[type[BaseModel], Callable[[Any], ToolOutput], str]],
    name: str,
    arguments: dict | None,
    *,
    max_chars: int,
    tool_errors: tuple[type[Exception], ...] = (),
) -> ToolOutput:
    """Validate ``arguments`` against the tool's pydantic model, run it, and turn every expected failure
    into a message the model can act on: unknown tool, invalid arguments, a rejected search, a missing
    resource, a failing store, or one of the toolkit's own ``tool_errors``. Output is cut to ``max_chars``."""
    if name not in tools:
        return ToolOutput(text=f"error: unknown tool '{name}'. Available tools: {', '.join(tools)}.", error=True)
    model, fn, _ = tools[name]
    try:
        args = model.model_validate(arguments or {})
    except ValidationError as e:
        probs = "; ".join(f"{'.'.join(str(x) for x in err['loc']) or 'arguments'}: {err['msg']}"
                          for err in e.errors()[:4])
        return ToolOutput(text=f"error: invalid arguments for {name}: {probs}. Fix them and call again.", error=True)
    try:
        out = fn(args)
    except tool_errors as e:
        return ToolOutput(text=f"error: {e}", error=True)
    except SearchError as e:
        return ToolOutput(text=f"error: search rejected: {e.message}. Fix the parameters and try again.", error=True)
    except NotFound as e:
        return ToolOutput(text=f"not found: {e.message}", error=True)
    except StoreError as e:
        return ToolOutput(text=f"error: the record store failed: {e.message}", error=True)
    if len(out.text) > max_chars:
        out.text = out.text[:max_chars].rsplit("\n", 1)[0] + "\n... (output truncated; narrow the query)"
        # A row cut from the text was never seen by the model: it must not back a citation either.
        out.evidence = {k: v for k, v in out.evidence.items() if f"[{k}]" in out.text}
    return out


def compact_schema(model: type[BaseModel]) -> dict:
    """A pydantic model's JSON schema without titles and ``anyOf null`` noise (fewer prompt tokens)."""
    schema = model.model_json_schema()
    props = {}
    for name, p in schema.get("properties", {}).items():
        q = {k: v for k, v in p.items() if k not in ("title", "default")}
        if "anyOf" in q:
            non_null = [x for x in q.pop("anyOf") if x.get("type") != "null"]
            if non_null:
                q.update(non_null[0])
        props[name] = q
    out: dict[str, Any] = {"type": "object", "properties": props}
    if schema.get("required"):
        out["required"] = schema["required"]
    return out

