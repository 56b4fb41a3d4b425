"""Hybrid index: lazy per patient, incremental, resumable, filtered, fused."""

from __future__ import annotations

import pytest

from tests.conftest import ALICE, BOB
from ehr_agent.tools.retrieval.errors import RetrievalError
from ehr_agent.tools.retrieval.index import HybridIndex, normalize_bound, rrf, temporal_intent
from ehr_agent.tools.retrieval.lexical import fts_query
from ehr_agent.tools.retrieval.settings import RetrievalSettings


@pytest.fixture(scope="module")
def alice_index(tmp_path_factory, fixture_store):
    index = HybridIndex(fixture_store, tmp_path_factory.mktemp("ix"), RetrievalSettings(batch_size=16))
    index.ensure_patient(ALICE)
    return index


def test_lazy_per_patient_and_incremental(alice_index):
    # Only the patient asked about is indexed.
    assert alice_index.lexical.patients() == [ALICE]
    assert alice_index.lexical.pending_dense(ALICE, alice_index.dense.collection.name) == []
    assert alice_index.dense.collection.count() == len(alice_index.rows(ALICE))
    # Nothing new: nothing indexed again.
    assert alice_index.ensure_patient(ALICE) == 0


def test_changed_row_is_reindexed(alice_index):
    rows = alice_index.rows(ALICE)
    ref = next(r for r in rows if r.startswith("Immunization/"))
    old = rows[ref]
    rows[ref] = old.model_copy(update={"text": old.text.replace("vaccinated with", "vaccinated (edited) with")})
    try:
        assert alice_index.ensure_patient(ALICE) == 1
        hits = alice_index.search(ALICE, "edited vaccination", k=3, mode="lexical")
        assert hits[0].ref == ref
    finally:
        rows[ref] = old
        alice_index.ensure_patient(ALICE)


