"""FHIRStore.data_version: a token that changes exactly when the store's data changes, seen by every
reader of the store (another store object, another process), so caches keyed on it notice a load."""

from __future__ import annotations

import subprocess
import sys

from conftest import FIXTURES
from ehr_agent.tools.store.base import FHIRStore
from ehr_agent.tools.store.rest import RESTStore
from ehr_agent.tools.store.sqlite_store import SQLiteStore

HOSPITAL = FIXTURES / "0-hospital-practitioners.json"
ALICE_FILE = FIXTURES / "alice-moreau.json"
BOB_FILE = FIXTURES / "robert-haines.json"


def test_other_store_object_sees_a_load(tmp_path):
    writer = SQLiteStore(tmp_path, create=True)
    writer.load([HOSPITAL, ALICE_FILE])
    reader = SQLiteStore(tmp_path)
    before = reader.data_version()
    assert before == writer.data_version()
    assert len(reader.patient_ids()) == 1  # the reader's connection is open and has read

    writer.load([BOB_FILE])

    after = reader.data_version()
    assert after != before
    assert len(reader.patient_ids()) == 2
    assert after == reader.data_version()  # stable while nothing changes


def test_unchanged_reload_and_refused_file_keep_the_version(tmp_path):
    store = SQLiteStore(tmp_path, create=True)
    fresh = store.data_version()
    store.load([HOSPITAL, ALICE_FILE])
    loaded = store.data_version()
    assert loaded != fresh

    store.load([ALICE_FILE])  # every resource unchanged: nothing written
    assert store.data_version() == loaded

    bad = tmp_path / "bad.json"
    bad.write_text('{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Nope"}}]}')
    summary = store.load([bad])
    assert summary.refused
    assert store.data_version() == loaded


def test_load_in_another_process_is_seen(tmp_path):
    store = SQLiteStore(tmp_path, create=True)
    store.load([HOSPITAL, ALICE_FILE])
    before = store.data_version()
    code = (
        "import sys; from ehr_agent.tools.store.sqlite_store import SQLiteStore; "
        "SQLiteStore(sys.argv[1]).load([sys.argv[2]], workers=0)"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path), str(BOB_FILE)], check=True, timeout=120)
    assert store.data_version() != before
    assert len(store.patient_ids()) == 2


def test_late_resolution_bumps_the_version(tmp_path):
    # Alice's encounters reference practitioners by identifier: loaded before the hospital bundle they stay
    # unresolved, and loading the hospital later rewrites them (a change of Alice's resources too).
    store = SQLiteStore(tmp_path, create=True)
    store.load([ALICE_FILE])
    assert store.unresolved_references()
    v1 = store.data_version()
    summary = store.load([HOSPITAL])
    assert summary.resolved_later > 0
    assert store.data_version() != v1


def test_stores_that_cannot_tell_say_so():
    class Bare(FHIRStore):
        read = search = next_page = everything = None  # type: ignore[assignment]

    Bare.__abstractmethods__ = frozenset()
    assert Bare().data_version() == ""
    assert RESTStore("http://127.0.0.1:9/fhir").data_version() == ""
