"""``ehr-agent serve-mcp`` driven by the MCP SDK's own client (``ClientSession``), over stdio and over
streamable HTTP on 127.0.0.1, on the project's fixtures. ``ask`` runs the whole graph with the scripted
model (deterministic replies, so its citations can be asserted).

Every server process a test starts is stopped by that test (stdio: the SDK's client closes it on exit;
HTTP: the fixture terminates it and waits), so no process outlives the tests.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from conftest import ALICE, BOB, FIXTURES, ROOT
from jsonschema import Draft202012Validator

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

# Alice's HbA1c series in the fixtures (fhir_fixtures/make_fixtures.py): the last and the 2015 value.
A1C_2023 = "Observation/d893c882-91af-5d97-9d17-396be4423115"
A1C_2015 = "Observation/8f90a2c8-46b4-5b1f-8c7d-4193bf9ea288"
BOB_OBSERVATION = "Observation/966c5efd-979f-5d84-9d14-476f9776b7dc"
AS_OF = "2024-06-01"

# The scripted model's turns for every `ask`: one tool call, then an answer citing two rows it returned.
ASK_TURNS = [
    "```tool_call\n" + json.dumps({"tool": "observations", "arguments": {"code": "4548-4", "mode": "all"}}) + "\n```",
    f"Her last HbA1c was 6.5 % on 2023-10-03 [{A1C_2023}]; it was 7.4 % on 2015-06-20 [{A1C_2015}].",
]

# Arguments that exercise each tool on Alice's record. A toolkit tool not named here (added later) is
# still called, with arguments built from its schema, and must answer.
EXAMPLE_ARGS: dict[str, dict] = {
    "find_patients": {"name": "Moreau"},
    "record_overview": {"patient_id": ALICE},
    "observations": {"patient_id": ALICE, "code": "4548-4", "mode": "all"},
    "records": {"patient_id": ALICE, "kind": "conditions"},
    "search_fhir": {"patient_id": ALICE, "resource_type": "Observation", "params": {"code": "4548-4"}},
    "read_resource": {"patient_id": ALICE, "reference": A1C_2023, "raw": True},
    "search_record": {"patient_id": ALICE, "query": "bees hobby"},
    "calculate": {"patient_id": ALICE, "op": "age"},
    "ask": {"patient_id": ALICE, "question": "What was her last HbA1c and how has it moved?"},
}


# --------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory) -> str:
    """The fixtures loaded into a fresh embedded store directory (the server opens it read-only)."""
    from ehr_agent.tools.store.sqlite_store import SQLiteStore

    d = tmp_path_factory.mktemp("mcp-store")
    store = SQLiteStore(d, create=True)
    summary = store.load([FIXTURES])
    assert not summary.refused, summary.refused
    store.close()
    return str(d)


@pytest.fixture(scope="module")
def script(tmp_path_factory) -> str:
    p = tmp_path_factory.mktemp("mcp-script") / "turns.json"
    p.write_text(json.dumps(ASK_TURNS), encoding="utf-8")
    return str(p)


def server_args(store: str, script: str, audit: Path, *extra: str) -> list[str]:
    return ["-m", "ehr_agent.agent.cli", "serve-mcp", "--store", store, "--model", f"scripted:{script}",
            "--as-of", AS_OF, "--audit-log", str(audit), *extra]


def child_env() -> dict[str, str]:
    # The SDK gives a stdio child only an allow-listed environment; these keep it offline and on our code.
    keep = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "EHR_AGENT_SHARED_DATA")
    return {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **{k: os.environ[k] for k in keep if k in os.environ}}


@asynccontextmanager
async def stdio_session(args: list[str], errlog):
    params = StdioServerParameters(command=sys.executable, args=args, cwd=str(ROOT), env=child_env())
    async with stdio_client(params, errlog=errlog) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


@asynccontextmanager
async def http_session(url: str):
    async with streamable_http_client(url) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


class HttpServer:
    """``serve-mcp --transport http --port 0`` in a child process; its URL is read from its stderr."""

    def __init__(self, args: list[str]):
        env = {**os.environ, **child_env()}
        self.proc = subprocess.Popen([sys.executable, *args, "--transport", "http", "--port", "0"], cwd=str(ROOT),
                                     env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.err: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        self.url = self._wait_url(timeout=120)

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err.append(line)
            self.lines.put(line)

    def _wait_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if "MCP server at " in line:
                return line.split("MCP server at ", 1)[1].split()[0]
        self.stop()
        raise AssertionError("serve-mcp did not start:\n" + "".join(self.err))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)


@pytest.fixture(scope="module")
def http_server(store_dir, script, tmp_path_factory):
    audit = tmp_path_factory.mktemp("mcp-http") / "audit.jsonl"
    srv = HttpServer(server_args(store_dir, script, audit))
    srv.audit = audit
    yield srv
    srv.stop()
    assert srv.proc.returncode == 0  # stopped cleanly on SIGTERM: no orphan


def text_of(result) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")


def audit_lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def toolkit_tool_names() -> list[str]:
    from ehr_agent.tools.patient_tools import PatientSession

    return [s.name for s in PatientSession(None, "").tool_specs()]


def args_from_schema(name: str, schema: dict) -> dict:
    """Minimal valid arguments for a tool this file does not know (a tool added to the toolkit later)."""
    out: dict = {}
    for key in schema.get("required", []):
        prop = schema["properties"][key]
        if key == "patient_id":
            out[key] = ALICE
        elif "enum" in prop:
            out[key] = prop["enum"][0]
        elif prop.get("type") == "integer":
            out[key] = prop.get("minimum", 0)
        elif prop.get("type") == "array":
            out[key] = []
        elif prop.get("type") == "object":
            out[key] = {}
        else:
            out[key] = "hba1c"
    return out


# --------------------------------------------------------------------------------------------------
# stdio


def test_stdio_tools_schemas_and_every_tool_on_the_fixtures(store_dir, script, tmp_path):
    """Over stdio: the tool list (every toolkit tool plus find_patients and ask, schemas that need
    patient_id), then each tool called on the fixtures, and the audit log holding each call."""
    audit = tmp_path / "audit.jsonl"
    calls: list[str] = []

    async def main() -> dict:
        results = {}
        with open(tmp_path / "server.err", "w") as errlog:
            async with stdio_session(server_args(store_dir, script, audit), errlog) as s:
                listed = (await s.list_tools()).tools
                for t in listed:
                    args = EXAMPLE_ARGS.get(t.name) or args_from_schema(t.name, t.input_schema)
                    results[t.name] = (t, await s.call_tool(t.name, args))
                    calls.append(t.name)
                templates = (await s.list_resource_templates()).resource_templates
                overview = await s.read_resource(f"ehr://patient/{ALICE}/overview")
                results["_resources"] = (templates, overview)
        return results

    results = anyio.run(main)
    templates, overview = results.pop("_resources")
    names = set(results)
    assert names == set(toolkit_tool_names()) | {"find_patients", "ask"}
    for name, (tool, res) in results.items():
        schema = tool.input_schema
        Draft202012Validator.check_schema(schema)
        assert schema["type"] == "object" and schema.get("additionalProperties") is False, name
        assert tool.annotations.read_only_hint is True and tool.annotations.destructive_hint is False
        if name != "find_patients":
            assert "patient_id" in schema["required"] and schema["properties"]["patient_id"]["type"] == "string"
        assert tool.description, name
        assert text_of(res).strip(), name
        if name in EXAMPLE_ARGS:
            assert not res.is_error, (name, text_of(res))
        else:  # a tool added to the toolkit after this file: guessed arguments may be refused, never crash
            assert " failed (" not in text_of(res), (name, text_of(res))

    assert ALICE in text_of(results["find_patients"][1]) and BOB not in text_of(results["find_patients"][1])
    obs = text_of(results["observations"][1])
    assert f"[{A1C_2023}]" in obs and "6.5" in obs and "6 found" in obs
    read = text_of(results["read_resource"][1])
    assert f"[{A1C_2023}]" in read
    raw = json.loads(read.split("FHIR JSON:\n", 1)[1])
    assert raw["resourceType"] == "Observation" and raw["valueQuantity"]["value"] == 6.5
    assert "bees" in text_of(results["search_record"][1]).lower()
    assert "63" in text_of(results["calculate"][1])  # born 1961-04-12, as of 2024-06-01
    assert "Condition" in text_of(results["records"][1])
    ask_tool, ask = results["ask"]
    assert ask_tool.output_schema["required"] == ["answer", "citations", "verified", "unsupported"]
    assert ask.structured_content["verified"] is True
    assert ask.structured_content["citations"] == [A1C_2023, A1C_2015]

    assert [t.uri_template for t in templates] == ["ehr://patient/{id}/overview"]
    text = overview.contents[0].text
    assert "Observation" in text and "Moreau" in text

    logged = audit_lines(audit)
    assert [e["tool"] for e in logged] == calls + ["resources/read"]
    for e in logged:
        assert set(e) >= {"time", "tool", "arguments", "patient", "rows", "refused", "error", "duration_ms"}
    by_tool = {e["tool"]: e for e in logged}
    assert by_tool["observations"]["patient"] == ALICE and by_tool["observations"]["rows"] == 6
    assert by_tool["ask"]["rows"] == 2 and by_tool["ask"]["error"] is None


def test_stdio_refusals_and_bad_input_keep_the_server_up(store_dir, script, tmp_path):
    """Cross-patient reads, --patients, unknown patients, tools and arguments: each answered with an
    error that names the problem, and the same session then still answers a good call."""
    audit = tmp_path / "audit.jsonl"

    async def main() -> dict:
        out = {}
        with open(tmp_path / "server.err", "w") as errlog:
            async with stdio_session(server_args(store_dir, script, audit, "--patients", ALICE), errlog) as s:
                out["cross"] = await s.call_tool("read_resource", {"patient_id": ALICE, "reference": BOB_OBSERVATION,
                                                                   "raw": True})
                out["scope"] = await s.call_tool("observations", {"patient_id": BOB, "code": "4548-4"})
                out["ask_scope"] = await s.call_tool("ask", {"patient_id": BOB, "question": "Any COPD?"})
                out["find"] = await s.call_tool("find_patients", {})
                out["bad_enum"] = await s.call_tool("observations", {"patient_id": ALICE, "mode": "sometimes"})
                out["missing"] = await s.call_tool("records", {"kind": "conditions"})
                out["extra"] = await s.call_tool("records", {"patient_id": ALICE, "kind": "conditions",
                                                             "colour": "red"})
                out["type"] = await s.call_tool("records", {"patient_id": ALICE, "kind": "conditions", "offset": "x"})
                out["bad_id"] = await s.call_tool("record_overview", {"patient_id": "../etc/passwd"})
                out["bad_search"] = await s.call_tool("search_fhir", {"patient_id": ALICE,
                                                                      "resource_type": "Observation",
                                                                      "params": {"date": "notadate"}})
                with pytest.raises(MCPError) as unknown:
                    await s.call_tool("delete_patient", {"patient_id": ALICE})
                out["unknown_tool"] = unknown.value
                with pytest.raises(MCPError) as bad_uri:
                    await s.read_resource(f"ehr://patient/{BOB}/overview")
                out["bad_uri"] = bad_uri.value
                out["resources"] = (await s.list_resources()).resources
                out["after"] = await s.call_tool("observations", {"patient_id": ALICE, "code": "4548-4"})
        return out

    out = anyio.run(main)
    cross = text_of(out["cross"])
    assert out["cross"].is_error and cross.startswith("refused:") and "FHIR JSON" not in cross
    assert BOB_OBSERVATION in cross and ALICE in cross
    for key in ("scope", "ask_scope"):
        assert out[key].is_error and "--patients" in text_of(out[key]) and "refused" in text_of(out[key])
    assert ALICE in text_of(out["find"]) and BOB not in text_of(out["find"])
    assert out["bad_enum"].is_error and "mode" in text_of(out["bad_enum"]) and "sometimes" in text_of(out["bad_enum"])
    assert out["missing"].is_error and "patient_id" in text_of(out["missing"])
    assert out["extra"].is_error and "colour" in text_of(out["extra"])
    assert out["type"].is_error and "offset" in text_of(out["type"])
    assert out["bad_id"].is_error and "not a FHIR id" in text_of(out["bad_id"])
    assert out["bad_search"].is_error and "date" in text_of(out["bad_search"])
    assert "delete_patient" in str(out["unknown_tool"]) and "unknown tool" in str(out["unknown_tool"])
    assert "--patients" in str(out["bad_uri"])
    assert [str(r.uri) for r in out["resources"]] == [f"ehr://patient/{ALICE}/overview"]
    assert not out["after"].is_error and "6.5" in text_of(out["after"])

    logged = audit_lines(audit)
    assert len(logged) == 13  # 12 tool calls (the unknown one too) + 1 resource read
    refused = [e for e in logged if e["refused"]]
    assert {e["tool"] for e in refused} == {"read_resource", "observations", "ask", "resources/read"}
    assert all(e["patient"] == BOB for e in refused if e["tool"] != "read_resource")
    assert any(e["tool"] == "delete_patient" and e["error"] == "unknown tool" for e in logged)


# --------------------------------------------------------------------------------------------------
# streamable HTTP


def test_http_lists_tools_and_answers_ask_with_verified_citations(http_server):
    async def main():
        async with http_session(http_server.url) as s:
            tools = (await s.list_tools()).tools
            ask = await s.call_tool("ask", EXAMPLE_ARGS["ask"])
            overview = await s.read_resource(f"ehr://patient/{BOB}/overview")
            return tools, ask, overview

    tools, ask, overview = anyio.run(main)
    assert {t.name for t in tools} == set(toolkit_tool_names()) | {"find_patients", "ask"}
    for t in tools:
        Draft202012Validator.check_schema(t.input_schema)
    assert not ask.is_error, text_of(ask)
    out = ask.structured_content
    assert out["verified"] is True and out["unsupported"] == []
    assert out["citations"] == [A1C_2023, A1C_2015] and "6.5 %" in out["answer"]
    assert json.loads(text_of(ask))["citations"] == out["citations"]
    assert "Haines" in overview.contents[0].text


def test_http_twenty_concurrent_calls_all_answered_and_audited(http_server):
    before = len(audit_lines(http_server.audit))
    plan = []
    for i in range(20):
        pid = ALICE if i % 2 == 0 else BOB
        kind = i % 4
        if kind == 0:
            plan.append(("observations", {"patient_id": pid, "mode": "all", "offset": i % 3}))
        elif kind == 1:
            plan.append(("records", {"patient_id": pid, "kind": "encounters"}))
        elif kind == 2:
            plan.append(("record_overview", {"patient_id": pid}))
        else:
            plan.append(("find_patients", {"birthdate": "ge1900"}))

    async def main():
        async with http_session(http_server.url) as s:
            results: list = [None] * len(plan)

            async def one(i: int, name: str, args: dict) -> None:
                results[i] = await s.call_tool(name, args)

            async with anyio.create_task_group() as tg:
                for i, (name, args) in enumerate(plan):
                    tg.start_soon(one, i, name, args)
            return results

    results = anyio.run(main)
    assert all(r is not None and not r.is_error for r in results), [text_of(r) for r in results if r and r.is_error]
    for (name, args), r in zip(plan, results):
        if name == "find_patients":
            assert ALICE in text_of(r) and BOB in text_of(r)
        elif name == "observations":
            assert "more; page with offset=" in text_of(r) or "found" in text_of(r)
    new = audit_lines(http_server.audit)[before:]
    assert len(new) == 20
    assert sorted(e["tool"] for e in new) == sorted(n for n, _ in plan)
    assert sorted(str(e["patient"]) for e in new) == sorted(str(a.get("patient_id")) for _, a in plan)


def test_http_paging_is_announced_and_followed(http_server):
    """A result with more rows than the agent's limit says how to page; the next page continues it."""
    async def main():
        async with http_session(http_server.url) as s:
            first = await s.call_tool("observations", {"patient_id": ALICE, "mode": "all"})
            text = text_of(first)
            marker = [x for x in text.splitlines() if "page with offset=" in x]
            assert marker, text
            offset = int(marker[0].rsplit("=", 1)[1])
            second = await s.call_tool("observations", {"patient_id": ALICE, "mode": "all", "offset": offset})
            return text, text_of(second)

    first, second = anyio.run(main)
    refs_1 = {x.rsplit("[", 1)[1] for x in first.splitlines() if x.endswith("]")}
    refs_2 = {x.rsplit("[", 1)[1] for x in second.splitlines() if x.endswith("]")}
    assert len(refs_1) == 12 and refs_2 and not refs_1 & refs_2