def test_interrupted_embedding_resumes(tmp_path, fixture_store, monkeypatch):
    settings = RetrievalSettings(batch_size=4, write_batch=4)
    index = HybridIndex(fixture_store, tmp_path, settings)
    calls = {"n": 0}
    encoder = index.dense.encoder
    real = encoder.encode

    def flaky(texts, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C during the second batch
        return real(texts, **kw)

    monkeypatch.setattr(encoder, "encode", flaky)
    with pytest.raises(KeyboardInterrupt):
        index.ensure_patient(BOB)
    total = len(index.rows(BOB))
    assert index.dense.collection.count() == 4  # the first batch was committed
    assert len(index.lexical.pending_dense(BOB, index.dense.collection.name)) == total - 4
    assert index.lexical.patient_version(BOB) is None  # not complete: a query must not trust it
    monkeypatch.setattr(encoder, "encode", real)
    # A fresh index object (a new process) picks up where it stopped.
    again = HybridIndex(fixture_store, tmp_path, settings)
    assert again.ensure_patient(BOB) == 0  # no new rows: only the pending embeddings
    assert again.lexical.pending_dense(BOB, again.dense.collection.name) == []
    assert again.dense.collection.count() == total
    assert again.lexical.patient_version(BOB) is not None


def test_embedding_batches_write_once_and_embed_each_text_once(tmp_path, fixture_store, monkeypatch):
    """One encoder call and one Chroma write per write batch; rows whose encoder text is the same
    (ids stripped) are embedded once."""
    index = HybridIndex(fixture_store, tmp_path, RetrievalSettings(write_batch=10_000))
    encoder = index.dense.encoder
    real_encode, real_upsert = encoder.encode, index.dense.collection.upsert
    seen = {"encode": [], "upsert": 0}

    def encode(texts, **kw):
        seen["encode"].append(list(texts))
        return real_encode(texts, **kw)

    def upsert(**kw):
        seen["upsert"] += 1
        return real_upsert(**kw)

    monkeypatch.setattr(encoder, "encode", encode)
    monkeypatch.setattr(index.dense.collection, "upsert", upsert)
    index.ensure_patient(ALICE)
    rows = index.rows(ALICE)
    assert seen["upsert"] == 1 and len(seen["encode"]) == 1
    sent = seen["encode"][0]
    assert len(sent) == len(set(sent)) <= len(rows)
    assert index.dense.collection.count() == len(rows)


def test_filters_type_and_dates(alice_index):
    hits = alice_index.search(ALICE, "glucose HbA1c", k=50, types=["Observation"], since="2018", until="2020-06")
    assert hits
    assert all(h.type == "Observation" and "2018-01-01" <= (h.date or "") <= "2020-06-31" for h in hits)


def test_latest_question_ranks_latest_value_first(alice_index):
    rows = alice_index.rows(ALICE)
    a1c = sorted((r for r in rows.values() if r.code == "http://loinc.org|4548-4"), key=lambda r: r.date)
    assert len(a1c) > 2
    hits = alice_index.search(ALICE, "What was her most recent hemoglobin A1c?", k=5)
    assert hits[0].ref == a1c[-1].ref
    hits = alice_index.search(ALICE, "What was her first hemoglobin A1c?", k=5)
    assert hits[0].ref == a1c[0].ref


def test_fusion_and_query_helpers():
    scores = rrf([["a", "b", "c"], ["b", "d"]], k=60)
    assert max(scores, key=scores.get) == "b"
    assert scores["a"] == pytest.approx(1 / 61)
    assert fts_query("What was the latest HbA1c?") == '"hba1c"'
    assert fts_query("???") is None
    assert temporal_intent("latest weight") == ("recent", None)
    assert temporal_intent("note of 2016-08-06") == (None, "2016-08-06")
    assert normalize_bound("2019", end=True) == "2019-12-31"
    assert normalize_bound("2019-03-04T05:06:07Z", end=True) == "2019-03-04"
    with pytest.raises(RetrievalError):
        normalize_bound("last tuesday", end=False)


def test_unknown_patient_and_empty_query(alice_index):
    from ehr_agent.tools.store.base import NotFound

    with pytest.raises(NotFound):
        alice_index.search("no-such-patient", "anything")
    with pytest.raises(RetrievalError):
        alice_index.search(ALICE, "   ")


def test_bad_chroma_url_is_a_clear_error():
    from ehr_agent.tools.retrieval.dense import make_client

    with pytest.raises(RetrievalError, match="bad Chroma URL"):
        make_client(None, "not a url")


def test_new_resource_after_refresh_is_indexed_alone(tmp_path):
    from tests.conftest import FIXTURES
    from ehr_agent.tools.retrieval.memory_store import MemoryStore

    store = MemoryStore.from_files([FIXTURES / "0-hospital-practitioners.json", FIXTURES / "alice-moreau.json"])
    index = HybridIndex(store, tmp_path, dense=False)
    first = index.ensure_patient(ALICE)
    assert first == len(index.rows(ALICE))
    store.add([{"resourceType": "Observation", "id": "new-obs", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "2093-3", "display": "Cholesterol"}]},
                "subject": {"reference": f"Patient/{ALICE}"}, "effectiveDateTime": "2024-01-02",
                "valueQuantity": {"value": 180, "unit": "mg/dL"}}])
    assert index.ensure_patient(ALICE) == 0  # the record read earlier is cached ...
    index.refresh(ALICE)
    assert index.ensure_patient(ALICE) == 1  # ... until refreshed: then only the new row is indexed
    hits = index.search(ALICE, "cholesterol", k=1, mode="lexical")
    assert hits[0].ref == "Observation/new-obs"


def test_store_without_directory_uses_configured_cache_dir(tmp_path):
    from tests.conftest import FIXTURES
    from ehr_agent.tools.retrieval.memory_store import MemoryStore

    store = MemoryStore.from_files([FIXTURES / "alice-moreau.json"])
    store.base_url = "http://fhir.example.org/R4"
    index = HybridIndex(store, None, RetrievalSettings(index_cache_dir=str(tmp_path / "cache")), dense=False)
    index.ensure_patient(ALICE)
    assert index.dir.parent == tmp_path / "cache"
    assert "fhir.example.org" in index.dir.name
    assert (index.dir / "lexical.sqlite").exists()


def test_chroma_server_through_http_client(tmp_path, fixture_store):
    """With a Chroma URL configured, vectors go to that server (a local `chroma run`, started here)."""
    import shutil
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx

    exe = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    if not Path(exe).exists():
        pytest.skip("the chroma server CLI (shipped with the chromadb package) is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([exe, "run", "--path", str(tmp_path / "srv"), "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail("chroma server did not start")
        index = HybridIndex(fixture_store, tmp_path / "ix", RetrievalSettings(chroma_url=url))
        hits = index.search(ALICE, "Does she keep bees?", k=5, mode="dense")
        assert any("bees" in h.text for h in hits)
        assert index.dense.collection.count() == len(index.rows(ALICE))
        assert not (tmp_path / "ix" / "chroma").exists()  # nothing persisted locally
    finally:
        server.terminate()
        server.wait(timeout=20)
