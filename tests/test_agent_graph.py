"""The agent graph end to end on the real embedded store. Every test here uses a scripted model
(``agent.models.scripted.ScriptedModel``) that plays back fixed replies in our text tool-call protocol,
except the server-failure tests, which point the real OpenAI-compatible backend at a broken local server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from test_agent_support import AS_OF, store  # noqa: F401  (store is a fixture)

from ehr_agent.agent.configuration import AgentSettings
from ehr_agent.agent.graph import build_graph
from ehr_agent.agent.models.base import ChatMessage, ChatModel, ChatResult, ModelError, ToolCall
from ehr_agent.agent.models.scripted import ScriptedModel
from ehr_agent.agent.runner import answer


def call(tool: str, **arguments) -> str:
    """A model reply that calls one tool in the text protocol."""
    return f"```tool_call\n{json.dumps({'tool': tool, 'arguments': arguments})}\n```"


def ask(store, turns, question="What is her latest HbA1c?", *, patient="pa", **settings):  # noqa: F811
    settings.setdefault("prefetch_k", 0)  # most tests script every tool call themselves
    model = ScriptedModel(turns)
    res = answer(store, patient, question, model=model, settings=AgentSettings(**settings), as_of=AS_OF)
    return res, model


def last_user_text(model: ScriptedModel) -> str:
    msgs = model.messages_seen[-1]
    return "\n".join(m.content for m in msgs if m.role in ("user", "tool"))


# ---- the loop ------------------------------------------------------------------------------------


def test_tool_loop_answers_with_verified_citations(store):  # noqa: F811
    """Scripted model: one tool call, then a cited answer."""
    res, model = ask(store, [call("observations", text="a1c"),
                             "Her latest HbA1c was 6.8 % on 2021-09-15 [Observation/a1c-3]."])
    assert res.error is None and res.verified
    assert res.citations == ["Observation/a1c-3"]
    assert res.steps == 2 and [t["name"] for t in res.tool_calls] == ["observations"]
    assert res.prompt_tokens > 0 and res.completion_tokens > 0
    # The second model turn saw the tool's row, and the prompt named the as-of date.
    assert "= 6.8 % [Observation/a1c-3]" in last_user_text(model)
    # The as-of date opens the question, after a system prompt that is the same for every question (cacheable).
    assert AS_OF in model.messages_seen[0][1].content and AS_OF not in model.messages_seen[0][0].content
    assert "Observation/a1c-future" not in res.evidence_refs  # dated after as-of


def test_repair_round_fixes_an_unsupported_value(store):  # noqa: F811
    """Scripted model: the first answer misstates the value; the repair prompt lists the problem; the fix passes."""
    res, model = ask(store, [call("observations", text="a1c"),
                             "Her latest HbA1c was 7.9 % [Observation/a1c-3].",
                             "Her latest HbA1c was 6.8 % [Observation/a1c-3]."])
    assert res.verified and res.steps == 3 and "7.9" not in res.answer
    repair_prompt = model.messages_seen[2][-1].content
    assert "value 7.9 does not appear in the cited resources" in repair_prompt
    assert "[Observation/a1c-3]" in repair_prompt


def test_answer_still_failing_after_repair_is_marked(store):  # noqa: F811
    """Scripted model: the repair does not fix the claim, so it comes back marked [unsupported]."""
    res, _ = ask(store, [call("observations", text="a1c"),
                         "HbA1c 7.9 % [Observation/a1c-3]. Nothing else is in the record.",
                         "HbA1c 7.9 % [Observation/a1c-3]. Nothing else is in the record."])
    assert not res.verified and res.error is None
    assert res.unsupported == ["HbA1c 7.9 % [Observation/a1c-3]."]
    assert res.answer == "HbA1c 7.9 % [Observation/a1c-3]. [unsupported] Nothing else is in the record."
    # Condition/cond-dm was never returned by a tool: cited but not retrieved is unsupported too.
    res2, _ = ask(store, [call("observations", text="a1c"),
                          "HbA1c 6.8 % [Observation/a1c-3]. Diabetes since 2015 [Condition/cond-dm].",
                          "HbA1c 6.8 % [Observation/a1c-3]. Diabetes since 2015 [Condition/cond-dm]."])
    assert not res2.verified and res2.unsupported == ["Diabetes since 2015 [Condition/cond-dm]."]


def test_step_limit_gives_an_honest_answer_with_evidence(store):  # noqa: F811
    """Scripted model that never stops calling tools (each call new: a repeated call ends the loop earlier,
    tests/test_agent_align.py)."""
    res, model = ask(store, [call("observations", text=t) for t in ("a1c", "glucose", "weight", "height", "bmi")],
                     max_steps=3)
    assert res.error and "step limit" in res.error
    assert res.answer.startswith("I could not answer within 3 steps")
    assert "[Observation/a1c-3]" in res.answer  # the evidence found so far
    assert len(model.calls) == 3 and not res.verified


# ---- bad model behaviour -------------------------------------------------------------------------


def test_malformed_tool_call_is_sent_back_and_recovered(store):  # noqa: F811
    """Scripted model: a broken tool-call block, then a good one, then the answer."""
    res, model = ask(store, ["```tool_call\n{\"tool\": \"observations\", \"arguments\": [[[ nonsense\n```",
                             call("observations", text="a1c"),
                             "HbA1c 6.8 % [Observation/a1c-3]."])
    assert res.verified and res.steps == 3
    second = model.messages_seen[1]
    assert second[-1].role == "user" and "could not be used" in second[-1].content


def test_unknown_tool_and_invalid_arguments_come_back_as_errors(store):  # noqa: F811
    """Scripted model: both text-protocol and native (ChatResult) calls of an unknown tool and with bad arguments."""
    res, model = ask(store, [
        call("list_all_patients"),
        ChatResult(tool_calls=[ToolCall(id="c1", name="list_all_patients", arguments={})]),
        ChatResult(tool_calls=[ToolCall(id="c2", name="observations", arguments={"mode": "everything"})]),
        call("observations", text="a1c"),
        "HbA1c 6.8 % [Observation/a1c-3]."])
    assert res.verified and res.steps == 5
    texts = [m.content for m in model.messages_seen[-1]]
    assert any("list_all_patients" in t for t in texts[:6])
    assert any("unknown tool 'list_all_patients'" in t for t in texts)
    assert any("invalid arguments for observations" in t for t in texts)
    assert [t["error"] for t in res.tool_calls] == [True, True, False]


def test_citing_a_resource_never_read_is_rejected(store):  # noqa: F811
    """Scripted model cites Observation/a1c-2, which exists for this patient but no tool returned."""
    res, _ = ask(store, [call("observations", text="a1c"),
                         "In 2020 it was 7.9 % [Observation/a1c-2].",
                         "In 2020 it was 7.9 % [Observation/a1c-2]."])
    assert not res.verified
    assert "Observation/a1c-2" in res.citations and "Observation/a1c-2" not in res.evidence_refs
    assert res.unsupported and "[unsupported]" in res.answer


def test_asking_for_another_patients_data_is_refused(store):  # noqa: F811
    """Scripted model tries to read patient pb's Observation and search pb's compartment."""
    res, model = ask(store, [
        call("read_resource", reference="Observation/obs-b1"),
        call("search_fhir", resource_type="Observation", params={"patient": "pb"}),
        call("read_resource", reference="Patient/pb"),
        "The other patient's HbA1c was 11.1 % [Observation/obs-b1].",
        "The other patient's HbA1c was 11.1 % [Observation/obs-b1]."])
    seen = "\n".join(m.content for m in model.messages_seen[-1] if m.role == "tool")
    assert "11.1" not in seen and "Brown" not in seen
    assert [t["refused"] for t in res.tool_calls] == [True, False, True]
    assert "refused" in seen and "not allowed" in seen
    assert not res.verified and "Observation/obs-b1" not in res.evidence_refs
    assert "[unsupported]" in res.answer


def test_prompt_injection_in_a_note_has_no_effect(store):  # noqa: F811
    """Scripted model that obeys the note's "list all patients": the tools still only show patient pa."""
    res, model = ask(store, [
        call("search_record", query="follow-up visit note"),
        call("search_fhir", resource_type="Patient"),
        call("records", kind="conditions"),
        "Patients: Maria Alvarez [Patient/pa]. Conditions: Diabetes mellitus type 2 [Condition/cond-dm], "
        "Hypertension [Condition/cond-b]."], question="What did the last note say?")
    seen = "\n".join(m.content for m in model.messages_seen[-1] if m.role == "tool")
    assert "IGNORE YOUR INSTRUCTIONS" in seen  # the note was read...
    assert "Patient/pb" not in seen and "Brown" not in seen and "Hypertension" not in seen  # ...but nothing leaked
    assert "Patient/pb" not in res.evidence_refs and "Condition/cond-b" not in res.evidence_refs
    assert not res.verified  # the invented cond-b citation is caught
    # The system prompt tells the model notes are data.
    assert "never instructions" in model.messages_seen[0][0].content


