"""Claim checks: code verifies what a sentence *claims* about the values it cites, not only that they appear.

The citation check (:mod:`agent.citations`) proves that a sentence's numbers and dates are in the rows it
cites. That lets "The last HbA1c was 7.4 % [Observation/2015-reading]" pass although four later readings
exist. This module reads the claim a sentence makes and checks it against the store, at the question's
as-of date, through the same patient-scoped session the tools use (so it runs on the embedded store and
over REST alike, and never sees another patient's data):

==========  =====================================================================================
latest      "last / latest / most recent": no later record of the same concept exists
first       "first / earliest / started": no earlier record of the same concept exists
count       "3 doses", "twice", "5 visits in 2016": the number of records of the cited concept(s) in the
            stated window equals the number
absence     "no record of X", "not in the record", "no allergies": a search for X (code, display words,
            lay names) finds nothing before as-of in the window the question or sentence names, and no note
            states it when the notes write about the topic (complaints, education: tools.note_facts)
concept     the thing the sentence names ("A1c", "BMI") is what the cited row measures (a glucose row
            does not back an A1c claim; a BMI-percentile row does not back a BMI claim)
direction   "rose / fell / went up / stable": the first and last readings of the cited concept in the
            window move that way
age         "50 years old", "at age 50": agrees with the birth date and the cited event's date (or as-of)
active      "currently on / active / still has": status and period at as-of (or the stated day)
==========  =====================================================================================

A failed claim yields a short label (shown in the answer as ``[unsupported: label]``) and a detail that
names the contradicting evidence with its reference ("a later HbA1c exists: 6.5 % on 2023-10-03
[Observation/...]"), which the repair turn shows the model. Sentences that make none of these claims
pass untouched. Every check is deterministic and conservative: where the claim's concept or window
cannot be determined, it is not judged (the citation check still applies).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ehr_agent.agent.align import ASKS_AGE, ASKS_NOW, FIRST_ASKED
from ehr_agent.agent.citations import GRAMMAR_WORDS, cited_refs, extract_values, split_sentences
from ehr_agent.tools import vocabulary as vocab
from ehr_agent.tools.note_facts import beyond_topic, names_note_topic, topic_stems
from ehr_agent.tools.facts import Lookup, LookupArgs, _concept_field, _end_date, _status, about_the_patient, \
    YES_NO, age_between, guess_kind, kind_word, numeric_value, ref_of, value_text, written_dates
from ehr_agent.tools.patient_tools import note_chunks
from ehr_agent.tools.retrieval.projections import concept_display
from ehr_agent.tools.store.base import StoreError

_I = re.I
LATEST = re.compile(r"\b(latest|most recent|most recently|last|newest|recent|current)\b", _I)
FIRST = re.compile(r"\b(first|earliest|initial|initially|started|starting|began|begun|onset)\b", _I)
UP = re.compile(r"\b(rose|risen|rising|increas\w*|went up|gone up|going up|goes up|trend\w* up(?:ward)?|upward|"
                r"climbed|higher|up from|up to)\b", _I)
DOWN = re.compile(r"\b(fell|fallen|falling|decreas\w*|went down|gone down|going down|goes down|trend\w* down(?:ward)?|"
                  r"downward|dropped|declin\w*|lower|down from|down to|reduced)\b", _I)
STABLE = re.compile(r"\b(stable|unchanged|did not change|didn't change|no change|remained the same|steady|"
                    r"(?:did not|didn't|does not|doesn't) (?:go|move|trend) (?:up or down|down or up)|no (?:clear )?trend)\b", _I)
AGE = re.compile(r"\b(?:(\d{1,3})\s*(?:-\s*)?(?:years?|yrs?)(?:\s*|-)old|aged?\s+(?:of\s+)?(\d{1,3})\b|"
                 r"at (?:the age of )?(\d{1,3})(?: years)?\b(?! ?(?:%|mg|kg|cm|mm|/)))", _I)
ACTIVE = re.compile(r"\b(currently|still|is on|is taking|remains on|active|ongoing)\b", _I)
_SAYS_AGE = re.compile(r"\b\d{1,3}\s*(?:years?|yrs?|y/?o)\b|\b(?:was|is|were|aged?) \d{1,3}(?![\d.,])(?!\s*(?:%|mg|kg|cm|mm|/|[a-z]))", _I)
_ACTIVE_TYPES = ("Condition", "MedicationRequest", "CarePlan", "AllergyIntolerance")
NOT_ACTIVE = re.compile(r"\b(no longer|not active|inactive|resolved|stopped|discontinued|ended|not currently)\b", _I)
NEGATED = re.compile(r"\b(not|no|never|none|nothing|without|n't)\b", _I)
ABSENCE = re.compile(
    r"\b(?:not (?:in|found|recorded|documented|listed|present|mentioned)|no (?:record|records|mention|evidence|"
    r"history|documented|recorded|entry|entries|known|data|information)|nothing|none|does not (?:contain|include|"
    r"show|have|list|mention|record)|doesn't (?:have|show|contain|list)|do not have|did not (?:have|receive|get)|"
    r"has not had|hasn't had|(?:has|have|had) (?:had |received |got )?no|never (?:had|received|been|got)|"
    r"there (?:is|are|were|was) no|(?:was|were) not|"
    r"wasn't|weren't)\b|^\s*no\b", _I)
_NUMBER_WORDS = {"once": 1, "twice": 2, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
                 "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "no": 0, "zero": 0}
_COUNT_NOUNS = (r"times?|doses?|visits?|encounters?|shots?|vaccinations?|immunizations?|vaccines?|records?|"
                r"readings?|measurements?|prescriptions?|orders?|stays?|admissions?|procedures?|appointments?|"
                r"boosters?|injections?|tests?|results?|episodes?|diagnoses|entries|hospitali[sz]ations?")
COUNT = re.compile(r"\b(\d{1,4}|once|twice|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)\b"
                   r"(?:\s+[\w()\-/,.']+){0,5}?\s+(" + _COUNT_NOUNS + r")\b|\b(once|twice)\b", _I)
_YEAR = re.compile(r"\b(19\d{2}|20\d{2})\b")
_DAY = re.compile(r"\b(\d{4}-\d{2}-\d{2})\b")


@dataclass
class ClaimFailure:
    """One failed claim of a sentence."""

    kind: str
    label: str
    detail: str
    evidence: dict[str, str] = field(default_factory=dict)


def _window(text: str) -> tuple[str | None, str | None]:
    """The period a sentence or question names: "in 2016", "since 2015", "between 2014 and 2019", a day."""
    low = text.lower()
    m = re.search(r"\b(?:between|from)\s+(\d{4}(?:-\d{2}-\d{2})?)\s+(?:and|to|through|until)\s+(\d{4}(?:-\d{2}-\d{2})?)",
                  low)
    if m:
        return m.group(1), m.group(2)
    m = re.search(r"\b(?:since|after)\s+(\d{4}(?:-\d{2}-\d{2})?)", low)
    if m:
        return m.group(1), None
    m = re.search(r"\b(?:before|until|up to|prior to)\s+(\d{4}(?:-\d{2}-\d{2})?)", low)
    if m:
        return None, m.group(1)
    m = re.search(r"\b(?:in|during|for)\s+(\d{4})\b", low)
    if m:
        return m.group(1), m.group(1)
    return None, None


def _in(d: str, start: str | None, end: str | None) -> bool:
    if start and d[: len(start)] < start:
        return False
    if end and d[: len(end)] > end:
        return False
    return True


class ClaimChecker:
    """Checks the claims of an answer's sentences for one patient session and question."""

    def __init__(self, session: Any, question: str = ""):
        self.s = session
        self.question = question or ""
        self.lookup = Lookup(session)

    def numbers(self, text: str) -> set[str]:
        """Numbers of ``text`` that state an age or a count: :meth:`check` verifies those, not the rows."""
        out: set[str] = set()
        for m in AGE.finditer(text):
            out |= {g for g in m.groups() if g}
        for m in COUNT.finditer(_without_dates(text)):
            if m.group(1) and m.group(1).isdigit():
                out.add(str(int(m.group(1))))
        return out

    # ---- record access ---------------------------------------------------------------------------
    def _read(self, ref: str) -> dict | None:
        rtype, _, rid = ref.split("#")[0].partition("/")
        try:
            r = self.s.store.read(rtype, rid)
        except StoreError:
            return None
        return r if self.s.allowed(r) else None

    def _day(self, r: dict) -> str:
        return (self.s.row(r).date or "")[:10]

    def concept_key(self, r: dict) -> str | None:
        """What makes two records "the same concept": a code (an encounter's class)."""
        if r.get("resourceType") == "Encounter":
            c = (r.get("class") or {}).get("code")
            return f"class|{c}" if c else None
        fld = _concept_field(self.s.with_medication(r))
        for cd in (fld or {}).get("coding") or [] if isinstance(fld, dict) else []:
            if cd.get("code"):
                return f"{cd.get('system')}|{cd.get('code')}"
        return None

    def same_concept(self, r: dict) -> list[dict]:
        """Visible records of ``r``'s concept, newest first."""
        key = self.concept_key(r)
        if key is None:
            return []
        return [x for x in self.s.of_type(r["resourceType"]) if self.concept_key(x) == key]

    def _name(self, r: dict) -> str:
        return self.lookup._name(r)

    def _show(self, r: dict) -> str:
        v = value_text(r) if r.get("resourceType") == "Observation" else None
        return f"{self._name(r)}{' ' + v if v else ''} on {self._day(r)} [{ref_of(r)}]"

    def _ev(self, rs: list[dict]) -> dict[str, str]:
        return {ref_of(r): self.s.row(r).text for r in rs}

    # ---- the check -------------------------------------------------------------------------------
    def check(self, sentence: str, refs: list[str], answer_cites: bool = False) -> list[ClaimFailure]:
        """Failed claims of one sentence (empty when it claims nothing checkable, or only true things).

        ``answer_cites``: whether the answer cites anything anywhere; a bare "not in the record" is then
        commentary on what else was asked, and is judged only when it names what is missing."""
        cited = [r for r in (self._read(x) for x in refs) if r is not None]
        events = [r for r in cited if r.get("resourceType") not in ("Patient", "DocumentReference")]
        out: list[ClaimFailure] = []
        for fn in (self._concept, self._asked_day, self._latest_first, self._count, self._direction, self._age,
                   self._active, self._activities):
            f = fn(sentence, cited, events)
            if f:
                out.append(f)
        f = self._note_says(sentence, refs, cited)
        if f:
            out.append(f)
        if not out:
            f = self._absence(sentence, refs, answer_cites)
            if f:
                out.append(f)
        return out

    # ---- what a cited note says ------------------------------------------------------------------
    def _note_says(self, sentence: str, refs: list[str], cited: list[dict]) -> ClaimFailure | None:
        """A sentence backed only by notes states words the notes hold: beyond the question's own words and
        grammar, each of its words is in the cited text ("comes from a low socioeconomic background" against a
        note that says "high", or a note cited by its title only, fails). Values are the citation check's."""
        if not refs or not cited or any(r.get("resourceType") not in ("DocumentReference", "DiagnosticReport")
                                        for r in cited):
            return None
        if any(r.get("resourceType") == "DiagnosticReport" and (r.get("result") or []) for r in cited):
            return None  # a lab panel's report: its values are the citation check's
        have = {vocab.stem(w) for w in vocab.words(self._cited_text(refs, cited))}
        asked = {vocab.stem(w) for w in vocab.words(self.question)}
        body = _DATES.sub(" ", _strip_refs(sentence))
        if not _NEGATED.search(body):
            # The thing a yes/no question asks the notes about ("tingling" of "Is tingling ever listed among her
            # complaints?") is what a "yes" claims the note says: its words must be the note's, not only the
            # question's.
            asked -= {vocab.stem(w) for w in vocab.words(beyond_topic(self.question))}
        missing = []
        for w in vocab.words(body):
            x = vocab.stem(w)
            if w in _NOTE_GRAMMAR or len(w) < 3 or re.fullmatch(r"[\d.-]+", w) or _near(x, asked) or _near(x, have):
                continue
            missing.append(w)
        if not missing:
            return None
        return ClaimFailure("note", "the cited note does not say it",
                            f"the cited note text does not hold: {', '.join(dict.fromkeys(missing))}; quote what the "
                            "note says, citing its chunk")

    def _cited_text(self, refs: list[str], cited: list[dict]) -> str:
        """The text of what ``refs`` cite: a note chunk's line, or a resource's row."""
        text = []
        for ref, r in zip(refs, cited):
            if "#" in ref and r.get("resourceType") == "DocumentReference":
                # The session's statements hold the chunk's line already; decode the note only when not.
                line = self.s.note_chunk(ref) if hasattr(self.s, "note_chunk") else None
                text += [line] if line else [ln for c, ln in note_chunks(r) if c == ref]
            else:
                text.append(self.s.row(r).text)
        return " ".join(text)

    def _whole_day(self, answer: str) -> ClaimFailure | None:
        """"Which shots did he get on Jun 2 2013?" asks for every record of the kind that day: an answer that
        cites some of them names them all (one flu shot of four vaccines is a true row and a wrong answer)."""
        days = [d for d in written_dates(self.question) if len(d) == 10]
        word = kind_word(self.question)
        if len(days) != 1 or not word or not re.match(r"\s*(which|what)\b", self.question, _I):
            return None
        types = vocab.KIND_TYPES.get(guess_kind(word), ())
        cited = {r for r in cited_refs(answer) if r.split("/")[0] in types}
        if not cited:
            return None
        that_day = [r for t in types for r in self.s.of_type(t) if self._day(r) == days[0]]
        missing = [r for r in that_day if ref_of(r) not in cited]
        if not missing:
            return None
        return ClaimFailure("list", f"not every {word} of {days[0]}",
                            f"the record has {len(that_day)} {word} on {days[0]}; the answer leaves out: "
                            + "; ".join(self._show(r) for r in missing[:6]), self._ev(missing[:6]))

    def _notes_yes(self, answer: str) -> ClaimFailure | None:
        """A "yes" to whether the notes say a thing ("Is tingling ever listed among her complaints?") cites a
        note that names the thing: a list of her other complaints is no yes, even though each sentence of the
        answer quotes it right."""
        thing = beyond_topic(self.question) if YES_NO.match(self.question) and " or " not in self.question \
            and names_note_topic(self.question) else ""
        first = split_sentences(_strip_refs(answer))[:1]
        if not thing or not first or _NEGATED.search(first[0]) or ABSENCE.search(first[0]):
            return None
        refs = [r for r in cited_refs(answer) if r.startswith("DocumentReference/")]
        pairs = [(ref, r) for ref in refs if (r := self._read(ref)) is not None]
        if not pairs:
            return None
        want = topic_stems(thing)
        text = self._cited_text([ref for ref, _ in pairs], [r for _, r in pairs])
        have = {vocab.stem(w) for w in vocab.words(text)}
        if sum(1 for w in want if _near(w, have)) * 3 >= 2 * len(want):
            return None
        return ClaimFailure("note", "the cited notes do not name it",
                            f"the cited notes do not mention {thing}: answer whether any note says it, quoting the "
                            "note that does, or say that none does")

    # ---- concept ---------------------------------------------------------------------------------
    def _asked_concept(self) -> vocab.Concept | None:
        """The record concept the question names in full (:meth:`PatientSession.concept_written_in`), once."""
        if not hasattr(self, "_asked"):
            self._asked = self.s.concept_written_in(self.question)
        return self._asked

    def _named_only_weakly(self) -> set[str]:
        """Concept keys the question matches only by a few words of their names, when it names nothing
        firmly ("low" in "described as low, middle or high" -> Low Density Lipoprotein Cholesterol)."""
        if not hasattr(self, "_weakly"):
            matches, _, _ = self.lookup.resolve(LookupArgs(op="all", what=self.question[:300]))
            weak = {m.concept.key for m in matches if vocab.weak_match(m)}
            firm = {m.concept.key for m in matches if not vocab.weak_match(m)}
            self._weakly = weak if weak and not firm else set()
        return self._weakly

    def _concept(self, sentence: str, cited: list[dict], events: list[dict]) -> ClaimFailure | None:
        weakly = self._named_only_weakly() if self.question else set()
        for r in events:
            if self.concept_key(r) in weakly:
                return ClaimFailure("concept", f"the question does not ask about {self._name(r)}",
                                    f"[{ref_of(r)}] is {self._name(r)}, which the question names by one word "
                                    "at most; answer what the question asks about")
        asked = self._asked_concept() if self.question else None
        if asked is not None and not asked.key.startswith("component|"):  # a panel row holds its components
            for r in events:
                if r.get("resourceType") == asked.type and self.concept_key(r) not in ({asked.key} | asked.codes):
                    if any(self.concept_key(r) == x or (self.concept_key(r) or "").endswith("|" + x)
                           for x in asked.codes):
                        continue
                    return ClaimFailure("concept", f"cites {self._name(r)}, not {asked.display}",
                                        f"the question asks about {asked.display}, but [{ref_of(r)}] is "
                                        f"{self._name(r)}; cite a {asked.display} record")
        visits = [r for r in events if r.get("resourceType") == "Encounter"]
        kinds = [p for p in vocab.lay_phrases(self.question) if vocab.phrase_type(p[2]) == "Encounter"]
        if visits and len(kinds) == 1:
            # The question names one kind of visit ("inpatient encounters"): a cited visit of another class is
            # another answer (all of the year's visits counted for its inpatient stays).
            want = {c.lower() for c in kinds[0][2]}
            for r in visits:
                cls = ((r.get("class") or {}).get("code") or "").lower()
                if cls and cls not in want:
                    return ClaimFailure("concept", f"cites a {cls.upper()} visit, not {kinds[0][0]}",
                                        f"the question asks about {kinds[0][0]} visits, but [{ref_of(r)}] is of "
                                        f"class {cls.upper()}; count or cite {kinds[0][0]} visits only")
        measured = [r for r in events if r.get("resourceType") in ("Observation", "Immunization")]
        phrases = [p for p in vocab.lay_phrases(sentence) if p[2]]  # phrases that define codes
        if not measured or not phrases:
            return None
        body = _strip_refs(sentence).lower()
        for r in measured:
            codes = self._codes(r)
            if not codes:
                continue
            if any(codes & set(p[2]) for p in phrases):
                continue
            if _names_row(body, self._name(r)):
                continue  # the sentence repeats the row's own name ("Cholesterol in HDL ...")
            # The phrase names something with known codes; the cited row is coded otherwise.
            same_kind = [p for p in phrases if vocab.phrase_type(p[2]) == r["resourceType"]]
            if not same_kind:
                continue
            want = same_kind[0][0]
            return ClaimFailure("concept", f"cites {self._name(r)}, not {want}",
                                f"the sentence speaks of {want}, but [{ref_of(r)}] is {self._name(r)}; cite a "
                                f"{want} record")
        return None

    def _codes(self, r: dict) -> set[str]:
        """The codes a row carries, its panel components' included (a blood-pressure panel backs "systolic")."""
        fld = _concept_field(self.s.with_medication(r))
        out = {str(cd.get("code")) for cd in (fld or {}).get("coding") or [] if cd.get("code")} if isinstance(fld, dict) else set()
        for comp in r.get("component") or []:
            out |= {str(cd.get("code")) for cd in (comp.get("code") or {}).get("coding") or [] if cd.get("code")}
        return out

    # ---- the day the question asks about ------------------------------------------------------------
    def _asked_day(self, sentence: str, cited: list[dict], events: list[dict]) -> ClaimFailure | None:
        """A question about one day ("on Jul 17 2016") answered with rows of other days only is no answer to
        it, however true those rows are."""
        if not events or re.search(r"\b(between|from\b.+\b(?:to|until|till|through)|since|after|before|until|as of)\b",
                                   self.question, _I):
            return None
        days = sorted(d for d in extract_values(self.question)[0] if len(d) == 10)
        if len(days) != 1:
            return None
        day = days[0]
        if any(self._day(r) == day for r in events):
            return None
        if re.search(r"\b(no|none|not|nothing|nearest|closest)\b", _strip_refs(sentence), _I):
            return None  # "nothing on that day; the nearest is ..."
        return ClaimFailure("asked day", f"not from {day}",
                            f"the question asks about {day}, but the cited rows are from "
                            + ", ".join(sorted({self._day(r) for r in events})) + f"; look up {day}")

    # ---- latest / first --------------------------------------------------------------------------
    def _latest_first(self, sentence: str, cited: list[dict], events: list[dict]) -> ClaimFailure | None:
        body = _strip_refs(sentence)
        latest, first = bool(LATEST.search(body)), bool(FIRST.search(body))
        q_first, q_latest = bool(FIRST_ASKED.search(self.question)), bool(LATEST.search(self.question))
        if q_first != q_latest and _window(self.question) == (None, None):
            # The question asks for the first (or the last) one: a sentence answering it with another record
            # of the concept ("The latest simvastatin, prescribed 2020" for "When was he put on simvastatin?")
            # answers another question, however true.
            latest, first = q_latest, q_first
            asked = True
        else:
            asked = False
        if not events or latest == first:
            return None
        if latest and re.search(r"\bcurrent(ly)?\b", body, _I) and not re.search(r"\b(latest|last|recent)", body, _I) \
                and all(r["resourceType"] in ("Condition", "MedicationRequest", "AllergyIntolerance") for r in events):
            return None  # "current condition": an "active" claim, checked there
        # "has been taking it since 2020" answering "since when?" is the claim, not a window of it.
        start, end = _window(self.question) if asked else _window(body)
        by_concept: dict[str, list[dict]] = {}
        for r in events:
            k = self.concept_key(r)
            if k:
                by_concept.setdefault(k, []).append(r)
        for k, rs in by_concept.items():
            pool = [x for x in self.same_concept(rs[0]) if self._day(x) and _in(self._day(x), start, end)]
            if not pool:
                continue
            if latest:
                best = max(self._day(x) for x in rs)
                newer = [x for x in pool if self._day(x) > best]
                if newer:
                    top = max(newer, key=self._day)
                    return ClaimFailure("latest", f"a later {self._name(top)} exists",
                                        f"a later {self._name(top)} exists: {self._show(top)}", self._ev([top]))
            else:
                best = min(self._day(x) for x in rs)
                older = [x for x in pool if self._day(x) < best]
                if older:
                    low = min(older, key=self._day)
                    return ClaimFailure("first", f"an earlier {self._name(low)} exists",
                                        f"an earlier {self._name(low)} exists: {self._show(low)}", self._ev([low]))
        return None

    # ---- counts ----------------------------------------------------------------------------------
    def _count(self, sentence: str, cited: list[dict], events: list[dict]) -> ClaimFailure | None:
        body = _without_dates(_strip_refs(sentence))
        for name in {self._name(r) for r in events}:
            # A number in a record's own name is no count ("200 ACTUAT Albuterol ... Inhaler").
            body = re.sub(re.escape(name), " ", body, flags=_I) if name else body
        m = COUNT.search(body)
        if not m or not events:
            return None
        word = (m.group(1) or m.group(3) or "").lower()
        n = int(word) if word.isdigit() else _NUMBER_WORDS.get(word)
        if n is None:
            return None
        if m.group(1) and m.group(1).isdigit() and 1900 <= n <= 2100:
            return None  # a year, not a count
        start, end = _window(body)
        if start is None and end is None:
            start, end = _window(self.question)
        keys = {self.concept_key(r) for r in events} - {None}
        types = {r["resourceType"] for r in events}
        pool = [x for t in types for x in self.s.of_type(t) if self.concept_key(x) in keys
                and self._day(x) and _in(self._day(x), start, end)]
        if len(pool) == n:
            return None
        span = f" in {start}" if start and start == end else (f" from {start}" if start else "") + (
            f" to {end}" if end and end != start else "")
        shown = sorted(pool, key=self._day)[-6:]
        return ClaimFailure("count", f"the record has {len(pool)}, not {n}",
                            f"the record has {len(pool)} {self._name(events[0])} record(s){span}, not {n}"
                            + (": " + "; ".join(self._show(x) for x in shown) if shown else ""), self._ev(shown))

    # ---- direction -------------------------------------------------------------------------------
    def _direction(self, sentence: str, cited: list[dict], events: list[dict]) -> ClaimFailure | None:
        body = _strip_refs(sentence)
        up, down, stable = bool(UP.search(body)), bool(DOWN.search(body)), bool(STABLE.search(body))
        if sum((up, down, stable)) != 1:
            return None
        obs = [r for r in events if r.get("resourceType") == "Observation" and numeric_value(r) is not None]
        start, end = _window(body)
        if start is None and end is None:
            start, end = _window(self.question)
        if obs:
            series = self.same_concept(obs[0])
            # A lay name that names one analyte under two codes ("creat") is one series, as lookup reads it.
            _, named, _ = self.lookup.resolve(LookupArgs(op="change", what=self.question[:200], kind="lab"))
            if ref_of(obs[0]) in {ref_of(x) for x in named}:
                series = named
        else:
            # An uncited direction ("it did not go up or down") is judged on the measurement the question names,
            # when the question asks for a direction.
            if not re.search(r"\b(trend\w*|up|down|ris\w+|rose|f[ae]ll\w*|increas\w*|decreas\w*|higher|lower|"
                             r"chang\w*)\b", self.question, _I):
                return None
            matches, series, _ = self.lookup.resolve(LookupArgs(op="change", what=self.question[:200], kind="lab"))
            if not matches or matches[0].score < 1.0:
                return None
        pool = [x for x in series if numeric_value(x) is not None and self._day(x) and _in(self._day(x), start, end)]
        if len(pool) < 2:
            return None
        pool.sort(key=self._day)
        first, last = pool[0], pool[-1]
        d = (numeric_value(last) or 0) - (numeric_value(first) or 0)
        actual = "up" if d > 0 else "down" if d < 0 else "stable"
        said = "up" if up else "down" if down else "stable"
        if actual == said:
            return None
        word = {"up": "went up", "down": "went down", "stable": "did not change"}[actual]
        return ClaimFailure("direction", f"it {word}",
                            f"{self._name(first)} {word}: from {self._show(first)} to {self._show(last)}",
                            self._ev([first, last]))

    # ---- ages ------------------------------------------------------------------------------------
    def _age(self, sentence: str, cited: list[dict], events: list[dict]) -> ClaimFailure | None:
        body = _strip_refs(sentence)
        m = AGE.search(body)
        if not m:
            return None
        said = int(next(g for g in m.groups() if g))
        patient = self.s.patient()
        birth = patient.get("birthDate")
        if not birth:
            return None
        days = [self._day(r) for r in events if self._day(r)]
        on = min(days) if days else None
        if on is None:
            dd = _DAY.search(body)
            on = dd.group(1) if dd else None
        if on is None:
            died = (patient.get("deceasedDateTime") or "")[:10]
            on = died if died and died < self.s.as_of else self.s.as_of
        age = age_between(birth, on)
        if abs(age - said) == 0:
            return None
        return ClaimFailure("age", f"age on {on} was {age}",
                            f"born {birth[:10]} [Patient/{patient.get('id')}], so on {on} the age was {age}, not {said}",
                            {f"Patient/{patient.get('id')}": self.s.row(patient).text})

    # ---- active ----------------------------------------------------------------------------------
    def _active(self, sentence: str, cited: list[dict], events: list[dict]) -> ClaimFailure | None:
        body = _strip_refs(sentence)
        kinds = _ACTIVE_TYPES
        if not ACTIVE.search(body):
            # A list under "What care plans is she on right now?" makes the question's claim line by line
            # ("- Wound care [CarePlan/...]"): each cited record of the kind asked about must be active.
            kinds = self._asks_active()
        if not kinds or NOT_ACTIVE.search(body) or NEGATED.search(body):
            return None
        targets = [r for r in events if r["resourceType"] in kinds]
        if not targets:
            return None
        dd = _DAY.search(body)
        day = dd.group(1) if dd and not re.search(r"\bsince\s+" + re.escape(dd.group(1)), body) else self.s.as_of
        for r in targets:
            start, end, status = self._day(r), _end_date(r), _status(r)
            ended = (end is not None and end <= day) or status in ("resolved", "inactive", "stopped", "completed",
                                                                    "cancelled", "entered-in-error", "revoked")
            if start and start > day:
                ended = True
            if ended:
                how = f"ended on {end}" if end else f"status {status}"
                return ClaimFailure("active", f"not active on {day}",
                                    f"{self._name(r)} was not active on {day} ({how}) [{ref_of(r)}]", self._ev([r]))
        return None

    def _activities(self, sentence: str, cited: list[dict], events: list[dict]) -> ClaimFailure | None:
        """Asked for a care plan's activities, a sentence citing the plan must name them (its dates alone
        are true but answer another question)."""
        if not re.search(r"\bactivit", self.question, _I):
            return None
        body = _strip_refs(sentence).lower()
        for r in events:
            if r.get("resourceType") != "CarePlan":
                continue
            acts = [concept_display((a.get("detail") or {}).get("code")) for a in r.get("activity") or []]
            acts = [a for a in acts if a]
            if acts and not any(_names_row(body, a) for a in acts):
                return ClaimFailure("activities", "does not name the plan's activities",
                                    f"the question asks for the activities of {self._name(r)} [{ref_of(r)}]: "
                                    + "; ".join(acts), self._ev([r]))
        return None

    def _asks_active(self) -> tuple[str, ...]:
        """The record types whose active records the question asks for ("on right now", "currently
        active"), or () when it asks no such thing or names a day of its own."""
        q = self.question
        if not ASKS_NOW.search(q) or written_dates(q) or _YEAR.search(q):
            return ()
        types = vocab.KIND_TYPES.get(guess_kind(q), ())
        return tuple(t for t in types if t in _ACTIVE_TYPES)

    # ---- the whole answer --------------------------------------------------------------------------
    def answer_failure(self, answer: str) -> ClaimFailure | None:
        """A claim of the answer as a whole: asked how old, an answer that states no age (the latest blood
        pressure for "how old was she when her blood pressure problem was diagnosed") answers another
        question. A "not in the record" is left to the absence check."""
        if not ASKS_AGE.search(self.question):
            return self._notes_yes(answer) or self._whole_day(answer)
        body = _strip_refs(answer)
        if AGE.search(body) or _SAYS_AGE.search(body) or ABSENCE.search(body):
            return None
        return ClaimFailure("age", "states no age", "the question asks for an age: state it (the calculator's age "
                            "from the birth date to the event's date)")

    # ---- absence ---------------------------------------------------------------------------------
    def _absence(self, sentence: str, refs: list[str], answer_cites: bool) -> ClaimFailure | None:
        # "as of <date>" restates "now"; it is not the period the absence is about.
        body = re.sub(r"\bas of\s+\S+", " ", _strip_refs(sentence), flags=_I)
        if not ABSENCE.search(body):
            return None
        thing = _absent_thing(body)
        if not thing:
            # "Not in the record." answers the question itself, unless the answer cited something else
            # or the sentence is about other things ("nothing else").
            if answer_cites or refs or re.search(r"\b(else|other|further|additional|more)\b", body, _I):
                return None
            thing = self.question
            if about_the_patient(thing):
                # Sex, birth, death, age: the Patient resource holds them.
                patient = self.s.patient()
                row = self.s.row(patient)
                return ClaimFailure("absence", "the record does hold it",
                                    f"the Patient resource holds it: {row.text}", {row.ref: row.text})
        # The absence answers the question: its period is the question's. A period of the sentence's own
        # ("0 face masks on 2026-12-02", from a window the model added) counts only beside things the answer
        # does cite ("none before 2010; diagnosed in 2012 [Condition/...]").
        start, end = _window(self.question)
        day = _DAY.search(self.question)
        if day and start is None and end is None:
            start = end = day.group(1)
        if start is None and end is None and (answer_cites or refs):
            start, end = _window(body)
            day = _DAY.search(body)
            if day and start is None and end is None:
                start = end = day.group(1)
        read_notes = False
        if (names_note_topic(thing) or names_note_topic(self.question)) and hasattr(self.s, "notes_say"):
            # A topic only the notes write about (a visit's complaints, education): their statements say
            # whether the record holds it.
            # The thing asked about among the notes' complaints ("tingling") must be what they state, not
            # any complaint.
            topic = beyond_topic(thing) or thing
            said = (self.s.notes_say(topic, day=start) if start and start == end and len(start) >= 10
                    else self.s.notes_say(topic, start=start, end=end))
            if said:
                first = said[0]
                return ClaimFailure("absence", "the notes state it", f"the note of {first.day} states: {first.text}",
                                    {first.ref: first.row or first.text})
            if topic == thing:
                return None  # the topic itself, which no note states (the notes' own names are not it)
            thing = topic  # the coded record is searched for the thing, not for "notes" or "complaints"
            read_notes = True
        # Diagnoses, drugs, vaccines and allergies first (as a yes/no question resolves), then measurements.
        matches, res, _ = self.lookup.resolve(LookupArgs(op="exists", what=thing[:200], start=start, end=end))
        if not matches:
            matches, res, _ = self.lookup.resolve(LookupArgs(op="all", what=thing[:200], kind="lab"))
        if not matches:
            matches, res, _ = self.lookup.resolve(LookupArgs(op="all", what=thing[:200]))
        # One word of a longer name ("low" of Low Density Lipoprotein) does not say the thing is named.
        strong = [m for m in matches if m.why.startswith("every ") or (m.score >= 1.0 and not vocab.weak_match(m))]
        if not strong:
            # (The notes' text, read above, is a vocabulary of its own: what they never say is checked there.)
            unknown = [] if read_notes else self.lookup.unknown_words(thing)
            if unknown:
                # "No, the record has no CVA": a word that no record of the store and no lay name knows cannot be
                # looked for, so its absence is not shown (her stroke is written "Cerebrovascular accident").
                return ClaimFailure("absence", "the check cannot tell",
                                    f"no record of the store is named by {', '.join(unknown)}, and it is no known lay "
                                    "name or abbreviation: its absence cannot be checked; look it up under its full "
                                    "name")
            return None
        res = [r for r in res if self._day(r) and _in(self._day(r), start, end)]
        if ASKS_NOW.search(f"{body} {self.question}") or re.search(r"\bnow\b", f"{body} {self.question}", _I):
            # "no active medication orders" is about what is active, not about every order ever written.
            res = [r for r in res if _status(r) in ("active", "on-hold", "recurrence", "relapse") and not _end_date(r)]
        if not res:
            return None
        shown = res[:3]
        names = "; ".join(self._show(r) for r in shown)
        return ClaimFailure("absence", "the record does hold it",
                            f"the record does hold {strong[0].concept.display}: {names}", self._ev(shown))



