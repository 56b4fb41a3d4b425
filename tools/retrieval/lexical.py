"""Lexical ranking with SQLite FTS5 (BM25), plus the per-row index state both rankers share.

One SQLite file (``DIR/lexical.sqlite``) holds:

* ``rows`` (FTS5, porter stemming): the row text, with ref/patient/type/date/code as unindexed columns;
* ``state``: which rows of which patient are indexed, the hash of their text, and which dense
  collection (one per embedding model) has them (``''`` until their embedding batch is committed:
  that is what makes indexing resumable after an interruption);
* ``rowdata``: the rows themselves (ref, type, date, code, display, text), keyed by patient, so that a
  query on an indexed patient reads its rows back instead of re-projecting the record;
* ``patients``: the data version each patient was indexed at (see ``HybridIndex``), and the dense
  collection that holds all of its rows.

``":memory:"`` gives a throw-away index (used to rank one patient's rows without a directory).
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from .projections import Row

SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS rows USING fts5(
  text, ref UNINDEXED, patient UNINDEXED, type UNINDEXED, date UNINDEXED, code UNINDEXED,
  tokenize = 'porter unicode61');
CREATE TABLE IF NOT EXISTS state(
  patient TEXT NOT NULL, ref TEXT NOT NULL, hash TEXT NOT NULL, dense TEXT NOT NULL DEFAULT '',
  PRIMARY KEY(patient, ref)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rowdata(
  patient TEXT NOT NULL, ref TEXT NOT NULL, type TEXT NOT NULL, date TEXT, code TEXT, display TEXT, text TEXT NOT NULL,
  PRIMARY KEY(patient, ref)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS patients(
  patient TEXT PRIMARY KEY, version TEXT NOT NULL, rows INTEGER NOT NULL, dense TEXT NOT NULL DEFAULT '');
"""

# Words that carry no evidence in a question about a record; dropping them keeps BM25 from matching
# every row that says "patient" or "what".
STOPWORDS = frozenset(
    """a an and any are as at be been by did do does for from had has have he her his how i if in is it its
    of on or our she that the their them there these they this to was were what when where which who whom
    why will with you your patient patients ever last latest recent most first earliest current currently
    date dates time times value values result results record records please tell me show list give""".split()
)

_WORD = re.compile(r"[A-Za-z0-9]+")


def row_hash(row: Row) -> str:
    """Content hash of a row (changes when its projection changes)."""
    return hashlib.sha1(row.text.encode("utf-8")).hexdigest()[:16]


def fts_query(query: str) -> str | None:
    """An FTS5 OR-query of the question's content words, or ``None`` when it has none."""
    words = [w.lower() for w in _WORD.findall(query)]
    terms = [w for w in words if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]
    if not terms:
        terms = [w for w in words if len(w) > 1]
    if not terms:
        return None
    seen: dict[str, None] = {}
    for t in terms:
        seen.setdefault(t, None)
    return " OR ".join(f'"{t}"' for t in seen)