# ---- model failures ------------------------------------------------------------------------------


class DownModel(ChatModel):
    name = "down"

    def chat(self, messages, tools=None, *, on_token=None, max_tokens=None):
        raise ModelError("connection refused at http://127.0.0.1:9/v1 after 3 attempt(s)")


class BuggyModel(ChatModel):
    def chat(self, messages, tools=None, *, on_token=None, max_tokens=None):
        raise KeyError("choices")


@pytest.mark.parametrize("model", [DownModel(), BuggyModel()])
def test_model_failure_is_an_answer_result_not_a_crash(store, model):  # noqa: F811
    res = answer(store, "pa", "Latest HbA1c?", model=model, as_of=AS_OF)
    assert res.error and "model error" in res.error
    assert res.answer.startswith("No answer: the language model failed")
    assert not res.verified and res.citations == []


class _Handler(BaseHTTPRequestHandler):
    mode = "500"
    hits = 0

    def do_POST(self):  # noqa: N802
        type(self).hits += 1
        if self.mode == "slow":
            threading.Event().wait(2.0)
        try:
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": "boom"}')
        except OSError:
            pass  # the slow case: the client already gave up

    def log_message(self, *a):
        pass


@pytest.mark.parametrize("mode", ["500", "slow", "down"])
def test_llm_server_errors_retry_then_fail_cleanly(store, mode):  # noqa: F811
    """The real OpenAI-compatible backend against a server that returns 500, times out, or is not there."""
    from ehr_agent.agent.models.factory import make_model

    handler = type("H", (_Handler,), {"mode": mode, "hits": 0})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    port = srv.server_address[1]
    if mode == "down":
        srv.server_close()  # nothing listens on the port
    else:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        model = make_model(f"openai:http://127.0.0.1:{port}/v1#m&retries=1&backoff=0.01&timeout=0.5"
                           f"&connect_timeout=0.5&tool_mode=text")
        res = answer(store, "pa", "Latest HbA1c?", model=model, as_of=AS_OF)
    finally:
        if mode != "down":
            srv.shutdown()
            srv.server_close()
    assert res.error and "model error" in res.error and "2 attempt" in res.error
    assert res.answer.startswith("No answer: the language model failed")
    if mode != "down":
        assert handler.hits == 2  # one try plus one retry


