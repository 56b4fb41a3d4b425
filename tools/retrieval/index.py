"""Hybrid per-patient index: dense (sentence-transformers + Chroma) and lexical (SQLite FTS5), fused
with reciprocal rank fusion.

Indexing is lazy and per patient: :meth:`HybridIndex.search` first calls :meth:`ensure_patient`, which
projects that patient's record, compares it with what is indexed (by content hash) and indexes only the
difference.  Embedding runs in batches, each committed before the next, so an interrupted run resumes
where it stopped.  Nothing is ever indexed for patients nobody asked about.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel

from ehr_agent.tools.store.base import FHIRStore

from .errors import EmptyRecord, RetrievalError
from .intent import Intent, mask_subjects, parse_intent, subject_phrase
from .lexical import LexicalIndex, row_hash
from .projections import Row
from .records import PatientRecord, patient_record
from .settings import RetrievalSettings


class Hit(BaseModel):
    """One ranked row."""

    ref: str
    text: str
    score: float
    date: str | None = None
    type: str | None = None


class Hits(list):
    """The ranked hits of a search (a plain ``list`` of :class:`Hit`), plus what a list question left out:
    ``more`` rows of the kind asked about did not fit in ``k`` (``note`` says so in words)."""

    def __init__(self, hits=(), *, more: int = 0, intent: Intent | None = None, kinds: Sequence[str] = ()):
        super().__init__(hits)
        self.more = more
        self.intent = intent or Intent()
        self.kinds = tuple(kinds)
        """Resource types of the rows the list question matched."""

    @property
    def note(self) -> str | None:
        """``"N more active MedicationRequest rows match; ..."`` when a list was cut at k, else ``None``."""
        if not self.more:
            return None
        what = "/".join(self.kinds or self.intent.types) or "matching"
        status = f"{self.intent.statuses[0]} " if self.intent.statuses else ""
        period = f" in {self.intent.period}" if self.intent.period else ""
        return f"{self.more} more {status}{what} rows{period} match; ask for more (a larger k) or narrow by date or type"


PROJECTION_VERSION = "1"
"""Part of every patient's data version: bump when projections change, so indexes rebuild their rows."""


_RECENT = re.compile(r"\b(latest|last|most recent|recent|recently|current|currently|newest|now)\b", re.I)
_EARLIEST = re.compile(r"\b(first|earliest|initial|oldest|originally|diagnosed)\b", re.I)
_DATE = re.compile(r"\b(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?\b")


def normalize_bound(value: str | None, *, end: bool) -> str | None:
    """``YYYY``/``YYYY-MM``/``YYYY-MM-DD`` to a full date (start or end of the period)."""
    if not value:
        return None
    # A full dateTime/instant (an agent's as-of) counts by its date part.
    m = re.fullmatch(r"(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?(?:T[0-9:.+\-Z]*)?", value.strip())
    if not m:
        raise RetrievalError(f"bad date {value!r} (expected YYYY, YYYY-MM or YYYY-MM-DD)")
    y, mo, d = m.group(1), m.group(2), m.group(3)
    return f"{y}-{mo or ('12' if end else '01')}-{d or ('31' if end else '01')}"


def temporal_intent(query: str) -> tuple[str | None, str | None]:
    """(``"recent"``/``"earliest"``/``None``, anchor date in the query or ``None``)."""
    anchor = None
    m = _DATE.search(query)
    if m and 1900 <= int(m.group(1)) <= 2100:
        anchor = "-".join(x for x in m.groups() if x)
    if _RECENT.search(query):
        return "recent", anchor
    if _EARLIEST.search(query):
        return "earliest", anchor
    return None, anchor


