"""CLI: retrieve / context / index, and one-line errors for bad input."""

from __future__ import annotations

import json
import shutil

import pytest

from ehr_agent.agent.cli import main
from tests.test_retrieval_support import write_bundle
from tests.conftest import ALICE, FIXTURES


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    """The fixtures plus a patient with nothing but a Patient resource, in a store this module owns."""
    from ehr_agent.tools.store.sqlite_store import SQLiteStore

    d = tmp_path_factory.mktemp("cli-store")
    src = tmp_path_factory.mktemp("cli-src")
    for f in FIXTURES.glob("*.json"):
        shutil.copy(f, src / f.name)
    write_bundle(src / "zz-empty.json", [{"resourceType": "Patient", "id": "empty-1", "gender": "unknown"}])
    store = SQLiteStore(d, create=True)
    summary = store.load([src])
    assert not summary.refused
    store.close()
    return str(d)


def test_index_then_retrieve_json(store_dir, capsys):
    assert main(["index", "--store", store_dir, "--patient", ALICE]) == 0
    assert "indexed" in capsys.readouterr().out
    assert main(["retrieve", "--store", store_dir, "--patient", ALICE, "--json", "-k", "3", "hemoglobin A1c"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3 and set(hits[0]) == {"ref", "text", "score"}
    assert any("Hemoglobin A1c" in h["text"] for h in hits)
    assert hits[0]["score"] >= hits[-1]["score"]


def test_retrieve_type_and_since_filters(store_dir, capsys):
    assert main(["retrieve", "--store", store_dir, "--patient", ALICE, "--json", "--type", "Immunization",
                 "--since", "2020", "flu shot"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits and all(h["ref"].startswith("Immunization/") and h["text"][:4] >= "2020" for h in hits)


def test_context_prints_text_and_token_count(store_dir, capsys):
    assert main(["context", "--store", store_dir, "--patient", ALICE, "--budget", "1200", "--lexical-only",
                 "What was the last HbA1c?"]) == 0
    out = capsys.readouterr().out
    assert "Patient manifest" in out and "tokens (estimate)" in out and "partial record" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["retrieve", "--patient", "nobody", "x"], "Patient/nobody"),
        (["retrieve", "--patient", "empty-1", "x"], "no clinical resources"),
        (["context", "--patient", "empty-1", "--lexical-only", "x"], "no clinical resources"),
        (["context", "--patient", ALICE, "--budget", "10", "--lexical-only", "x"], "cannot hold"),
        (["context", "--patient", ALICE, "--budget", "0", "x"], "positive"),
        (["retrieve", "--patient", ALICE, "--since", "yesterday", "x"], "bad date"),
        (["retrieve", "--patient", ALICE, "--embedding-model", "/no/such/model", "--mode", "dense", "x"], "cannot be loaded"),
    ],
)
def test_bad_input_is_one_line_on_stderr(store_dir, capsys, argv, message):
    rc = main([argv[0], "--store", store_dir, *argv[1:]])
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert err.startswith("error:") and message in err and "\n" not in err and "Traceback" not in err


def test_index_resumes_skipping_patients_already_indexed(store_dir, capsys):
    assert main(["index", "--store", store_dir, "--lexical-only", "--no-progress"]) == 0
    first = capsys.readouterr()
    assert "Patient/" in first.err  # one line per patient without a terminal
    assert main(["index", "--store", store_dir, "--lexical-only", "--no-progress"]) == 0
    again = capsys.readouterr()
    assert "already indexed at the store's current data version: skipped" in again.err
    assert again.out.startswith("indexed 0 rows for 0 patient(s)")
    assert main(["index", "--store", store_dir, "--lexical-only", "--no-progress", "--force"]) == 0
    assert "indexed 0 rows for 4 patient(s)" in capsys.readouterr().out  # re-checked, nothing changed


def test_retrieve_list_question_says_how_many_more(store_dir, capsys):
    assert main(["retrieve", "--store", store_dir, "--patient", ALICE, "--mode", "lexical", "-k", "2",
                 "List all her immunizations"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 3 and all("Immunization:" in line for line in out[:2])
    assert out[2].startswith("... 5 more Immunization rows match")
    assert main(["retrieve", "--store", store_dir, "--patient", ALICE, "--mode", "lexical", "-k", "2", "--json",
                 "List all her immunizations"]) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)) == 2 and "5 more Immunization rows" in captured.err