class LexicalIndex:
    """FTS5 index of projected rows; see the module docstring."""

    def __init__(self, path: str | Path = ":memory:"):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=30)
        if self.path != ":memory:":
            self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        """Close the SQLite connection."""
        self.conn.close()

    # --- state ---------------------------------------------------------------------------------
    def state(self, patient: str) -> dict[str, tuple[str, str]]:
        """``ref -> (hash, dense collection or '')`` of the rows indexed for a patient."""
        cur = self.conn.execute("SELECT ref, hash, dense FROM state WHERE patient=?", (patient,))
        return {ref: (h, d) for ref, h, d in cur}

    def pending_dense(self, patient: str, collection: str) -> list[str]:
        """Refs indexed lexically but not yet embedded into ``collection``."""
        cur = self.conn.execute("SELECT ref FROM state WHERE patient=? AND dense<>?", (patient, collection))
        return [r for (r,) in cur]

    def mark_dense(self, patient: str, refs: Iterable[str], collection: str) -> None:
        """Record that these rows are in ``collection`` (committed at once: one batch = one commit)."""
        with self.conn:
            self.conn.executemany(
                "UPDATE state SET dense=? WHERE patient=? AND ref=?", [(collection, patient, r) for r in refs]
            )

    def patient_version(self, patient: str) -> tuple[str, str] | None:
        """``(data version, dense collection or '')`` a patient was completely indexed at, or ``None``."""
        row = self.conn.execute("SELECT version, dense FROM patients WHERE patient=?", (patient,)).fetchone()
        return (row[0], row[1]) if row else None

    def set_patient_version(self, patient: str, version: str, rows: int, dense: str = "") -> None:
        """Record that every row of ``patient`` at data ``version`` is indexed (and embedded into ``dense``)."""
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO patients(patient, version, rows, dense) VALUES (?,?,?,?)",
                              (patient, version, rows, dense))

    def load_rows(self, patient: str) -> list[Row]:
        """The rows stored for a patient (as :meth:`apply` wrote them)."""
        cur = self.conn.execute("SELECT ref, type, date, code, display, text FROM rowdata WHERE patient=?", (patient,))
        return [Row(ref=ref, type=t, date=d, code=c, display=disp, text=text, patient=patient)
                for ref, t, d, c, disp, text in cur]

    def has_rowdata(self, patient: str) -> bool:
        """Whether the rows of this patient are stored (indexes written before ``rowdata`` existed are not)."""
        return self.conn.execute("SELECT 1 FROM rowdata WHERE patient=? LIMIT 1", (patient,)).fetchone() is not None

    def patients(self) -> list[str]:
        """Patients with at least one indexed row."""
        return [p for (p,) in self.conn.execute("SELECT DISTINCT patient FROM state ORDER BY patient")]

    # --- writes --------------------------------------------------------------------------------
    def apply(self, patient: str, add: Sequence[Row], remove: Sequence[str]) -> None:
        """Remove rows by ref, then add rows (new ones start not embedded), in one transaction."""
        with self.conn:
            for ref in remove:
                self.conn.execute("DELETE FROM rows WHERE patient=? AND ref=?", (patient, ref))
                self.conn.execute("DELETE FROM state WHERE patient=? AND ref=?", (patient, ref))
                self.conn.execute("DELETE FROM rowdata WHERE patient=? AND ref=?", (patient, ref))
            if remove or add:
                self.conn.execute("DELETE FROM patients WHERE patient=?", (patient,))
            self.conn.executemany(
                "INSERT INTO rows(text, ref, patient, type, date, code) VALUES (?,?,?,?,?,?)",
                [(r.text, r.ref, patient, r.type, r.date, r.code) for r in add],
            )
            self.conn.executemany(
                "INSERT OR REPLACE INTO state(patient, ref, hash, dense) VALUES (?,?,?,'')",
                [(patient, r.ref, row_hash(r)) for r in add],
            )
            self.conn.executemany(
                "INSERT OR REPLACE INTO rowdata(patient, ref, type, date, code, display, text) VALUES (?,?,?,?,?,?,?)",
                [(patient, r.ref, r.type, r.date, r.code, r.display, r.text) for r in add],
            )

    def store_rows(self, patient: str, rows: Sequence[Row]) -> None:
        """(Re)write the stored rows of a patient (for indexes built before ``rowdata`` existed)."""
        with self.conn:
            self.conn.executemany(
                "INSERT OR REPLACE INTO rowdata(patient, ref, type, date, code, display, text) VALUES (?,?,?,?,?,?,?)",
                [(patient, r.ref, r.type, r.date, r.code, r.display, r.text) for r in rows],
            )

    # --- reads ---------------------------------------------------------------------------------
    def search(
        self,
        patient: str,
        query: str,
        limit: int = 100,
        *,
        types: Sequence[str] | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[tuple[str, float]]:
        """``(ref, bm25 score)`` best first (higher is better); empty when the query has no content words."""
        q = fts_query(query)
        if q is None:
            return []
        sql = "SELECT ref, bm25(rows) FROM rows WHERE rows MATCH ? AND patient = ?"
        args: list = [q, patient]
        if types:
            sql += f" AND type IN ({','.join('?' * len(types))})"
            args += list(types)
        if since:
            sql += " AND date >= ?"
            args.append(since)
        if until:
            sql += " AND date <= ?"
            args.append(until)
        sql += " ORDER BY bm25(rows) LIMIT ?"
        args.append(limit)
        try:
            return [(ref, -score) for ref, score in self.conn.execute(sql, args)]
        except sqlite3.OperationalError:
            # A query FTS5 cannot parse must degrade to "no lexical evidence", not crash the search.
            return []
