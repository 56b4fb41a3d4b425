"""``ehr-agent ask`` with a scripted model (``--model scripted:[...]``) on the real embedded store."""

from __future__ import annotations

import json

import pytest
from test_agent_support import AS_OF, make_store

from ehr_agent.agent.cli import main

TURNS = [
    "```tool_call\n" + json.dumps({"tool": "observations", "arguments": {"text": "a1c", "mode": "all"}}) + "\n```",
    "HbA1c was 7.2 % on 2019-03-04 [Observation/a1c-1] and 6.8 % on 2021-09-15 [Observation/a1c-3].",
]


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("clistore")
    make_store(d).close()
    return str(d / "store")


def test_ask_json_prints_one_object(store_dir, capsys):
    rc = main(["ask", "--store", store_dir, "--patient", "pa", "--as-of", AS_OF, "--json",
               "--model", "scripted:" + json.dumps(TURNS), "HbA1c history?"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert set(out) >= {"answer", "citations", "verified", "unsupported", "steps", "prompt_tokens",
                        "completion_tokens", "seconds"}
    assert out["verified"] is True and out["citations"] == ["Observation/a1c-1", "Observation/a1c-3"]
    assert out["steps"] == 2 and out["unsupported"] == []


def test_ask_streams_steps_and_numbers_citations(store_dir, capsys):
    rc = main(["ask", "--store", store_dir, "--patient", "pa", "--as-of", AS_OF,
               "--model", "scripted:" + json.dumps(TURNS), "HbA1c history?"])
    cap = capsys.readouterr()
    assert rc == 0
    assert "7.2 % on 2019-03-04 [1] and 6.8 % on 2021-09-15 [2]" in cap.out
    assert "[1] Observation/a1c-1" in cap.out and "verified" in cap.out
    assert "observations" in cap.err and "3 rows" in cap.err and "citation check" in cap.err


def test_ask_bad_input_is_a_clear_error(store_dir, capsys):
    rc = main(["ask", "--store", store_dir + "-missing", "--patient", "pa", "q"])
    assert rc == 2 and "no FHIR store" in capsys.readouterr().err
    rc = main(["ask", "--store", store_dir, "--patient", "pa", "--model", "bogus:x", "q"])
    assert rc == 2 and "cannot set up the model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["ask", "--store", store_dir, "--patient", "pa", "--as-of", "2025-02-30", "q"])
    assert e.value.code == 2 and "YYYY-MM-DD" in capsys.readouterr().err
    rc = main(["ask", "--store", store_dir, "--patient", "nobody", "--json", "--model", "scripted:[]", "q"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1 and out["error"] == "unknown patient"


def test_ask_against_a_fhir_server_url(store_dir, capsys):
    """--store takes a FHIR base URL: the project's REST facade over the same data."""
    from ehr_agent.tools.store.server import make_server
    from ehr_agent.tools.store.sqlite_store import SQLiteStore

    srv = make_server(SQLiteStore(store_dir), port=0, quiet=True)
    srv.start_in_thread()
    try:
        rc = main(["ask", "--store", srv.base_url, "--patient", "pa", "--as-of", AS_OF, "--json",
                   "--model", "scripted:" + json.dumps(TURNS), "HbA1c history?"])
    finally:
        srv.stop()
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["verified"] and out["citations"] == ["Observation/a1c-1", "Observation/a1c-3"]