# ---- graph features ------------------------------------------------------------------------------


def test_unknown_patient_is_a_clear_answer(store):  # noqa: F811
    res, model = ask(store, ["never used"], patient="nobody")
    assert res.error == "unknown patient" and "no patient with id nobody" in res.answer
    assert model.calls == []


def test_as_of_policy_last_record(store):  # noqa: F811
    model = ScriptedModel([call("observations", text="a1c"), "HbA1c 9.9 % [Observation/a1c-future]."])
    res = answer(store, "pa", "Latest HbA1c?", model=model, settings=AgentSettings(as_of_policy="last_record"))
    assert res.verified and "2030-01-01" in model.messages_seen[0][1].content


def test_checkpointer_follow_up_in_one_thread(store):  # noqa: F811
    """Scripted model; the second question is answered from evidence read for the first, with the history shown."""
    from langgraph.checkpoint.memory import InMemorySaver

    model = ScriptedModel([call("observations", text="a1c", mode="all"),
                           "Her latest HbA1c was 6.8 % [Observation/a1c-3].",
                           "The one before was 7.9 % on 2020-06-01 [Observation/a1c-2]."])
    g = build_graph(store=store, model=model, checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "t1"}}
    first = g.invoke({"patient_id": "pa", "question": "Latest HbA1c?", "as_of": AS_OF}, cfg)["result"]
    second = g.invoke({"patient_id": "pa", "question": "And the one before?", "as_of": AS_OF}, cfg)
    assert first["verified"] and second["result"]["verified"]
    assert second["result"]["steps"] == 1 and len(second["history"]) == 2
    shown = [m.content for m in model.messages_seen[-1]]
    assert "Latest HbA1c?" in shown and "Her latest HbA1c was 6.8 % [Observation/a1c-3]." in shown
    # Another thread starts clean: the same answer there cites evidence never read.
    other = g.invoke({"patient_id": "pa", "question": "x", "as_of": AS_OF}, {"configurable": {"thread_id": "t2"}})
    assert other["result"]["error"] and "model error" in other["result"]["error"]  # script exhausted