def test_http_unknown_patient_and_tool_are_named_and_the_server_keeps_serving(http_server):
    before = len(audit_lines(http_server.audit))

    async def main():
        async with http_session(http_server.url) as s:
            tool = await s.call_tool("records", {"patient_id": "nobody-here", "kind": "conditions"})
            ask = await s.call_tool("ask", {"patient_id": "nobody-here", "question": "Any allergies?"})
            with pytest.raises(MCPError) as res:
                await s.read_resource("ehr://patient/nobody-here/overview")
            with pytest.raises(MCPError) as unknown:
                await s.call_tool("update_patient", {})
            with pytest.raises(MCPError) as uri:
                await s.read_resource("ehr://patient/x/everything")
            after = await s.call_tool("find_patients", {"identifier": "MRN-alice"})
            return tool, ask, res.value, unknown.value, uri.value, after

    tool, ask, res, unknown, uri, after = anyio.run(main)
    for r in (tool, ask):
        assert r.is_error and "unknown patient 'nobody-here'" in text_of(r) and "find_patients" in text_of(r)
    assert "unknown patient 'nobody-here'" in str(res)
    assert "unknown tool 'update_patient'" in str(unknown) and "find_patients" in str(unknown)
    assert "unknown resource" in str(uri) and "{id}/overview" in str(uri)
    assert not after.is_error and ALICE in text_of(after) and "1 found" in text_of(after)
    new = audit_lines(http_server.audit)[before:]
    assert [e["tool"] for e in new] == ["records", "ask", "resources/read", "update_patient", "resources/read",
                                        "find_patients"]
    assert [e["error"] for e in new[:4]] == ["unknown patient", "unknown patient", "unknown patient", "unknown tool"]


