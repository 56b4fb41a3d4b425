"""The cohort graph (agent/cohort.py), the `ask-cohort` CLI and the evaluation wiring, driven by a scripted
model (agent.models.scripted.ScriptedModel) on the project fixtures: what the model says is fixed, so
these tests check the tool loop, the citation check and the repair round, not a model's skill."""

from __future__ import annotations

import json

import pytest

from ehr_agent.agent.cohort import answer_cohort, build_cohort_graph
from ehr_agent.agent.cohort_citations import check_cohort_answer
from ehr_agent.agent.configuration import AgentSettings
from ehr_agent.agent.eval.cohort_script import tool_call
from ehr_agent.agent.models.scripted import ScriptedModel
from tests.conftest import FIXTURES

QUESTION = "How many inpatient stays did male patients have in 2010?"
KEY = "query:Encounter?class=IMP&date=2010&patient.gender=male"
COUNT_CALL = tool_call("count_resources", {"resource_type": "Encounter",
                                           "params": {"patient.gender": "male", "class": "IMP", "date": "2010"}})


def _raw(rtype: str) -> list[dict]:
    docs = [json.loads(f.read_text()) for f in sorted(FIXTURES.glob("*.json"))]
    return [e["resource"] for d in docs if isinstance(d, dict) for e in d.get("entry", [])
            if e["resource"]["resourceType"] == rtype]


def _raw_male_stays_2010() -> int:
    docs = [json.loads(f.read_text()) for f in sorted(FIXTURES.glob("*.json"))]
    res = [e["resource"] for d in docs if isinstance(d, dict) for e in d.get("entry", [])]
    male = {r["id"] for r in res if r["resourceType"] == "Patient" and r.get("gender") == "male"}
    return sum(1 for r in res if r["resourceType"] == "Encounter" and r["class"]["code"] == "IMP"
               and r["period"]["start"][:4] == "2010" and r["subject"]["reference"].rsplit("/", 1)[-1]
               .removeprefix("urn:uuid:") in male)


def test_tool_loop_reaches_the_right_count(fixture_store):
    want = _raw_male_stays_2010()
    assert want == 2
    model = ScriptedModel([COUNT_CALL, f"Male patients had {want} inpatient stays in 2010 [{KEY}]."])
    r = answer_cohort(fixture_store, QUESTION, model=model)
    assert r.verified and r.error is None and r.citations == [KEY], r
    assert r.steps == 2 and [c["name"] for c in r.tool_calls] == ["count_resources"]
    tool_msg = model.messages_seen[1][-1]
    assert tool_msg.role == "tool" and tool_msg.content.startswith(f"{want} Encounter resources match")
    first_prompt = model.messages_seen[0]
    assert "3 patients" in first_prompt[-1].content and QUESTION in first_prompt[-1].content
    assert {s.name for s in model.calls[0][1]} == {"cohort_count", "count_resources", "count_patients", "list_resources",
                                                   "find_codes"}


def test_wrong_number_is_repaired_or_flagged(fixture_store):
    model = ScriptedModel([COUNT_CALL, f"Male patients had 5 inpatient stays in 2010 [{KEY}].",
                           f"They had 2 inpatient stays [{KEY}]."])
    r = answer_cohort(fixture_store, QUESTION, model=model)
    assert r.verified and r.answer == f"They had 2 inpatient stays [{KEY}]."
    repair = model.messages_seen[2][-1].content
    assert "value 5 does not equal the count of the cited query (2)" in repair and f"[{KEY}] = 2 resources" in repair

    model = ScriptedModel([COUNT_CALL, f"Male patients had 5 inpatient stays in 2010 [{KEY}]."] * 2)
    r = answer_cohort(fixture_store, QUESTION, model=model, settings=AgentSettings(max_repairs=0))
    assert not r.verified and r.answer.endswith("[unsupported]") and r.unsupported


def test_a_query_not_run_in_this_session_is_rejected(fixture_store):
    # The cited query is valid and its count right, but no tool ran it in this question.
    other = "query:Encounter?class=IMP&date=2010"
    first = ScriptedModel([COUNT_CALL, f"There were 2 stays [{KEY}]."])
    assert answer_cohort(fixture_store, QUESTION, model=first).verified
    model = ScriptedModel([f"There were 2 stays [{KEY}].", f"There were 2 stays [{other}]."])
    r = answer_cohort(fixture_store, QUESTION, model=model)
    assert not r.verified and r.unsupported
    assert "was not run by a tool in this session" in model.messages_seen[1][-1].content
    uncited = ScriptedModel(["There were 2 stays.", "There were 2 stays."])
    assert not answer_cohort(fixture_store, QUESTION, model=uncited).verified


def test_bad_params_come_back_and_the_model_recovers(fixture_store):
    bad = tool_call("count_resources", {"resource_type": "Encounter", "params": {"gender": "male", "class": "IMP"}})
    model = ScriptedModel([bad, COUNT_CALL, f"Male patients had 2 inpatient stays in 2010 [{KEY}]."])
    r = answer_cohort(fixture_store, QUESTION, model=model)
    assert r.verified and [c["error"] for c in r.tool_calls] == [True, False]
    err = model.messages_seen[1][-1].content
    assert err.startswith("error: search rejected") and "gender" in err


