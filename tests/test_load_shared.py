"""All three real data sets load; every unresolved reference is explained; totals match the raw files."""

from __future__ import annotations

import bz2
import json
from collections import Counter

import pytest

from conftest import SMART, SPEZI, need_shared
from ehr_agent.tools.store.sqlite_store import SQLiteStore


def raw_counts(folder) -> Counter:
    """Distinct (type, id) per type straight from the files, independent of the loader. smart-75 repeats the
    same Organization and Practitioner (same ids) in many patient bundles: each is one resource in a store."""
    seen: set[tuple[str, str]] = set()
    for p in sorted(folder.iterdir()):
        if p.name.endswith(".json") or p.name.endswith(".json.bz2"):
            doc = json.load(bz2.open(p) if p.name.endswith(".bz2") else open(p))
            if doc.get("resourceType") == "Bundle":
                seen.update((e["resource"]["resourceType"], e["resource"]["id"]) for e in doc.get("entry", []))
    return Counter(t for t, _ in seen)


@pytest.mark.parametrize("folder", [SMART, SPEZI], ids=["smart-75", "spezi-8"])
def test_shared_set_loads(tmp_path, folder):
    need_shared(folder)
    store = SQLiteStore(tmp_path, create=True)
    summary = store.load([folder])
    assert summary.refused == [], [(f.path, f.reason) for f in summary.refused]
    assert store.counts() == dict(sorted(raw_counts(folder).items()))
    for u in summary.unresolved:
        assert u.reason, u
        assert u.source and u.reference
    if folder == SPEZI:
        # Its practitioner/organization bundles are not in the set: references stay unresolved, with a reason.
        assert summary.unresolved
        targets = {u.reference.split("?")[0] for u in summary.unresolved}
        assert targets <= {"Practitioner", "Organization", "Location", "PractitionerRole"}
        assert all("not loaded" in u.reason for u in summary.unresolved)
