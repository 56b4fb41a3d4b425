"""tools.note_facts and the lookup paths that read it: what the clinical notes state, on real blaze notes.

The blaze notes are Synthea history-and-physical notes written by nobody here: a "Chief Complaint" list, a
"Social History" paragraph (education, socioeconomic background, insurance), a plan. The graph tests use
the scripted model for deterministic tool calls."""

from __future__ import annotations

import json

import pytest

from ehr_agent.agent.align import align_call
from ehr_agent.agent.citations import check_answer
from ehr_agent.agent.claims import ClaimChecker
from ehr_agent.tools import note_facts
from ehr_agent.tools.patient_tools import PatientSession
from ehr_agent.tools.retrieval.projections import Row

AS_OF = "2026-12-02"


def _row(ref: str, section: str, body: str, day: str = "2020-02-14") -> Row:
    return Row(ref=ref, type="DocumentReference", date=day, display=section,
               text=f"{day} Note History and physical note, {section}: {body} [{ref}]")


CHUNKS = [
    _row("DocumentReference/n1#1", "Chief Complaint", "- Cognitive Difficulties - Sleep Disturbances"),
    _row("DocumentReference/n1#3", "Social History", "Patient is married. Patient comes from a middle socioeconomic "
                                                     "background. Patient has completed some college courses."),
    _row("DocumentReference/n1#7", "Assessment and Plan / Plan", "The patient was placed on a careplan: - lifestyle "
                                                                 "education regarding hypertension"),
    _row("DocumentReference/n0#3", "Social History", "Patient has a high school education.", day="2010-05-01"),
]


def test_statements_are_sentences_and_lists():
    found = note_facts.statements(CHUNKS)
    texts = [s.text for s in found]
    assert "Cognitive Difficulties; Sleep Disturbances" in texts
    assert "Patient comes from a middle socioeconomic background" in texts
    listed = next(s for s in found if s.ref.endswith("#1"))
    assert listed.listed and listed.section == "Chief Complaint" and listed.row == CHUNKS[0].text
    assert sum(s.ref == "DocumentReference/n1#3" for s in found) == 3  # one statement per sentence


def test_about_reads_the_topic_where_the_notes_write_it():
    found = note_facts.statements(CHUNKS)
    # "school" -> the notes' "college courses" / "high school education", newest first; the plan's "lifestyle
    # education" shares a word but is not the level of education.
    got = [s.text for s in note_facts.about(found, "school")]
    assert got == ["Patient has completed some college courses", "Patient has a high school education"]
    # A complaint topic reads the Chief Complaint list of the day asked, and nothing on another day.
    assert [s.text for s in note_facts.about(found, "symptoms", day="2020-02-14")] == [
        "Cognitive Difficulties; Sleep Disturbances"]
    assert note_facts.about(found, "symptoms", day="2010-05-01") == []
    # "social class" is the socioeconomic sentence, not every sentence of the Social History.
    assert [s.text for s in note_facts.about(found, "social class")] == [
        "Patient comes from a middle socioeconomic background"]
    # A thing's name must be mostly there: "sleep" alone is not "sleep apnea".
    assert note_facts.about(found, "sleep apnea") == []
    assert note_facts.about(found, "sleep disturbances")[0].ref == "DocumentReference/n1#1"


def test_answer_quotes_the_note_and_lists_what_changed():
    found = note_facts.statements(CHUNKS)
    text, cited = note_facts.answer(note_facts.about(found, "education"), "latest")
    assert text.startswith("The note of 2020-02-14 says: Patient has completed some college courses "
                           "[DocumentReference/n1#3].")
    assert "Earlier, the note of 2010-05-01 said: Patient has a high school education" in text
    assert cited["DocumentReference/n1#3"] == CHUNKS[1].text
    first, _ = note_facts.answer(note_facts.about(found, "education"), "first")
    assert first.startswith("The note of 2010-05-01 says") and "college" not in first
    text, _ = note_facts.answer(note_facts.about(found, "complaints", day="2020-02-14"), "on_date")
    assert "says, under Chief Complaint: Cognitive Difficulties; Sleep Disturbances" in text