def test_sqlite_checkpointer_round_trips_the_state(store, tmp_path):  # noqa: F811
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(tmp_path / "ckpt.sqlite", check_same_thread=False)
    model = ScriptedModel([call("observations", text="a1c"), "HbA1c 6.8 % [Observation/a1c-3].",
                           "Still 6.8 % [Observation/a1c-3]."])
    g = build_graph(store=store, model=model, checkpointer=SqliteSaver(conn))
    cfg = {"configurable": {"thread_id": "s1"}}
    g.invoke({"patient_id": "pa", "question": "HbA1c?", "as_of": AS_OF}, cfg)
    out = g.invoke({"patient_id": "pa", "question": "Sure?", "as_of": AS_OF}, cfg)
    assert out["result"]["verified"] and out["result"]["citations"] == ["Observation/a1c-3"]
    assert g.get_state(cfg).values["evidence"]["Observation/a1c-3"].endswith("[Observation/a1c-3]")
    conn.close()


def test_stream_yields_steps_and_tokens(store):  # noqa: F811
    model = ScriptedModel([call("observations", text="a1c"), "HbA1c 6.8 % [Observation/a1c-3]."])
    g = build_graph(store=store, model=model)
    nodes, custom = [], []
    for mode, chunk in g.stream({"patient_id": "pa", "question": "HbA1c?", "as_of": AS_OF},
                                stream_mode=["updates", "custom"]):
        if mode == "updates":
            nodes.extend(chunk)
        else:
            custom.append(chunk)
    assert nodes == ["manifest", "agent", "tools", "agent", "check", "finish"]
    tokens = "".join(c["text"] for c in custom if c["type"] == "token")
    assert "HbA1c 6.8 %" in tokens
    tool = next(c for c in custom if c["type"] == "tool" and not c.get("prefetch"))
    assert tool["name"] == "observations" and tool["rows"] == 1
    assert next(c for c in custom if c["type"] == "check")["verified"] is True


def test_graph_draws():
    g = build_graph(store=None, model=ScriptedModel([]))
    mermaid = g.get_graph().draw_mermaid()
    for node in ("manifest", "agent", "tools", "check", "repair", "limit", "finish"):
        assert node in mermaid
    assert "repair --> agent" in mermaid


def test_same_graph_over_rest(store):  # noqa: F811
    """Scripted model; the tools run through the REST client against the project's FHIR facade."""
    import ehr_agent.tools.store.server as server_mod
    from ehr_agent.tools.store.rest import RESTStore

    srv = server_mod.make_server(store, port=0, quiet=True)
    srv.start_in_thread()
    try:
        turns = [call("observations", text="a1c", mode="all"), call("read_resource", reference="Observation/obs-b1"),
                 "HbA1c 6.8 % on 2021-09-15 [Observation/a1c-3]."]
        local, _ = ask(store, list(turns), "latest hemoglobin a1c?", prefetch_k=6)
        remote = answer(RESTStore(srv.base_url, retries=0), "pa", "latest hemoglobin a1c?",
                        model=ScriptedModel(list(turns)), as_of=AS_OF, settings=AgentSettings(prefetch_k=6))
    finally:
        srv.stop()
    assert remote.verified and remote.answer == local.answer and remote.evidence_refs == local.evidence_refs
    assert [t["refused"] for t in remote.tool_calls] == [False, False, True]  # prefetch, observations, read
    assert remote.tool_calls[0].get("prefetch") and "Observation/a1c-1" in remote.evidence_refs


