"""Retrieval recall on real Synthea data (synthea-blaze-120), with questions generated from the record.

A small held-out sample (three short records, ~530 rows, never used while developing the ranker) keeps
this near a minute on two CPU cores; ``python -m benchmarks.retrieval`` reports the figure on a larger sample.
"""

from __future__ import annotations

import pytest

from tests.test_retrieval_support import blaze_files
from tests.conftest import BLAZE, need_shared
from ehr_agent.tools.retrieval.evalset import generate_questions
from ehr_agent.tools.retrieval.index import HybridIndex

PATIENT_FILES = [
    "8708d3e1-f718-96bb-03f0-f2a6564ae1cd.json.bz2",
    "6c8f3e83-c351-ed33-c38d-6be101c275d2.json.bz2",
    "d1193889-ebd9-4e35-bf1b-8a73ecbfc00b.json.bz2",
]


@pytest.fixture(scope="module")
def blaze_three(tmp_path_factory):
    need_shared(BLAZE)
    from ehr_agent.tools.store.sqlite_store import SQLiteStore

    store = SQLiteStore(tmp_path_factory.mktemp("blaze3"), create=True)
    summary = store.load(blaze_files(BLAZE, PATIENT_FILES))
    assert not summary.refused
    yield store
    store.close()


@pytest.mark.shared
@pytest.mark.slow
def test_recall_at_20_on_generated_questions(blaze_three, tmp_path):
    index = HybridIndex(blaze_three, tmp_path)
    patients = blaze_three.patient_ids()
    assert len(patients) == 3
    questions, hits, misses = [], 0, []
    for pid in patients:
        qs = generate_questions(list(index.rows(pid).values()), pid, per_kind=2, seed=7)
        questions += qs
        for q in qs:
            refs = [h.ref for h in index.search(pid, q.query, k=20)]
            if any(g in refs for g in q.gold):
                hits += 1
            else:
                misses.append((q.kind, q.query))
    # Every question kind is represented, notes included.
    assert {"condition", "latest_lab", "procedure", "note_social", "note_plan"} <= {q.kind for q in questions}
    assert len(questions) >= 25
    recall = hits / len(questions)
    assert recall >= 0.9, (recall, misses)
