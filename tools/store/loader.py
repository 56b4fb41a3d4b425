"""Loading FHIR Bundles and NDJSON into the embedded store.

One source file is one unit of work: it is read, validated and resolved completely before anything is
written, then written in a single SQLite transaction, so a refused or interrupted file leaves the store
exactly as it was. Files are streamed one at a time (memory stays flat over a directory of any size).

Reference handling, in order:
1. ``urn:uuid:`` full URLs inside a bundle become ``Type/id`` (the id the resource carries, so citations
   are stable across reloads).
2. Conditional creates (``request.ifNoneExist``) reuse an existing match instead of creating a duplicate.
3. Conditional references (``Practitioner?identifier=system|value``) are resolved against the store.
   One that cannot be resolved yet is kept as written, recorded in the ``unresolved`` table, and retried
   at the end of every load, so loading the missing bundle later resolves it.

The loader writes through :class:`LoadTarget`, the store's small public write interface (the embedded
:class:`tools.store.sqlite_store.SQLiteStore` implements it); it imports no store module, so the
dependency points one way: the store's ``load`` method calls this module, never the reverse.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import orjson
from pydantic import BaseModel, Field

from .base import Params, SearchError, normalize_params
from .search.extract import derived_rows
from .validation import DEFAULT_LEVEL, LEVELS, InvalidResource, check_resource_type, validate_level

SUPPORTED_SUFFIXES = (".json", ".json.gz", ".json.bz2", ".ndjson", ".ndjson.gz", ".ndjson.bz2")
LOADABLE_BUNDLE_TYPES = {"transaction", "batch", "collection", "searchset", "document"}
R4_BUNDLE_KEYS = {
    "resourceType", "id", "meta", "implicitRules", "language", "identifier", "type", "timestamp", "total",
    "link", "entry", "signature",
}


class RefusedFile(Exception):
    """A source file that cannot be loaded; the message is one line naming why."""


class UnresolvedReference(BaseModel):
    """A reference that points at nothing in the store (yet)."""

    source: str = Field(description="Type/id of the resource holding the reference")
    reference: str
    file: str | None = None
    reason: str


class FileReport(BaseModel):
    """What happened to one source file."""

    path: str
    status: str = Field(description="loaded | refused | skipped (non-FHIR JSON found in a directory)")
    reason: str | None = None
    resources: dict[str, int] = Field(default_factory=dict)
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped_conditional: int = 0


class LoadSummary(BaseModel):
    """The result of :func:`load_paths`: per file, per type, refused files and unresolved references."""

    files: list[FileReport] = Field(default_factory=list)
    seconds: float = 0.0
    unresolved: list[UnresolvedReference] = Field(default_factory=list)
    resolved_later: int = 0

    @property
    def skipped(self) -> list[FileReport]:
        """JSON files inside a loaded directory that are not FHIR (no resourceType); not an error."""
        return [f for f in self.files if f.status == "skipped"]

    @property
    def refused(self) -> list[FileReport]:
        return [f for f in self.files if f.status == "refused"]

    @property
    def per_type(self) -> dict[str, int]:
        c: Counter[str] = Counter()
        for f in self.files:
            c.update(f.resources)
        return dict(sorted(c.items()))

    @property
    def resources(self) -> int:
        return sum(self.per_type.values())

    def unresolved_explained(self) -> list[tuple[str, int, str]]:
        """Unresolved references grouped by target and reason: (reference, how many, reason)."""
        groups: Counter[tuple[str, str]] = Counter((u.reference, u.reason) for u in self.unresolved)
        return [(ref, n, reason) for (ref, reason), n in groups.most_common()]


# --------------------------------------------------------------------------------------------- reading
def iter_source_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and directories (recursively) into the sorted list of loadable files.

    Sorting puts Synthea's ``0-hospitalInformation``/``0-practitionerInformation`` batch bundles before
    the patient bundles that reference them; unresolved references are retried at the end anyway.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(
                f for f in p.rglob("*") if f.is_file() and f.name.lower().endswith(SUPPORTED_SUFFIXES)
            )
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise RefusedFile(f"{p}: no such file or directory")
    return out


def _open_text(path: Path) -> io.TextIOBase:
    name = path.name.lower()
    if name.endswith(".bz2"):
        return io.TextIOWrapper(bz2.open(path, "rb"), encoding="utf-8")
    if name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def read_text(path: Path) -> str:
    """The whole (decompressed) text of a bundle file; :class:`RefusedFile` if it cannot be read."""
    try:
        with _open_text(path) as fh:
            return fh.read()
    except UnicodeDecodeError:
        raise RefusedFile("not UTF-8 text (binary file?)") from None
    except (OSError, EOFError) as e:  # bad bz2/gzip stream
        raise RefusedFile(f"cannot decompress: {e}") from None


def parse_json(text: str) -> object:
    """Parse a bundle's text (orjson: several times faster than the json module on large bundles)."""
    if not text.strip():
        raise RefusedFile("empty file")
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:  # orjson's messages lack line and column: let the json module say where the problem is
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise RefusedFile(f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except (ValueError, RecursionError) as e:
        raise RefusedFile(f"malformed JSON: {e}") from None


def _read_json(path: Path) -> object:
    return parse_json(read_text(path))


def _ndjson_resources(path: Path) -> Iterator[dict]:
    try:
        with _open_text(path) as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise RefusedFile(f"malformed JSON on line {lineno}: {e.msg}") from None
                if not isinstance(obj, dict):
                    raise RefusedFile(f"line {lineno} is not a JSON object")
                yield obj
    except UnicodeDecodeError:
        raise RefusedFile("not UTF-8 text (binary file?)") from None
    except (OSError, EOFError) as e:
        raise RefusedFile(f"cannot decompress: {e}") from None


@dataclass
class Entry:
    """One resource to write, with what the bundle said about it."""

    resource: dict
    full_url: str | None = None
    if_none_exist: str | None = None


def bundle_entries(doc: object) -> list[Entry]:
    """Check that ``doc`` is a loadable R4 Bundle and return its entries; raise :class:`RefusedFile` if not."""
    if not isinstance(doc, dict):
        raise RefusedFile(f"top-level JSON is a {type(doc).__name__}, not a FHIR Bundle")
    rtype = doc.get("resourceType")
    if rtype != "Bundle":
        raise RefusedFile(
            f"not a Bundle (resourceType {rtype!r}); single resources load as NDJSON (.ndjson), one per line"
        )
    extra = set(doc) - R4_BUNDLE_KEYS
    if extra:
        raise RefusedFile(
            f"Bundle has elements that FHIR R4 does not define ({', '.join(sorted(extra))}); DSTU2/STU3 bundles are not supported"
        )
    btype = doc.get("type")
    if btype not in LOADABLE_BUNDLE_TYPES:
        raise RefusedFile(f"Bundle type {btype!r} cannot be loaded (expected one of {sorted(LOADABLE_BUNDLE_TYPES)})")
    entries = doc.get("entry") or []
    if not isinstance(entries, list):
        raise RefusedFile("Bundle.entry is not a list")
    out: list[Entry] = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("resource"), dict):
            method = (e.get("request") or {}).get("method") if isinstance(e, dict) else None
            if method in ("DELETE", "GET", "HEAD"):
                raise RefusedFile(f"entry {i}: {method} requests are not supported by the loader")
            raise RefusedFile(f"entry {i} has no resource")
        req = e.get("request") or {}
        if req.get("method") not in (None, "POST", "PUT"):
            raise RefusedFile(f"entry {i}: {req.get('method')} requests are not supported by the loader")
        ine = req.get("ifNoneExist")
        url = req.get("url") or ""
        if req.get("method") == "PUT" and "?" in url:  # conditional update: treat as "create unless it exists"
            ine = url.split("?", 1)[1]
        out.append(Entry(e["resource"], e.get("fullUrl"), ine))
    return out