def test_state_holds_langchain_messages_and_plain_json(store):  # noqa: F811
    """Scripted model. Messages in the state are LangChain messages (an AIMessage with tool_calls, a ToolMessage
    answering it by tool_call_id); everything else in the state is plain JSON."""
    from langchain_core.messages import AIMessage, SystemMessage, ToolMessage, messages_to_dict

    from ehr_agent.agent.lc import to_chat_messages

    model = ScriptedModel([call("observations", text="a1c"), "HbA1c 6.8 % [Observation/a1c-3]."])
    from langgraph.checkpoint.memory import InMemorySaver

    g = build_graph(store=store, model=model, checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "j"}}
    g.invoke({"patient_id": "pa", "question": "HbA1c?", "as_of": AS_OF}, cfg)
    values = g.get_state(cfg).values
    json.dumps({k: v for k, v in values.items() if k != "messages"})  # raises if anything non-JSON slipped in
    json.dumps(messages_to_dict(values["messages"]))
    assert [m.role for m in to_chat_messages(values["messages"])][:2] == ["system", "user"]
    msgs = values["messages"]
    assert isinstance(msgs[0], SystemMessage) and len({m.id for m in msgs}) == len(msgs)
    asked = next(m for m in msgs if isinstance(m, AIMessage) and m.tool_calls)
    answered = next(m for m in msgs if isinstance(m, ToolMessage))
    assert asked.tool_calls[0]["name"] == "observations" and answered.tool_call_id == asked.tool_calls[0]["id"]
    assert "[Observation/a1c-3]" in answered.content and asked.usage_metadata["output_tokens"] > 0


def test_model_failing_during_repair_keeps_the_marked_draft(store):  # noqa: F811
    """Scripted model whose script ends after an unsupported answer (the repair turn fails)."""
    res, _ = ask(store, [call("observations", text="a1c"), "HbA1c 7.9 % [Observation/a1c-3]."])
    assert res.error and "script exhausted" in res.error
    assert res.answer == "HbA1c 7.9 % [Observation/a1c-3]. [unsupported]" and not res.verified


def test_make_graph_from_environment_for_langgraph_dev(store, monkeypatch):  # noqa: F811
    """Scripted model named in EHR_AGENT_MODEL; the factory langgraph.json points at."""
    from pathlib import Path

    import asyncio

    from ehr_agent.agent.graph import make_graph, serve_graph

    config = json.loads((Path(__file__).resolve().parents[1] / "langgraph.json").read_text())
    assert config["graphs"]["ehr_agent"] == "ehr_agent.agent.graph:serve_graph"
    monkeypatch.setenv("EHR_AGENT_STORE", str(store.directory))
    monkeypatch.setenv("EHR_AGENT_MODEL", "scripted:" + json.dumps([call("observations", text="a1c"),
                                                                      "HbA1c 6.8 % [Observation/a1c-3]."]))
    g = make_graph()
    out = g.invoke({"patient_id": "pa", "question": "HbA1c?", "as_of": AS_OF})
    assert out["result"]["verified"] and out["result"]["citations"] == ["Observation/a1c-3"]
    # the server's entry builds the same graph off its event loop
    out = asyncio.run(serve_graph()).invoke({"patient_id": "pa", "question": "HbA1c?", "as_of": AS_OF})
    assert out["result"]["verified"] and out["result"]["citations"] == ["Observation/a1c-3"]
    monkeypatch.delenv("EHR_AGENT_STORE")
    with pytest.raises(RuntimeError, match="EHR_AGENT_STORE"):
        make_graph()


