"""align_call (agent/align.py): the model's tool arguments held to what the question says. Pure functions."""

import pytest

from ehr_agent.agent.align import align_call
from ehr_agent.agent.configuration import AgentSettings

KNOWN = {"meningitis vaccine", "flu shot", "chronic sinusitis"}


def resolves(phrase: str) -> bool:
    return phrase.lower() in KNOWN


def test_latest_asked_about_a_stated_day_becomes_on_date():
    q = "What did he weigh at the Dec 30 2016 visit?"
    assert align_call("lookup", {"op": "latest", "what": "weight"}, q) == {"op": "on_date", "what": "weight",
                                                                          "date": "2016-12-30"}
    q = "What was her A1c at the October 2019 checkup?"
    assert align_call("lookup", {"op": "on_date", "what": "A1c"}, q)["date"] == "2019-10"
    # a day the question does not write (the lay run's "2019-10-01") would miss the reading of 2019-10-18
    assert align_call("lookup", {"op": "on_date", "what": "A1c", "date": "2019-10-01"}, q)["date"] == "2019-10"


def test_a_comparison_between_two_years_becomes_change():
    for q, args, span in [
        ("total cholesterol 2014 vs 2017: higher or lower?",
         {"op": "latest", "what": "total cholesterol", "kind": "lab", "date": "2014"}, ("2014", "2017")),
        ("Comparing 2001 with 2003, did her LDL cholesterol rise or fall?", {"op": "latest", "what": "LDL"},
         ("2001", "2003")),
        ("Did his weight go up or down from 2012 to 2015?", {"op": "change", "what": "weight"}, ("2012", "2015")),
        ("Between March 2015 and May 2019 did it rise?", {"op": "change", "what": "A1c"}, ("2015", "2019")),
    ]:
        got = align_call("lookup", args, q)
        assert got["op"] == "change" and (got["start"], got["end"]) == span and "date" not in got, (q, got)
    # a change the model already bounded keeps its bounds
    args = {"op": "change", "what": "A1c", "start": "2015-03", "end": "2019-05"}
    assert align_call("lookup", dict(args), "Between March 2015 and May 2019 did it rise?") == args


