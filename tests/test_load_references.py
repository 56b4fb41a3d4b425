"""Loading semantics: ids kept, urn:uuid rewritten, conditional references and creates, idempotent reloads,
late resolution, NDJSON, compressed files, read-only readers, and a load killed halfway."""

from __future__ import annotations

import gzip
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import ALICE, BOB, BLAZE, DANA, FIXTURES, need_shared
from ehr_agent.tools.store.base import NotFound
from ehr_agent.tools.store.sqlite_store import SQLiteStore


def raw_entries(name: str) -> list[dict]:
    return [e["resource"] for e in json.loads((FIXTURES / name).read_text())["entry"]]


def test_ids_kept_and_urn_uuid_rewritten(fixture_store):
    for res in raw_entries("alice-moreau.json"):
        stored = fixture_store.read(res["resourceType"], res["id"])
        assert stored["id"] == res["id"]
        text = json.dumps(stored)
        assert "urn:uuid:" not in text
    obs = next(r for r in raw_entries("alice-moreau.json") if r["resourceType"] == "Observation")
    assert fixture_store.read("Observation", obs["id"])["subject"]["reference"] == f"Patient/{ALICE}"


def test_conditional_references_resolved_against_batch_bundle(fixture_store):
    prac = {r["identifier"][0]["value"]: r["id"] for r in raw_entries("0-hospital-practitioners.json") if r["resourceType"] == "Practitioner"}
    enc = next(r for r in raw_entries("alice-moreau.json") if r["resourceType"] == "Encounter")
    stored = fixture_store.read("Encounter", enc["id"])
    assert stored["participant"][0]["individual"]["reference"] == f"Practitioner/{prac['9999999901']}"
    assert stored["serviceProvider"]["reference"].startswith("Organization/")


def test_unresolvable_reference_is_recorded_not_fatal(fixture_store):
    unresolved = fixture_store.unresolved_references()
    assert len(unresolved) == 1
    u = unresolved[0]
    assert u.reference == "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999999977"
    assert "not loaded" in u.reason
    assert DANA in fixture_store.patient_ids()


def test_reload_changes_nothing(tmp_path):
    store = SQLiteStore(tmp_path, create=True)
    store.load([FIXTURES])
    before = store._conn().execute("SELECT type, id, version, last_updated, hash FROM resources ORDER BY rid").fetchall()
    summary = store.load([FIXTURES])
    after = store._conn().execute("SELECT type, id, version, last_updated, hash FROM resources ORDER BY rid").fetchall()
    assert before == after
    assert sum(f.unchanged for f in summary.files) == len(before)
    assert sum(f.inserted + f.updated for f in summary.files) == 0


def test_conditional_create_reuses_existing(tmp_path):
    """Loading the batch bundle a second time with new ids must not duplicate the practitioners."""
    store = SQLiteStore(tmp_path, create=True)
    store.load([FIXTURES / "0-hospital-practitioners.json"])
    doc = json.loads((FIXTURES / "0-hospital-practitioners.json").read_text())
    for e in doc["entry"]:
        e["resource"]["id"] = "copy-" + e["resource"]["id"][:8]
        e["fullUrl"] = "urn:uuid:" + e["resource"]["id"]
    p = tmp_path / "again.json"
    p.write_text(json.dumps(doc))
    summary = store.load([p])
    assert summary.files[0].skipped_conditional == 4
    assert store.counts()["Practitioner"] == 2


def test_late_target_resolves_earlier_reference(tmp_path):
    """Patient bundle first, practitioner bundle later: the reference resolves at the end of the second load."""
    store = SQLiteStore(tmp_path, create=True)
    first = store.load([FIXTURES / "alice-moreau.json"])
    assert first.unresolved and all("not loaded" in u.reason for u in first.unresolved)
    second = store.load([FIXTURES / "0-hospital-practitioners.json"])
    assert second.resolved_later == len(first.unresolved)
    assert second.unresolved == []
    enc = next(r for r in raw_entries("alice-moreau.json") if r["resourceType"] == "Encounter")
    assert store.read("Encounter", enc["id"])["participant"][0]["individual"]["reference"].startswith("Practitioner/")


def test_ndjson_and_gzip(tmp_path):
    res = raw_entries("robert-haines.json")
    nd = tmp_path / "bulk.ndjson.gz"
    with gzip.open(nd, "wt") as fh:
        for r in res:
            fh.write(json.dumps(r) + "\n")
    store = SQLiteStore(tmp_path / "s", create=True)
    summary = store.load([nd])
    assert summary.files[0].status == "loaded"
    assert sum(store.counts().values()) == len(res)
    assert BOB in store.patient_ids()