def rrf(rankings: Sequence[Sequence[str]], k: int) -> dict[str, float]:
    """Reciprocal rank fusion: ``sum(1 / (k + rank))`` over the rankings each ref appears in (rank from 1)."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, ref in enumerate(ranking, start=1):
            scores[ref] = scores.get(ref, 0.0) + 1.0 / (k + rank)
    return scores


def _date_distance(date: str | None, anchor: str) -> float:
    if not date:
        return float("inf")
    n = min(len(date), len(anchor))
    if date[:n] == anchor[:n]:
        return 0.0
    from .dense import day_number

    return abs(day_number(date) - day_number(anchor))


GROUP_CAP = 3
"""Rows per same-kind group kept on top for questions with time words (see :func:`temporal_reorder`)."""


def _group_key(r: Row) -> tuple:
    return (r.type, r.code) if r.code else (r.type, "#" in r.ref, r.display)


def temporal_reorder(ranked: list[str], scores: dict[str, float], rows: dict[str, Row], query: str) -> list[str]:
    """Within each group of same-kind rows (same code, or same note section), hand the group's best
    score slots to the rows the question's time words point at: the latest for "latest/last/current",
    the earliest for "first/diagnosed", the nearest to a date written in the question.

    A coded group is completed with the record's other rows of that code first: when "the latest
    HbA1c" retrieves a few HbA1c rows, the latest one must win even if the rankers did not reach it.
    Rows only move within their group's slots, so time words never pull in unrelated rows (a plain
    recency ranking fused by RRF would)."""
    direction, anchor = temporal_intent(query)
    if direction is None and anchor is None:
        return ranked
    groups: dict[tuple, list[str]] = {}
    for ref in ranked:
        groups.setdefault(_group_key(rows[ref]), []).append(ref)
    coded = {key for key in groups if key[1] and isinstance(key[1], str)}
    if coded:
        for ref, r in rows.items():
            key = _group_key(r)
            if key in coded and ref not in scores:
                groups[key].append(ref)
    new_scores = dict(scores)
    for members in groups.values():
        if len(members) < 2:
            continue
        slots = sorted((scores[m] for m in members if m in scores), reverse=True)
        if anchor:
            order = sorted(members, key=lambda m: (_date_distance(rows[m].date, anchor), -scores.get(m, 0.0)))
        else:
            rev = direction == "recent"
            dated = sorted((m for m in members if rows[m].date), key=lambda m: rows[m].date or "", reverse=rev)
            order = dated + [m for m in members if not rows[m].date]
        for m in members:
            new_scores.pop(m, None)
        for m, s in zip(order, slots):
            new_scores[m] = s
    scores.clear()
    scores.update(new_scores)
    ordered = sorted(new_scores, key=lambda ref: -new_scores[ref])
    # A time-anchored question wants the extreme of each group, not twenty yearly repeats of it:
    # keep the first few of every group on top and push the rest below, freeing slots for other kinds.
    head, tail, seen = [], [], {}
    for ref in ordered:
        key = _group_key(rows[ref])
        seen[key] = seen.get(key, 0) + 1
        (head if seen[key] <= GROUP_CAP else tail).append(ref)
    return head + tail


class HybridIndex:
    """Dense + lexical index over projected rows, one patient at a time.

    ``store_dir`` is where the index lives (``DIR/lexical.sqlite``, ``DIR/chroma``); ``None`` uses
    ``settings.index_cache_dir/<store base URL>`` (for REST stores).  ``dense=False`` builds a lexical-only
    index (no model is loaded), for baselines and machines without the model.

    A patient indexed completely is recorded with its *data version* (resources in its compartment and
    their newest ``meta.lastUpdated``, read with two small searches, plus :data:`PROJECTION_VERSION`).
    While the store still reports that version, a query reads the patient's rows back from the index
    instead of reading and projecting the whole record again.
    """

    def __init__(self, store: FHIRStore, store_dir: str | Path | None = None, settings: RetrievalSettings | None = None,
                 *, dense: bool = True):
        self.store = store
        self.settings = settings or RetrievalSettings()
        if store_dir is None:
            slug = re.sub(r"[^A-Za-z0-9._-]+", "_", getattr(store, "base_url", "store"))[:100]
            store_dir = Path(self.settings.index_cache_dir) / slug
        self.dir = Path(store_dir)
        self.lexical = LexicalIndex(self.dir / "lexical.sqlite")
        self._dense = None
        self.use_dense = dense
        self._records: dict[str, PatientRecord] = {}
        self._rows: dict[str, dict[str, Row]] = {}
        self._versions: dict[str, str | None] = {}
        self._ready: set[str] = set()
        self._hashes: dict[str, dict[str, str]] = {}
        self._subjects: dict[str, frozenset[str]] = {}

    @property
    def dense(self):
        """The Chroma-backed dense index (opened on first use)."""
        if self._dense is None:
            from .dense import DenseIndex

            self._dense = DenseIndex(self.settings.embedding_model, self.dir / "chroma", self.settings.chroma_url,
                                     threads=self.settings.embed_threads)
        return self._dense

    def close(self) -> None:
        """Release the SQLite connection."""
        self.lexical.close()

    def record(self, patient_id: str) -> PatientRecord:
        """The patient's projected record (read once per index object)."""
        if patient_id not in self._records:
            rec = patient_record(self.store, patient_id, include_financial=self.settings.include_financial)
            self._records[patient_id] = rec
            self._rows[patient_id] = {r.ref: r for r in rec.rows}
        return self._records[patient_id]

    def refresh(self, patient_id: str | None = None) -> None:
        """Forget the projected record(s) read so far, so the next call re-reads the store (after a load)."""
        if patient_id is None:
            self._records.clear()
            self._rows.clear()
            self._versions.clear()
            self._ready.clear()
            self._hashes.clear()
            self._subjects.clear()
        else:
            self._records.pop(patient_id, None)
            self._rows.pop(patient_id, None)
            self._versions.pop(patient_id, None)
            self._ready.discard(patient_id)
            self._hashes.pop(patient_id, None)
            self._subjects.pop(patient_id, None)

    def data_version(self, patient_id: str) -> str | None:
        """What the store holds for this patient, as a short string that changes when its compartment
        does (count and newest ``meta.lastUpdated``), with the projection version and the financial
        setting; ``None`` when the store cannot say (then the record is always re-read).
        Raises :class:`NotFound` for an unknown patient."""
        if patient_id in self._versions:
            return self._versions[patient_id]
        from ehr_agent.tools.store.base import NotFound, StoreError

        version = None
        try:
            comp = ("Patient", patient_id)
            total = self.store.search(None, [("_summary", "count")], compartment=comp).get("total")
            page = self.store.search(None, [("_sort", "-_lastUpdated"), ("_count", "1")], compartment=comp)
            entries = page.get("entry") or []
            last = ((entries[0].get("resource") or {}).get("meta") or {}).get("lastUpdated") if entries else None
            if isinstance(total, int) and total > 0 and last:
                fin = "fin" if self.settings.include_financial else "clin"
                version = f"p{PROJECTION_VERSION}|{fin}|{total}|{last}"
        except NotFound:
            raise
        except StoreError:
            version = None  # a server without _sort/_summary support: fall back to reading the record
        self._versions[patient_id] = version
        return version

    def is_indexed(self, patient_id: str) -> bool:
        """Whether the patient is completely indexed at the store's current data version (and embedded,
        when this index has its dense half)."""
        version = self.data_version(patient_id)
        if version is None:
            return False
        got = self.lexical.patient_version(patient_id)
        if got is None or got[0] != version:
            return False
        return not self.use_dense or got[1] == self.dense_name

    @property
    def dense_name(self) -> str:
        """Name of the dense collection rows are embedded into (one per embedding model)."""
        from .dense import collection_name

        return collection_name(self.settings.embedding_model)

    def rows(self, patient_id: str) -> dict[str, Row]:
        """``ref -> Row`` of the patient's record: read back from the index when the patient is indexed
        at the store's current data version, else projected from the store."""
        if patient_id not in self._rows:
            if self.is_indexed(patient_id) and self.lexical.has_rowdata(patient_id):
                self._rows[patient_id] = {r.ref: r for r in sorted(self.lexical.load_rows(patient_id), key=_row_order)}
                self._ready.add(patient_id)
            else:
                self.record(patient_id)
        return self._rows[patient_id]

    def subjects(self, patient_id: str) -> frozenset[str]:
        """The distinct code displays of the patient's rows as question phrases (see
        :func:`tools.retrieval.intent.mask_subjects`), computed once per loaded record."""
        got = self._subjects.get(patient_id)
        if got is None:
            got = frozenset(subject_phrase(r.display) for r in self.rows(patient_id).values() if r.display and "#" not in r.ref)
            self._subjects[patient_id] = got
        return got

    def ensure_patient(self, patient_id: str, *, progress: Callable[[int], None] | None = None) -> int:
        """Index what is new or changed in this patient's record; returns the number of rows (re)indexed.
        ``progress(n)`` is called as rows are embedded (``n`` rows at a time).
        Raises :class:`tools.store.base.NotFound` for an unknown patient."""
        rows = self.rows(patient_id)
        if patient_id in self._ready and not self._modified(patient_id, rows):
            return 0
        state = self.lexical.state(patient_id)
        add = [r for ref, r in rows.items() if ref not in state or state[ref][0] != row_hash(r)]
        remove = [ref for ref, (h, _) in state.items() if ref not in rows or h != row_hash(rows[ref])]
        if add or remove:
            self.lexical.apply(patient_id, add, remove)
            if self.use_dense:
                # Deleting ids a collection never had is a no-op in Chroma, so no per-model bookkeeping.
                self.dense.delete(patient_id, remove)
        elif not self.lexical.has_rowdata(patient_id):
            self.lexical.store_rows(patient_id, list(rows.values()))  # an index from before rowdata existed
        if self.use_dense:
            self._embed_pending(patient_id, rows, progress)
        version = self.data_version(patient_id)
        if version is not None and patient_id in self._records:
            prev = self.lexical.patient_version(patient_id)
            dense = self.dense_name if self.use_dense else (prev[1] if prev and prev[0] == version else "")
            self.lexical.set_patient_version(patient_id, version, len(rows), dense)
        self._ready.add(patient_id)
        self._hashes[patient_id] = {ref: row_hash(r) for ref, r in rows.items()}
        return len(add)

    def _modified(self, patient_id: str, rows: dict[str, Row]) -> bool:
        """Whether rows changed in memory since they were last indexed (callers may edit ``rows()``)."""
        known = self._hashes.get(patient_id)
        if known is None:
            return True
        return len(known) != len(rows) or any(known.get(ref) != row_hash(r) for ref, r in rows.items())

    def _embed_pending(self, patient_id: str, rows: dict[str, Row], progress: Callable[[int], None] | None = None) -> None:
        coll = self.dense.collection.name
        pending = [rows[ref] for ref in self.lexical.pending_dense(patient_id, coll) if ref in rows]
        if not pending:
            return
        show = self.settings.progress and progress is None and sys.stderr.isatty()
        from tqdm import tqdm

        with tqdm(total=len(pending), desc=f"embedding {patient_id[:12]}", unit="row", disable=not show, file=sys.stderr) as bar:
            for batch, vecs in self.dense.embed_batches(pending, self.settings.batch_size, self.settings.write_batch):
                # One Chroma write and one SQLite commit per batch: an interrupted run resumes at the next one.
                self.dense.upsert(patient_id, batch, vecs)
                self.lexical.mark_dense(patient_id, [r.ref for r in batch], coll)
                bar.update(len(batch))
                if progress is not None:
                    progress(len(batch))

    def search(
        self,
        patient_id: str,
        query: str,
        k: int | None = None,
        types: Sequence[str] | None = None,
        since: str | None = None,
        until: str | None = None,
        *,
        mode: str = "hybrid",
        intent: bool = True,
    ) -> Hits:
        """The ``k`` best rows of one patient's record for ``query``, best first (a :class:`Hits` list).

        ``types`` restricts resource types (note chunks are ``DocumentReference``); ``since``/``until``
        are inclusive dates (``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``).  ``mode`` is ``hybrid`` (default),
        ``lexical`` or ``dense`` (single-ranker baselines for the benchmark, or an index without its
        dense half).  ``intent=False`` leaves out the intent signal (the benchmark's plain baselines).

        The question's intent (:func:`tools.retrieval.intent.parse_intent`) adds one more ranking, the rows of the kind and status it asks about, fused with the other two by RRF; a list
        question gets every such row up to ``k`` ahead of the rest, and ``Hits.more`` counts the ones
        that did not fit.
        Raises :class:`NotFound` (unknown patient) or :class:`EmptyRecord`.
        """
        k = k or self.settings.k
        if not query or not query.strip():
            raise RetrievalError("empty query")
        if mode not in ("hybrid", "lexical", "dense"):
            raise RetrievalError(f"unknown search mode {mode!r}")
        rows = self.rows(patient_id)
        if not any(r.type != "Patient" for r in rows.values()):
            raise EmptyRecord(f"Patient/{patient_id} has no clinical resources to retrieve from")
        if mode != "lexical" and not self.use_dense:
            raise RetrievalError("this index was opened without its dense half")
        self.ensure_patient(patient_id)
        since_d, until_d = normalize_bound(since, end=False), normalize_bound(until, end=True)
        n = max(self.settings.candidates, k)
        rankings: list[list[str]] = []
        if mode in ("hybrid", "lexical"):
            lex = self.lexical.search(patient_id, query, n, types=types, since=since_d, until=until_d)
            rankings.append([ref for ref, _ in lex])
        if mode in ("hybrid", "dense"):
            qv = self.dense.embed([query])[0]
            dense = self.dense.search(patient_id, qv, n, types=types, since=since_d, until=until_d)
            rankings.append([ref for ref, _ in dense])
        base = {ref: s for ref, s in rrf(rankings, self.settings.rrf_k).items() if ref in rows}
        subjects = self.subjects(patient_id) if intent else frozenset()
        want = parse_intent(query, subjects) if intent else Intent()
        allowed = _filter(types, since_d, until_d)
        if want.typed:
            rankings.append(structured_ranking(rows, base, want, allowed, n))
        scores = {ref: s for ref, s in rrf(rankings, self.settings.rrf_k).items() if ref in rows}
        ranked = sorted(scores, key=lambda r: -scores[r])
        # Time words inside a named thing ("documentation of *current* medications") are part of its name.
        ranked = temporal_reorder(ranked, scores, rows, mask_subjects(query, subjects) if subjects else query)
        more, kinds = 0, ()
        if want.listing:
            ranked, more, kinds = complete_list(ranked, rows, want, allowed, k)
        out = Hits(more=more, intent=want, kinds=kinds)
        for ref in ranked[:k]:
            r = rows[ref]
            out.append(Hit(ref=ref, text=r.text, score=round(scores.get(ref, 0.0), 6), date=r.date, type=r.type))
        return out