def test_lookup_calls_the_question_does_not_settle_pass_unchanged():
    for q, args in [
        ("What is his latest weight?", {"op": "latest", "what": "weight"}),
        ("What was her last A1c before May 2019?", {"op": "latest", "what": "A1c", "end": "2019-05"}),
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


def test_lookup_takes_the_name_the_question_writes_out_and_drops_an_unasked_window():
    q = "What was the patient's Body mass index (BMI) [Percentile] Per age and gender on 2015-09-20?"
    name = "Body mass index (BMI) [Percentile] Per age and gender"
    got = align_call("lookup", {"op": "on_date", "what": "BMI", "date": "2015-09-20"}, q, written_name=name)
    assert got["what"] == name
    got = align_call("lookup", {"op": "count", "what": "Throat culture", "start": "2026-12-02"},
                     "How many times has the patient had Throat culture?")
    assert got == {"op": "count", "what": "Throat culture"}
    got = align_call("lookup", {"op": "count", "what": "encounters", "start": "2017", "end": "2017"},
                     "How many inpatient encounters did the patient have in 2017?",
                     resolves=lambda w: w in {"inpatient encounters", "encounters"})
    assert got == {"op": "count", "what": "inpatient encounters", "start": "2017", "end": "2017"}


def test_a_list_of_what_is_current_becomes_active_on():
    got = align_call("lookup", {"op": "list", "what": "careplan", "kind": "careplan"},
                     "What care plans is the patient on right now?")
    assert got == {"op": "active_on", "what": "careplan", "kind": "careplan"}
    got = align_call("lookup", {"op": "list", "what": "careplan", "date": "2021-02-26"},
                     "What care plans is the patient on right now?")
    assert got == {"op": "active_on", "what": "careplan"}
    args = {"op": "list", "what": "careplan", "kind": "careplan"}
    assert align_call("lookup", dict(args), "Which care plans has she ever had?") == args


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


#: the model always writes the answer turn (``answer_direct`` off), for the tests of what follows that turn
MODEL_WRITES = AgentSettings(answer_direct=False)


def test_a_give_up_over_a_count_that_ran_is_answered_from_lookups_own_sentence(fixture_store):
    """Scripted model: lookup counts her flu shots, then the model says 'Not in the record.' (seen with the
    embedded model). The claim check rejects the give-up; lookup's own answer sentence is checked in its
    place and returned, verified, without a repair turn."""
    import json

    from ehr_agent.agent.models.scripted import ScriptedModel
    from ehr_agent.agent.runner import answer
    from ehr_agent.tools.patient_tools import PatientSession
    from tests.conftest import ALICE

    args = {"op": "count", "what": "flu shot"}
    want = PatientSession(fixture_store, ALICE).call("lookup", args).text
    n = int(want.split("Answer: ", 1)[1].split(" ", 1)[0])
    assert n >= 1
    call = "```tool_call\n" + json.dumps({"tool": "lookup", "arguments": args}) + "\n```"
    model = ScriptedModel([call, "Not in the record."])
    # The model writes its own answer (no direct answer from the first round), so the fallback is what runs.
    r = answer(fixture_store, ALICE, "How many flu shots has she had?", model=model, settings=MODEL_WRITES)
    # (the graph holds 'what' to the question's phrase: "flu shots")
    assert r.verified and r.answer.startswith((f"{n} (flu shot)", f"{n} (flu shots)")), r
    assert r.steps == 2 and r.citations


def test_a_wrong_reading_without_a_lookup_answer_still_goes_to_repair(fixture_store):
    """Scripted model: no lookup ran (a plain observations call), the stated value is wrong: nothing to answer
    from, so the check sends it back to the model (which here repeats itself and ends unverified)."""
    import json

    from ehr_agent.agent.models.scripted import ScriptedModel
    from ehr_agent.agent.runner import answer
    from tests.conftest import ALICE

    call = "```tool_call\n" + json.dumps({"tool": "observations", "arguments": {"text": "hemoglobin a1c", "mode": "all"}}) + "\n```"
    wrong = "Her last HbA1c was 7.4 % on 2015-06-20 [Observation/8f90a2c8-46b4-5b1f-8c7d-4193bf9ea288]."
    r = answer(fixture_store, ALICE, "What was her last HbA1c?", model=ScriptedModel([call, wrong, wrong, wrong, wrong]))
    assert not r.verified and "unsupported" in r.answer


def test_a_model_repeating_its_call_is_stopped_and_answered_from_the_tool(fixture_store):
    """Scripted model: it makes the same lookup call again and again (seen with the embedded model: six times
    until the step limit). The graph stops at the first repeat and answers from lookup's own sentence."""
    import json

    from ehr_agent.agent.models.scripted import ScriptedModel
    from ehr_agent.agent.runner import answer
    from tests.conftest import ALICE

    call = "```tool_call\n" + json.dumps({"tool": "lookup", "arguments": {"op": "count", "what": "flu shot"}}) + "\n```"
    r = answer(fixture_store, ALICE, "How many flu shots has she had?", model=ScriptedModel([call] * 6),
               settings=MODEL_WRITES)
    assert r.verified and "(flu shot" in r.answer and r.error is None, r
    assert r.steps == 2 and len(r.tool_calls) == 2


def test_a_first_round_of_lookups_that_answer_is_the_answer_without_a_second_turn(fixture_store):
    """Scripted model: two lookups (latest and change), then a wrong sentence that is never asked for:
    lookup's computed sentences pass the checks, so they are the answer after one model turn."""
    import json

    from ehr_agent.agent.models.scripted import ScriptedModel
    from ehr_agent.agent.runner import answer
    from tests.conftest import ALICE

    calls = "\n".join("```tool_call\n" + json.dumps({"tool": "lookup", "arguments": a}) + "\n```"
                      for a in ({"op": "latest", "what": "HbA1c"}, {"op": "change", "what": "HbA1c", "start": "2015"}))
    wrong = "Her last HbA1c was 7.4 % on 2015-06-20 [Observation/8f90a2c8-46b4-5b1f-8c7d-4193bf9ea288]."
    q = "What was her last HbA1c, and how has it moved since 2015?"
    r = answer(fixture_store, ALICE, q, model=ScriptedModel([calls, wrong]))
    assert r.verified and r.steps == 1 and "6.5 % on 2023-10-03" in r.answer and "went down" in r.answer, r
    assert "Observation/d893c882-91af-5d97-9d17-396be4423115" in r.citations
    # With answer_direct off the model's (wrong) sentence is checked, flagged, and lookup's sentences replace it.
    r = answer(fixture_store, ALICE, q, model=ScriptedModel([calls, wrong, wrong]), settings=MODEL_WRITES)
    assert r.steps == 2


def test_a_first_round_with_another_tool_goes_back_to_the_model(fixture_store):
    """Scripted model: a lookup and a search_record in the first round; the search's rows state no answer,
    so the model writes it (two turns)."""
    import json

    from ehr_agent.agent.models.scripted import ScriptedModel
    from ehr_agent.agent.runner import answer
    from tests.conftest import ALICE

    calls = "\n".join("```tool_call\n" + json.dumps({"tool": t, "arguments": a}) + "\n```"
                      for t, a in (("lookup", {"op": "latest", "what": "HbA1c"}), ("search_record", {"query": "A1c"})))
    right = "Her last HbA1c was 6.5 % on 2023-10-03 [Observation/d893c882-91af-5d97-9d17-396be4423115]."
    r = answer(fixture_store, ALICE, "What was her last HbA1c?", model=ScriptedModel([calls, right]))
    assert r.verified and r.steps == 2 and r.answer == right, r


def test_a_day_the_question_does_not_name_is_dropped_from_a_count():
    """The embedded model counted "How many times has the patient had X?" on today's date (0)."""
    out = align_call("lookup", {"op": "count", "what": "Face mask", "date": "2026-12-02"},
                     "How many times has the patient had Face mask (physical object)?")
    assert out == {"op": "count", "what": "Face mask"}
    # A day the question names stays.
    out = align_call("lookup", {"op": "count", "what": "flu shot", "date": "2019-10-01"},
                     "How many flu shots did she get on 2019-10-01?")
    assert out.get("date") == "2019-10-01"


def test_a_question_about_the_patient_alone_looks_up_the_patient():
    """"How old is the patient?" with what="diagnosis" (the embedded model) gave the age at a first diagnosis."""
    out = align_call("lookup", {"op": "age_at", "what": "diagnosis", "date": "2021-05-18"}, "How old is the patient?")
    assert out["what"] == "age"
    # A question that also names a record keeps the model's words.
    out = align_call("lookup", {"op": "age_at", "what": "asthma"}, "How old was she when diagnosed with asthma?")
    assert out["what"] == "asthma"


def test_the_age_on_a_day_is_computed_for_that_day(fixture_store):
    from ehr_agent.tools.facts import age_between
    from ehr_agent.tools.patient_tools import PatientSession
    from tests.conftest import ALICE

    s = PatientSession(fixture_store, ALICE, "2030-01-01")
    born = s.patient()["birthDate"]
    out = s.call("lookup", {"op": "age_at", "what": "age", "date": "2000-06-01"})
    assert f"{age_between(born, '2000-06-01')} years old on 2000-06-01" in out.text, out.text
    out = s.call("lookup", {"op": "latest", "what": "how old"})
    assert f"{age_between(born, '2030-01-01')} years old as of 2030-01-01" in out.text, out.text


@pytest.mark.shared
def test_no_direct_answer_when_the_question_does_not_name_what_the_lookup_found(blaze_store):
    """Scripted model on real blaze rows: lookup 'low' resolves to Low Density Lipoprotein, which "described as
    low, middle or high" does not ask about; that computed sentence must not become the answer, so the model
    writes. Under a question that names LDL the same call is the answer."""
    import json

    from ehr_agent.agent.models.scripted import ScriptedModel
    from ehr_agent.agent.runner import answer
    from ehr_agent.tools.patient_tools import PatientSession

    args = {"op": "latest", "what": "low"}
    pid = next(p["id"] for p in blaze_store.search_all("Patient", {"_count": "200"})
               if "matched Low Density Lipoprotein" in PatientSession(blaze_store, p["id"]).call("lookup", args).text)
    call = "```tool_call\n" + json.dumps({"tool": "lookup", "arguments": args}) + "\n```"
    # (A topic the notes write about, "socioeconomic background", is now read from the notes instead: see
    # tests/test_note_facts.py. Here the question names no such topic.)
    q = "Was the patient's overall risk described as low, middle or high?"
    r = answer(blaze_store, pid, q, model=ScriptedModel([call, "Not in the record."]))
    # (the model's "Not in the record." is then unverified: no record names an "overall risk" to look for)
    assert r.steps >= 2 and "Lipoprotein" not in r.answer, r
    r = answer(blaze_store, pid, "What was the patient's last LDL?", model=ScriptedModel([call, "Not in the record."]))
    assert r.steps == 1 and "Low Density Lipoprotein" in r.answer, r


def test_lookup_of_the_notes_themselves_takes_the_questions_topic():
    q = "What do the patient's notes say about their education?"
    assert align_call("lookup", {"op": "latest", "what": "notes"}, q)["what"] == "education"
    q = "According to the notes, what socioeconomic background does the patient come from?"
    assert align_call("lookup", {"op": "latest", "what": "clinical notes"}, q)["what"] == "socioeconomic background"
    # A `what` that names a thing stays.
    assert align_call("lookup", {"op": "latest", "what": "A1c"}, "What was her last A1c, per the notes?")["what"] == "A1c"


@pytest.mark.shared
def test_a_topic_only_the_notes_hold_is_answered_with_note_rows(blaze_store):
    """Real blaze notes: "socioeconomic background" is coded nowhere; lookup returns the note chunks that say it."""
    from ehr_agent.tools.patient_tools import PatientSession

    for p in blaze_store.search_all("Patient", {"_count": "200"}):
        s = PatientSession(blaze_store, p["id"])
        out = s.call("lookup", {"op": "latest", "what": "socioeconomic background"})
        if out.evidence:
            break
    assert any("#" in k and "socioeconomic background" in v for k, v in out.evidence.items()), out.text


def test_from_one_day_is_that_days_reading_from_to_is_a_range():
    out = align_call("lookup", {"op": "latest", "what": "trigs"}, "Can you tell me his trigs from Apr 9 2016?")
    assert out["op"] == "on_date" and out["date"] == "2016-04-09"
    out = align_call("lookup", {"op": "latest", "what": "BMI"}, "Can you tell me her BMI from 2018-11-15?")
    assert out["op"] == "on_date" and out["date"] == "2018-11-15"
    out = align_call("lookup", {"op": "change", "what": "LDL", "start": "2016", "end": "2019"},
                     "her LDL from 2016 to 2019 - did it go up or come down?")
    assert out["op"] == "change"


def test_since_when_and_put_on_ask_for_the_first_record():
    for q in ("Since when has she been taking hydrochlorothiazide?", "When was he put on simvastatin?"):
        assert align_call("lookup", {"op": "latest", "what": "simvastatin"}, q)["op"] == "first", q
    assert align_call("lookup", {"op": "latest", "what": "simvastatin"},
                      "When was he last put on simvastatin?")["op"] == "latest"


def test_an_age_on_the_day_asked_passes_the_checks_and_a_wrong_age_fails(fixture_store):
    """"How old was she on <day>?": no row holds the day asked, so the date check lets the question's day stand
    as the day of the age; the age is verified against the birth date (a wrong one fails)."""
    from ehr_agent.agent.citations import check_answer
    from ehr_agent.agent.claims import ClaimChecker
    from ehr_agent.tools.patient_tools import PatientSession
    from tests.conftest import ALICE

    s = PatientSession(fixture_store, ALICE, "2030-01-01")
    out = s.call("lookup", {"op": "age_at", "what": "age", "date": "2000-06-01"})
    line = next(ln[8:] for ln in out.text.splitlines() if ln.startswith("Answer: "))
    q = "How old was the patient on 2000-06-01?"

    def check(text):
        return check_answer(text, out.evidence, belongs=s.belongs, computed=out.computed, question=q,
                            as_of="2030-01-01", claims=ClaimChecker(s, q))

    assert check(line).verified, check(line).problems()
    age = out.computed[0]
    wrong = line.replace(f"{age} years old", f"{int(age) + 2} years old")
    assert not check(wrong).verified
    # A day the question does not name is still the cited rows' to prove.
    other = line.replace("on 2000-06-01", "on 2001-06-01")
    assert not check(other).verified


def test_asked_how_old_when_something_happened_is_an_age_at():
    """The lay run's misses: the latest reading (or the first care plan) for "how old was she when ...";
    an age asked about the patient alone stays the demographic lookup."""
    q = "how old was she when her blood pressure problem was diagnosed"
    assert align_call("lookup", {"op": "latest", "what": "blood pressure problem"}, q) == {
        "op": "age_at", "what": "blood pressure problem"}
    q = "She's prediabetic, right? How old was she when that was first picked up?"
    got = align_call("lookup", {"op": "first", "what": "diabetes"}, q, resolves=lambda p: p in {"prediabetic", "diabetes"})
    assert got == {"op": "age_at", "what": "prediabetic"}
    assert align_call("lookup", {"op": "latest", "what": "age"}, "How old is he?")["op"] == "latest"
    q = "How old was she at her last A1c?"
    assert align_call("lookup", {"op": "latest", "what": "A1c"}, q)["op"] == "latest"


def test_a_change_the_question_does_not_ask_for_is_its_first_or_latest():
    """"On what date was Body mass index 30+ - obesity first recorded?" asked as a change of BMI (the 104-sample's
    one miss): the written name and the first record."""
    q = "On what date was Body mass index 30+ - obesity first recorded for this patient?"
    name = "Body mass index 30+ - obesity (finding)"
    got = align_call("lookup", {"op": "change", "what": "BMI", "start": "1972-01-13", "end": "2026-12-02"}, q,
                     written_name=name)
    assert got == {"op": "first", "what": name}
    q = "Did her BMI go up between 2015 and 2019?"
    assert align_call("lookup", {"op": "change", "what": "BMI"}, q)["op"] == "change"