# ------------------------------------------------------------------------------------------- resolving
def _walk_references(node: object) -> list[dict]:
    """Every dict holding a string ``reference`` key, anywhere in ``node``, in document order."""
    return _collect_references(node, []) if isinstance(node, (dict, list)) else []


def _collect_references(node: dict | list, out: list[dict]) -> list[dict]:
    # a plain recursive function filling one list: half the cost of nested generators, and the loader
    # walks every resource with it
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            out.append(node)
        values = node.values()
    else:
        values = node
    for v in values:
        if isinstance(v, (dict, list)):
            _collect_references(v, out)
    return out


def content_hash(resource: dict) -> str:
    """Hash of the resource without the store-assigned meta fields (decides "unchanged" on reload)."""
    meta = resource.get("meta")
    if isinstance(meta, dict) and ("versionId" in meta or "lastUpdated" in meta):
        resource = dict(resource)
        resource["meta"] = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
        if not resource["meta"]:
            del resource["meta"]
    try:
        text = orjson.dumps(resource)
    except TypeError:  # an integer past 64 bits
        text = None
    if text is None or not _same_as_json_dumps(text):
        text = json.dumps(resource, separators=(",", ":")).encode()
    return hashlib.sha1(text).hexdigest()


def _same_as_json_dumps(text: bytes) -> bool:
    """Whether orjson's text is byte for byte what ``json.dumps(separators=(",", ":"))`` writes, so hashes
    stored by earlier versions (which used json.dumps, 5x slower) still match. They differ only on non-ASCII
    text and DEL (json escapes them), floats below 1e-4 (``1e-05`` against orjson's ``0.00001`` or
    ``1e-5``) and NaN (``NaN`` against ``null``); text that might hold one of those is hashed the old way."""
    return (text.isascii() and b"\x7f" not in text and b"null" not in text and b"0.0000" not in text
            and _ONE_DIGIT_EXPONENT.search(text) is None)