def test_align_holds_what_to_the_notes_topic():
    q = "Is the patient's socioeconomic background described as low, middle or high?"
    assert align_call("lookup", {"op": "latest", "what": "low"}, q)["what"] == "socioeconomic background"
    out = align_call("lookup", {"op": "exists", "what": "admission"}, "What brought him in on 2014-02-14?")
    assert "brought" in out["what"] and (out["op"], out["date"]) == ("on_date", "2014-02-14")
    # A thing the question names stays, and a question about the notes reads them first.
    out = align_call("lookup", {"op": "exists", "what": "tingling in hands and feet"},
                     "Is tingling in hands and feet ever listed among her complaints in the notes?")
    assert out["what"] == "tingling in hands and feet" and out["kind"] == "note"
    out = align_call("lookup", {"op": "latest", "what": "LDL"}, "What was her last LDL, and does she smoke?")
    assert out["what"] == "LDL" and "kind" not in out
    out = align_call("lookup", {"op": "latest", "what": "per"}, "How far did the patient get in school, per the notes?")
    assert out["what"] == "school" and out["kind"] == "note"


def _patient_with(blaze_store, test) -> tuple[str, PatientSession]:
    for p in blaze_store.search_all("Patient", {"_count": "200"}):
        s = PatientSession(blaze_store, p["id"], AS_OF)
        if test(s):
            return p["id"], s
    raise AssertionError("no blaze patient fits")


@pytest.mark.shared
def test_lookup_answers_from_the_notes_and_the_checks_pass_it(blaze_store):
    """Real blaze notes: education is coded nowhere (only a care plan's "lifestyle education" shares a word);
    lookup quotes the social history, and the citation and claim checks pass the quote, and fail it with
    another level."""
    pid, s = _patient_with(blaze_store, lambda s: any("some college" in x.text for x in s.notes_say("education")))
    out = s.call("lookup", {"op": "latest", "what": "education"})
    line = next(ln for ln in out.text.splitlines() if ln.startswith("Answer: "))[8:]
    assert "some college courses" in line and "#" in line, out.text
    q = "How far did the patient get in school, per the notes?"
    ok = check_answer(line, out.evidence, question=q, as_of=AS_OF, claims=ClaimChecker(s, q))
    assert ok.verified, ok.unsupported_reasons
    bad = check_answer(line.replace("some college courses", "college graduate degree"), out.evidence, question=q,
                       as_of=AS_OF, claims=ClaimChecker(s, q))
    assert not bad.verified


@pytest.mark.shared
def test_a_day_without_the_coded_record_reads_that_days_note(blaze_store):
    """"symptoms" names "Encounter for symptom" firmly, but on a day with no such encounter and a note that lists
    complaints, the note's Chief Complaint answers; and "Not in the record." for that day is flagged."""
    def fits(s):
        coded = s.call("lookup", {"op": "latest", "what": "symptoms"}).text
        return "Encounter for symptom" in coded and any(x.listed for x in s.notes_say("symptoms"))

    pid, s = _patient_with(blaze_store, fits)
    coded_days = {v[:10] for v in s.call("lookup", {"op": "all", "what": "symptoms"}).evidence.values()}
    day = next(x.day for x in s.notes_say("symptoms") if x.listed and x.day not in coded_days)
    out = s.call("lookup", {"op": "on_date", "what": "symptoms", "date": day})
    assert "what the clinical notes state" in out.text and "under Chief Complaint" in out.text, out.text
    q = f"What symptoms did the patient report on {day}, according to the note?"
    gone = check_answer("Not in the record.", {}, question=q, as_of=AS_OF, claims=ClaimChecker(s, q))
    assert not gone.verified and f"the note of {day} states" in " ".join(gone.unsupported_reasons) + " ".join(
        gone.problems()), gone


@pytest.mark.shared
def test_a_notes_question_is_answered_in_one_step(blaze_store):
    """Scripted model: one lookup call with the embedded model's own slot ("low" for "low, middle or high");
    align turns it to the topic, lookup quotes the note, and the direct answer is verified in one step."""
    from ehr_agent.agent.models.scripted import ScriptedModel
    from ehr_agent.agent.runner import answer

    pid, s = _patient_with(blaze_store, lambda s: bool(s.notes_say("socioeconomic background")))
    level = s.notes_say("socioeconomic background")[0].text
    call = "```tool_call\n" + json.dumps({"tool": "lookup", "arguments": {"op": "latest", "what": "low"}}) + "\n```"
    q = "Is the patient's socioeconomic background described as low, middle or high?"
    r = answer(blaze_store, pid, q, model=ScriptedModel([call, "Not in the record."]))
    assert r.steps == 1 and r.verified and level in r.answer, r