# Beyond grammar, the words a sentence uses to say that a note says something.
_NOTE_GRAMMAR = GRAMMAR_WORDS | frozenset("""about any being chart described describes documented here him indicated
indicates into mention mentioned mentions not noted onto recorded showed shows stated states than them then there
these those what when where which who whom under earlier""".split())


_NEGATED = re.compile(r"\b(no|not|never|none|nothing|nowhere)\b|n't\b", re.I)


def _near(stem: str, stems: set[str]) -> bool:
    """Whether a word's stem is in ``stems``, allowing a short form either way ("report" ~ "reported")."""
    if stem in stems:
        return True
    return len(stem) >= 5 and any(s[:5] == stem[:5] and (s.startswith(stem) or stem.startswith(s)) for s in stems)


_REFS = re.compile(r"\[[A-Z][A-Za-z]+/[^\[\]]+\]")


def _strip_refs(text: str) -> str:
    return _REFS.sub(" ", text)


_DATES = re.compile(r"\b\d{4}-\d{2}(?:-\d{2})?(?:T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)?\b|\b\d{1,2}/\d{1,2}/\d{4}\b|"
                    r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.? \d{1,2},? \d{4}\b", re.I)


def _without_dates(text: str) -> str:
    """``text`` with its dates blanked, so the day of "2012-09-15" is never read as a count."""
    return _DATES.sub(" DATE ", text)


def _names_row(body_low: str, name: str) -> bool:
    """Whether a sentence repeats a row's own name: most of the name's words (brackets aside) are in it."""
    core = re.sub(r"\[[^\]]*\]|\([^)]*\)", " ", name.lower())
    ws = [w for w in vocab.words(core) if len(w) > 2]
    if not ws:
        return False
    have = set(vocab.words(body_low))
    return sum(w in have for w in ws) / len(ws) >= 0.75


def _absent_thing(body: str) -> str:
    """The thing a negative sentence says is missing ("no record of asthma" -> "asthma")."""
    m = re.search(r"\b(?:no (?:record|records|mention|evidence|history|documentation|entry|entries)(?: of| for)?|"
                  r"never (?:had|received|got|been (?:diagnosed with|given|prescribed))|does not have|doesn't have|"
                  r"do not have|did not (?:have|receive|get)|has not had|hasn't had|(?:has|have|had) (?:had |received |got )?no|no known|there (?:is|are|were|was) "
                  r"no|not (?:diagnosed with|allergic to|prescribed|given))\s+(?:any\s+|an?\s+)?([^.;:,]+)", body, _I)
    if not m:
        m = re.match(r"^\s*no\s+([^.;:,]+?)\s+(?:was|were|is|are|has been|have been)\b", body, _I)
    if not m:
        return ""
    thing = re.split(r"\b(?:in (?:the|her|his|their) (?:record|chart)|recorded|on record|documented|found|as of)\b",
                     m.group(1), flags=_I)[0]
    return thing.strip()