def test_graph_streams_and_handles_no_question_and_model_failure(fixture_store):
    g = build_cohort_graph(fixture_store, ScriptedModel([COUNT_CALL, f"2 stays [{KEY}]."]))
    seen = [c["type"] for mode, c in g.stream({"question": QUESTION}, stream_mode=["custom"])]
    assert seen.count("tool") == 1 and "check" in seen
    empty = answer_cohort(fixture_store, "  ", model=ScriptedModel([]))
    assert empty.error == "a question is required"
    down = answer_cohort(fixture_store, QUESTION, model=ScriptedModel([]))
    assert down.error and down.error.startswith("model error") and not down.verified


def test_cohort_graph_takes_its_context_per_run_and_shares_the_patient_nodes(fixture_store, monkeypatch):
    """Scripted model. The cohort graph is the patient graph's nodes with the cohort mode (no subclass, no
    placeholder patient); its store and model come in the run's context; the messages stream carries the
    ToolMessage; the cohort session is rebuilt when the store's data version changes."""
    from langchain_core.messages import ToolMessage

    from ehr_agent.agent.cohort import CohortMode
    from ehr_agent.agent.context import EHRContext
    from ehr_agent.agent.graph import build_graph
    from ehr_agent.agent.nodes import AgentNodes

    g = build_cohort_graph()
    assert type(g.nodes_impl) is type(build_graph().nodes_impl) is AgentNodes
    assert isinstance(g.nodes_impl.mode, CohortMode)
    version = ["1"]
    monkeypatch.setattr(fixture_store, "data_version", lambda: version[0])
    ctx = EHRContext(store=fixture_store, model=ScriptedModel([COUNT_CALL, f"2 stays [{KEY}]."]))
    tools = [m for m, _ in g.stream({"question": QUESTION}, context=ctx, stream_mode="messages")
             if isinstance(m, ToolMessage)]
    assert len(tools) == 1 and tools[0].content.startswith("2 Encounter resources match")
    kit = CohortMode().toolkit(ctx)
    assert CohortMode().toolkit(ctx) is kit
    version[0] = "2"
    assert CohortMode().toolkit(ctx) is not kit
    bare = g.invoke({"question": QUESTION})["result"]
    assert bare["error"] and "no store" in bare["error"]


def test_cli_ask_cohort_json(fixture_store, capsys):
    import ehr_agent.agent.cli as cli

    assert "ehr_agent.agent.cohort_cli" in cli.COMMAND_MODULES
    script = json.dumps([COUNT_CALL, f"Male patients had 2 inpatient stays in 2010 [{KEY}]."])
    rc = cli.main(["ask-cohort", "--store", str(fixture_store.directory), "--model", f"scripted:{script}", "--json",
                   QUESTION])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["verified"] and out["citations"] == [KEY]
    from ehr_agent.agent.ask_cli import JSON_KEYS

    assert list(out) == list(JSON_KEYS)
    assert cli.main(["ask-cohort", "--store", str(fixture_store.directory), "--model", "scripted:[]", " "]) == 2


def test_agent_solver_sends_cohort_tasks_to_the_cohort_graph(fixture_store):
    from ehr_agent.agent.eval.solvers import AgentSolver
    from ehr_agent.agent.eval.tasks import IntegerGold, Task

    task = Task(id="c1", patient=None, category="cohort", question=QUESTION, answer=IntegerGold(value=2))
    solver = AgentSolver(lambda t: ScriptedModel([COUNT_CALL, f"2 stays [{KEY}]."]))
    r = solver.solve(task, fixture_store)
    assert r.verified and r.citations == [KEY]


@pytest.mark.parametrize("op, meta, want", [
    ("gender", {"gender": "male"}, 1),
    ("born_before", {"year": "1962"}, 2),
])
def test_scripted_cohort_model_counts_patients(fixture_store, op, meta, want):
    from ehr_agent.agent.eval.cohort_script import scripted_cohort_model
    from ehr_agent.agent.eval.tasks import IntegerGold, Task

    task = Task(id="c", patient=None, category="cohort", question="How many?", answer=IntegerGold(value=want),
                meta={"op": op, **meta})
    r = answer_cohort(fixture_store, task.question, model=scripted_cohort_model(task))
    assert r.verified and f"The count is {want} [" in r.answer


# ---- the answer-shaped count (cohort_count) -----------------------------------------------------


def test_cohort_count_resolves_lay_words_and_runs_a_citable_query(fixture_store):
    """Deterministic: the tool alone; the count equals the raw bundles' and re-running its cited query agrees."""
    from ehr_agent.tools.cohort_tools import CohortSession

    s = CohortSession(fixture_store)
    out = s.call("cohort_count", {"what": "hospital stays", "count": "records", "sex": "male",
                                  "start": "2010", "end": "2010"})
    want = _raw_male_stays_2010()
    assert f"Answer: {want} Encounter records (male) in 2010 [{KEY}]" in out.text
    assert s.recount(KEY) == want
    out = s.call("cohort_count", {"what": "flu shot", "start": "2014", "end": "2014"})
    assert out.text.splitlines()[-1].startswith("Answer: 1 patients in 2014 [patients:Immunization?")
    out = s.call("cohort_count", {"what": "unicorn horn"})
    assert "no code in the store matches" in out.text and not out.evidence