@pytest.mark.shared
def test_a_yes_no_question_about_a_complaint_asks_the_notes_for_it(blaze_store):
    """Scripted model: "Is X ever listed among her complaints?" asked as a list of complaints becomes "does any
    note say X" (align), so a list of other complaints is no yes: a complaint the notes never state gets a
    verified "No", one a list holds gets a verified "Yes" quoting that list, in one step each."""
    from ehr_agent.agent.models.scripted import ScriptedModel
    from ehr_agent.agent.runner import answer

    pid, s = _patient_with(blaze_store, lambda s: any(x.listed for x in s.notes_say("complaints")))
    call = "```tool_call\n" + json.dumps({"tool": "lookup", "arguments": {"op": "list", "what": "complaints",
                                                                          "kind": "note"}}) + "\n```"
    q = "Is tingling in hands and feet ever listed among the patient's complaints in the notes?"
    assert not s.notes_say("tingling in hands and feet")
    r = answer(blaze_store, pid, q, model=ScriptedModel([call, "Yes."]))
    assert r.steps == 1 and r.verified and r.answer.startswith("No"), r
    listed = next(x for x in s.notes_say("complaints") if x.listed)
    item = listed.text.split("; ")[0]
    q = f"Is {item.lower()} ever listed among the patient's complaints in the notes?"
    r = answer(blaze_store, pid, q, model=ScriptedModel([call, "No."]))
    assert r.steps == 1 and r.verified and r.answer.startswith("Yes") and item in r.answer, r
    q = "What complaints are listed in the patient's notes?"
    r = answer(blaze_store, pid, q, model=ScriptedModel([call, "No."]))
    assert r.steps == 1 and "under Chief Complaint" in r.answer, r


@pytest.mark.shared
def test_a_yes_that_quotes_other_complaints_is_refused(blaze_store):
    """The embedded model's own answer from a notes run: "Yes, tingling in hands and feet is listed", quoting
    a Chief Complaint list that does not hold it. Each sentence is true to its note, so only a check of the
    thing asked catches it; the same answer about an item the list holds passes."""
    pid, s = _patient_with(blaze_store, lambda s: any(x.listed for x in s.notes_say("complaints")))
    listed = next(x for x in s.notes_say("complaints") if x.listed and "tingling" not in x.text.lower())
    quote = f"The note of {listed.day} says, under Chief Complaint: {listed.text} [{listed.ref}]."
    ev = {listed.ref: listed.row}
    q = "Is tingling in hands and feet ever listed among the patient's complaints in the notes?"
    bad = check_answer(f"Yes, tingling in hands and feet is listed among the complaints. {quote}", ev, question=q,
                       as_of=AS_OF, claims=ClaimChecker(s, q))
    assert not bad.verified and "do not mention tingling" in " ".join(bad.unsupported_reasons), bad
    item = listed.text.split("; ")[0]
    q = f"Is {item.lower()} ever listed among the patient's complaints in the notes?"
    ok = check_answer(f"Yes, {item.lower()} is listed among the complaints. {quote}", ev, question=q, as_of=AS_OF,
                      claims=ClaimChecker(s, q))
    assert ok.verified, ok.unsupported_reasons


def test_the_thing_a_notes_question_asks_about():
    """What a yes/no question asks the notes about, besides the topic, in the question's own words."""
    cases = {
        "Is tingling in hands and feet ever listed among the patient's complaints in the notes?":
            "tingling in hands and feet",
        "Has he ever complained about back pain?": "back pain",
        "Did she come in complaining of headaches at any visit?": "headaches",
        "Was memory loss one of the things that brought him in?": "memory loss",
        "Does he smoke?": "",
        "How far did the patient get in school, per the notes?": "",
    }
    assert {q: note_facts.beyond_topic(q) for q in cases} == cases


def test_a_topic_word_written_longer_names_the_topic():
    """"socioeconomically", "educational": a longer form of a topic word names the same topic."""
    found = note_facts.statements(CHUNKS)
    assert note_facts.names_note_topic("Where does she fall socioeconomically?")
    assert [s.text for s in note_facts.about(found, "Where does she fall socioeconomically?")] == [
        "Patient comes from a middle socioeconomic background"]
    assert note_facts.about(found, "educational level")[0].text == "Patient has completed some college courses"
    assert not note_facts.names_note_topic("What was her last A1c?")
