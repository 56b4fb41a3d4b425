"""Deterministic scorers: each gold type, units, dates in several formats, sets, refs, citations."""

import pytest

from ehr_agent.agent.eval import scorers
from ehr_agent.agent.eval.tasks import ChoiceGold, DateGold, IntegerGold, QuantityGold, SetGold, Task, TextGold, YesNoGold
from ehr_agent.agent.eval.units import convert
from ehr_agent.agent.schema import AnswerResult


def task(answer, refs=(), mode="all"):
    meta = {"refs_mode": mode} if mode != "all" else {}
    return Task(id="t", patient="p", category="c", question="q?", answer=answer, gold_refs=list(refs), meta=meta)


def correct(answer, text):
    return scorers.score_answer(task(answer), text).correct


W = QuantityGold(value=70.3, unit="kg", tolerance=0.05)


@pytest.mark.parametrize("text,ok", [
    ("The most recent body weight was 70.3 kg on 2019-05-02.", True),
    ("Weight: 70.3", True),
    ("about 155 lb", True),                      # 155 lb = 70.31 kg
    ("70.3 g", False),                            # wrong unit
    ("72.0 kg", False),
    ("On 2019-05-02 [Observation/abc-70-3] it was 70.3 kg", True),
    ("I could not find a weight.", False),
    ("1 2 3 4 70.3 kg", True),                    # a value with the gold's unit is the answer (unitless numbers before it are not)
    ("1 2 3 4 70.3", False),                      # shotgun answers without a unit do not count
    ("65.0 kg, or 70.3 kg", False),               # the first value in kg is the answer
])
def test_quantity_units_and_tolerance(text, ok):
    assert correct(W, text) is ok


def test_unit_table_conversions():
    assert convert(1, "g/dL", "mg/dL") == pytest.approx(1000)
    assert convert(100, "degF", "Cel") == pytest.approx(37.7778, abs=1e-3)
    assert convert(1, "kg", "mg/dL") is None
    assert correct(QuantityGold(value=1.2, unit="g/dL", tolerance=0.05), "1200 mg/dL")
    assert not correct(QuantityGold(value=1.2, unit="g/dL", tolerance=0.05), "1.2 mmol/L")
    assert correct(QuantityGold(value=37.0, unit="Cel", tolerance=0.05), "98.6 °F")


@pytest.mark.parametrize("text", ["2015-03-02", "on 03/02/2015", "March 2, 2015", "2 March 2015", "Mar 2nd 2015",
                                  "2015-03-02T10:00:00+01:00", "the 2nd of March, 2015"])
def test_date_formats(text):
    assert correct(DateGold(value="2015-03-02"), f"It was {text}.")


def test_date_wrong_and_too_many():
    assert not correct(DateGold(value="2015-03-02"), "It was 2015-03-03.")
    many = "2014-01-01, 2013-01-01, 2012-01-01, 2011-01-01 and 2015-03-02"
    assert not correct(DateGold(value="2015-03-02"), many)


def test_integer_ignores_years_and_dates_reads_words():
    g = IntegerGold(value=4)
    assert correct(g, "In 2012, the patient had 4 ambulatory visits.")
    assert correct(g, "As of 2015-02-13 there were four doses.")
    assert not correct(g, "There were 5 visits in 2012 (not 4).")
    assert correct(IntegerGold(value=0), "None were recorded.")


@pytest.mark.parametrize("text,val", [("Yes, the patient is allergic.", True), ("**No**.", False),
                                      ("The patient does not have diabetes.", False),
                                      ("The record shows a diagnosis of diabetes on 2011-06-19.", True),
                                      ("There isn't any record of it.", False)])
def test_yes_no(text, val):
    assert correct(YesNoGold(value=val), text)
    assert not correct(YesNoGold(value=not val), text)


def test_choice_needs_only_the_gold_option():
    g = ChoiceGold(value="female", options={"male": ["male", "man"], "female": ["female", "woman"]})
    assert correct(g, "The patient is female.")
    assert correct(g, "She is a woman.")
    assert not correct(g, "The patient is male.")
    assert not correct(g, "Male or female, unclear.")


def test_set_precision_recall_over_record_vocabulary():
    g = SetGold(items=["24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet", "Simvastatin 20 MG Oral Tablet"],
                distractors=["Ferrous sulfate 325 MG Oral Tablet", "24 HR Metformin hydrochloride 850 MG Extended Release Oral Tablet"])
    s = scorers.score_answer(task(g), "- metformin 500 mg ER\n- simvastatin 20 mg")
    assert s.correct and s.recall == 1.0 and s.precision == 1.0
    s = scorers.score_answer(task(g), "Metformin 500 mg, simvastatin 20 mg and ferrous sulfate 325 mg.")
    assert not s.correct and s.recall == 1.0 and s.precision == pytest.approx(2 / 3)
    s = scorers.score_answer(task(g), "Only simvastatin 20 mg.")
    assert s.recall == 0.5 and s.precision == 1.0 and 0 < s.score < 1
    empty = SetGold(items=[], distractors=["Ferrous sulfate 325 MG Oral Tablet"])
    assert correct(empty, "The patient has no active medications.")
    assert not correct(empty, "Ferrous sulfate 325 mg.")


