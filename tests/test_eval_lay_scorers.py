"""Scorers of the lay questions' gold types: yes/no, age, direction, dates and counts, each with answers that
must pass and answers that must fail."""

from __future__ import annotations

import pytest

from ehr_agent.agent.eval.scorers import direction_of, score_answer, yes_no_of
from ehr_agent.agent.eval.tasks import AgeGold, DateGold, DirectionGold, IntegerGold, QuantityGold, Task, YesNoGold


def task(gold, **meta) -> Task:
    return Task(id="t", patient="p", category="c", question="q?", answer=gold, meta=meta)


@pytest.mark.parametrize("answer, expected", [
    ("Yes, she was diagnosed with asthma in 2016.", True),
    ("She has asthma, first recorded on 2016-02-12 [Condition/abc].", True),
    ("Asthma is on her problem list since 2016.", True),
    ("No record of asthma.", False),
    ("No.", False),
    ("There is no history of asthma in the record.", False),
    ("She has never been diagnosed with asthma.", False),
    ("Asthma does not appear in his conditions.", False),
    ("I could not find any asthma diagnosis.", False),
    ("Nope - nothing about asthma.", False),
    ("I cannot determine whether she had asthma.", None),
    ("It is unclear from the record.", None),
    ("I can\u2019t tell whether she had asthma.", None),
    ("", None),
])
def test_yes_no_reading(answer, expected):
    assert yes_no_of(answer) is expected


def test_yes_no_scores_true_and_false():
    no = task(YesNoGold(value=False))
    assert score_answer(no, "No record of asthma.").correct
    assert not score_answer(no, "Yes, since 2016.").correct
    assert not score_answer(no, "I cannot tell whether he had asthma.").correct  # a hedge is not a "no"
    yes = task(YesNoGold(value=True))
    assert score_answer(yes, "Yes - strep throat in July 2017 [Condition/x].").correct
    assert not score_answer(yes, "There is no record of strep throat.").correct


@pytest.mark.parametrize("answer, correct", [
    ("She was 44 years old.", True),
    ("44", True),
    ("Diagnosed on 2009-03-27, at age 44 (born 1965).", True),
    ("At forty-four?", False),  # number words above twenty are not read: a miss, not a false pass
    ("She was 43.", False),
    ("45 years old", False),
    ("In 2009.", False),  # a year is not an age
    ("Not in the record.", False),
])
def test_age_exact(answer, correct):
    assert score_answer(task(AgeGold(value=44)), answer).correct is correct


def test_age_tolerance_near_a_birthday():
    g = task(AgeGold(value=18, tolerance=1))
    assert score_answer(g, "17 years old").correct
    assert score_answer(g, "19").correct
    assert not score_answer(g, "16").correct


@pytest.mark.parametrize("answer, stated", [
    ("It went up.", {"up"}),
    ("Up, from 59 mg/dL in 2016 to 109 mg/dL in 2019.", {"up"}),
    ("His LDL rose from 59 to 109.", {"up"}),
    ("It increased.", {"up"}),
    ("Higher in 2019 than in 2016.", {"up"}),
    ("It's up by about 80%.", {"up"}),
    ("Her weight fell from 77 kg to 70.5 kg.", {"down"}),
    ("Down.", {"down"}),
    ("It decreased between 2019 and 2021.", {"down"}),
    ("It went down; it did not go up.", {"down"}),
    ("It didn\u2019t go up; it went down.", {"down"}),  # a typographic apostrophe
    ("Lower in 2021.", {"down"}),
    ("It dropped.", {"down"}),
    ("Up or down? I can't tell.", set()),  # the question echoed back states nothing
    ("It did not increase.", set()),  # a negated change is not the other direction
    ("It stayed the same.", set()),
    ("She has lower back pain; follow up in the fall of 2016.", set()),
    ("It went up in 2017 and then down in 2019.", {"up", "down"}),
])
def test_direction_reading(answer, stated):
    assert direction_of(answer) == stated


def test_direction_scores_true_and_false():
    up = task(DirectionGold(value="up"))
    assert score_answer(up, "It went up from 5.9% to 6.4% [Observation/a] [Observation/b].").correct
    assert not score_answer(up, "It went down.").correct
    assert not score_answer(up, "It went up, then down.").correct  # both directions: a hedge
    assert not score_answer(up, "Not in the record.").correct
    down = task(DirectionGold(value="down"))
    assert score_answer(down, "decreased").correct
    assert not score_answer(down, "rose").correct


def test_direction_written_backwards_uses_the_question_years():
    up = task(DirectionGold(value="up"), start_year="2012", end_year="2016")
    assert score_answer(up, "It was lower in 2012 than in 2016.").correct
    assert score_answer(up, "Higher in 2016 than in 2012.").correct
    assert not score_answer(up, "It was higher in 2012 than 2016.").correct
    assert direction_of("lower in 2012 than in 2016") == {"down"}  # without the years: read as written


def test_blood_pressure_written_as_a_pair():
    systolic = task(QuantityGold(value=122, unit="mm[Hg]", tolerance=0.5))
    diastolic = task(QuantityGold(value=80, unit="mm[Hg]", tolerance=0.5))
    for t in (systolic, diastolic):
        assert score_answer(t, "Her blood pressure that day was 122/80 mmHg.").correct
    assert not score_answer(systolic, "118/80 mmHg").correct


def test_dates_in_lay_answers():
    g = task(DateGold(value="2005-11-16"))
    for ok in ("He started simvastatin on November 16, 2005.", "11/16/2005", "16 Nov 2005", "2005-11-16T09:00:00Z"):
        assert score_answer(g, ok).correct, ok
    for bad in ("In November 2005.", "2005-11-17", "He started in 2005."):
        assert not score_answer(g, bad).correct, bad


def test_counts_in_lay_answers():
    g = task(IntegerGold(value=11))
    assert score_answer(g, "She had 11 outpatient visits in 2019.").correct
    assert score_answer(g, "eleven").correct
    assert not score_answer(g, "In 2019 she had 12 visits.").correct
    assert not score_answer(g, "None in 2019.").correct
    flu = task(IntegerGold(value=89), name="flu shot")
    assert score_answer(flu, "89 patients received a flu shot in 2019.").correct
    assert not score_answer(flu, "90").correct


def test_gold_display_passes_its_own_scorer():
    for g in (AgeGold(value=7), AgeGold(value=30, tolerance=1), DirectionGold(value="up"), DirectionGold(value="down")):
        assert score_answer(task(g), g.display()).correct, g
