"""``langgraph dev`` serves the agent graph from the repository's ``langgraph.json``, driven by ``langgraph_sdk``.

The server runs as its own process group (``langgraph dev --no-browser --no-reload`` on a free 127.0.0.1 port)
over a store built from ``fhir_fixtures/``, with the scripted model (deterministic replies; the server builds
the graph through ``make_graph`` from ``EHR_AGENT_STORE`` / ``EHR_AGENT_MODEL``). The test asks a question
streaming updates, values and messages, asks a follow-up in the same thread with a script of its own (passed
as ``config["configurable"]["model"]``, so ``make_graph`` must honour its config), reads the checkpointed
state, and stops the server, leaving no process behind.

``langgraph-cli[inmem]`` is part of the ``test`` extra; without it this test fails (never skips) and says so.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fhir_fixtures"
ALICE = "4a3b1eaa-e40e-5bdd-9d4c-47cfdcced897"
LAST_A1C = "Observation/d893c882-91af-5d97-9d17-396be4423115"  # 6.5 % on 2023-10-03
PREVIOUS_A1C = "Observation/d699c1c5-7f00-559e-a2ca-bedb2eba037b"  # 6.9 % on 2022-05-14
GRAPH = "ehr_agent"  # the graph id in langgraph.json

FIRST_TURNS = ["```tool_call\n" + json.dumps({"tool": "lookup", "arguments": {"op": "latest", "what": "HbA1c"}})
               + "\n```", f"Her last HbA1c was 6.5 % on 2023-10-03 [{LAST_A1C}]."]
# The follow-up calls no tool: it can only cite the earlier reading if the thread's checkpointed evidence
# (read by the first question's lookup) reached the second run.
FOLLOW_UP_TURNS = [f"The one before was 6.9 % on 2022-05-14 [{PREVIOUS_A1C}]."]

READY_WITHIN_S = 60.0  # startup takes ~5-10 s on a quiet machine; the bound only stops a hung server
STOP_WITHIN_S = 15.0
# Keep `langgraph dev` offline: no CLI analytics event, no PyPI version check, no LangSmith tracing, no
# license/metadata calls (the server skips those without a key, so keys are removed from its environment).
OFFLINE_ENV = {"LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGGRAPH_NO_VERSION_CHECK": "true", "LANGSMITH_TRACING": "false",
               "LANGCHAIN_TRACING_V2": "false", "OTEL_SDK_DISABLED": "true"}
DROPPED_ENV = ("LANGSMITH_API_KEY", "LANGCHAIN_API_KEY", "LANGGRAPH_CLOUD_LICENSE_KEY",
               "LANGSMITH_CONTROL_PLANE_API_KEY", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def _langgraph_cli() -> list[str]:
    """The ``langgraph`` command of this interpreter, or a failure saying how to install it."""
    if importlib.util.find_spec("langgraph_cli") is None or importlib.util.find_spec("langgraph_api") is None:
        pytest.fail("langgraph dev is not installed: install the test extra (pip install -e '.[test]', which "
                    "brings langgraph-cli[inmem])", pytrace=False)
    return [sys.executable, "-m", "langgraph_cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL it if it lingers, and reap the leader."""
    pgid = proc.pid  # start_new_session=True: the leader's pid is the group id
    for sig, grace in ((signal.SIGTERM, STOP_WITHIN_S), (signal.SIGKILL, 5.0)):
        if not _group_alive(pgid):
            break
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _group_alive(pgid):
            if proc.poll() is None:
                try:
                    proc.wait(timeout=0.2)
                except subprocess.TimeoutExpired:
                    pass
            else:
                time.sleep(0.1)  # the leader is gone; wait for the rest of its group
    proc.wait(timeout=5)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``langgraph dev`` on a free port over a fixture store; yields (base URL, log path, process)."""
    cmd = _langgraph_cli()
    from ehr_agent.tools.store.sqlite_store import SQLiteStore

    tmp = tmp_path_factory.mktemp("langgraph-dev")
    store_dir = tmp / "store"
    store = SQLiteStore(store_dir, create=True)
    try:
        assert not store.load([FIXTURES]).refused
    finally:
        store.close()
    port = _free_port()
    # the developer's own EHR_AGENT_* settings (a model, an index, limits) would change what the server runs
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV and not k.startswith("EHR_AGENT_")}
    env.update(OFFLINE_ENV)
    env.update({"EHR_AGENT_STORE": str(store_dir), "EHR_AGENT_MODEL": "scripted:" + json.dumps(FIRST_TURNS)})
    log = tmp / "server.log"
    # cwd is the temp folder: the in-memory server persists its threads under ./.langgraph_api
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd + ["dev", "--no-browser", "--no-reload", "--host", "127.0.0.1",
                                       "--port", str(port), "--config", str(ROOT / "langgraph.json")],
                                cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_WITHIN_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"langgraph dev exited with {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
            try:
                if httpx.get(url + "/ok", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"langgraph dev not ready after {READY_WITHIN_S:.0f} s:\n"
                            f"{log.read_text(errors='replace')[-4000:]}")
            time.sleep(0.25)
        yield url, log, proc
    finally:
        _stop(proc)
        assert not _group_alive(proc.pid), f"langgraph dev left processes in group {proc.pid}"


def _stream(client, log: Path, thread_id: str, question: str, **kw) -> dict[str, list]:
    """The run's stream parts by event (``updates``, ``values``, ``messages``); a server error fails with its log."""
    parts: dict[str, list] = {}
    for part in client.runs.stream(thread_id, GRAPH, input={"patient_id": ALICE, "question": question},
                                   stream_mode=["updates", "values", "messages-tuple"], **kw):
        parts.setdefault(part.event.split("|")[0], []).append(part.data)
    assert "error" not in parts, f"{parts['error']}\n{log.read_text(errors='replace')[-4000:]}"
    return parts


