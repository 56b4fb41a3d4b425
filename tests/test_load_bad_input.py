"""Bad input: each kind gets a clear one-line error naming the file, and the store is left unchanged."""

from __future__ import annotations

import bz2
import copy
import json
import subprocess
import sys

import pytest

from conftest import FIXTURES
from ehr_agent.tools.store.sqlite_store import SQLiteStore

ALICE_BUNDLE = json.loads((FIXTURES / "alice-moreau.json").read_text())


@pytest.fixture()
def store(tmp_path):
    s = SQLiteStore(tmp_path / "store", create=True)
    s.load([FIXTURES / "0-hospital-practitioners.json", FIXTURES / "robert-haines.json"])
    return s


def snapshot(store: SQLiteStore) -> tuple[dict, int]:
    conn = store._conn()
    return store.counts(), conn.execute("SELECT count(*) FROM compartment").fetchone()[0]


def invalid_in_middle() -> dict:
    b = copy.deepcopy(ALICE_BUNDLE)
    mid = len(b["entry"]) // 2
    b["entry"][mid]["resource"]["status"] = {"not": "a code"}  # Observation.status must be a code string
    return b


def unknown_type() -> dict:
    b = copy.deepcopy(ALICE_BUNDLE)
    b["entry"][3]["resource"]["resourceType"] = "Spaceship"
    return b


DSTU2 = {
    "resourceType": "Bundle", "type": "transaction", "base": "http://example.org/fhir",
    "entry": [{"resource": {"resourceType": "MedicationOrder", "id": "m1", "status": "active"},
               "transaction": {"method": "POST", "url": "MedicationOrder"}}],
}

CASES = {
    "truncated.json": (lambda: json.dumps(ALICE_BUNDLE)[:5000], "malformed JSON"),
    "empty.json": (lambda: "", "empty file"),
    "junk.json": (lambda: bytes(range(256)) * 20, "not UTF-8"),
    "patient-only.json": (lambda: json.dumps(ALICE_BUNDLE["entry"][0]["resource"]), "not a Bundle"),
    "invalid-middle.json": (lambda: json.dumps(invalid_in_middle()), "does not validate as FHIR R4"),
    "unknown-type.json": (lambda: json.dumps(unknown_type()), "unknown resourceType 'Spaceship'"),
    "dstu2.json": (lambda: json.dumps(DSTU2), "DSTU2"),
    "junk.json.bz2": (lambda: b"BZh9 this is not bzip2 data", "cannot decompress"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_file_is_refused_and_store_unchanged(store, tmp_path, name):
    make, expected = CASES[name]
    content = make()
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = snapshot(store)
    summary = store.load([path])
    assert [f.status for f in summary.files] == ["refused"]
    reason = summary.files[0].reason
    assert expected in reason, reason
    assert "\n" not in reason and "Traceback" not in reason
    assert snapshot(store) == before


def test_cli_names_each_refused_file_without_traceback(tmp_path):
    bad1, bad2 = tmp_path / "a.json", tmp_path / "b.json"
    bad1.write_text("{\"resourceType\": \"Bundle\", ")
    bad2.write_text("")
    good = FIXTURES / "0-hospital-practitioners.json"
    proc = subprocess.run(
        [sys.executable, "-m", "ehr_agent.agent.cli", "load", "--store", str(tmp_path / "s"), "-q", str(good), str(bad1), str(bad2)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    err = proc.stderr
    assert f"refused: {bad1}: malformed JSON" in err
    assert f"refused: {bad2}: empty file" in err
    assert "Traceback" not in err + proc.stdout
    # the good file still loaded
    assert SQLiteStore(tmp_path / "s").counts()["Practitioner"] == 2


def test_missing_store_is_a_clear_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "ehr_agent.agent.cli", "search", "--store", str(tmp_path / "nope"), "Patient?gender=male"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "no FHIR store at" in proc.stderr and "Traceback" not in proc.stderr


def test_bundle_is_atomic_even_with_good_entries_first(store, tmp_path):
    """The first half of the bundle is valid; nothing of it may be written."""
    path = tmp_path / "half.json.bz2"
    path.write_bytes(bz2.compress(json.dumps(invalid_in_middle()).encode()))
    summary = store.load([path])
    assert summary.files[0].status == "refused"
    alice_id = ALICE_BUNDLE["entry"][0]["resource"]["id"]
    assert alice_id not in store.patient_ids()