def test_http_store_down_is_an_error_and_the_server_keeps_serving(tmp_path, script):
    """--store pointing at a FHIR server that is not there: each call says the store failed."""
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/fhir"
    audit = tmp_path / "audit.jsonl"
    srv = HttpServer(server_args(dead, script, audit))
    try:
        async def main():
            async with http_session(srv.url) as s:
                # One call only: the REST client retries with backoff (about 10 s) before it gives up.
                a = await s.call_tool("record_overview", {"patient_id": ALICE})
                tools = (await s.list_tools()).tools
                return a, tools

        a, tools = anyio.run(main)
    finally:
        srv.stop()
    assert srv.proc.returncode == 0
    assert a.is_error and "the record store failed" in text_of(a) and "127.0.0.1" in text_of(a), text_of(a)
    assert {t.name for t in tools} >= {"find_patients", "record_overview", "ask"}
    assert [e["error"] for e in audit_lines(audit)] == ["store failed"]


# --------------------------------------------------------------------------------------------------
# command line


def test_cli_rejects_bad_options_before_serving(store_dir, tmp_path, capsys):
    from ehr_agent.agent.cli import main

    assert main(["serve-mcp", "--store", store_dir, "--patients", "a b,", "--audit-log", str(tmp_path / "a")]) == 2
    assert "--patients" in capsys.readouterr().err
    assert main(["serve-mcp", "--store", store_dir, "--model", "bogus:x"]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["serve-mcp", "--store", store_dir + "-missing", "--audit-log", str(tmp_path / "a")]) == 2
    assert "no FHIR store" in capsys.readouterr().err
    assert main(["serve-mcp", "--store", store_dir, "--as-of", "2024-02-30"]) == 2
    assert "YYYY-MM-DD" in capsys.readouterr().err


