"""Hold the model's tool arguments to what the question says, before the tools run.

A small model picks the right tool and mostly the right words, but drops or adds what the question states
plainly: it asks for the ``latest`` reading when the question names a day ("at the Dec 30 2016 visit"), adds
a year to an "ever" question, counts stays when asked how many women, shortens the thing counted. Each rule
here reads only the question's own words and changes an argument only when the question settles it, so a
right call passes unchanged. The graph logs the call as run (after alignment).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ehr_agent.agent.cohort_answer import choose_what
from ehr_agent.tools.facts import YEAR, YES_NO, _DEMOGRAPHIC, about_the_patient, kind_word, one_sex, one_year, \
    written_dates
from ehr_agent.tools.note_facts import beyond_topic, names_note_topic, topic_stems
from ehr_agent.tools import vocabulary as vocab
from ehr_agent.tools.vocabulary import named_words, noun_phrases

# "from" alone is not a range ("his trigs from Apr 9 2016" is that day's reading); "from X to Y" is.
_RANGE_WORDS = re.compile(r"\b(since|between|from\b.+\b(?:to|until|till|through)|after|before|until|through|over|during the|trend|rise|fall|"
                          r"up or down|change|changed|compare|comparing|moved)\b", re.I)
_PERIODISH = re.compile(r"\b(1[89]\d\d|20\d\d)\b|\b(since|before|after|between|during|year|month)\b", re.I)
_PEOPLE_ASKED = re.compile(r"\b(everyone|everybody|anyone|people|persons|individuals|group|population|patients|pts|"
                           r"women|men|children|kids)\b", re.I)
_RECORDS_ASKED = re.compile(r"\b(how many|number of|total|count of|count the|count|tally of)\s+(?:\w+\s+){0,3}?(visits|encounters|stays|"
                            r"admissions|doses|shots|vaccinations|injections|records|prescriptions|orders|procedures|"
                            r"times|colonoscopies|mammograms|tests)\b|\b(visits|encounters|doses|procedures)\b.*\btotal\b|"
                            r"\bvolume\b", re.I)
_BOUND = re.compile(r"\b(before|earlier than|prior to|after|later than|since)\s+(?:\w+\s+)?(1[89]\d\d|20\d\d)\b", re.I)
_WHO = re.compile(r"\b(how many|number of)\s+(?:\w+\s+){0,2}?(patients|people|persons|individuals|women|men|"
                  r"children|kids|females|males)\b", re.I)


#: a question about what holds now ("on right now", "currently active"); the claim check reads it the same way
ASKS_NOW = re.compile(r"\b(right now|currently|current|at present|presently|these days|still|active|ongoing)\b", re.I)
#: a question about an age ("how old was she when...", "at what age"); the claim check reads it the same way
ASKS_AGE = re.compile(r"\b(how old|what age|at what age|age (?:at|when|of onset))\b", re.I)
#: a question about the first record ("Since when...", "When was he put on X?", "when amlodipine got added"); the
#: claim check reads it the same way
FIRST_ASKED = re.compile(r"\b(first|earliest|initial|initially|since when|how long ago did|onset|"
                         r"(?:put|started|start|starting|began|begin) on|start(?:ed)? (?:taking|on)|"
                         r"first (?:picked|diagnosed))\b|\bwhen\b.*\b(?:added|initiated|introduced|commenced)\b",
                         re.I)
_LAST_ASKED = re.compile(r"\b(last|latest|most recent|recent|current|currently|now)\b", re.I)
_COMPARE = re.compile(r"\b(higher|lower|rise|rose|risen|fall|fell|fallen|up|down|increase[ds]?|decrease[ds]?|"
                      r"vs|versus|compare[ds]?|comparing|change[ds]?|went|gone|better|worse|improved?)\b", re.I)


def align_lookup_args(args: dict, question: str, resolves: Callable[[str], bool] | None = None,
                      written_name: str | None = None) -> dict:
    """``lookup`` arguments with what the question states: a comparison between two years ("2014 vs 2017:
    higher or lower?") is ``change`` from the first to the last; ``latest``/``first`` asked about one stated
    day (and no range) become ``on_date`` that day; ``on_date`` without a date takes the question's; a topic
    the notes write about replaces a ``what`` that names nothing the question asks (:func:`_not_the_thing`),
    and a question about what the notes say reads the notes first (``kind`` "note")."""
    out = dict(args)
    op = out.get("op")
    what = out.get("what") if isinstance(out.get("what"), str) else ""
    mine = set(re.findall(r"[a-z0-9]+", what.lower()))
    subject = note_subject(question)
    on_subject = bool(subject and topic_stems(what) & topic_stems(subject))
    if on_subject:
        pass  # the model named the topic the notes write about ("education" for "how far in school")
    elif written_name and mine and (mine <= set(re.findall(r"[a-z0-9]+", written_name.lower()))
                                    or not vocab.content_stems(what) & vocab.content_stems(question)):
        # The question writes out a name of the record in full and the model passed part of it ("BMI" for
        # "Body mass index (BMI) [Percentile] Per age and gender"), or words the question does not use ("BMI"
        # for "Body mass index 30+ - obesity"): the full name says which record.
        out["what"] = written_name
    elif resolves is not None and what and not subject:
        # (With a notes topic in the question, the phrase that "resolves" is often the notes themselves; the
        # rules below hold ``what`` to the question instead.)
        out["what"] = what = choose_what(what, question, resolves)
    whole = kind_word(question)
    if whole and vocab.named_words(what) and op in ("on_date", "list", "all", "active_on", "count") and not subject \
            and not vocab.content_stems(what) & vocab.content_stems(question) \
            and not any(p in question.lower() for p, _, _ in vocab.lay_phrases(what)):
        # "Which shots did he get on Jun 2 2013?" asked as "flu shot": a thing the question does not name; the
        # question asks for every record of the kind.
        out["what"] = what = whole
    topic = notes_topic(what, question)
    if topic:
        # lookup "notes" answers with the notes' names and dates; what the question asks of them is the topic.
        out["what"] = what = topic
    if subject and not on_subject and _not_the_thing(what, question):
        # "Is her socioeconomic background described as low, middle or high?" with what="low" (one of the
        # options offered), "What brought him in on 2014-02-14?" with what="admission" (a word the question
        # does not use): the question's topic, one the notes write about, is what is asked.
        out["what"] = what = subject
    if (topic or subject) and _NOTES_ASKED.search(question):
        # The question asks what the notes say: the notes' statements answer before any coded record that
        # shares a word ("symptoms" is also an "Encounter for symptom").
        out["kind"] = "note"
    thing = beyond_topic(question) if subject and YES_NO.match(question) and " or " not in question else ""
    if thing:
        # "Is tingling in hands and feet ever listed among her complaints?", "Did he ever complain of wheezing?":
        # whether the notes say the thing, not what the complaints were (a list of other complaints is no yes).
        op = out["op"] = "exists"
        out["kind"] = "note"
        if not topic_stems(what) & topic_stems(thing):
            out["what"] = what = thing
    if op in ("latest", "first", "exists", "all", "list", "on_date") and ASKS_AGE.search(question) \
            and not _LAST_ASKED.search(question) and not about_the_patient(question):
        # "How old was she when her blood pressure problem was diagnosed?" asked as the latest reading: the age at
        # the first record of the thing is what is asked.
        op = out["op"] = "age_at"
        for k in ("date", "start", "end"):
            out.pop(k, None)
    asked = demographic_word(question)
    if asked and not _DEMOGRAPHIC.search(out.get("what") or ""):
        # "How old is the patient?" is answered by the Patient resource, whatever the model put in `what`
        # ("diagnosis" gave the age at a first diagnosis).
        out["what"] = asked
    if not _PERIODISH.search(question) and not written_dates(question) and op in (
            "count", "exists", "list", "latest", "first", "all"):
        # The question names no period: a window the model added (often "since today") is not asked for.
        out.pop("start", None)
        out.pop("end", None)
        if op != "on_date":
            out.pop("date", None)  # a count "on 2026-12-02" (today) is no count of the record
    if op in ("list", "all") and ASKS_NOW.search(question) and not written_dates(question):
        # "What care plans is she on right now?": what is active at as-of, not every plan she ever had (a date
        # the model added is its own guess at "now"; the tool's as-of is the session's).
        out["op"] = "active_on"
        for k in ("start", "end", "date"):
            out.pop(k, None)
        return out
    if op == "latest" and FIRST_ASKED.search(question) and not _LAST_ASKED.search(question) \
            and not _PERIODISH.search(re.sub(r"\bsince when\b", " ", question, flags=re.I)):
        # "Since when has she been taking X?", "When was he put on X?": the first record, not the latest.
        out["op"] = "first"
    years = sorted(set(YEAR.findall(question)))
    if op == "change" and len(years) < 2 and not _COMPARE.search(question) and not _RANGE_WORDS.search(question):
        # A change the question does not ask about ("On what date was X first recorded?"): its first or latest.
        if FIRST_ASKED.search(question) or _LAST_ASKED.search(question):
            op = out["op"] = "first" if FIRST_ASKED.search(question) else "latest"
            out.pop("start", None)
            out.pop("end", None)
    if len(years) >= 2 and _COMPARE.search(question) and op in ("latest", "first", "on_date", "all", "change"):
        if op != "change" or not (out.get("start") and out.get("end")):
            out["op"], out["start"], out["end"] = "change", years[0], years[-1]
            out.pop("date", None)
        return out
    days = written_dates(question)
    if len(days) == 1 and not _RANGE_WORDS.search(question) and len(days[0]) >= 7:
        # ("What brought him in on 2014-02-14?" asked as exists or list: that day's note, not every note.)
        # ("at the October 2019 checkup" asked as on_date 2019-10-01: a day the question does not write misses
        # the reading of 2019-10-18; the question's month finds it.)
        if op in ("latest", "first") or (op == "on_date" and out.get("date") != days[0]) or (
                subject and op in ("exists", "list", "all") and len(days[0]) >= 10):
            out["op"], out["date"] = "on_date", days[0]
            out.pop("start", None)
            out.pop("end", None)
    return out


_NOTE_WORDS = frozenset("note notes clinical progress documentation documented chart say says said according per "
                        "written mention mentions mentioned describe described".split())


_NOTES_ASKED = re.compile(r"\b(notes?|charted|documented|documentation|chart says|according to (?:the|her|his|their) "
                          r"(?:chart|record|file))\b", re.I)


_OPTIONS = re.compile(r"\b[\w-]+(?:\s*,\s*[\w-]+)*,?\s+or\s+[\w-]+\b", re.I)


def _not_the_thing(what: str, question: str) -> bool:
    """Whether the model's ``what`` names no thing the question asks about: no word of the question's own,
    only words that point at the notes, or one of the options the question offers ("low, middle or high")."""
    mine = vocab.content_stems(what) - {vocab.stem(w) for w in _NOTE_WORDS}
    if not mine:
        return True
    options = {vocab.stem(w) for m in _OPTIONS.finditer(question) for w in vocab.words(m.group(0)) if w != "or"}
    return not (mine & vocab.content_stems(question)) or mine <= options


def note_subject(question: str) -> str | None:
    """The question's phrase that names a topic the notes write about in their own words (education, income,
    complaints, smoking: :func:`tools.note_facts.names_note_topic`), the longest such phrase; else None."""
    runs = [" ".join(w for w in run if w not in _NOTE_WORDS) for run in noun_phrases(question)]
    runs = [r for r in runs if r and names_note_topic(r)]
    return max(runs, key=len) if runs else None


def notes_topic(what: str, question: str) -> str | None:
    """The thing a question asks the notes about ("What do her notes say about her education?" ->
    "education") when the model's ``what`` names only the notes themselves, else None."""
    mine = [w for w in re.findall(r"[a-z]+", what.lower()) if w not in ("the", "patient", "patients", "s")]
    if not mine or not set(mine) <= _NOTE_WORDS:
        return None
    runs = [[w for w in run if w not in _NOTE_WORDS and named_words(w)] for run in noun_phrases(question)]
    runs = [r for r in runs if r]
    return " ".join(max(runs, key=len)) if runs else None


