"""Clinical notes: decoding, section chunks, warnings on bad input, note-only facts retrievable."""

from __future__ import annotations

from tests.test_retrieval_support import note
from tests.conftest import ALICE
from ehr_agent.tools.retrieval.notes import MAX_NOTE_CHARS, note_chunks

TEXT = "2020-05-01\n\n# Chief Complaint\nCough.\n\n# Assessment and Plan\n\n## Plan\nRest and fluids.\n"


def test_sections_become_numbered_chunks():
    rows, warnings = note_chunks(note("d1", "p1", TEXT))
    assert warnings == []
    assert [r.ref for r in rows] == ["DocumentReference/d1#1", "DocumentReference/d1#2"]
    assert rows[0].text == "2020-05-01 Note History and physical note, Chief Complaint: Cough. [DocumentReference/d1#1]"
    # An empty heading is kept as context of the section after it.
    assert "Assessment and Plan / Plan: Rest and fluids." in rows[1].text
    assert all(r.patient == "p1" and r.date == "2020-05-01" for r in rows)


def test_bad_base64_warns_and_never_raises():
    rows, warnings = note_chunks(note("bad", "p1", "", raw_data="%%%not base64%%%"))
    assert rows == []
    assert len(warnings) == 1 and "not valid base64" in warnings[0] and "DocumentReference/bad" in warnings[0]


def test_undecodable_bytes_warn_and_keep_text():
    rows, warnings = note_chunks(note("latin", "p1", "# Social History\nCaf\xe9 owner".encode("latin-1")))
    assert rows and "Caf" in rows[0].text
    assert any("not valid utf-8" in w for w in warnings)


def test_huge_note_is_truncated_with_warning():
    big = "# History\n" + ("word " * (MAX_NOTE_CHARS // 4))
    rows, warnings = note_chunks(note("big", "p1", big))
    assert any("only the first" in w for w in warnings)
    assert sum(len(r.text) for r in rows) < MAX_NOTE_CHARS * 1.2
    assert all(len(r.text) < 1700 for r in rows)  # long sections are split into readable chunks


def test_non_text_and_missing_data_warn():
    rows, warnings = note_chunks(note("pdf", "p1", "x", content_type="application/pdf"))
    assert rows == [] and "application/pdf" in warnings[0]
    doc = note("url", "p1", "x")
    doc["content"][0]["attachment"] = {"contentType": "text/plain", "url": "http://example.org/n.txt"}
    rows, warnings = note_chunks(doc)
    assert rows == [] and "only a URL" in warnings[0]


def test_note_only_fact_is_retrieved(tmp_path, fixture_store):
    """Alice's hobby (bee keeping) exists only in a note; questions about it reach that chunk."""
    from ehr_agent.tools.retrieval.index import HybridIndex

    index = HybridIndex(fixture_store, tmp_path / "ix")
    rows = index.rows(ALICE)
    holders = [r.ref for r in rows.values() if "bees" in r.text]
    assert holders and all("#" in ref for ref in holders)  # the fact is only in note chunks
    for query in ("Does she have any hobbies?", "Does the patient keep bees?"):
        hits = index.search(ALICE, query, k=5)
        assert any(h.ref in holders for h in hits), (query, [h.text for h in hits])
    # The dense half alone finds it from words the note does not contain.
    hits = index.search(ALICE, "What does she do in her free time?", k=5, mode="dense")
    assert any(h.ref in holders for h in hits)