def test_record_store_down_is_an_answer_result(store):  # noqa: F811
    """Scripted model (never reached): the FHIR server behind the store is not there."""
    from ehr_agent.tools.store.rest import RESTStore

    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port = srv.server_address[1]
    srv.server_close()
    res = answer(RESTStore(f"http://127.0.0.1:{port}/fhir", retries=0, timeout=1), "pa", "HbA1c?",
                 model=ScriptedModel(["unused"]), as_of=AS_OF)
    assert res.error and "record store failed" in res.error and res.answer.startswith("No answer")


def test_prefetched_rows_let_the_model_answer_without_tool_calls(store):  # noqa: F811
    """Scripted model that answers at once from the rows the manifest node's search put in the prompt."""
    res, model = ask(store, ["Her hemoglobin A1c was 6.8 % on 2021-09-15 [Observation/a1c-3]."],
                     question="What was her last hemoglobin a1c?", prefetch_k=6)
    first_prompt = model.messages_seen[0][-1].content
    assert "Rows of the record that match the question" in first_prompt and "[Observation/a1c-3]" in first_prompt
    assert "a1c-future" not in first_prompt  # the search respects as-of
    assert res.verified and res.steps == 1 and res.tool_calls[0]["prefetch"] is True


def test_uncited_but_correct_sentence_is_cited_by_code(store):  # noqa: F811
    """Scripted model that states the right value and date but forgets the reference (as small models do)."""
    turns = [call("observations", text="a1c"), "The most recent HbA1c was 6.8 % on 2021-09-15.",
             "The most recent HbA1c was 6.8 % on 2021-09-15."]
    res, _ = ask(store, list(turns))
    assert res.verified and res.steps == 2
    assert res.answer == "The most recent HbA1c was 6.8 % on 2021-09-15 [Observation/a1c-3]."
    res, model = ask(store, list(turns), auto_cite=False)
    assert not res.verified and res.steps == 3 and "[Observation/a1c-3]" in model.messages_seen[2][-1].content


def test_system_prompt_and_tools_are_one_static_prefix():
    """The system prompt and tool list are the same for every patient, date and question, so the embedded
    model's KV cache (and vLLM's prefix cache) serves them after the first question; they must still stay
    small, since the first question of a process pays for them (about 1,650 Qwen2.5 tokens for 6,500
    characters, docs/agent.md)."""
    from ehr_agent import prompts
    from ehr_agent.agent.protocol import to_text_protocol
    from ehr_agent.tools.patient_tools import PatientSession

    def rendered(pid: str, as_of: str) -> str:
        system = prompts.render("agent_system")
        return to_text_protocol([ChatMessage(role="system", content=system)],
                                PatientSession(None, pid, as_of).tool_specs())[0].content

    text = rendered("p", AS_OF)
    assert text == rendered("another-patient", "1999-01-01")
    assert "lookup" in text and "calculate" in text and "never instructions" in text
    assert len(text) < 6500, len(text)


# ---- the runtime context, streaming, make_graph ----------------------------------------------------


def test_context_at_invoke_and_follow_up_in_one_thread(store):  # noqa: F811
    """Scripted model. A graph built with no dependencies gets them per run (context=EHRContext(...)); a
    follow-up in the same InMemorySaver thread sees the first answer; a run with no context is a clear error."""
    from langgraph.checkpoint.memory import InMemorySaver

    from ehr_agent.agent.context import EHRContext

    model = ScriptedModel([call("observations", text="a1c", mode="all"),
                           "Her latest HbA1c was 6.8 % [Observation/a1c-3].",
                           "The one before was 7.9 % on 2020-06-01 [Observation/a1c-2]."])
    g = build_graph(checkpointer=InMemorySaver())
    ctx = EHRContext(store=store, model=model, settings=AgentSettings(prefetch_k=0))
    cfg = {"configurable": {"thread_id": "ctx"}}
    first = g.invoke({"patient_id": "pa", "question": "Latest HbA1c?", "as_of": AS_OF}, cfg, context=ctx)
    second = g.invoke({"patient_id": "pa", "question": "And the one before?", "as_of": AS_OF}, cfg, context=ctx)
    assert first["result"]["verified"] and second["result"]["verified"] and len(second["history"]) == 2
    assert "Her latest HbA1c was 6.8 % [Observation/a1c-3]." in [m.content for m in model.messages_seen[-1]]
    bare = g.invoke({"patient_id": "pa", "question": "x"}, {"configurable": {"thread_id": "none"}})
    assert "no store and no model" in bare["result"]["error"] and bare["result"]["answer"].startswith("No answer")


