"""Patient manifest and whole-record rows."""

from __future__ import annotations

import pytest

from tests.conftest import ALICE, BOB
from ehr_agent.tools.retrieval.manifest import build_manifest
from ehr_agent.tools.retrieval.records import patient_record, patient_rows
from ehr_agent.tools.store.base import NotFound


def test_manifest_counts_span_and_top_codes(fixture_store):
    m = build_manifest(fixture_store, ALICE)
    rows = patient_rows(fixture_store, ALICE)
    assert m.counts["Patient"] == 1
    assert sum(m.counts.values()) == len(rows)
    assert m.counts["Observation"] == sum(1 for r in rows if r.type == "Observation")
    assert m.counts["note chunks"] == sum(1 for r in rows if "#" in r.ref)
    dated = sorted(r.date for r in rows if r.date and r.type != "Patient")
    assert (m.first_date, m.last_date) == (dated[0], dated[-1])
    top_obs = m.top_codes["Observation"]
    assert top_obs == sorted(top_obs, key=lambda c: -c.count)
    assert top_obs[0].count == max(sum(1 for r in rows if r.code == c.code) for c in top_obs)
    assert all(c.display for c in top_obs)
    text = m.render()
    assert f"Patient/{ALICE}" in text and "Alice" in text and str(top_obs[0].display) in text


def test_financial_left_out_by_default_and_included_on_request(fixture_store):
    rec = patient_record(fixture_store, ALICE)
    assert not any(r.type in ("Claim", "ExplanationOfBenefit") for r in rec.rows)
    n_claims = rec.excluded.get("Claim", 0)
    assert n_claims > 0
    full = patient_rows(fixture_store, ALICE, include_financial=True)
    assert sum(1 for r in full if r.type == "Claim") == n_claims


def test_rows_sorted_by_date_with_notes_after_their_header(fixture_store):
    rows = patient_rows(fixture_store, BOB)
    dates = [r.date or "" for r in rows]
    assert dates == sorted(dates)
    for i, r in enumerate(rows):
        if r.ref.endswith("#1"):
            assert rows[i - 1].ref == r.ref.split("#")[0]


def test_unknown_patient_raises_not_found(fixture_store):
    with pytest.raises(NotFound):
        build_manifest(fixture_store, "no-such-patient")
