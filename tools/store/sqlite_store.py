"""The embedded FHIR store: one directory holding an SQLite database in WAL mode.

Resources are stored as JSON; search parameters live in index tables written by the search engine
(:mod:`tools.store.search`). Readers open the database read-only (``mode=ro``), so code that only holds a
store for asking questions cannot write to it even by mistake; only :meth:`SQLiteStore.load` writes.
The loader (:mod:`tools.store.loader`) writes through the store's small public write interface
(:class:`tools.store.loader.LoadTarget`: ``resolve_conditional``, ``write_file``, ``stored_hashes``,
``retry_unresolved``, ``unresolved_references``); the agent never calls it. This module imports the loader (for :meth:`load`),
never the other way round.
Connections are per thread, so the REST facade and concurrent evaluation runs can share one store.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import orjson

from . import search as engine
from .base import FHIRStore, NotFound, Params, ParamsLike, SearchError, StoreError, normalize_params, parse_search_path
from .loader import (LoadSummary, PreparedResource, PreparedTooEarly, UnresolvedReference, dump_resource, load_paths,
                     stored_text)
from .search.parse import MAX_OFFSET, parse_int

DB_NAME = "store.sqlite"

# SQLite errors that mean "this statement is beyond the engine's limits", not a broken store.
_TOO_COMPLEX = ("parser stack overflow", "too large", "too complex", "too many", "too big")

CORE_DDL = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS resources(
  rid INTEGER PRIMARY KEY,
  type TEXT NOT NULL,
  id TEXT NOT NULL,
  version INTEGER NOT NULL,
  last_updated TEXT NOT NULL,
  hash TEXT NOT NULL,
  json TEXT NOT NULL,
  UNIQUE(type, id));
CREATE TABLE IF NOT EXISTS compartment(patient TEXT NOT NULL, rid INTEGER NOT NULL, PRIMARY KEY(patient, rid)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS compartment_rid ON compartment(rid);
CREATE TABLE IF NOT EXISTS identifiers(type TEXT NOT NULL, system TEXT, value TEXT NOT NULL, rid INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS identifiers_lookup ON identifiers(type, value, system);
CREATE INDEX IF NOT EXISTS identifiers_rid ON identifiers(rid);
CREATE TABLE IF NOT EXISTS unresolved(rid INTEGER NOT NULL, reference TEXT NOT NULL, reason TEXT, source_file TEXT);
CREATE INDEX IF NOT EXISTS unresolved_rid ON unresolved(rid);
"""


# Indexes that only make reads faster: created with the store and, for a store written before they existed,
# at its next load; kept out of the schema fingerprint, because a store without them reads the same answers.
# resources(type, rid): a type's resources in load order, so each page of a download (keyset on rid) is an
# index range instead of every resource of the type sorted again for each page.
READ_INDEX_DDL = """
CREATE INDEX IF NOT EXISTS resources_type_rid ON resources(type, rid);
"""

# Changes whenever the tables or the index extraction change, so an old store is detected, not misread.
SCHEMA_FINGERPRINT = hashlib.sha1((CORE_DDL + engine.INDEX_DDL + getattr(engine, "INDEX_VERSION", "")).encode()).hexdigest()[:12]


# The meta row counting committed writes: :meth:`SQLiteStore.data_version` reads it. A row of the meta table,
# not a schema change, so stores written before it existed still open (they read as version "0").
DATA_VERSION_KEY = "data_version"
_BUMP_DATA_VERSION = (
    "INSERT INTO meta(key, value) VALUES(?, '1') "
    "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
)