# a number ending in a one-digit negative exponent (Python writes two digits); starting the pattern with
# its literal keeps the regex scan as fast as a substring search
_ONE_DIGIT_EXPONENT = re.compile(rb"e-\d[,\]}]")


@dataclass
class PreparedResource:
    resource: dict | None  # None when a validation worker prepared it: ``doc`` and ``derived`` hold it then
    rtype: str
    rid_key: tuple[str, str]
    hash: str = ""
    unresolved: list[tuple[str, str]] = field(default_factory=list)  # (reference, reason)
    # Prepared by a worker: the stored JSON text with VERSION_SLOT and UPDATED_SLOT for the writer to fill,
    # and derived_rows(resource). Both None (and no resource): the store held it unchanged when prepared.
    doc: str | None = None
    derived: tuple | None = None


class PreparedTooEarly(Exception):
    """Raised by :meth:`LoadTarget.write_file` (before it commits anything) for a resource a worker found
    unchanged in the store and so did not prepare, which the store has changed since; the loader then
    prepares the file itself."""


def dump_resource(resource: dict) -> str:
    """A resource as stored: compact JSON text (orjson; the json module for what orjson cannot encode,
    such as integers past 64 bits)."""
    try:
        return orjson.dumps(resource).decode()
    except TypeError:
        return json.dumps(resource, separators=(",", ":"), ensure_ascii=False)


# Stand-ins for the meta the writer sets (versionId depends on what the store holds, lastUpdated on when
# it commits): a worker writes the stored text with these, the writer replaces them. Both JSON encoders
# write a NUL as \u0000; a text holding a slot anywhere else is not prepared ahead (see _prepare_ahead).
_VERSION_MARK, _UPDATED_MARK = "\x00versionId", "\x00lastUpdated"
VERSION_SLOT, UPDATED_SLOT = '"\\u0000versionId"', '"\\u0000lastUpdated"'


def stored_text(doc: str, version: str, now: str) -> str:
    """The stored JSON text of a worker-prepared resource, its meta filled in."""
    return doc.replace(VERSION_SLOT, f'"{version}"', 1).replace(UPDATED_SLOT, f'"{now}"', 1)


#: ``resolve(resource, references) -> (resolved, still unresolved (reference, reason) pairs, new content hash)``
ResolveFn = Callable[[dict, list[str]], tuple[int, list[tuple[str, str]], str]]


