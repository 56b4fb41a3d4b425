"""Record caches are objects keyed by the store's data version: a tool session that already answered sees
data loaded afterwards at its next call (nothing to clear by hand), and scoping holds across the load."""

from __future__ import annotations

import json

import pytest

from conftest import ALICE, BOB, FIXTURES
from ehr_agent.tools.patient_tools import PatientSession, clear_record_cache
from ehr_agent.tools.record_cache import DEFAULT_RECORD_CACHE, RecordCache
from ehr_agent.tools.store.sqlite_store import SQLiteStore

AS_OF = "2030-01-01"
MARKER = "99999-9"  # a LOINC-shaped code no fixture uses


def observation(rid: str, patient: str, value: float, day: str) -> dict:
    return {
        "resourceType": "Observation", "id": rid, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": MARKER, "display": "Test marker"}],
                 "text": "Test marker"},
        "subject": {"reference": f"Patient/{patient}"}, "effectiveDateTime": day,
        "valueQuantity": {"value": value, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
    }


def write_ndjson(path, resources: list[dict]):
    path.write_text("".join(json.dumps(r) + "\n" for r in resources))
    return path


@pytest.fixture()
def store(tmp_path):
    s = SQLiteStore(tmp_path / "store", create=True)
    assert not s.load([FIXTURES]).refused
    yield s
    s.close()


def test_a_session_sees_data_loaded_after_it_answered(store, tmp_path):
    session = PatientSession(store, ALICE, AS_OF, record_cache=RecordCache())
    before = session.call("observations", {"code": MARKER, "mode": "all"})
    assert not before.evidence
    assert "Observation/marker-a1" not in session.call("lookup", {"op": "latest", "what": "test marker"}).evidence
    overview = session.call("record_overview", {}).text

    store.load([write_ndjson(tmp_path / "more.ndjson", [observation("marker-a1", ALICE, 7.5, "2024-05-01")])])

    after = session.call("observations", {"code": MARKER, "mode": "all"})
    assert set(after.evidence) == {"Observation/marker-a1"} and "7.5" in after.text
    assert session.call("record_overview", {}).text != overview  # the manifest was read afresh too
    found = session.call("lookup", {"op": "latest", "what": "test marker"})  # lookup's concepts were re-read
    assert "matched Test marker" in found.text and "[Observation/marker-a1]" in found.text


def test_a_load_through_another_store_object_is_seen(store, tmp_path):
    session = PatientSession(store, ALICE, AS_OF, record_cache=RecordCache())
    assert not session.call("observations", {"code": MARKER}).evidence
    other = SQLiteStore(store.directory)  # as another process would open it
    other.load([write_ndjson(tmp_path / "more.ndjson", [observation("marker-a2", ALICE, 8.0, "2024-06-01")])])
    assert set(session.call("observations", {"code": MARKER}).evidence) == {"Observation/marker-a2"}


def test_scoping_holds_across_a_load(store, tmp_path):
    session = PatientSession(store, ALICE, AS_OF, record_cache=RecordCache())
    practitioner = {"resourceType": "Practitioner", "id": "pr-late", "name": [{"family": "Late", "given": ["Lou"]}]}
    store.load([write_ndjson(tmp_path / "pr.ndjson", [practitioner, observation("marker-b1", BOB, 9.9, "2024-05-01")])])

    # A shared resource no record of Alice references, and Bob's new data: refused.
    assert session.call("read_resource", {"reference": "Practitioner/pr-late"}).refused
    assert session.call("read_resource", {"reference": "Observation/marker-b1"}).refused
    out = session.call("search_fhir", {"resource_type": "Observation", "params": {"code": MARKER}})
    assert not out.evidence and "9.9" not in out.text
    assert not session.belongs("Observation/marker-b1")

    encounter = {"resourceType": "Encounter", "id": "enc-late", "status": "finished",
                 "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                 "subject": {"reference": f"Patient/{ALICE}"}, "period": {"start": "2024-07-01", "end": "2024-07-01"},
                 "participant": [{"individual": {"reference": "Practitioner/pr-late"}}]}
    store.load([write_ndjson(tmp_path / "enc.ndjson", [encounter])])

    # Now Alice's own encounter references the practitioner: readable; Bob's observation still is not.
    assert set(session.call("read_resource", {"reference": "Practitioner/pr-late"}).evidence) == {"Practitioner/pr-late"}
    assert session.belongs("Practitioner/pr-late")
    assert session.call("read_resource", {"reference": "Observation/marker-b1"}).refused
    bob = PatientSession(store, BOB, AS_OF, record_cache=RecordCache())
    assert bob.call("read_resource", {"reference": "Encounter/enc-late"}).refused


def test_sessions_share_a_record_until_the_version_moves(store, tmp_path):
    cache = RecordCache(max_patients=4)
    a = PatientSession(store, ALICE, AS_OF, record_cache=cache)
    b = PatientSession(store, ALICE, "2015-01-01", record_cache=cache)
    a.call("observations", {"mode": "all"})
    assert a._cache is b._cache and len(cache) == 1  # one read of the record serves both as-of dates
    PatientSession(store, BOB, AS_OF, record_cache=cache).call("observations", {})
    assert len(cache) == 2

    store.load([write_ndjson(tmp_path / "more.ndjson", [observation("marker-a3", ALICE, 7.1, "2024-05-01")])])

    a.call("observations", {"code": MARKER})
    assert len(cache) == 1  # every record of the old version was dropped, not kept beside the new one
    assert a._cache is not b._cache
    b.call("observations", {})
    assert a._cache is b._cache


class NoVersion:
    """A store that cannot tell its data version (as a FHIR server over REST)."""

    def __init__(self, inner):
        self.inner = inner

    def data_version(self) -> str:
        return ""

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_store_without_a_version_is_cached_until_cleared(store, tmp_path):
    cache = RecordCache()
    view = NoVersion(store)
    assert not PatientSession(view, ALICE, AS_OF, record_cache=cache).call("observations", {"code": MARKER}).evidence
    store.load([write_ndjson(tmp_path / "more.ndjson", [observation("marker-a4", ALICE, 6.0, "2024-05-01")])])
    # The per-type read is cached and nothing says it is stale: a new session still sees the old record...
    assert not PatientSession(view, ALICE, AS_OF, record_cache=cache).call("observations", {"code": MARKER}).evidence
    cache.clear(view)
    # ...until the cache is cleared.
    fresh = PatientSession(view, ALICE, AS_OF, record_cache=cache)
    assert set(fresh.call("observations", {"code": MARKER}).evidence) == {"Observation/marker-a4"}


def test_clear_record_cache_is_a_deprecated_alias(store):
    PatientSession(store, ALICE, AS_OF).call("observations", {})
    assert len(DEFAULT_RECORD_CACHE) >= 1
    with pytest.deprecated_call():
        clear_record_cache(store)
    held = PatientSession(store, BOB, AS_OF, record_cache=RecordCache())
    assert held.record_cache is not DEFAULT_RECORD_CACHE
    with pytest.deprecated_call():
        clear_record_cache()
    assert len(DEFAULT_RECORD_CACHE) == 0
