"""align_call (agent/align.py): the model's tool arguments held to what the question says. Pure functions."""

from ehr_agent.agent.align import align_call

KNOWN = {"meningitis vaccine", "flu shot", "chronic sinusitis"}


def resolves(phrase: str) -> bool:
    return phrase.lower() in KNOWN


def test_latest_asked_about_a_stated_day_becomes_on_date():
    q = "What did he weigh at the Dec 30 2016 visit?"
    assert align_call("lookup", {"op": "latest", "what": "weight"}, q) == {"op": "on_date", "what": "weight",
                                                                          "date": "2016-12-30"}
    q = "What was her A1c at the October 2019 checkup?"
    assert align_call("lookup", {"op": "on_date", "what": "A1c"}, q)["date"] == "2019-10"


def test_lookup_calls_the_question_does_not_settle_pass_unchanged():
    for q, args in [
        ("What is his latest weight?", {"op": "latest", "what": "weight"}),
        ("What was her last A1c before May 2019?", {"op": "latest", "what": "A1c", "end": "2019-05"}),
        ("Between March 2015 and May 2019 did it rise?", {"op": "change", "what": "A1c"}),
        ("Was she on metformin on the 5th of May 2019?", {"op": "active_on", "what": "metformin", "date": "2019-05-05"}),
        ("How many visits in 2016?", {"op": "count", "what": "visits", "start": "2016", "end": "2016"}),
    ]:
        assert align_call("lookup", dict(args), q) == args, q


def test_cohort_count_drops_an_unasked_period_counts_patients_and_keeps_the_phrase():
    got = align_call("cohort_count", {"what": "vaccine", "start": "2013", "end": "2013", "count": "records"},
                     "2013: number of patients given a meningitis vaccine?", resolves)
    assert got == {"what": "meningitis vaccine", "start": "2013", "end": "2013", "count": "patients"}
    got = align_call("cohort_count", {"what": "any", "start": "2020", "end": "2020"},
                     "Number of patients with any history of chronic sinusitis?", resolves)
    assert got == {"what": "chronic sinusitis", "count": "patients"}


def test_other_tools_and_empty_questions_pass_unchanged():
    assert align_call("observations", {"text": "a1c"}, "What was her A1c on Dec 30 2016?") == {"text": "a1c"}
    assert align_call("lookup", {"op": "latest", "what": "weight"}, "") == {"op": "latest", "what": "weight"}


def test_graph_runs_the_aligned_lookup(fixture_store):
    """Scripted model: it asks for the latest A1c although the question names a day; the graph runs on_date."""
    import json

    from ehr_agent.agent.models.scripted import ScriptedModel
    from ehr_agent.agent.runner import answer
    from tests.conftest import ALICE

    call = "```tool_call\n" + json.dumps({"tool": "lookup", "arguments": {"op": "latest", "what": "A1c"}}) + "\n```"
    ref = "Observation/5266f49a-356f-56ca-b040-7baa3615fedc"
    model = ScriptedModel([call, f"Her HbA1c was 6.8 % on 2019-09-30 [{ref}]."])
    r = answer(fixture_store, ALICE, "What was her A1c at the Sept 30, 2019 visit?", model=model)
    assert r.tool_calls[0]["arguments"] == {"op": "on_date", "what": "A1c", "date": "2019-09-30"}
    assert r.verified and r.citations == [ref], r