def test_cohort_count_then_cited_answer_verified(fixture_store):
    """Scripted model: one cohort_count call, then the answer copied from its Answer line."""
    call = tool_call("cohort_count", {"what": "inpatient stays", "count": "records", "sex": "male",
                                      "start": "2010", "end": "2010"})
    model = ScriptedModel([call, f"Male patients had 2 inpatient stays in 2010 [{KEY}]."])
    r = answer_cohort(fixture_store, QUESTION, model=model)
    assert r.verified and r.citations == [KEY]


def test_failed_cohort_answer_reads_as_could_not_answer(fixture_store):
    """Scripted model that cites a query it never ran, twice: the answer says it could not answer and
    never carries the repair prompt's text."""
    bad = "There were 7 stays [query:Encounter?class=IMP&date=1999]."
    model = ScriptedModel([bad, bad])
    r = answer_cohort(fixture_store, QUESTION, model=model)
    assert not r.verified and r.answer.startswith("Could not answer with a verified count")
    assert "was not run" not in r.answer and "Rewrite the answer" not in r.answer


def test_a_count_limited_to_a_period_the_question_never_named_is_flagged():
    """The check alone: a count of 2010 only, cited for an 'ever' question, is unsupported; the same count for
    a question that names 2010 passes."""
    key = "query:Encounter?class=IMP&date=2010"
    kw = dict(ran=[key], recount=lambda k: 2, evidence={})
    flagged = check_cohort_answer(f"There were 2 hospital stays [{key}].",
                                  question="How many hospital stays are in the data?", **kw)
    assert not flagged.verified and "counts only 2010" in " ".join(flagged.unsupported_reasons or flagged.problems())
    assert check_cohort_answer(f"There were 2 hospital stays in 2010 [{key}].",
                               question="How many hospital stays were there in 2010?", **kw).verified


def test_a_count_from_a_year_on_for_a_question_about_that_year_is_flagged():
    """"started in 2019" counted with date=ge2019 (every year from 2019 on) is another question's count."""
    q = "Count the hospital stays of women that started in 2019."
    open_key = "query:Encounter?class=IMP&date=ge2019&patient.gender=female"
    year_key = "query:Encounter?class=IMP&date=2019&patient.gender=female"
    flagged = check_cohort_answer(f"25 hospital stays [{open_key}].", question=q, ran=[open_key],
                                  recount=lambda k: 25, evidence={})
    assert not flagged.verified and "asks about 2019" in " ".join(flagged.unsupported_reasons or flagged.problems())
    assert check_cohort_answer(f"3 hospital stays [{year_key}].", question=q, ran=[year_key],
                               recount=lambda k: 3, evidence={}).verified


def test_graph_drops_the_unasked_period_and_answers_from_the_count_that_ran(fixture_store):
    """Scripted model: asked 'ever', it counts 2010 only and cites that count (seen with the embedded model).
    The period is dropped before the tool runs, so the 2010 count never ran; the model's sentence fails, and
    the count tool's own answer for all years is checked in its place."""
    call = tool_call("cohort_count", {"what": "hospital stays", "count": "records", "start": "2010", "end": "2010"})
    key = "query:Encounter?class=IMP&date=2010"
    model = ScriptedModel([call, f"There were 2 hospital stays [{key}].", f"There were 2 hospital stays [{key}]."])
    r = answer_cohort(fixture_store, "How many hospital stays are in the data?", model=model)
    everything = sum(1 for e in _raw("Encounter") if e["class"]["code"] == "IMP")
    assert r.verified and r.citations == ["query:Encounter?class=IMP"], r
    assert r.answer.startswith(f"{everything} Encounter records"), r.answer
    assert "date=2010" not in r.answer


def test_cohort_count_falls_back_from_a_wrong_kind(fixture_store):
    from ehr_agent.tools.cohort_tools import CohortSession

    out = CohortSession(fixture_store).call("cohort_count", {"what": "flu shot", "kind": "medication",
                                                             "start": "2014", "end": "2014"})
    assert out.text.splitlines()[-1].startswith("Answer: 1 patients in 2014 [patients:Immunization?")


def test_count_arguments_follow_the_question():
    from ehr_agent.agent.align import align_count_args

    args = {"what": "prediabetes", "count": "records", "start": "2010", "end": "2010"}
    assert align_count_args(args, "How many people in the data have had prediabetes?") == {
        "what": "prediabetes", "count": "patients"}
    args = {"what": "inpatient stays", "count": "records", "start": "2017", "end": "2017"}
    assert align_count_args(args, "2017: how many inpatient admissions were there?") == args