def test_default_audit_path_is_documented_and_overridable(monkeypatch, tmp_path):
    from ehr_agent.agent.mcp_server import AUDIT_ENV, default_audit_path

    monkeypatch.delenv(AUDIT_ENV, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_audit_path() == tmp_path / "ehr-agent" / "mcp-audit.jsonl"
    monkeypatch.setenv(AUDIT_ENV, str(tmp_path / "x.jsonl"))
    assert default_audit_path() == tmp_path / "x.jsonl"
    doc = (ROOT / "docs" / "mcp.md").read_text(encoding="utf-8")
    assert "~/.local/state/ehr-agent/mcp-audit.jsonl" in doc and AUDIT_ENV in doc


def test_a_result_cut_at_the_character_cap_still_says_where_to_continue(store_dir):
    """With a small character cap the page is cut before its paging line; the server adds where the
    rest starts, and following it neither repeats nor skips a row. (In-process: no transport needed.)"""
    from ehr_agent.agent.mcp_server import EHRTools
    from ehr_agent.tools.store import open_store

    store = open_store(store_dir)
    try:
        tools = EHRTools(store, as_of=AS_OF, max_chars=700)
        seen: list[str] = []
        offset = 0
        for _ in range(30):
            out = tools.call("observations", {"patient_id": ALICE, "mode": "all", "offset": offset})
            assert not out.is_error, out.text
            refs = [x.rsplit("[", 1)[1].rstrip("]") for x in out.text.splitlines() if x.endswith("]")]
            assert out.rows == len(refs) and refs
            seen += refs
            tail = out.text.splitlines()[-1]
            if "offset=" not in tail:
                break
            offset = int(tail.rsplit("offset=", 1)[1])
            assert offset == len(seen)
        assert len(seen) == len(set(seen)) == 20  # Alice has 20 observations as of 2024-06-01
    finally:
        store.close()


def test_find_patients_pages_and_no_ask_without_a_model(store_dir):
    """find_patients is bounded and says how to page; a server without a model offers no ask. (In-process.)"""
    from ehr_agent.agent.mcp_server import EHRTools
    from ehr_agent.tools.store import open_store

    store = open_store(store_dir)
    try:
        tools = EHRTools(store, as_of=AS_OF, find_limit=2)
        assert "ask" not in [t.name for t in tools.tool_list()]
        first = tools.call("find_patients", {})
        lines = first.text.splitlines()
        assert lines[0] == "patients (all): 3 found" and first.rows == 2
        assert lines[-1] == "1 more; page with offset=2"
        second = tools.call("find_patients", {"offset": 2})
        assert second.rows == 1 and "more; page" not in second.text
        ids = [x.rsplit("[Patient/", 1)[1].rstrip("]") for x in lines[1:-1] + second.text.splitlines()[1:]]
        assert sorted(ids) == sorted([ALICE, BOB, "9b55a1d9-f86b-56ea-b123-c9a291ce26b2"])
        born = tools.call("find_patients", {"birthdate": "lt1950"})
        assert born.rows == 1 and BOB in born.text
        bad = tools.call("find_patients", {"birthdate": "someday"})
        assert bad.is_error and "birthdate" in bad.text
    finally:
        store.close()