def test_text_containment_and_token_recall():
    g = TextGold(value="Cigna Health", accept=["Cigna"])
    assert correct(g, "The patient is insured by Cigna.")
    assert not correct(g, "The patient has Medicaid.")


def test_retrieval_modes():
    r = scorers.score_refs(["A/1", "A/2"], ["A/1", "B/9"])
    assert r.recall == 0.5 and r.precision == 0.5
    r = scorers.score_refs(["D/1", "D/2", "D/3"], ["D/2"], mode="any")
    assert r.recall == 1.0 and r.precision == 1.0
    assert scorers.score_refs([], ["A/1"]) is None


def test_score_result_combines_answer_retrieval_and_citations():
    t = task(IntegerGold(value=3), refs=["Encounter/1", "Encounter/2", "Encounter/3"])
    res = AnswerResult(answer="3 visits [Encounter/1]", citations=["Encounter/1", "Encounter/9"],
                       evidence_refs=["Encounter/1", "Encounter/2"], verified=False, unsupported=["x"])
    s = scorers.score_result(t, res)
    assert s.answer.correct
    assert s.retrieval.recall == pytest.approx(2 / 3)
    assert s.citation_refs.precision == 0.5
    assert s.citations.grounded == 0.5 and s.citations.n_unsupported == 1 and not s.citations.verified
    failed = scorers.score_result(t, AnswerResult(answer="", error="model down"))
    assert not failed.answer.correct


def test_judge_panel_majority_and_guards():
    from ehr_agent.agent.eval.judge import JudgePanel
    from ehr_agent.agent.models.scripted import ScriptedModel

    t = task(TextGold(value="Cigna Health"))
    a = ScriptedModel(["CORRECT", "CORRECT"], name="judge-a")
    b = ScriptedModel(["INCORRECT", "correct."], name="judge-b")
    v = JudgePanel([a, b], votes_per_model=2).judge(t, "Cigna")
    assert v.votes == 4 and v.votes_correct == 3 and v.correct
    tie = JudgePanel([ScriptedModel(["CORRECT", "INCORRECT"], name="a"), ScriptedModel(["INCORRECT", "CORRECT"], name="b")],
                     votes_per_model=2).judge(t, "x")
    assert not tie.correct  # a tie is not a pass
    broken = JudgePanel([ScriptedModel(["maybe", "CORRECT"], name="a"), ScriptedModel([], name="b")],
                        votes_per_model=2).judge(t, "x")
    assert broken.failures == 3 and broken.votes == 1 and broken.correct
    with pytest.raises(ValueError, match="at least 2 different models"):
        JudgePanel([a])
    with pytest.raises(ValueError, match="at least 2 different models"):
        JudgePanel([ScriptedModel([], name="same"), ScriptedModel([], name="same")], votes_per_model=2)
    with pytest.raises(ValueError, match="at least 3 votes"):
        JudgePanel([a, b], votes_per_model=1)


@pytest.mark.parametrize("items,distractors,answer,ok", [
    (["Hep A, adult"], ["Hep B, adult"], "Hep A, adult on 2014-03-01.", True),
    (["Hep A, adult"], ["Hep B, adult"], "Hep A, adult and Hep B, adult.", False),
    (["Jolivette 28 Day Pack"], ["Camila 28 Day Pack"], "Jolivette 28 Day Pack", True),
    (["Acetaminophen 300 MG / Hydrocodone Bitartrate 5 MG Oral Tablet"], ["Acetaminophen 325 MG Oral Tablet"],
     "Acetaminophen 300 MG / Hydrocodone Bitartrate 5 MG Oral Tablet", True),
    (["Simvastatin 10 MG Oral Tablet"], ["Simvastatin 20 MG Oral Tablet"], "simvastatin 20 mg", False),
    (["Allergy to grass pollen"], ["Allergy to tree pollen"], "Allergy to grass pollen.", True),
    # A real answer of the embedded model: the allergens named with "allergic to", not "Allergy to".
    (["Allergy to mould", "Allergy to wheat"], ["Allergy to bee venom"], "The patient is allergic to mould and wheat.",
     True),
    (["Allergy to mould"], ["Allergy to wheat"], "The patient is allergic to mould and wheat.", False),
    (["Allergy to mould", "Allergy to wheat"], [], "The patient is allergic to mould.", False),
])
def test_set_near_duplicate_names(items, distractors, answer, ok):
    assert correct(SetGold(items=items, distractors=distractors), answer) is ok


def test_choice_prefers_the_longer_phrase():
    g = ChoiceGold(value="less than high school",
                   options={"less than high school": ["did not finish high school"], "high school": ["high school diploma"]})
    assert correct(g, "The notes say the patient did not finish high school.")
    assert correct(g, "less than high school")
    assert not correct(ChoiceGold(value="high school", options=g.options), "less than high school")