def test_readers_cannot_write(fixture_store):
    with pytest.raises(sqlite3.OperationalError):
        fixture_store._conn().execute("DELETE FROM resources")


def test_unknown_resource_is_not_found(fixture_store):
    with pytest.raises(NotFound, match="Observation/nope is not in the store"):
        fixture_store.read("Observation", "nope")


def integrity_problems(conn) -> list[str]:
    """``PRAGMA integrity_check`` less one false positive: SQLite 3.40 reports "NULL value in T.C" for a NOT NULL
    column of a WITHOUT ROWID table that sits between primary-key columns, even when no NULL exists (reproduced
    on a one-row in-memory table). Those columns are checked for NULLs directly instead."""
    import re

    out = []
    for (msg,) in conn.execute("PRAGMA integrity_check(1000)").fetchall():
        m = re.fullmatch(r"NULL value in (\w+)\.(\w+)", msg)
        if m:
            n = conn.execute(f"SELECT count(*) FROM {m[1]} WHERE {m[2]} IS NULL").fetchone()[0]
            if n == 0:
                continue
        if msg != "ok":
            out.append(msg)
    return out


KILL_SCRIPT = """
import sys
from ehr_agent.tools.store.sqlite_store import SQLiteStore
s = SQLiteStore(sys.argv[1], create=True)
print("start", flush=True)
s.load([sys.argv[2]], workers=0)
print("done", flush=True)
"""


def test_sigkill_halfway_leaves_consistent_store(tmp_path):
    """Kill a real load with SIGKILL mid-way: every bundle is either wholly in or wholly out."""
    need_shared(BLAZE)
    import shutil

    data = tmp_path / "data"  # the two batch bundles and 20 patients keep the test short
    data.mkdir()
    for p in sorted(BLAZE.glob("*.json.bz2"))[:22]:
        shutil.copy(p, data)
    store_dir = tmp_path / "s"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(store_dir), str(data)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "start"
    db = store_dir / "store.sqlite"
    deadline = time.time() + 120
    # wait until some patient bundles are committed, then kill
    while time.time() < deadline:
        assert proc.poll() is None, "the load ended before it could be killed"
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
                n = c.execute("SELECT count(*) FROM resources WHERE type='Patient'").fetchone()[0]
        except sqlite3.Error:
            n = 0
        if n >= 5:
            break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = SQLiteStore(store_dir)
    conn = store._conn()
    assert integrity_problems(conn) == []
    patients = store.patient_ids()
    assert 5 <= len(patients) < 20
    # Each loaded patient has its complete bundle; no resource of an unloaded patient exists.
    import bz2

    for path in sorted(data.glob("*.json.bz2")):
        if path.name.startswith("0-"):
            continue
        entries = json.load(bz2.open(path))["entry"]
        pid = entries[0]["resource"]["id"]
        in_store = conn.execute(
            "SELECT count(*) FROM compartment WHERE patient=?", (pid,)
        ).fetchone()[0]
        expected = 0 if pid not in patients else sum(1 for e in entries if e["resource"]["resourceType"] not in ("Medication",))
        assert in_store == expected, (path.name, in_store, expected)
    # and the store still loads the rest afterwards
    summary = store.load([data])
    assert not summary.refused
    assert len(store.patient_ids()) == 20


def test_ndjson_streams_in_chunks_yet_stays_atomic(tmp_path, monkeypatch):
    """A bad line in a later chunk refuses the whole file, although earlier chunks were already written."""
    import ehr_agent.tools.store.loader as loader

    monkeypatch.setattr(loader, "NDJSON_CHUNK", 5)
    res = raw_entries("robert-haines.json")
    bad = dict(res[-1], status={"not": "a code"})
    nd = tmp_path / "bulk.ndjson"
    nd.write_text("".join(json.dumps(r) + "\n" for r in res[:-1] + [bad]))
    store = SQLiteStore(tmp_path / "s", create=True)
    summary = store.load([nd], workers=0)
    assert summary.files[0].status == "refused"
    assert "does not validate" in summary.files[0].reason
    assert store.counts() == {}
    nd.write_text("".join(json.dumps(r) + "\n" for r in res))
    assert store.load([nd], workers=0).files[0].status == "loaded"
    assert sum(store.counts().values()) == len(res)


def test_store_from_another_version_is_refused_clearly(tmp_path):
    from ehr_agent.tools.store.base import StoreError

    SQLiteStore(tmp_path, create=True)
    with sqlite3.connect(tmp_path / "store.sqlite") as c:
        c.execute("UPDATE meta SET value='0ld' WHERE key='schema'")
    with pytest.raises(StoreError, match="written by another version of ehr-agent.*new store directory"):
        SQLiteStore(tmp_path)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "store.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="not an ehr-agent store"):
        SQLiteStore(tmp_path / "junk")