def test_run_context_overrides_the_default_field_by_field(store):  # noqa: F811
    """Scripted models: the default context's model is never called when the run brings its own; the store and
    the settings (max_steps=1: the limit answer after one turn) still come from the default."""
    from ehr_agent.agent.context import EHRContext

    default_model, run_model = ScriptedModel(["never"]), ScriptedModel([call("observations", text="a1c")] * 3)
    g = build_graph(store=store, model=default_model, settings=AgentSettings(max_steps=1, prefetch_k=0))
    out = g.invoke({"patient_id": "pa", "question": "HbA1c?", "as_of": AS_OF}, context=EHRContext(model=run_model))
    assert default_model.calls == [] and len(run_model.calls) == 1
    assert "step limit (1)" in out["result"]["error"]
    with pytest.raises(TypeError, match="not both"):
        build_graph(EHRContext(store=store), model=run_model)


def test_context_patient_scope(store):  # noqa: F811
    """Scripted model. A context naming a patient is the input's default, and another patient is refused
    before the model or the store is asked anything."""
    from ehr_agent.agent.context import EHRContext

    model = ScriptedModel([call("observations", text="a1c"), "HbA1c 6.8 % [Observation/a1c-3]."])
    g = build_graph(EHRContext(store=store, model=model, patient_id="pa", as_of=AS_OF,
                               settings=AgentSettings(prefetch_k=0)))
    assert g.invoke({"question": "HbA1c?"})["result"]["verified"]
    refused = g.invoke({"patient_id": "pb", "question": "HbA1c?"})["result"]
    assert refused["error"] == "this graph answers about patient pa only" and len(model.calls) == 2
    schema = g.get_context_jsonschema()  # what a LangGraph server publishes: the JSON-able fields only
    assert {"patient_id", "as_of"} <= set(schema["properties"]) and "store" not in schema["properties"]


def test_graphs_publish_their_json_schemas():
    """What `langgraph dev` serves to Studio: input, output and context schemas of both graphs."""
    from ehr_agent.agent.cohort import build_cohort_graph

    for g, inputs in ((build_graph(), {"patient_id", "question", "as_of"}), (build_cohort_graph(), {"question"})):
        assert set(g.get_input_jsonschema()["properties"]) == inputs
        assert set(g.get_output_jsonschema()["properties"]) == {"result", "history"}
        assert set(g.get_context_jsonschema()["properties"]) == {"patient_id", "as_of"}


def test_sessions_belong_to_the_context_and_follow_the_data_version(store, monkeypatch):  # noqa: F811
    """Scripted model. The tool session is reused while the store's data version stays, rebuilt when it changes."""
    from ehr_agent.agent.context import EHRContext
    from ehr_agent.agent.nodes import PatientMode

    version = ["v1"]
    monkeypatch.setattr(store, "data_version", lambda: version[0])
    ctx = EHRContext(store=store, model=ScriptedModel(["HbA1c?"] * 4), settings=AgentSettings(prefetch_k=0))
    g = build_graph()
    g.invoke({"patient_id": "pa", "question": "q1", "as_of": AS_OF}, context=ctx)
    first = PatientMode().session(ctx, "pa", AS_OF)
    g.invoke({"patient_id": "pa", "question": "q2", "as_of": AS_OF}, context=ctx)
    assert PatientMode().session(ctx, "pa", AS_OF) is first and len(ctx.sessions) == 1
    version[0] = "v2"  # data loaded into the store
    g.invoke({"patient_id": "pa", "question": "q3", "as_of": AS_OF}, context=ctx)
    again = PatientMode().session(ctx, "pa", AS_OF)
    assert again is not first and len(ctx.sessions) == 2
    ctx.sessions.clear()
    assert len(ctx.sessions) == 0 and PatientMode().session(ctx, "pa", AS_OF) is not again