def demographic_word(question: str) -> str | None:
    """The demographic word of a question that asks only about the patient ("How old is he?" -> "age"), else
    None (a question that also names a record, "age at the asthma diagnosis", is not one)."""
    if not about_the_patient(question):
        return None
    return "age" if re.search(r"\b(old|age|aged)\b", question, re.I) else _DEMOGRAPHIC.search(question).group(1).lower()


def align_count_args(args: dict, question: str, resolves: Callable[[str], bool] | None = None) -> dict:
    """``cohort_count`` arguments with no period the question does not name, counting patients when the
    question asks how many patients (people, women...), and ``what`` held to the question's phrase
    (:func:`~ehr_agent.agent.cohort_answer.choose_what`) when ``resolves`` can tell what the store names."""
    out = dict(args)
    if question and not _PERIODISH.search(question):
        out.pop("start", None)
        out.pop("end", None)
    year = one_year(question)
    if year and (out.get("start") or out.get("end")):
        # "stays that started in 2019" is 2019, not "from 2019 on" (the model gave start only).
        out["start"] = out["end"] = year
    bound = _BOUND.search(question or "")
    if bound and len(set(YEAR.findall(question))) == 1:
        # "born before 1950", "flu shots since 2018": one open bound, whatever window the model wrote.
        word, y = bound.group(1).lower(), int(bound.group(2))
        out.pop("start", None)
        out.pop("end", None)
        if word in ("before", "earlier than", "prior to"):
            out["end"] = str(y - 1)
        elif word in ("after", "later than"):
            out["start"] = str(y + 1)
        else:
            out["start"] = str(y)
    sex = one_sex(question)
    if sex and out.get("sex") in (None, "any"):
        # "How many male patients are there?" with no sex set counted everyone.
        out["sex"] = sex
    if question and (_WHO.search(question) or (_PEOPLE_ASKED.search(question) and not _RECORDS_ASKED.search(question))):
        # ("a count of everyone with an amlodipine order", "how big is the group that...": patients, unless the
        # question counts records: "how many visits", "total doses")
        out["count"] = "patients"
    if resolves is not None and question and isinstance(out.get("what"), str):
        out["what"] = choose_what(out["what"], question, resolves)
    return out


def align_call(name: str, args: dict, question: str, resolves: Callable[[str], bool] | None = None,
               written_name: str | None = None) -> dict:
    """The arguments of one tool call after the rules for its tool (others unchanged). ``resolves`` tells
    whether a phrase names something the session holds; ``written_name`` is a name of the record the question
    writes out in full (patient graph)."""
    if not isinstance(args, dict) or not question:
        return args
    if name == "lookup":
        return align_lookup_args(args, question, resolves, written_name)
    if name == "cohort_count":
        return align_count_args(args, question, resolves)
    return args


__all__ = ["ASKS_AGE", "ASKS_NOW", "FIRST_ASKED", "align_call", "align_count_args", "align_lookup_args"]