@runtime_checkable
class LoadTarget(Protocol):
    """The write interface a store offers the loader, and only the loader (the agent reads; it never writes).

    Each method runs its own transaction; see :class:`tools.store.sqlite_store.SQLiteStore` for the embedded
    implementation."""

    def resolve_conditional(self, rtype: str, params: Params) -> list[str]:
        """Ids of ``rtype`` matching a conditional query, including what the file being written wrote so far."""
        ...

    def write_file(self, chunks: Iterable[Sequence[PreparedResource]], source_file: str,
                   before_commit: Callable[[], None] | None = None) -> dict[str, int]:
        """Write one file's prepared chunks atomically; returns inserted/updated/unchanged counts."""
        ...

    def stored_hashes(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """(type, id) -> content hash of those of ``keys`` the store holds."""
        ...

    def retry_unresolved(self, resolve: ResolveFn) -> int:
        """Offer every resource with unresolved conditional references to ``resolve``; returns how many resolved."""
        ...

    def unresolved_references(self) -> list[UnresolvedReference]:
        """Every reference that still points at nothing."""
        ...


class Resolver:
    """Resolves conditional references and conditional creates against the store (cached per load)."""

    def __init__(self, store: LoadTarget):
        self.store = store
        self.cache: dict[str, str | None] = {}

    def lookup(self, rtype: str, query: str) -> tuple[str | None, str]:
        """Return (``Type/id`` or None, reason when None) for ``Type?query``."""
        key = f"{rtype}?{query}"
        if key in self.cache:
            hit = self.cache[key]
            return hit, "" if hit else self._reason(rtype, query)
        ids = self.store.resolve_conditional(rtype, normalize_params(query))
        hit = f"{rtype}/{ids[0]}" if len(ids) == 1 else None
        if hit or not ids:  # ambiguous results are not cached: loading more data cannot fix them
            self.cache[key] = hit
        if len(ids) > 1:
            return None, f"ambiguous: {len(ids)} {rtype} resources match {query}"
        return hit, "" if hit else self._reason(rtype, query)

    @staticmethod
    def _reason(rtype: str, query: str) -> str:
        return f"no {rtype} matching {query} in the store (the bundle that defines it was not loaded)"

    def remember(self, rtype: str, query: str, ref: str) -> None:
        self.cache[f"{rtype}?{query}"] = ref

    def resolve_later(self, resource: dict, refs: list[str]) -> tuple[int, list[tuple[str, str]], str]:
        """Resolve the conditional references ``refs`` of a stored resource again, in place (a :data:`ResolveFn`
        for :meth:`LoadTarget.retry_unresolved`): (how many resolved, those still unresolved with why, new hash)."""
        fixed = 0
        still: list[tuple[str, str]] = []
        for holder in _walk_references(resource):
            ref = holder["reference"]
            if ref not in refs:
                continue
            ctype, _, query = ref.partition("?")
            try:
                hit, reason = self.lookup(ctype, query)
            except SearchError as err:
                hit, reason = None, err.message
            if hit:
                holder["reference"] = hit
                fixed += 1
            else:
                still.append((ref, reason))
        return fixed, still, content_hash(resource) if fixed else ""


def validation_level(validate: bool | str | None) -> str | None:
    """``True`` -> the default level (``"index"``), ``"index"``/``"strict"`` as given, falsy -> none."""
    if validate is True:
        return DEFAULT_LEVEL
    if not validate:
        return None
    if validate not in LEVELS:
        raise ValueError(f"validate must be True, False or one of {LEVELS}, not {validate!r}")
    return validate


def prepare_entries(entries: list[Entry], resolver: Resolver, *, validate: bool | str = True) -> tuple[list[PreparedResource], int]:
    """Validate, assign ids and resolve references for one bundle. Returns (resources, skipped conditional creates).

    Raises :class:`RefusedFile` (nothing written) if any resource fails.
    """
    url_map: dict[str, str] = {}
    kept: list[tuple[Entry, str, str]] = []
    skipped = 0
    for i, e in enumerate(entries):
        r = e.resource
        try:
            check_resource_type(r.get("resourceType"))
            level = validation_level(validate)
            if level:
                validate_level(r, level)
        except InvalidResource as err:
            raise RefusedFile(f"entry {i}: {err}") from None
        rtype = r["resourceType"]
        rid = r.get("id")
        if not rid:
            if e.full_url and e.full_url.startswith("urn:uuid:"):
                rid = e.full_url[len("urn:uuid:"):]
            else:  # deterministic, so reloading the same file keeps the id
                rid = str(uuid.uuid5(uuid.NAMESPACE_URL, content_hash(r)))
            r = dict(r, id=rid)
            e.resource = r
        if e.if_none_exist:
            existing, _ = resolver.lookup(rtype, e.if_none_exist)
            if existing and existing != f"{rtype}/{rid}":
                if e.full_url:
                    url_map[e.full_url] = existing
                skipped += 1
                continue
            resolver.remember(rtype, e.if_none_exist, f"{rtype}/{rid}")
        if e.full_url:
            url_map[e.full_url] = f"{rtype}/{rid}"
        kept.append((e, rtype, rid))

    out: list[PreparedResource] = []
    for e, rtype, rid in kept:
        pr = PreparedResource(e.resource, rtype, (rtype, rid))
        for holder in _walk_references(e.resource):
            ref = holder["reference"]
            if ref in url_map:
                holder["reference"] = url_map[ref]
            elif ref.startswith(("urn:uuid:", "urn:oid:")):
                pr.unresolved.append((ref, "urn reference to no entry of this bundle"))
            elif "?" in ref:
                ctype, _, query = ref.partition("?")
                try:
                    hit, reason = resolver.lookup(ctype, query)
                except SearchError as err:
                    hit, reason = None, f"cannot evaluate conditional reference: {err.message}"
                if hit:
                    holder["reference"] = hit
                else:
                    pr.unresolved.append((ref, reason))
        pr.hash = content_hash(e.resource)
        out.append(pr)
    return out, skipped


NDJSON_CHUNK = 2000


def is_ndjson(path: Path) -> bool:
    return ".ndjson" in path.name.lower()


def file_units(path: Path, text: str | None = None) -> Iterator[list[Entry]]:
    """The entries of one file in chunks: a Bundle is one chunk; NDJSON is streamed in chunks of
    ``NDJSON_CHUNK`` lines. All chunks of a file are written in one transaction. ``text`` is a bundle's
    text when already read (by a validation worker), so the file is not decompressed twice."""
    if text is not None:
        yield bundle_entries(parse_json(text))
        return
    if is_ndjson(path):
        chunk: list[Entry] = []
        for r in _ndjson_resources(path):
            chunk.append(Entry(r))
            if len(chunk) >= NDJSON_CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk
    else:
        yield bundle_entries(_read_json(path))


def validate_file(path: str, level: str = DEFAULT_LEVEL) -> tuple[str | None, str | None, "PreparedFile | None"]:
    """Validate every resource of one file: ``(first problem as a one-line message or None, text, prepared)``.

    Runs in a worker process (see :func:`load_paths`), ahead of the writer. A valid bundle is also
    prepared here as far as the store allows (:func:`_prepare_ahead`: ids, references, content hash, stored
    text, index rows), which is most of a load's work besides SQLite; the writer then only checks that the
    store still answers its conditional references the same way and inserts. When it cannot be prepared
    ahead, the decompressed text comes back instead, so the writer does not decompress the file a second
    time; NDJSON, streamed in chunks, is read again by the writer.
    """
    p = Path(path)
    text = None
    bundle = None
    try:
        if is_ndjson(p):
            units: Iterable[list[Entry]] = file_units(p)
        else:
            text = read_text(p)
            bundle = bundle_entries(parse_json(text))
            units = [bundle]
        for entries in units:
            for i, e in enumerate(entries):
                try:
                    validate_level(e.resource, level)
                except InvalidResource as err:
                    return f"entry {i}: {err}", None, None
    except RefusedFile as err:
        return str(err), None, None
    prepared = _prepare_ahead(bundle) if bundle is not None else None
    return (None, None, prepared) if prepared is not None else (None, text, None)


@dataclass
class PreparedFile:
    """A bundle prepared by a worker: its resources, skipped conditional creates, and every conditional
    look-up it made with its outcome (``(Type/id or None, reason)`` or ``("error", message)``)."""

    # (type, id, hash, unresolved, doc, derived) per resource: plain tuples pickle in half the time of
    # PreparedResource objects, and the writer unpickles every resource of a load
    rows: list[tuple]
    skipped: int
    lookups: dict[tuple[str, str], tuple]

    def resources(self) -> list[PreparedResource]:
        return [PreparedResource(None, t, (t, i), h, u, doc, d) for t, i, h, u, doc, d in self.rows]


class _RecordingResolver(Resolver):
    """A resolver that remembers each look-up's outcome, so the writer can check it against the store."""

    def __init__(self, store: LoadTarget):
        super().__init__(store)
        self.outcomes: dict[tuple[str, str], tuple] = {}

    def lookup(self, rtype: str, query: str) -> tuple[str | None, str]:
        try:
            out = super().lookup(rtype, query)
        except SearchError as err:
            self.outcomes[(rtype, query)] = ("error", err.message)
            raise
        self.outcomes[(rtype, query)] = out
        return out


def _same_lookups(lookups: dict[tuple[str, str], tuple], resolver: Resolver) -> bool:
    """Whether the store, as the writer sees it now, answers every look-up of a worker the same way (it may
    not when a file the worker ran ahead of defines what a reference points at)."""
    for (rtype, query), was in lookups.items():
        try:
            now: tuple = resolver.lookup(rtype, query)
        except SearchError as err:
            now = ("error", err.message)
        if now != was:
            return False
    return True


# The store a worker resolves conditional references against (read-only), set when the worker starts.
_WORKER_STORE: LoadTarget | None = None


def _prepare_ahead(entries: list[Entry]) -> PreparedFile | None:
    """Prepare a validated bundle in a worker, exactly as the writer would (:func:`prepare_entries`, then
    :func:`derived_rows` and the stored text), or None when the writer must do it itself: conditional
    creates (whether one is skipped decides where the bundle's other references point, and the writer
    registers them as it goes), or anything unexpected, which then surfaces from the writer's own path."""
    if _WORKER_STORE is None or any(e.if_none_exist for e in entries):
        return None
    try:
        resolver = _RecordingResolver(_WORKER_STORE)
        prepared, skipped = prepare_entries(entries, resolver, validate=False)
        keys = [pr.rid_key for pr in prepared]
        # a reload: what the store holds unchanged needs no stored text nor index rows (unless a resource
        # comes twice, when the second is compared with the first, not with the store)
        stored = _WORKER_STORE.stored_hashes(keys) if len(set(keys)) == len(keys) else {}
        for pr in prepared:
            if stored.get(pr.rid_key) == pr.hash:
                pr.resource = None
                continue
            r = pr.resource
            pr.derived = derived_rows(r)
            r["meta"] = {**(r.get("meta") or {}), "versionId": _VERSION_MARK, "lastUpdated": _UPDATED_MARK}
            doc = dump_resource(r)
            if doc.count(VERSION_SLOT) != 1 or doc.count(UPDATED_SLOT) != 1:
                return None  # the resource itself holds a slot's text
            pr.doc = doc
        rows = [(pr.rtype, pr.rid_key[1], pr.hash, pr.unresolved, pr.doc, pr.derived) for pr in prepared]
        return PreparedFile(rows, skipped, resolver.outcomes)
    except Exception:  # noqa: BLE001 - the writer's path gives the real answer (a refusal, an error)
        return None


def _worker_start(parent_pid: int, store: LoadTarget) -> None:
    global _WORKER_STORE
    _WORKER_STORE = store  # inherited through fork, not pickled
    _die_with_parent(parent_pid)


def _validation_pool(n_files: int, workers: int | None, store: LoadTarget):
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    if workers < 1 or n_files < 4:
        return None
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork, not spawn/forkserver: those re-import the caller's __main__, which breaks scripts and
    # notebooks without a main guard. The pool is created before any progress thread starts.
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_worker_start,
        initargs=(os.getpid(), store),
    )


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """Make this validation worker end when the loading process ends, however it ends.

    A worker blocked reading its task queue never sees EOF after ``kill -9`` of the parent (the
    workers themselves hold the queue's write end), so it would live on, holding the parent's
    stdout/stderr pipes, and a caller waiting for those pipes to close would hang. On Linux the
    kernel's parent-death signal (``prctl(PR_SET_PDEATHSIG, SIGKILL)``) ends it at once, with no
    thread and no polling; the ``getppid`` check closes the race where the parent died before the
    prctl call. Elsewhere a daemon thread polls the parent's pid once a second.
    """
    import signal
    import sys

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0:
                if os.getppid() != parent_pid:
                    os._exit(1)
                return
        except (OSError, AttributeError):  # pragma: no cover - no usable libc: fall back to polling
            pass
    import threading

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def load_paths(
    store: LoadTarget,
    paths: Iterable[str | os.PathLike],
    *,
    validate: bool | str = True,
    progress: bool = False,
    workers: int | None = None,
) -> LoadSummary:
    """Load files and directories into ``store``; each file is atomic. Never raises for a bad file:
    refused files are reported in the summary with a one-line reason.

    ``validate``: ``True`` (the default level, ``"index"``: every element the index reads is checked),
    ``"strict"`` (also the full R4 model check with ``fhir.resources``) or ``False``.
    With validation and more than a few files, validation runs ahead in ``workers``
    processes (default: up to 2), which also prepare each bundle as this process would
    (:func:`validate_file`), while this process checks their conditional look-ups and writes; at most
    ``2 * workers + 2`` files are in flight, so memory stays flat.
    """
    t0 = time.perf_counter()
    summary = LoadSummary()
    named = [Path(p) for p in paths]
    files = iter_source_files(named)
    explicit = {p.resolve() for p in named if p.is_file()}
    resolver = Resolver(store)
    level = validation_level(validate)
    pool = _validation_pool(len(files), workers, store) if level else None
    ahead = 2 * (pool._max_workers if pool else 0) + 2
    pending: dict[int, object] = {}
    if pool:
        for j in range(min(ahead, len(files))):
            pending[j] = pool.submit(validate_file, str(files[j]), level)
    bar = _progress(progress, len(files))
    try:
        for idx, path in enumerate(files):
            if pool:
                for j in range(idx, min(idx + ahead, len(files))):
                    if j not in pending:
                        pending[j] = pool.submit(validate_file, str(files[j]), level)
            report = FileReport(path=str(path), status="loaded")
            try:
                text = prepared = None
                if pool:
                    # the worker is ahead: a refused file is refused before anything is written
                    problem, text, prepared = pending.pop(idx).result()
                    if problem:
                        raise RefusedFile(problem)
                    if prepared is not None and not _same_lookups(prepared.lookups, resolver):
                        prepared = None  # prepared against an older store: read the file again and prepare here

                def chunks(path=path, report=report, text=text, prepared=prepared):
                    if prepared is not None:
                        resources = prepared.resources()
                        report.skipped_conditional += prepared.skipped
                        report.resources = dict(Counter(p.rtype for p in resources))
                        yield resources
                        return
                    for entries in file_units(path, text):
                        ready, skipped = prepare_entries(entries, resolver, validate=level if pool is None else False)
                        report.skipped_conditional += skipped
                        for k, v in Counter(p.rtype for p in ready).items():
                            report.resources[k] = report.resources.get(k, 0) + v
                        yield ready

                try:
                    stats = store.write_file(chunks(), str(path))
                except PreparedTooEarly:  # nothing was written: prepare the file here and write it again
                    report.skipped_conditional, report.resources = 0, {}
                    stats = store.write_file(chunks(prepared=None), str(path))
                report.inserted, report.updated, report.unchanged = stats["inserted"], stats["updated"], stats["unchanged"]
            except RefusedFile as err:
                pending.pop(idx, None)
                if _not_fhir(err) and path.resolve() not in explicit:
                    report.status, report.reason = "skipped", str(err)
                else:
                    report.status, report.reason = "refused", str(err)
                report.resources, report.inserted, report.updated, report.unchanged = {}, 0, 0, 0
                resolver.cache.clear()  # a refused bundle may have registered conditional creates
            summary.files.append(report)
            if bar:
                bar[0].advance(bar[1], 1)
    finally:
        if bar:
            bar[0].stop()
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
    # a fresh resolver: the load's cache remembers misses that the whole load may since have fixed
    summary.resolved_later = store.retry_unresolved(Resolver(store).resolve_later)
    summary.unresolved = store.unresolved_references()
    summary.seconds = time.perf_counter() - t0
    return summary


def _not_fhir(err: RefusedFile) -> bool:
    """A JSON file found inside a directory that is not FHIR at all (no resourceType), e.g. a manifest."""
    return str(err).startswith("not a Bundle (resourceType None)")


def _progress(enabled: bool, total: int):
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    p = Progress(
        TextColumn("loading"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
    )
    task = p.add_task("load", total=total)
    p.start()
    return p, task