def test_quantity_with_unit_missing_from_the_table():
    assert correct(QuantityGold(value=2.6574, unit="pg/mL", tolerance=0.005), "2.66 pg/mL")
    assert correct(QuantityGold(value=3.1, unit="{cells}/hpf", tolerance=0.05), "3.1 {cells}/hpf")


def test_quantity_tolerance_is_the_tasks_own_not_relative():
    """A neighbouring lab value 0.4% away is a different observation, not a rounding of the gold one."""
    from ehr_agent.agent.eval.scorers import score_quantity
    from ehr_agent.agent.eval.tasks import QuantityGold

    gold = QuantityGold(value=5.452, unit="10*6/uL", tolerance=0.005)
    assert not score_quantity(gold, "The earliest value is 5.4726 10*6/uL.").correct
    assert score_quantity(gold, "The earliest value is 5.45 10*6/uL.").correct
    glucose = QuantityGold(value=95.0, unit="mg/dL", tolerance=0.05)
    assert score_quantity(glucose, "Glucose was 0.0951 g/dL.").correct  # 95.1 mg/dL: converted, a small slack applies
    assert not score_quantity(glucose, "Glucose was 96 mg/dL.").correct


@pytest.mark.parametrize("gold,answer,ok", [
    # verbatim answers of the embedded model's run (docs/results/agent-embedded.jsonl) to "trending up or down?"
    ("decreased", "The patient's Pain severity - 0-10 verbal numeric rating [Score] - Reported was trending down "
                  "between 2012-09-07 and 2016-09-30.", True),
    ("increased", "The patient's Low Density Lipoprotein Cholesterol was trending up between 2015-06-02 and "
                  "2021-07-06. The trend was rising, with a slope of 3.1438 per year.", True),
    ("increased", "The patient's Body Weight was trending down between 2018-04-13 and 2021-04-30.", False),
    ("increased", "The Pain severity did not go up or down from 2016-01-18 to 2020-04-20.", False),
    ("increased", "Not in the record.", False),
])
def test_trend_answers_in_the_questions_own_words(gold, answer, ok):
    from ehr_agent.agent.eval.gen_common import TREND_OPTIONS

    assert correct(ChoiceGold(value=gold, options=TREND_OPTIONS), answer) is ok


def test_quantity_ignores_digits_in_the_labs_own_name():
    """A real answer repeated the lab name "Pain severity - 0-10 ...": its 0 and 10 are not readings."""
    name = "Pain severity - 0-10 verbal numeric rating [Score] - Reported"
    t = Task(id="q", patient="p", category="observation_latest", question=f"What was the most recent {name}?",
             answer=QuantityGold(value=0, unit="{score}", tolerance=0.5), meta={"name": name})
    assert not scorers.score_answer(t, f"The patient's most recent {name} value was 2.").correct
    assert scorers.score_answer(t, f"The most recent {name.lower()} was 0 {{score}} on 2013-12-04.").correct
    ten = t.model_copy(update={"answer": QuantityGold(value=10, unit="{score}", tolerance=0.5)})
    assert not scorers.score_answer(ten, f"{name}: 4").correct



def test_integer_ignores_digits_in_the_vaccines_own_name():
    """A real answer: "...any Pneumococcal conjugate PCV 13 immunizations..." was read as the count 13."""
    name = "Pneumococcal conjugate PCV 13"
    t = Task(id="i", patient="p", category="immunizations", question=f"How many {name} immunizations?",
             answer=IntegerGold(value=13), meta={"name": name, "op": "count"})
    assert not scorers.score_answer(t, f"The record does not contain any {name} immunizations.").correct
    assert scorers.score_answer(t, f"13 {name} doses were given.").correct


def test_integer_skips_numbers_the_question_states():
    t = Task(id="t", patient=None, category="cohort_inpatient", question="2013: number of men with at least one inpatient stay?",
             answer=IntegerGold(value=2))
    assert scorers.score_answer(t, "The number of men with at least one inpatient stay in 2013 is 2.").correct
    assert not scorers.score_answer(t, "The number of men with at least one inpatient stay in 2013 is 3.").correct
    # an answer that is only the echoed number is still read as that number
    t1 = t.model_copy(update={"answer": IntegerGold(value=1)})
    assert scorers.score_answer(t1, "One.").correct


def test_quantity_is_the_first_value_in_the_golds_dimension():
    g = QuantityGold(value=67.522, unit="mL/min", tolerance=0.01)
    text = ("On 2017-11: Glomerular filtration rate/1.73 sq M.predicted was 67.522 mL/min on 2017-11-13 "
            "[Observation/3bcdf709-8929-0083-f462-147e2520a5e4].")
    assert correct(g, text)
    assert not correct(g, "Glomerular filtration rate/1.73 sq M.predicted was 59.1 mL/min, earlier 67.522 mL/min.")