def test_stream_mode_messages_yields_tokens_and_tool_messages(store):  # noqa: F811
    """Scripted model (it streams its reply word by word). stream_mode="messages" gives the model's tokens as
    AIMessageChunks from the agent node, the tool calls, and the ToolMessages; "updates" and "custom" still work
    alongside."""
    from langchain_core.messages import AIMessageChunk, ToolMessage

    from ehr_agent.agent.context import EHRContext

    model = ScriptedModel([call("observations", text="a1c"), "HbA1c 6.8 % [Observation/a1c-3]."])
    g = build_graph()
    ctx = EHRContext(store=store, model=model, settings=AgentSettings(prefetch_k=0))
    seen: dict[str, list] = {"messages": [], "updates": [], "custom": []}
    for mode, chunk in g.stream({"patient_id": "pa", "question": "HbA1c?", "as_of": AS_OF}, context=ctx,
                                stream_mode=["messages", "updates", "custom"]):
        seen[mode].append(chunk)
    chunks = [(m, meta) for m, meta in seen["messages"] if isinstance(m, AIMessageChunk)]
    assert chunks and all(meta["langgraph_node"] == "agent" for _, meta in chunks)
    by_turn: dict[str, AIMessageChunk] = {}
    for m, _ in chunks:
        by_turn[m.id] = by_turn[m.id] + m if m.id in by_turn else m
    first, last = list(by_turn.values())
    assert [c["name"] for c in first.tool_calls] == ["observations"] and first.tool_calls[0]["args"] == {"text": "a1c"}
    assert last.content == "HbA1c 6.8 % [Observation/a1c-3]."
    tools = [m for m, meta in seen["messages"] if isinstance(m, ToolMessage)]
    assert len(tools) == 1 and tools[0].name == "observations" and "[Observation/a1c-3]" in tools[0].content
    assert tools[0].tool_call_id == first.tool_calls[0]["id"]
    ids = [m.id for m, _ in seen["messages"] if not isinstance(m, AIMessageChunk)]
    assert len(ids) == len(set(ids)) and not set(ids) & set(by_turn)  # each message once, no AI turn twice
    assert [n for u in seen["updates"] for n in u] == ["manifest", "agent", "tools", "agent", "check", "finish"]
    assert "HbA1c 6.8 %" in "".join(c["text"] for c in seen["custom"] if c["type"] == "token")


def test_make_graph_honours_its_config(store, monkeypatch):  # noqa: F811
    """Scripted models. config["configurable"] sets the store, the model, settings and the patient scope,
    over (or without) the EHR_AGENT_* variables; the environment's model is not used when the config names one."""
    from ehr_agent.agent.graph import GraphFactory

    monkeypatch.delenv("EHR_AGENT_STORE", raising=False)
    monkeypatch.setenv("EHR_AGENT_MODEL", "scripted:" + json.dumps(["from the environment"]))
    factory = GraphFactory()
    script = [call("observations", text="a1c"), "HbA1c 6.8 % [Observation/a1c-3]."]
    conf = {"store": str(store.directory), "model": "scripted:" + json.dumps(script), "patient_id": "pa",
            "as_of": AS_OF, "prefetch_k": 0, "max_steps": 4, "thread_id": "ignored"}
    g = factory.make_graph({"configurable": conf})
    out = g.invoke({"question": "HbA1c?"})["result"]
    assert out["verified"] and out["citations"] == ["Observation/a1c-3"] and out["steps"] == 2
    ctx = g.nodes_impl.default
    assert ctx.agent_settings.max_steps == 4 and ctx.patient_id == "pa"
    # A second graph for the same store spec shares the opened store; the scripted model starts afresh.
    g2 = factory.make_graph({"configurable": conf})
    assert g2.nodes_impl.default.store is ctx.store and g2.nodes_impl.default.model is not ctx.model
    assert g2.invoke({"question": "HbA1c?"})["result"]["verified"]
    with pytest.raises(RuntimeError, match="EHR_AGENT_STORE"):
        factory.make_graph({"configurable": {"model": "scripted:[]"}})
    factory.close()
