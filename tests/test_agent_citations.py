"""The code-side citation check: references must be retrieved, the patient's, and back the stated values."""

from __future__ import annotations

from ehr_agent.agent.citations import UNSUPPORTED_MARK, canon_number, check_answer, cited_refs, extract_values, split_sentences

EV = {
    "Observation/a1c-1": "2019-03-04 Observation laboratory: Hemoglobin A1c (LOINC|4548-4) = 7.24 % [Observation/a1c-1]",
    "Observation/a1c-3": "2021-09-15 Observation laboratory: Hemoglobin A1c (LOINC|4548-4) = 6.8 % [Observation/a1c-3]",
    "Condition/dm": "2015-02-01 Condition: Diabetes mellitus type 2 (SNOMED|44054006); clinical status active [Condition/dm]",
    "DocumentReference/n1#2": "2021-09-15 Note: glucose 1,250 mg noted [DocumentReference/n1#2]",
}


def test_values_and_dates_are_normalised():
    dates, nums = extract_values("7.20% on March 4, 2019, then 1,200 mg on 15 Sep 2021 and 2020-01-05T10:00:00Z")
    assert dates == {"2019-03-04", "2021-09-15", "2020-01-05"}
    assert nums == {"7.2", "1200"}
    assert canon_number("007.500") == "7.5"
    # Numbers glued to words or codes are not claims.
    assert extract_values("HbA1c and COVID-19 (LOINC 4548-4)")[1] == set()


def test_supported_answer_passes_with_rounding_and_date_formats():
    r = check_answer("Her HbA1c was 7.2% on March 4, 2019 [Observation/a1c-1]. It was 6.8 % in September 2021 "
                     "[Observation/a1c-3]. She has had type 2 diabetes since 2015 [Condition/dm].", EV)
    assert r.verified, r.problems()
    assert r.citations == ["Observation/a1c-1", "Observation/a1c-3", "Condition/dm"]


def test_wrong_value_or_date_is_unsupported_and_marked():
    answer = "Her HbA1c was 7.9% on 2019-03-04 [Observation/a1c-1]. Diabetes since 2015 [Condition/dm]."
    r = check_answer(answer, EV)
    assert not r.verified and len(r.unsupported) == 1 and "7.9" in r.unsupported[0]
    assert r.marked_answer.count(UNSUPPORTED_MARK) == 1
    assert r.marked_answer.index(UNSUPPORTED_MARK) < r.marked_answer.index("Diabetes")
    r = check_answer("HbA1c 6.8 % on 2021-09-16 [Observation/a1c-3].", EV)
    assert not r.verified and "2021-09-16" in r.problems()[0]


def test_rounding_goes_only_one_way():
    assert check_answer("A1c 7.24 % [Observation/a1c-1].", EV).verified
    assert check_answer("A1c 7 % [Observation/a1c-1].", EV).verified
    assert not check_answer("A1c 6.80001 % [Observation/a1c-3].", EV).verified


def test_reference_never_returned_is_rejected():
    r = check_answer("Her HbA1c was 6.8 % [Observation/not-read].", EV)
    assert not r.verified and "not returned by any tool" in r.problems()[0]


def test_reference_of_another_patient_is_rejected_by_belongs():
    r = check_answer("HbA1c 6.8 % [Observation/a1c-3].", EV, belongs=lambda ref: ref != "Observation/a1c-3")
    assert not r.verified and "not part of this patient's record" in r.problems()[0]


def test_uncited_values_fail_unless_computed_asked_or_as_of():
    assert not check_answer("She is 64 years old.", EV).verified
    assert check_answer("She is 64 years old.", EV, computed=["64"]).verified
    assert check_answer("Nothing since 2020-01-01.", EV, question="anything since 2020-01-01?").verified
    assert check_answer("As of 2025-01-01 nothing new.", EV, as_of="2025-01-01").verified
    assert check_answer("Not in the record.", EV).verified


def test_citation_forms_and_sentence_splitting():
    assert cited_refs("a [Observation/a1c-1, Condition/dm] b [Observation/a1c-1; DocumentReference/n1#2] "
                      "[not a ref] [1]") == ["Observation/a1c-1", "Condition/dm", "DocumentReference/n1#2"]
    parts = split_sentences("First value 7.2. [Observation/a1c-1] Second one.\n- item 6.8 [Observation/a1c-3]")
    assert parts == ["First value 7.2. [Observation/a1c-1]", "Second one.", "- item 6.8 [Observation/a1c-3]"]
    # A whole note is backed by any of its chunks; a list marker is not a value.
    r = check_answer("1. Glucose was 1250 mg [DocumentReference/n1].", EV)
    assert r.verified, r.problems()


def test_counting_cited_items_is_supported():
    assert check_answer("Two HbA1c results: 7.2 % and 6.8 % [Observation/a1c-1, Observation/a1c-3].", EV).verified
    assert check_answer("2 HbA1c results [Observation/a1c-1][Observation/a1c-3].", EV).verified
    assert not check_answer("5 HbA1c results [Observation/a1c-1][Observation/a1c-3].", EV).verified


