"""The agent's tools: read-only, typed, and scoped to one patient.

A :class:`PatientSession` holds the store, the patient id and the as-of date, and exposes the tools
the model may call (:meth:`PatientSession.tool_specs`, :meth:`PatientSession.call`). Whatever ids or
parameters the model passes, a tool returns only resources in this patient's compartment, or shared
resources (Practitioner, Medication...) that this patient's data references; anything else is refused
with a message that says so. Every result is bounded (``max_rows`` rows, then "N more; page with
offset=..."), and rows are compact one-line projections ending in ``[Type/id]`` (never raw FHIR).

Only the :class:`tools.store.base.FHIRStore` interface is used, so the same tools run on the embedded
store and on a FHIR server over REST.

The pieces the session is made of live in modules of their own: the argument schemas
(:mod:`tools.schemas`), the scope policy (:mod:`tools.scope`), the record cache (:mod:`tools.record_cache`),
the shared tool types and dispatcher (:mod:`tools.spec`, :mod:`tools.dispatch`) and the interface the graph
drives (:mod:`tools.toolkit`). Their public names are re-exported here for existing callers.
"""

from __future__ import annotations

import re
import threading
import warnings
from datetime import date
from typing import Any, ClassVar

from ehr_agent.tools import calculator
from ehr_agent.tools import note_facts
from ehr_agent.tools import vocabulary as vocab
from ehr_agent.tools.dispatch import dispatch_tool
from ehr_agent.tools.facts import _DEMOGRAPHIC, YES_NO, Fact, Lookup, LookupArgs
from ehr_agent.tools.record_cache import DEFAULT_RECORD_CACHE, PatientRecord, RecordCache, data_version_of
from ehr_agent.tools.retrieval.errors import RetrievalError
from ehr_agent.tools.retrieval.lexical import LexicalIndex
from ehr_agent.tools.retrieval.manifest import build_manifest
from ehr_agent.tools.retrieval.notes import note_chunks as _note_chunks
from ehr_agent.tools.retrieval.projections import Row, project_row
from ehr_agent.tools.schemas import (KIND_TYPES, NoArgs, ObservationArgs, ReadArgs, RecordKind, RecordsArgs,
                                     RecordSearchArgs, SearchArgs)
from ehr_agent.tools.scope import FORBIDDEN_PARAMS, PatientScope, ref_of, search_refusal
from ehr_agent.tools.spec import Tool, ToolOutput, ToolSpec, compact_schema, specs_of
from ehr_agent.tools.store.base import FHIRStore, NotFound, normalize_params, StoreError

__all__ = [
    "PatientSession", "ToolOutput", "ToolSpec", "compact_schema", "dispatch_tool", "clear_record_cache",
    "RecordCache", "DEFAULT_RECORD_CACHE", "KIND_TYPES", "RecordKind", "NoArgs", "ObservationArgs", "RecordsArgs",
    "SearchArgs", "ReadArgs", "RecordSearchArgs", "ref_of", "note_chunks", "manifest_text",
]

# --------------------------------------------------------------------------------------------------
# Resource helpers (projection, dates and note chunks come from retrieval, so rows match its index)


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
_SEMANTIC_TAG = re.compile(r"\s*\([a-z ]+\)\s*$")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def _in_range(d: str | None, start: str | None, end: str | None) -> bool:
    if start and (not d or d[: len(start)] < start):
        return False
    if end and (not d or d[: len(end)] > end):
        return False
    return True


def clear_record_cache(store: FHIRStore | None = None) -> None:
    """Deprecated: records are now keyed by the store's data version, so a load is noticed without this.
    Forgets :data:`DEFAULT_RECORD_CACHE`'s records (of one store, or of all); for a store that cannot tell
    its version (a FHIR server), or to measure cold reads, call ``RecordCache.clear`` on the cache in use."""
    warnings.warn("clear_record_cache() is deprecated: use RecordCache.clear() (records follow the store's "
                  "data_version)", DeprecationWarning, stacklevel=2)
    DEFAULT_RECORD_CACHE.clear(store)