@pytest.mark.parametrize("value", [83.2, 1e-05, 4.5e-05, 2.5e-07, 3e-12, 1e16, 1e22, -0.0, 2**70, "é", "\x7f", "1e-5,", None, float("nan")])
def test_content_hash_is_the_one_stored_by_earlier_versions(value):
    # stores written before keep their hashes, so reloading their files still finds them unchanged
    import hashlib

    from ehr_agent.tools.store.loader import content_hash

    res = {"resourceType": "Observation", "id": "x", "valueQuantity": {"value": value, "unit": "mg"}, "note": [{"text": value}]}
    assert content_hash(res) == hashlib.sha1(json.dumps(res, separators=(",", ":")).encode()).hexdigest()
    assert content_hash({**res, "meta": {"versionId": "3", "lastUpdated": "2020"}}) == content_hash(res)


def _store_rows(store: SQLiteStore) -> dict[str, list]:
    """Every table's rows, with rids as Type/id and lastUpdated left out (they differ from load to load)."""
    import re

    c = store._conn()
    key = {rid: f"{t}/{i}" for rid, t, i in c.execute("SELECT rid, type, id FROM resources")}
    out = {"resources": sorted(
        (t, i, v, h, re.sub(r'"lastUpdated":"[^"]*"', "", j))
        for t, i, v, h, j in c.execute("SELECT type, id, version, hash, json FROM resources")
    )}
    for (table,) in c.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT IN ('resources', 'meta')"):
        cols = [r[1] for r in c.execute(f"PRAGMA table_info({table})")]
        at = cols.index("rid")
        out[table] = sorted(tuple(key[v] if k == at else v for k, v in enumerate(r)) for r in c.execute(f"SELECT * FROM {table}"))
    return out


def test_validation_workers_prepare_exactly_what_the_writer_would(tmp_path):
    # with workers, bundles are prepared ahead (ids, references, hashes, index rows) in other processes
    inline = SQLiteStore(tmp_path / "inline", create=True)
    ahead = SQLiteStore(tmp_path / "ahead", create=True)
    s1 = inline.load([FIXTURES], workers=0)
    s2 = ahead.load([FIXTURES], workers=2)
    assert s1.per_type == s2.per_type and s1.unresolved == s2.unresolved
    assert _store_rows(inline) == _store_rows(ahead)


def test_a_bundle_prepared_against_an_older_store_is_prepared_again(tmp_path, monkeypatch):
    from ehr_agent.tools.store import loader

    store = SQLiteStore(tmp_path / "s", create=True)
    monkeypatch.setattr(loader, "_WORKER_STORE", store)
    _, _, early = loader.validate_file(str(FIXTURES / "alice-moreau.json"))
    assert early is not None and any(hit is None for hit, _ in early.lookups.values())  # practitioners not loaded yet
    store.load([FIXTURES / "0-hospital-practitioners.json"])
    assert not loader._same_lookups(early.lookups, loader.Resolver(store))
    _, _, late = loader.validate_file(str(FIXTURES / "alice-moreau.json"))
    assert loader._same_lookups(late.lookups, loader.Resolver(store))


def test_a_resource_a_worker_found_unchanged_but_changed_since_is_still_written(tmp_path, monkeypatch):
    import shutil

    for name in ("v1", "v2"):
        (tmp_path / name).mkdir()
        for f in FIXTURES.glob("*.json"):
            shutil.copy(f, tmp_path / name / f.name)
    doc = json.loads((tmp_path / "v2" / "alice-moreau.json").read_text())
    obs = next(e["resource"] for e in doc["entry"] if e["resource"].get("valueQuantity"))
    obs["valueQuantity"]["value"] = 12345.5
    (tmp_path / "v2" / "alice-moreau.json").write_text(json.dumps(doc))
    store = SQLiteStore(tmp_path / "s", create=True)
    store.load([tmp_path / "v1"], workers=2)

    class Matches(str):  # every worker then takes every resource for unchanged in the store
        def __eq__(self, other):
            return True

        __hash__ = str.__hash__

    monkeypatch.setattr(SQLiteStore, "stored_hashes", lambda self, keys: {k: Matches() for k in keys})
    summary = store.load([tmp_path / "v2"], workers=2)
    assert sum(f.updated for f in summary.files) == 1 and not summary.refused
    assert store.read("Observation", obs["id"])["valueQuantity"]["value"] == 12345.5