def _bump_data_version(w: sqlite3.Connection) -> None:
    """Count one more change of the data, inside the writer's open transaction (so it commits with the change,
    or rolls back with it, and a reader in any process sees both or neither)."""
    w.execute(_BUMP_DATA_VERSION, (DATA_VERSION_KEY,))


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class SQLiteStore(FHIRStore):
    """The embedded store in directory ``directory`` (created when ``create=True``)."""

    def __init__(self, directory: str | os.PathLike, *, create: bool = False):
        self.directory = Path(directory)
        self.path = self.directory / DB_NAME
        self.base_url = "urn:ehr-agent"
        self._local = threading.local()
        self._write_lock = threading.Lock()
        if not self.path.exists():
            if not create:
                raise NotFound(
                    f"no FHIR store at {self.directory} (expected {DB_NAME}); create one with `ehr-agent load --store {self.directory} PATH`"
                )
            self.directory.mkdir(parents=True, exist_ok=True)
            with self._writer() as w:
                w.executescript(CORE_DDL + engine.INDEX_DDL + READ_INDEX_DDL)
                w.execute("INSERT OR REPLACE INTO meta VALUES('schema', ?)", (SCHEMA_FINGERPRINT,))
        self._check_schema()

    def _check_schema(self) -> None:
        """Refuse, with a clear message, a store written by a version whose tables differ from ours."""
        try:
            row = self._conn().execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{self.path} is not an ehr-agent store ({e})") from None
        if row is None or row[0] != SCHEMA_FINGERPRINT:
            self.close()
            raise StoreError(
                f"the store at {self.directory} was written by another version of ehr-agent (schema "
                f"{row[0] if row else 'unknown'}, this version uses {SCHEMA_FINGERPRINT}); load the data "
                "into a new store directory"
            )

    # ------------------------------------------------------------------------------- connections
    def _conn(self) -> sqlite3.Connection:
        """This thread's read-only connection."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            conn.execute("PRAGMA query_only=ON")
            conn.execute("PRAGMA cache_size=-65536")
            conn.execute("PRAGMA mmap_size=268435456")
            self._local.conn = conn
        return conn

    class _WriterCtx:
        def __init__(self, store: "SQLiteStore"):
            self.store = store

        def __enter__(self) -> sqlite3.Connection:
            self.store._write_lock.acquire()
            held = self.store._load_writer
            if held is not None and held[0] == threading.get_ident():
                self.conn, self.owned = held[1], False
            else:
                self.conn, self.owned = self.store._open_writer(), True
            return self.conn

        def __exit__(self, *exc: object) -> None:
            try:
                if self.owned:
                    self.conn.close()
            finally:
                self.store._write_lock.release()

    def _writer(self) -> "SQLiteStore._WriterCtx":
        return SQLiteStore._WriterCtx(self)

    # (thread id, connection) that :meth:`load` keeps open across the files it writes
    _load_writer: tuple[int, sqlite3.Connection] | None = None

    def _open_writer(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=60)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA cache_size=-131072")
        conn.execute("PRAGMA temp_store=MEMORY")
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ------------------------------------------------------------------------------------- reads
    def read(self, resource_type: str, resource_id: str) -> dict:
        row = self._conn().execute(
            "SELECT json FROM resources WHERE type=? AND id=?", (resource_type, resource_id)
        ).fetchone()
        if row is None:
            raise NotFound(f"{resource_type}/{resource_id} is not in the store")
        return orjson.loads(row[0])

    def search(self, resource_type: str | None, params: ParamsLike = None, *, compartment: tuple[str, str] | None = None) -> dict:
        if compartment is not None:
            ctype, cid = compartment
            if ctype != "Patient":
                raise SearchError(f"only the Patient compartment is supported, not {ctype}")
        return self._guard(
            engine.execute_search,
            self._conn(), resource_type, normalize_params(params), compartment=compartment, base_url=self.base_url,
        )

    @staticmethod
    def _guard(fn, *args, **kwargs) -> dict:
        """Run a search; SQLite's own limits (expression depth, parser stack, pattern length, integer range)
        become a 400 SearchError. The documented limits (docs/search.md) are checked first and keep valid
        searches clear of these; this is the net under them, never the normal path."""
        try:
            return fn(*args, **kwargs)
        except OverflowError as e:
            raise SearchError(f"a number in the search is out of range ({e})") from None
        except sqlite3.OperationalError as e:
            msg = str(e)
            if any(t in msg for t in _TOO_COMPLEX):
                raise SearchError(f"the search is too complex for the store ({msg}); simplify it or split it") from None
            raise

    def next_page(self, bundle: dict) -> dict | None:
        nxt = next((lk.get("url") for lk in bundle.get("link", []) if lk.get("relation") == "next"), None)
        if not nxt:
            return None
        rel = nxt[len(self.base_url):] if nxt.startswith(self.base_url) else nxt
        req = parse_search_path(rel)
        if req.operation == "$everything":
            p = dict(req.params)
            count = parse_int("_count", p["_count"]) if "_count" in p else None
            offset = parse_int("_offset", p["_offset"], maximum=MAX_OFFSET) if "_offset" in p else 0
            return self._guard(
                engine.execute_everything, self._conn(), req.resource_id or "", p.get("start"), p.get("end"),
                count=count, offset=offset, base_url=self.base_url,
            )
        return self.search(req.resource_type, req.params, compartment=req.compartment)

    def everything(self, patient_id: str, start: str | None = None, end: str | None = None, *, count: int | None = None) -> dict:
        self.read("Patient", patient_id)  # NotFound for an unknown patient
        return self._guard(
            engine.execute_everything, self._conn(), patient_id, start, end, count=count, offset=0, base_url=self.base_url
        )

    def data_version(self) -> str:
        """The count of committed writes that changed the data (``"0"`` for a store never changed since this
        counter exists). Each loaded file that inserts or updates a resource, and each late resolution of
        references, bumps it in the transaction that writes the data, so a load by another store object or
        another process is seen at the next call: this connection reads outside any transaction, and every
        statement sees the latest commit. One primary-key lookup: a few microseconds."""
        # fetchall: a statement left unfinished would hold its read snapshot open and hide later commits
        rows = self._conn().execute("SELECT value FROM meta WHERE key=?", (DATA_VERSION_KEY,)).fetchall()
        return str(rows[0][0]) if rows else "0"

    def patient_ids(self) -> list[str]:
        return [r[0] for r in self._conn().execute("SELECT id FROM resources WHERE type='Patient' ORDER BY id")]

    def counts(self) -> dict[str, int]:
        """Resources per type."""
        return dict(self._conn().execute("SELECT type, count(*) FROM resources GROUP BY type ORDER BY type").fetchall())

    def compartments_of(self, resource_type: str, resource_id: str) -> set[str]:
        """Patient ids whose compartment holds the resource (empty for shared resources)."""
        rows = self._conn().execute(
            "SELECT c.patient FROM resources r JOIN compartment c ON c.rid=r.rid WHERE r.type=? AND r.id=?",
            (resource_type, resource_id),
        ).fetchall()
        return {r[0] for r in rows}

    def unresolved_references(self) -> list[UnresolvedReference]:
        """Every reference that points at nothing in the store, with why."""
        rows = self._conn().execute(
            "SELECT r.type || '/' || r.id, u.reference, u.reason, u.source_file FROM unresolved u JOIN resources r ON r.rid=u.rid ORDER BY 1, 2"
        ).fetchall()
        return [UnresolvedReference(source=s, reference=ref, reason=why or "", file=f) for s, ref, why, f in rows]

    # ------------------------------------------------------------------------------------ writes
    def load(self, paths: Iterable[str | os.PathLike], *, validate: bool | str = True, progress: bool = False,
             workers: int | None = None) -> LoadSummary:
        """Load bundle/NDJSON files and directories. Returns a :class:`tools.store.loader.LoadSummary`.

        Each file is atomic; a refused file is reported, never raised, and leaves the store unchanged.
        ``validate``: True (index-level checks, the default), ``"strict"`` (plus ``fhir.resources``) or False.
        ``workers`` validation processes run ahead of the writer (default: up to 2; 0 validates inline).
        """
        self.close()  # drop a read connection that would otherwise keep an old snapshot
        # One writer connection for the whole load, each file still its own transaction: closing the last
        # connection checkpoints the whole WAL and deletes it, which per file cost more than the file's
        # inserts, and the writer's page cache (the index B-trees' inner pages) survives from file to file.
        conn = self._open_writer()
        # Checkpoint every 256 MB of WAL instead of every 4 MB: each checkpoint fsyncs, and an index page
        # written by many files is copied into the database once per checkpoint, not once per file (about
        # 10 % of a load's time). The guarantees stay those of WAL with synchronous=NORMAL: each file's
        # transaction atomic, the database consistent after a kill or a crash; closing checkpoints the rest.
        conn.execute("PRAGMA wal_autocheckpoint=65536")
        self._load_writer = (threading.get_ident(), conn)
        try:
            with self._writer() as w:
                w.executescript(READ_INDEX_DDL)
            return load_paths(self, paths, validate=validate, progress=progress, workers=workers)
        finally:
            self._load_writer = None
            conn.close()

    # The loader's write interface (tools.store.loader.LoadTarget). -------------------------------
    def resolve_conditional(self, rtype: str, params: Params) -> list[str]:
        """Ids matching a conditional reference/create query (the loader's; read inside the write in
        progress, so a file's own earlier resources count)."""
        if len(params) == 1 and params[0][0] == "identifier":
            system, sep, value = params[0][1].rpartition("|")
            sql = "SELECT DISTINCT r.id FROM identifiers i JOIN resources r ON r.rid=i.rid WHERE i.type=? AND i.value=?"
            args: list = [rtype, value]
            if sep:
                sql += " AND i.system IS ?"
                args.append(system or None)
            conn = self._active_writer or self._conn()
            return [r[0] for r in conn.execute(sql, args).fetchall()]
        conn = self._active_writer or self._conn()
        bundle = engine.execute_search(conn, rtype, list(params) + [("_count", "2")], compartment=None, base_url=self.base_url)
        return [e["resource"]["id"] for e in bundle.get("entry", [])]

    _active_writer: sqlite3.Connection | None = None

    def write_file(self, chunks: Iterable[Sequence[PreparedResource]], source_file: str,
                   before_commit: Callable[[], None] | None = None) -> dict[str, int]:
        """The loader's: write one source file, given as an iterable of prepared chunks, in a single transaction (all or
        nothing). ``before_commit`` may raise to refuse the file after everything was written.

        Rows are written in batches per chunk (one ``executemany`` per table): per-row calls into SQLite
        cost more than the inserts themselves. Row ids are assigned here, which is safe because the
        transaction holds SQLite's write lock from its first statement (BEGIN IMMEDIATE).
        ``chunks`` is consumed inside the transaction, so lookups it makes through
        :meth:`resolve_conditional` see what the file wrote before them. Returns inserted/updated/unchanged.
        """
        stats = {"inserted": 0, "updated": 0, "unchanged": 0}
        with self._writer() as w:
            self._active_writer = w
            try:
                w.execute("BEGIN IMMEDIATE")
                now = _now()
                next_rid = w.execute("SELECT coalesce(max(rid), 0) FROM resources").fetchone()[0] + 1
                for chunk in chunks:
                    existing = self._existing(w, chunk)
                    batch = _Batch()
                    for pr in chunk:
                        row = existing.get(pr.rid_key)
                        if row is not None and row[2] == pr.hash:
                            stats["unchanged"] += 1
                            continue
                        if pr.resource is None and pr.doc is None:
                            raise PreparedTooEarly(f"{source_file}: {'/'.join(pr.rid_key)} changed since it was prepared")
                        if pr.rid_key in batch.pending:  # the same resource twice in one file: last one wins
                            batch.flush(w)
                        version = 1 if row is None else row[1] + 1
                        res = pr.resource
                        if pr.doc is not None:
                            doc = stored_text(pr.doc, str(version), now)
                        else:
                            res["meta"] = {**(res.get("meta") or {}), "versionId": str(version), "lastUpdated": now}
                            doc = dump_resource(res)
                        if row is None:
                            key, next_rid = next_rid, next_rid + 1
                            batch.resources.append((key, *pr.rid_key, version, now, pr.hash, doc))
                            batch.pending.add(pr.rid_key)
                            stats["inserted"] += 1
                        else:
                            key = row[0]
                            w.execute(
                                "UPDATE resources SET version=?, last_updated=?, hash=?, json=? WHERE rid=?",
                                (version, now, pr.hash, doc, key),
                            )
                            self._delete_derived(w, key)
                            stats["updated"] += 1
                        existing[pr.rid_key] = (key, version, pr.hash)
                        batch.add_derived(key, res, pr.unresolved, source_file, pr.derived)
                    batch.flush(w)
                if before_commit is not None:
                    before_commit()
                if stats["inserted"] or stats["updated"]:
                    _bump_data_version(w)
                w.execute("COMMIT")
            except BaseException:
                w.execute("ROLLBACK")
                raise
            finally:
                self._active_writer = None
        return stats

    def stored_hashes(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The loader's: (type, id) -> content hash of those of ``keys`` the store holds."""
        conn = self._active_writer or self._conn()
        return {k: row[2] for k, row in self._existing_keys(conn, keys).items()}

    @classmethod
    def _existing(cls, w: sqlite3.Connection, chunk: list) -> dict[tuple[str, str], tuple[int, int, str]]:
        """(type, id) -> (rid, version, hash) for the chunk's resources already in the store."""
        return cls._existing_keys(w, [pr.rid_key for pr in chunk])

    @staticmethod
    def _existing_keys(w: sqlite3.Connection, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, int, str]]:
        by_type: dict[str, list[str]] = {}
        for rtype, rid in keys:
            by_type.setdefault(rtype, []).append(rid)
        out: dict[tuple[str, str], tuple[int, int, str]] = {}
        for rtype, ids in by_type.items():
            for i in range(0, len(ids), 500):
                part = ids[i:i + 500]
                q = f"SELECT id, rid, version, hash FROM resources WHERE type=? AND id IN ({','.join('?' * len(part))})"
                for rid_, key, version, h in w.execute(q, (rtype, *part)):
                    out[(rtype, rid_)] = (key, version, h)
        return out

    @staticmethod
    def _delete_derived(w: sqlite3.Connection, key: int) -> None:
        for t in ("compartment", "identifiers", "unresolved", *engine.INDEX_TABLES):
            w.execute(f"DELETE FROM {t} WHERE rid=?", (key,))

    @staticmethod
    def _write_derived(w: sqlite3.Connection, key: int, res: dict, unresolved: list, source_file: str | None) -> None:
        batch = _Batch()
        batch.add_derived(key, res, unresolved, source_file)
        batch.flush(w)

    def retry_unresolved(self, resolve: Callable[[dict, list[str]], tuple[int, list[tuple[str, str]], str]]) -> int:
        """The loader's: offer every resource holding unresolved conditional references to ``resolve``, in
        one write transaction (its targets may have been loaded since). ``resolve(resource, references)``
        rewrites what it can resolve in place and returns (how many it resolved, the ``(reference, reason)``
        pairs still unresolved, the resource's new content hash); a resource with any resolved is rewritten
        with its index rows. Returns how many references were resolved."""
        fixed = 0
        with self._writer() as w:
            self._active_writer = w
            try:
                rows = w.execute(
                    "SELECT u.rid, u.reference, r.json FROM unresolved u JOIN resources r ON r.rid=u.rid WHERE u.reference LIKE '%?%'"
                ).fetchall()
                if not rows:
                    return 0
                w.execute("BEGIN IMMEDIATE")
                by_rid: dict[int, tuple[dict, list[str]]] = {}
                for key, ref, doc in rows:
                    by_rid.setdefault(key, (json.loads(doc), []))[1].append(ref)
                for key, (res, refs) in by_rid.items():
                    n, still, h = resolve(res, refs)
                    if n:
                        fixed += n
                        src = w.execute("SELECT source_file FROM unresolved WHERE rid=? LIMIT 1", (key,)).fetchone()
                        w.execute(
                            "UPDATE resources SET hash=?, json=? WHERE rid=?",
                            (h, json.dumps(res, separators=(",", ":")), key),
                        )
                        self._delete_derived(w, key)
                        self._write_derived(w, key, res, still, src[0] if src else None)
                if fixed:
                    _bump_data_version(w)
                w.execute("COMMIT")
            except BaseException:
                if w.in_transaction:
                    w.execute("ROLLBACK")
                raise
            finally:
                self._active_writer = None
        return fixed


class _Batch:
    """Rows of one chunk waiting to be written, per table."""

    __slots__ = ("resources", "pending", "compartment", "identifiers", "unresolved", "index")

    def __init__(self) -> None:
        self.resources: list[tuple] = []
        self.pending: set[tuple[str, str]] = set()
        self.compartment: list[tuple] = []
        self.identifiers: list[tuple] = []
        self.unresolved: list[tuple] = []
        self.index: dict[str, list[tuple]] = {}

    def add_derived(self, key: int, res: dict | None, unresolved: list, source_file: str | None,
                    derived: tuple | None = None) -> None:
        """Queue the rows derived from ``res``; ``derived`` is :func:`engine.derived_rows` of it when a
        validation worker computed them already (``res`` is then not needed)."""
        pids, idents, rows = derived if derived is not None else engine.derived_rows(res)
        self.compartment.extend((pid, key) for pid in pids)
        self.identifiers.extend((*ident, key) for ident in idents)
        self.unresolved.extend((key, ref, reason, source_file) for ref, reason in unresolved)
        for table, trows in rows.items():
            if trows:
                self.index.setdefault(table, []).extend((key, *r) for r in trows)

    def flush(self, w: sqlite3.Connection) -> None:
        if self.resources:
            w.executemany(
                "INSERT INTO resources(rid, type, id, version, last_updated, hash, json) VALUES (?,?,?,?,?,?,?)",
                self.resources,
            )
        w.executemany("INSERT OR IGNORE INTO compartment VALUES (?, ?)", self.compartment)
        w.executemany("INSERT INTO identifiers VALUES (?,?,?,?)", self.identifiers)
        w.executemany("INSERT INTO unresolved VALUES (?,?,?,?)", self.unresolved)
        for table, rows in self.index.items():
            w.executemany(engine.INSERT_SQL[table], rows)
        self.__init__()