# --------------------------------------------------------------------------------------------------
# The session


#: a ``records`` kind -> the ``lookup`` kind whose vocabulary resolves its words
_LOOKUP_KIND = {"conditions": "condition", "medications": "medication", "immunizations": "vaccine",
                "procedures": "procedure", "encounters": "visit", "allergies": "allergy", "careplans": "careplan",
                "devices": "device", "reports": "report"}


class PatientSession:
    """The tools of one question about one patient.

    ``as_of`` (``YYYY-MM-DD``, default today) is "now": records dated after it are invisible, "latest"
    means latest on or before it, ages are computed at it. ``index`` is an optional
    :class:`tools.retrieval.HybridIndex` for ``search_record``; without it a lexical scan is used.
    """

    FORBIDDEN_PARAMS = FORBIDDEN_PARAMS

    def __init__(self, store: FHIRStore, patient_id: str, as_of: str | None = None, index: Any = None, *,
                 max_rows: int = 12, max_chars: int = 2400, manifest_top: int = 3,
                 record_cache: RecordCache | None = None):
        """``record_cache`` keeps the raw reads of the record across sessions (default: the process-wide
        :data:`DEFAULT_RECORD_CACHE`); it follows the store's data version, so data loaded meanwhile is seen
        at the session's next call."""
        self.store = store
        self.patient_id = patient_id
        self.as_of = as_of or date.today().isoformat()
        self.index = index
        self.max_rows = max_rows
        self.max_chars = max_chars
        self.manifest_top = manifest_top
        self.record_cache = DEFAULT_RECORD_CACHE if record_cache is None else record_cache
        self._version: str | None = None
        self._cache = PatientRecord()
        self.scope = PatientScope(store, patient_id, self._cache)
        self._by_type: dict[str, list[dict]] = {}
        self._patient: dict | None = None
        self._statements: list[note_facts.Statement] | None = None
        self._lookup = Lookup(self)
        self._sync()
        self._tools: dict[str, Tool] = {
            "lookup": Tool(LookupArgs, self.lookup,
                           "Finds what the question names (lay names work) and computes the answer, with citations."),
            "record_overview": Tool(NoArgs, lambda a: self.record_overview(),
                                    "What kinds of data this patient's record holds, with counts and date ranges."),
            "observations": Tool(ObservationArgs, self.observations,
                                 "Lab results and vital signs by LOINC code or name words; latest per kind or all "
                                 "values."),
            "records": Tool(RecordsArgs, self.records,
                            "List one kind of record, filtered by name words, status, dates."),
            "search_fhir": Tool(SearchArgs, self.search_fhir,
                                "FHIR search within this patient's record, e.g. resource_type Observation, "
                                "params {\"code\":\"8867-4\",\"date\":\"ge2020\"}."),
            "read_resource": Tool(ReadArgs, self.read_resource,
                                  "Read one resource by reference, e.g. Practitioner/123."),
            "search_record": Tool(RecordSearchArgs, self.search_record,
                                  "Search the whole record and its clinical notes by meaning (free text)."),
            "calculate": Tool(calculator.CalcArgs, self.calculate,
                              "Date and number arithmetic: age (at end, default as-of), interval between dates, "
                              "stats (count/min/max/mean), trend (slope per year), shift a date by days."),
        }

    def _sync(self) -> PatientRecord:
        """The record at the store's current data version. When the version moved (data was loaded since the
        last call), the session reads the record afresh: a new record from the cache, and nothing it derived
        from the old one (the per-type lists at this as-of date, the Patient resource, ``lookup``'s concepts)
        is kept."""
        if self.store is None:  # a session built only to list its tools
            return self._cache
        version = data_version_of(self.store)
        if version != self._version:
            self._version = version
            self._cache = self.record_cache.record(self.store, self.patient_id, version)
            self.scope = PatientScope(self.store, self.patient_id, self._cache)
            self._by_type = {}
            self._patient = None
            self._statements = None
            self._lookup = Lookup(self)
        return self._cache

    # ---- model-facing API -----------------------------------------------------------------------
    #: The tools the model is shown, in this order: the answer-shaped ``lookup`` first (the system prompt
    #: steers to it, and the constrained first turn may only call it or ``search_record``), then the
    #: general ones for what it does not cover.
    MODEL_TOOLS = ("lookup", "search_record", "observations", "records", "read_resource", "calculate",
                   "search_fhir", "record_overview")

    @property
    def tool_names(self) -> list[str]:
        return list(self._tools)

    #: the tools a constrained first model turn may call (the graph's settings may name others)
    FIRST_CALL_TOOLS = ("lookup", "search_record")

    #: the specs, built once per class from the first session's table (schemas cost a few ms to build)
    _specs: ClassVar[list[ToolSpec] | None] = None

    def all_tool_specs(self) -> list[ToolSpec]:
        """Every tool as a :class:`tools.spec.ToolSpec` (compact JSON schemas), copies the caller may change."""
        cls = type(self)
        if cls.__dict__.get("_specs") is None:
            cls._specs = specs_of(self._tools)
        return [s.model_copy(deep=True) for s in cls.__dict__["_specs"]]

    def tool_specs(self, names: tuple[str, ...] | None = None) -> list[ToolSpec]:
        """The tools the model is shown (``names``, default :attr:`MODEL_TOOLS`), in that order."""
        names = self.MODEL_TOOLS if names is None else names
        by_name = {s.name: s for s in self.all_tool_specs()}
        return [by_name[n] for n in names if n in by_name]

    def call(self, name: str, arguments: dict | None) -> ToolOutput:
        """Run a tool by name; unknown tools, invalid arguments and store errors come back as messages."""
        self._sync()
        return dispatch_tool(self._tools, name, arguments, max_chars=self.max_chars,
                             tool_errors=(calculator.CalcError,))

    def first_call_tools(self) -> tuple[str, ...]:
        """The tools a constrained first model turn may call (:attr:`FIRST_CALL_TOOLS`)."""
        return self.FIRST_CALL_TOOLS

    # ---- scoping --------------------------------------------------------------------------------
    def patient(self) -> dict:
        """This patient's Patient resource (raises :class:`NotFound` if there is none)."""
        self._sync()
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

    def allowed(self, resource: dict) -> bool:
        """True if ``resource`` is in this patient's compartment, or a shared resource this patient's data
        references (the rule of :mod:`tools.scope`)."""
        return self.scope.allowed(resource)

    def belongs(self, ref: str) -> bool:
        """Whether ``Type/id`` names a resource this patient's session may read (False if it does not exist)."""
        self._sync()
        return self.scope.belongs(ref)

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
        self._sync()
        if rtype not in self._by_type:
            raw = self._cache.by_type.get(rtype)
            if raw is None:
                raw = self._cache.by_type[rtype] = list(
                    self.store.search_all(rtype, {"_count": "1000"}, compartment=self.scope.compartment))
            rows = [r for r in raw if self.visible(r)]
            rows.sort(key=lambda r: self.row(r).date or "", reverse=True)
            self._by_type[rtype] = rows
        return self._by_type[rtype]

    def everything(self) -> list[dict]:
        """The whole compartment (not as-of filtered)."""
        self._sync()
        return self.scope.everything()

    def manifest(self, top: int | None = None) -> str:
        """The record overview (retrieval's manifest, ``top`` most frequent codes per type), cached with the record."""
        top = self.manifest_top if top is None else top
        self._sync()
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
        if not hits and words and not a.code:
            # "hba1c", "pulse", "LDL": no row carries those words, but the lay vocabulary names the series.
            named = self._by_vocabulary(a.text or "", "lab", a.start, a.end)
            if named:
                hits = named if a.mode == "all" else named[:1] if a.mode == "latest" else named[-1:]
                what += f" (read as {self.row(hits[0]).display})"
        if not hits and (a.code or words):
            # Small models send a condition's or vaccine's code here; an empty answer makes them give up.
            # Show where that code or name does occur, so the next step can answer from those rows.
            elsewhere = self._matches_in_other_types(a.code, words, a.start, a.end)
            if elsewhere:
                return self._rows(elsewhere, 0, f"no Observation matches '{what}'; records of other types that do")
        return self._rows(hits, a.offset, f"observations '{what}' {a.mode}")

    def _by_vocabulary(self, text: str, kind: str, start: str | None, end: str | None) -> list[dict]:
        """Records of one concept that ``text`` names through the lay vocabulary (newest first), within the
        dates; the same resolution as ``lookup``'s, so the row tools and ``lookup`` agree on what a word means."""
        matches, res, _ = self._lookup.resolve(LookupArgs(op="all", what=text[:200], kind=kind))
        if not matches or matches[0].score < 1.0:
            return []
        return [r for r in res if _in_range(self.row(r).date, start, end)]

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
        label = f"{a.kind}"
        if not hits and words:
            kind = _LOOKUP_KIND.get(a.kind, "any")
            named = [r for r in self._by_vocabulary(a.text or "", kind, a.start, a.end) if kind != "any"
                     if not a.status or a.status.lower() == _status(r).lower()]
            if named:
                hits, label = named, f"{a.kind} '{a.text}' (read as {self.row(named[0]).display})"
        return self._rows(hits, a.offset, label)

    def search_fhir(self, a: SearchArgs) -> ToolOutput:
        """A FHIR search run by the store's engine, restricted to the compartment, results re-checked."""
        rtype = a.resource_type.strip()
        params = normalize_params(a.params)
        refusal = search_refusal(rtype, params)
        if refusal:
            return ToolOutput(text=refusal, error=True)
        params.append(("_count", "100"))
        first = self.store.search(rtype, params, compartment=self.scope.compartment)
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
        stated = self._stated(a.query, a.since) if note_facts.names_note_topic(a.query) else None
        a = a.model_copy(update={"query": vocab.expand_note_query(a.query)})
        out = self._search(a)
        if stated:
            # The sentences the notes state about the topic come first, each with its chunk: a small model
            # given whole chunks picks the wrong sentence of them.
            head, _, rest = out.text.partition("\n")
            lines = [f"{s.day}: {s.text} [{s.ref}]" for s in stated]
            return ToolOutput(text="What the clinical notes state about it:\n" + "\n".join(lines)
                                   + f"\n{head}\n{rest}".rstrip(),
                              evidence={**{s.ref: s.row for s in stated}, **out.evidence})
        if not out.evidence and (a.types or a.since):
            # A small model narrows to the wrong types ("careplan" for what only the notes say): nothing there
            # is no answer, so the same words are searched across the whole record.
            wide = self._search(a.model_copy(update={"types": None, "since": None}))
            if wide.evidence:
                narrowed = ", ".join(a.types or []) + (f" since {a.since}" if a.since else "")
                head, _, rest = wide.text.partition("\n")
                return ToolOutput(text=f"{head} (nothing among {narrowed.strip(', ')}; these are from the whole record)"
                                       f"\n{rest}", evidence=wide.evidence)
        return out

    def _search(self, a: RecordSearchArgs) -> ToolOutput:
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

    def names_something(self, phrase: str) -> bool:
        """Whether ``phrase`` names a concept of this record (what ``lookup`` can resolve)."""
        self._sync()
        return bool(vocab.resolve(phrase, self._lookup.concepts(vocab.ALL_TYPES)))

    def concept_written_in(self, text: str) -> vocab.Concept | None:
        """The concept of this record whose whole name (two words or more) ``text`` writes out; the longest when
        several do ("Body mass index (BMI) [Percentile] Per age and gender" holds "Body mass index")."""
        self._sync()
        padded = " " + " ".join(vocab.words(text)) + " "
        # A SNOMED display's semantic tag ("(finding)", "(disorder)") is not part of the name people write.
        named = [(c, w) for c in self._lookup.concepts(vocab.ALL_TYPES)
                 if len(w := vocab.words(_SEMANTIC_TAG.sub("", c.display))) >= 2 and " " + " ".join(w) + " " in padded]
        return max(named, key=lambda cw: len(cw[1]))[0] if named else None

    def _notes_about(self, what: str, day: str | None) -> ToolOutput:
        """Rows and note chunks that mention ``what``; those of ``day`` only, when a day is asked and any
        of its rows mention it ("the chief complaint at the visit on 2006-08-24")."""
        if day and len(day) >= 10:
            found = self.search_record(RecordSearchArgs(query=what, since=day[:10], k=12))
            same = {k: v for k, v in found.evidence.items() if v.startswith(day[:10])}
            if same:
                return ToolOutput(text="\n".join(same.values()), evidence=same)
        return self.search_record(RecordSearchArgs(query=what, k=4))

    # ---- what the notes state (tools.note_facts) -----------------------------------------------------
    def note_statements(self) -> list[note_facts.Statement]:
        """Every statement of the patient's visible clinical notes, newest note first (kept with the session)."""
        self._sync()
        if self._statements is None:
            self._statements = [st for d in self.of_type("DocumentReference")
                                for st in note_facts.statements(_note_chunks(d)[0])]
        return self._statements

    def notes_say(self, what: str, *, day: str | None = None, start: str | None = None,
                  end: str | None = None) -> list[note_facts.Statement]:
        """The statements of the notes about ``what`` (:func:`tools.note_facts.about`), newest first."""
        return note_facts.about(self.note_statements(), what, day=day, start=start, end=end)

    def _stated(self, query: str, since: str | None, limit: int = 6) -> list[note_facts.Statement]:
        """search_record's note statements: those of the ``since`` day first, when it is a whole day."""
        day = since[:10] if since and len(since) >= 10 else None
        hits = (self.notes_say(query, day=day) if day else []) or self.notes_say(query, start=since)
        return hits[:limit]

    @staticmethod
    def _note_day(a: LookupArgs) -> str | None:
        return a.date[:10] if a.date and len(a.date) >= 10 and a.op in ("on_date", "active_on", "all", "list") else None

    def _note_hits(self, a: LookupArgs, fact: Fact) -> list[note_facts.Statement]:
        """The note statements ``lookup`` answers with, when no coded record is named firmly by ``what``
        (education, income, a visit's complaints live only in the notes' text); [] when it answers from the
        coded record (``fact``) or no note says it."""
        if a.op in ("count", "change", "age_at", "ended"):
            return []  # counts, changes and ages are computed over coded records, not quoted from notes
        day = self._note_day(a)
        if fact.evidence and not fact.weak and a.kind != "note":
            # A coded record the words name firmly answers, unless the day asked has none of it and the notes
            # of that day say something ("symptoms on 2020-02-14": no "Encounter for symptom" that day).
            if not day or any(v.startswith(day) for v in fact.evidence.values()):
                return []
        if a.op == "exists" and a.kind != "note":
            # A yes/no history question ("has he got diabetes?") is about diagnoses: a plan in a note that names
            # the word ("diabetes self management plan") is no yes. Only a question about the notes reads them.
            return []
        return self.notes_say(a.what, day=day, start=a.start, end=a.end)

    def _note_answer(self, a: LookupArgs, fact: Fact, hits: list[note_facts.Statement]) -> ToolOutput:
        """``lookup``'s result from the note statements :meth:`_note_hits` found."""
        line, cited = note_facts.answer(hits, a.op)
        if a.op == "exists":
            line = "Yes. " + line
        text = (f"lookup {a.op} '{a.what}' -> what the clinical notes state\nAnswer: {line}\n"
                f"Statements of the notes about it (count of notes, days):\n{note_facts.summary(hits)}")
        evidence = dict(cited)
        if fact.evidence:
            # Coded rows that match the words (a word of a longer name, another day, or asked of the notes):
            # shown, but not as an answer.
            coded = "\n".join(ln.removeprefix("Answer: ") for ln in fact.text.splitlines()[1:])
            text += "\nCoded records that match the words (not what the notes say):\n" + coded
            evidence.update(fact.evidence)
        return ToolOutput(text=text, evidence=evidence)

    def note_chunk(self, ref: str) -> str | None:
        """The line of a visible note chunk (``DocumentReference/id#n``) from the session's statements, without
        decoding the note again; None when no statement comes from it."""
        return next((st.row for st in self.note_statements() if st.ref == ref), None)

    def question_names(self, a: LookupArgs, question: str) -> bool:
        """Whether ``question`` itself names what ``lookup`` resolved ``a.what`` to, firmly: a lay name, a code,
        a name written out, the whole kind, or most of a name's words (one word of four is not enough:
        "low" in "described as low, middle or high" is no question about Low Density Lipoprotein). An answer
        from the notes' statements needs the question to ask about the same topic (its words or the words
        notes use for it: "school" for a note's "some college courses").

        A computed answer stands in for the model's own only when this holds (the graph's direct answer)."""
        self._sync()
        if _DEMOGRAPHIC.search(a.what) and _DEMOGRAPHIC.search(question):
            return True  # answered from the Patient resource
        if self._note_hits(a, self._lookup(a)):
            if YES_NO.match(question) and " or " not in question and a.op != "exists":
                return False  # "Is X ever listed among her complaints?" is not answered by quoting the list
            return bool(note_facts.topic_stems(a.what) & note_facts.topic_stems(question))
        mine, _, _ = self._lookup.resolve(a)
        if mine and not vocab.named_words(a.what) and set(vocab.words(a.what)) <= set(vocab.words(question)):
            return True  # the whole kind, in the question's own word ("Which shots did he get on Jun 2 2013?")
        if not mine:
            # Nothing matched ("No, the record has no Allergy to eggs"): the words must be the question's own.
            words = vocab.content_stems(a.what)
            return bool(words) and words <= vocab.content_stems(question)
        written = self.concept_written_in(question)
        if written is not None and written.key in {m.concept.key for m in mine}:
            return True  # the question writes the record's name out in full
        asked, _, _ = self._lookup.resolve(a.model_copy(update={"what": question[:300]}))
        firm = {m.concept.key for m in asked if not vocab.weak_match(m)}
        return bool({m.concept.key for m in mine} & firm)

    def lookup(self, a: LookupArgs) -> ToolOutput:
        """Answer-shaped query (tools.facts): resolves ``what`` in this record and computes the answer; what
        only the notes state is answered from their statements (tools.note_facts)."""
        fact = self._lookup(a)
        hits = self._note_hits(a, fact)
        if hits:
            return self._note_answer(a, fact, hits)
        if fact.evidence and a.op != "exists" and fact.weak:
            # One word of a longer name ("education" of "Lifestyle education regarding hypertension"): the
            # notes may be what was meant, so their mentions come with the computed answer.
            found = self._notes_about(a.what, a.date)
            extra = {k: v for k, v in found.evidence.items() if k not in fact.evidence and "#" in k}
            if extra:
                text = fact.text + "\nClinical notes that mention it:\n" + "\n".join(extra.values())
                return ToolOutput(text=text, evidence={**fact.evidence, **extra}, computed=fact.computed,
                                  proofs=fact.proofs)
        if not fact.evidence and not fact.concepts and a.op != "exists":
            # Nothing coded matches and no note sentence names it: a search of the text may still find rows,
            # so the model gets rows instead of a dead end.
            found = self._notes_about(a.what, a.date)
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