def test_brackets_that_are_not_resource_references_and_abbreviations():
    ev = {"Observation/g1": "2020-03-25 Observation laboratory: Glucose [Mass/volume] in Serum (LOINC|2345-7) = "
                            "68.97 mg/dL [Observation/g1]",
          "MedicationRequest/m1": "2020-03-15 MedicationRequest: vancomycin 1000 MG Injection; prescriber Dr. "
                                  "Wilton999 Pollich983 [MedicationRequest/m1]"}
    r = check_answer("Glucose [Mass/volume] was 68.97 mg/dL on 2020-03-25 [Observation/g1]. Vancomycin 1000 MG "
                     "was prescribed on 2020-03-15 by Dr. Pollich983 [MedicationRequest/m1].", ev)
    assert r.verified, r.problems()
    assert r.citations == ["Observation/g1", "MedicationRequest/m1"]


def test_an_answer_citing_nothing_must_be_a_negative_or_computed():
    assert not check_answer("Copy the value and date, and end each sentence with the row's [reference].", EV).verified
    assert not check_answer("Her diabetes is well controlled.", EV).verified
    for negative in ("Not in the record.", "The record does not contain an HbA1c.", "There is no allergy recorded.",
                     "No such result was found."):
        assert check_answer(negative, EV).verified, negative
    # With citations elsewhere in the answer, a value-free comment is allowed.
    assert check_answer("HbA1c 6.8 % [Observation/a1c-3]. That is lower than before.", EV).verified


def test_failing_sentences_get_matching_rows_suggested():
    r = check_answer("The most recent hemoglobin A1c was 6.8%.", EV)
    assert not r.verified and r.claims[0].suggested == ["Observation/a1c-3"]
    assert "[Observation/a1c-3]" in r.problems()[0]
    r = check_answer("It was 9.9 % [Observation/a1c-3].", EV)
    assert r.claims[0].suggested == []


def test_attach_citations_only_where_one_row_holds_every_value():
    from ehr_agent.agent.citations import attach_citations

    answer = "The most recent HbA1c was 6.8% on 2021-09-15. Her diabetes is controlled."
    fixed, changed = attach_citations(answer, check_answer(answer, EV))
    assert fixed == "The most recent HbA1c was 6.8% on 2021-09-15 [Observation/a1c-3]. Her diabetes is controlled."
    assert changed == ["The most recent HbA1c was 6.8% on 2021-09-15 [Observation/a1c-3]."]
    assert check_answer(fixed, EV).verified
    ev2 = dict(EV, **{"Observation/x": "2021-09-15 Observation: Something = 6.8 mmol/L [Observation/x]"})
    ambiguous = "It was 6.8 on 2021-09-15."
    assert attach_citations(ambiguous, check_answer(ambiguous, ev2)) == (ambiguous, [])
    wrong = "It was 9.1 % on 2021-09-15."
    assert attach_citations(wrong, check_answer(wrong, EV)) == (wrong, [])


def test_question_date_must_match_the_cited_row_in_a_point_in_time_claim():
    """Seen in a real run: the value of 2020-03-15 given as the reading of the day asked about."""
    ev = {
        "Observation/a": "2019-09-11 Observation laboratory: Leukocytes (LOINC|6690-2) = 9.6507 10*3/uL [Observation/a]",
        "Observation/b": "2020-03-15 Observation laboratory: Leukocytes (LOINC|6690-2) = 3.0526 10*3/uL [Observation/b]",
    }
    q = "What was the patient's Leukocytes [#/volume] in Blood by Automated count on 2019-09-11?"
    wrong = check_answer("The patient's Leukocytes [#/volume] in Blood by Automated count on 2019-09-11 was "
                         "3.0526 10*3/uL. [Observation/b]", ev, question=q)  # verbatim from the run
    assert not wrong.verified and "2019-09-11" in " ".join(wrong.claims[0].reasons)
    right = check_answer("The Leukocytes count on 2019-09-11 was 9.6507 10*3/uL [Observation/a].", ev, question=q)
    assert right.verified
    ranged = check_answer("Since 2019-09-11 the count fell to 3.0526 10*3/uL [Observation/b].", ev,
                          question="How has it changed since 2019-09-11?")
    assert ranged.verified


NOTE = ("2013-01-23 Note History and physical note, Social History: Patient comes from a high socioeconomic "
        "background. Patient has completed some college courses. [DocumentReference/n1#3]")


def test_a_value_free_sentence_is_cited_with_the_row_that_holds_every_word():
    """auto_cite for sentences without numbers or dates: a row must hold every word, not most."""
    from ehr_agent.agent.citations import attach_citations

    ev = {"DocumentReference/n1#3": NOTE, "Patient/p": "1990-01-01 Patient Mr. X; gender male"}
    right = "The patient completed some college courses."
    patched, changed = attach_citations(right, check_answer(right, ev))
    assert changed and "[DocumentReference/n1#3]" in patched
    assert check_answer(patched, ev).verified
    # One word the row lacks ("middle") and nothing is cited; a negated sentence neither.
    for wrong in ("The patient comes from a middle socioeconomic background.",
                  "The patient has not completed some college courses."):
        patched, changed = attach_citations(wrong, check_answer(wrong, ev))
        assert not changed and patched == wrong


def test_an_uncited_sentence_that_only_restates_the_questions_day_is_not_verified():
    q = "What symptoms did the patient report on 2020-02-14, according to the note?"
    r = check_answer("The patient reported symptoms on 2020-02-14, according to the note.", {}, question=q)
    assert not r.verified and "cites nothing" in r.unsupported_reasons[0]
    # A value code computed (the calculator's) still stands without a citation.
    assert check_answer("The BMI is 24.2.", {}, computed=["24.2"]).verified