def test_langgraph_dev_serves_streams_and_checkpoints_a_thread(server):
    from langgraph_sdk import get_sync_client

    url, log, _ = server
    client = get_sync_client(url=url)
    assistants = client.assistants.search(graph_id=GRAPH)
    assert [a["graph_id"] for a in assistants] == [GRAPH]
    # what Studio draws its input form from: the graph's input, output and context JSON schemas
    schemas = client.assistants.get_schemas(assistants[0]["assistant_id"])
    assert {"patient_id", "question"} <= set(schemas["input_schema"]["properties"]), schemas["input_schema"]
    assert "result" in schemas["output_schema"]["properties"], schemas["output_schema"]
    assert {"patient_id", "as_of"} <= set(schemas["context_schema"]["properties"]), schemas["context_schema"]
    thread = client.threads.create()["thread_id"]

    first = _stream(client, log, thread, "What was her last HbA1c?")
    nodes = [node for update in first["updates"] for node in update]
    # lookup's computed sentence answers the first round (answer_direct): no second model turn
    assert nodes == ["manifest", "agent", "tools", "direct", "finish"], nodes
    result = first["values"][-1]["result"]
    assert result["verified"] is True and result["citations"] == [LAST_A1C], result
    assert "6.5 %" in result["answer"]
    # stream_mode="messages": the model's tokens (AI message chunks) and the tool's reply (a tool message)
    messages = [msg for msg, _meta in first.get("messages", [])]
    ai_text = "".join(m["content"] for m in messages if m["type"] in ("ai", "AIMessageChunk"))
    assert "6.5 %" in ai_text, messages
    tool = [m for m in messages if m["type"] == "tool"]
    assert tool and tool[0]["name"] == "lookup" and LAST_A1C in tool[0]["content"], tool

    second = _stream(client, log, thread, "And the one before?",
                     config={"configurable": {"model": "scripted:" + json.dumps(FOLLOW_UP_TURNS)}})
    follow = second["values"][-1]["result"]
    assert follow["verified"] is True and follow["citations"] == [PREVIOUS_A1C], follow
    assert follow["steps"] == 1 and follow["tool_calls"] == []  # answered from the thread's evidence

    state = client.threads.get_state(thread)
    values = state["values"]
    assert values["result"]["answer"] == follow["answer"]
    assert values["history"] == [{"question": "What was her last HbA1c?", "answer": result["answer"]},
                                 {"question": "And the one before?", "answer": follow["answer"]}]
    assert PREVIOUS_A1C in values["evidence"] and LAST_A1C in values["evidence"]
    assert state["checkpoint"]["thread_id"] == thread and not state["next"]
    assert len(client.threads.get_history(thread, limit=100)) > len(nodes)  # one checkpoint per step, both runs
