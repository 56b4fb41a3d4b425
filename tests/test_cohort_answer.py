"""choose_what and compose_answer (agent/cohort_answer.py): pure functions, no store or model."""

from ehr_agent.agent.cohort_answer import choose_what, compose_answer
from ehr_agent.tools.vocabulary import noun_phrases

KNOWN = {"meningitis vaccine", "prediabetes", "chronic sinusitis", "osteoporosis", "flu shot", "htn",
         "hepatitis a vaccine", "inpatient stays", "diabetes", "vaccine"}


def resolves(phrase: str) -> bool:
    return phrase.lower() in KNOWN


def test_noun_phrases_split_on_grammar_punctuation_and_numbers():
    assert noun_phrases("2013: number of patients given a meningitis vaccine?") == [["meningitis", "vaccine"]]
    assert noun_phrases("How many people in the data have had thin bones (osteoporosis)?") == [
        ["thin", "bones"], ["osteoporosis"]]
    # a letter after a word belongs to the name; an article before one does not
    assert noun_phrases("How many patients received a hepatitis A vaccine in 2018?") == [["hepatitis", "a", "vaccine"]]
    # "last", "latest", "first" say which reading, not what is read
    assert noun_phrases("What was her last HbA1c, and how has it moved since 2015?")[0] == ["hba1c"]
    assert noun_phrases("List the activities in the patient's Respiratory therapy plan.")[-1:] == [
        ["respiratory", "therapy", "plan"]]


def test_model_words_grow_to_the_question_phrase_that_holds_them():
    assert choose_what("vaccine", "2013: number of patients given a meningitis vaccine?", resolves) == "meningitis vaccine"
    assert choose_what("diabetes", "How many people in the data have had prediabetes?", resolves) == "prediabetes"
    assert choose_what("vaccine", "How many patients received a hepatitis A vaccine in 2018?", resolves) == "hepatitis a vaccine"


def test_model_words_that_name_nothing_give_way_to_a_question_phrase_that_does():
    assert choose_what("any", "Number of patients with any history of chronic sinusitis?", resolves) == "chronic sinusitis"
    assert choose_what("thin bones", "How many people have had thin bones (osteoporosis)?", resolves) == "osteoporosis"


def test_model_words_that_resolve_and_are_the_whole_phrase_stay():
    assert choose_what("HTN", "how many patients have HTN on record, ever?", resolves) == "HTN"
    assert choose_what("flu shot", "How many patients received a flu shot in 2019?", resolves) == "flu shot"
    # the model's own words win over a question phrase that does not hold them
    assert choose_what("inpatient stays", "How many women spent time as inpatients in 2012?", resolves) == "inpatient stays"
    # nothing resolves: the model's words go to the tool unchanged (it then says nothing matched)
    assert choose_what("smallpox jab", "How many patients had a smallpox jab?", resolves) == "smallpox jab"


def test_model_words_the_question_does_not_use_give_way_to_a_question_phrase_that_names_something():
    """The embedded model's own slip: "inpatient stays" (the prompt's example) for "went to the ER"."""
    known = KNOWN | {"er"}
    assert choose_what("inpatient stays", "How many patients went to the ER in 2015?", known.__contains__) == "er"
    # the model's words that share a word with the question stay
    assert choose_what("inpatient stays", "How many inpatient visits were there in 2015?", known.__contains__) == \
        "inpatient stays"


def test_compose_takes_the_last_answer_line_whose_count_ran():
    t1 = ("cohort_count 'vaccine' -> matched Td\nAnswer: 12 patients in 2013 "
          "[patients:Immunization?date=2013&vaccine-code=cvx|113].")
    t2 = ("cohort_count 'meningitis vaccine' -> matched meningococcal MCV4P\nAnswer: 4 patients in 2013 "
          "[patients:Immunization?date=2013&vaccine-code=cvx|114].")
    ran = ["patients:Immunization?date=2013&vaccine-code=cvx|113", "patients:Immunization?date=2013&vaccine-code=cvx|114"]
    assert compose_answer([t1, t2], ran) == ("4 patients in 2013 [patients:Immunization?date=2013&vaccine-code=cvx|114].")
    # a line whose count did not run in this question is never used
    assert compose_answer([t1, t2], ran[:1]) == ("12 patients in 2013 [patients:Immunization?date=2013&vaccine-code=cvx|113].")
    assert compose_answer(["no answer here"], ran) is None


def test_one_year_asked_is_counted_for_that_year_only():
    from ehr_agent.agent.align import align_call

    q = "Count the hospital stays of women that started in 2019."
    out = align_call("cohort_count", {"what": "inpatient stays", "start": "2019", "sex": "female"}, q)
    assert out["start"] == out["end"] == "2019"
    # An open range the question writes stays open.
    q = "How many hospital stays have there been since 2019?"
    assert "end" not in align_call("cohort_count", {"what": "inpatient stays", "start": "2019"}, q)


def test_an_open_bound_the_question_writes_is_the_window():
    """The cohort probe's "birth date earlier than 1950" counted with start = end = 1950 (one patient)."""
    from ehr_agent.agent.align import align_call

    q = "Number of patients with a birth date earlier than 1950?"
    out = align_call("cohort_count", {"what": "born", "start": "1950", "end": "1950"}, q)
    assert "start" not in out and out["end"] == "1949"
    out = align_call("cohort_count", {"what": "flu shot", "start": "2018", "end": "2018"}, "How many flu shots after 2018?")
    assert out["start"] == "2019" and "end" not in out
    out = align_call("cohort_count", {"what": "flu shot", "start": "2018", "end": "2018"}, "How many flu shots since 2018?")
    assert out["start"] == "2018" and "end" not in out


def test_people_asked_for_are_counted_as_patients_unless_records_are():
    """"a count of everyone with an amlodipine order" and "how big is the group that..." count patients (the
    model asked for records); "how many visits ... for male patients" still counts visits."""
    from ehr_agent.agent.align import align_call

    for q in ("Give me a count of everyone with an amlodipine order anywhere in their chart.",
              "How big is the group that has been prescribed albuterol?"):
        assert align_call("cohort_count", {"what": "amlodipine", "count": "records"}, q)["count"] == "patients", q
    for q in ("Ambulatory visit volume for male patients in 2019 - how many visits?",
              "Total Td booster doses administered in 2010?", "How many doses of HPV vaccine did patients get in 2013?",
              "Count the hospital stays of women that started in 2019."):
        assert align_call("cohort_count", {"what": "visits", "count": "records"}, q)["count"] == "records", q


def test_a_longer_part_of_the_question_phrase_that_names_something_is_taken():
    assert choose_what("allergy", "Peanut allergy prevalence: how many patients have one documented?",
                       lambda p: p.lower() in {"allergy", "peanut allergy"}) == "peanut allergy"