def _row_order(row: Row) -> tuple:
    # The order patient_record gives (date, Patient first, ref, note chunk number), for rows read back.
    ref, _, n = row.ref.partition("#")
    return (row.date or "", row.type != "Patient", ref, int(n) if n.isdigit() else 0)


def _filter(types: Sequence[str] | None, since: str | None, until: str | None):
    """The search's own filters as a predicate on rows (undated rows fail a date bound, as in SQL)."""
    tset = set(types or ())

    def ok(r: Row) -> bool:
        if tset and r.type not in tset:
            return False
        if since and not (r.date and r.date[:10] >= since):
            return False
        if until and not (r.date and r.date[:10] <= until):
            return False
        return True

    return ok


def structured_ranking(rows: dict[str, Row], base: dict[str, float], intent: Intent, allowed, limit: int) -> list[str]:
    """The rows of the kind the question asks about, as a ranking to fuse: rows matching type, status,
    class and period first, then the other rows of those types; each part ordered by the lexical+dense
    fused score, unscored rows after by recency."""
    full, partial = [], []
    for ref, r in rows.items():
        if r.type not in intent.types or not allowed(r):
            continue
        (full if intent.matches(r) else partial).append(ref)

    def key(ref: str) -> tuple:
        return (-base.get(ref, 0.0), _neg_date(rows[ref].date))

    return (sorted(full, key=key) + sorted(partial, key=key))[:limit]


def _neg_date(date: str | None) -> str:
    # Sorting key that puts later dates first among equal scores (undated last).
    return "".join(chr(0x7F - ord(c)) for c in date) if date else "\x7f"


def complete_list(ranked: list[str], rows: dict[str, Row], intent: Intent, allowed, k: int) -> tuple[list[str], int, tuple[str, ...]]:
    """A list question's answer: every row of the kind, status, class and period asked about, in ranked
    order (rows no ranker reached after, latest first), ahead of everything else; how many of them do
    not fit in ``k``; and their resource types."""
    members = {ref for ref, r in rows.items() if allowed(r) and intent.matches(r)}
    if not members:
        return ranked, 0, ()
    head = [ref for ref in ranked if ref in members]
    seen = set(head)
    head += sorted((ref for ref in members if ref not in seen), key=lambda ref: _neg_date(rows[ref].date))
    rest = [ref for ref in ranked if ref not in members]
    kinds = tuple(sorted({rows[ref].type for ref in members}))
    return head + rest, max(0, len(head) - k), kinds
