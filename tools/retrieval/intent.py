"""What kind of record a question asks about: FHIR types, statuses, encounter classes, and whether it
wants a list.

The vocabulary is general clinical wording (not phrasings of any test set): a question that says
"allergies", "intolerant" or "allergic" is about AllergyIntolerance rows; "meds", "prescriptions" or
"drugs" about medication rows; "shots" or "immunizations" about Immunization rows; and so on.  Status
words ("active", "current", "resolved", "stopped"...) name the row statuses a question favours.

:func:`parse_intent` only reads the question; :mod:`tools.retrieval.index` turns the result into a ranking
signal (a structured candidate list fused by reciprocal rank fusion with the lexical and dense ranks) and,
for list questions, into a complete list of the matching rows.  There is no per-question switch: a question
without type words gets no structured ranking, and notes stay in the fused ranking either way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .projections import Row

_MED_TYPES = ("MedicationRequest", "MedicationStatement", "MedicationAdministration", "MedicationDispense")

#: (pattern, FHIR types).  Patterns are matched on the lower-cased question with word boundaries.
TYPE_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"allerg\w*|intoleran\w*|hypersensitivit\w*|reactions?|sensitivit(?:y|ies) to", ("AllergyIntolerance",)),
    (r"medications?|medicines?|meds|drugs?|prescri\w*|rx|pills?|dosages?|taking|takes", _MED_TYPES),
    (r"vaccin\w*|immuni[sz]\w*|inocula\w*|shots?|jabs?|boosters?", ("Immunization",)),
    (r"conditions?|diagnos[ie]s|diagnosed|problems?|disorders?|diseases?|illness(?:es)?|comorbidit\w*|"
     r"history of", ("Condition",)),
    (r"procedures?|surger(?:y|ies)|surgical|operations?|operated|underwent|undergo(?:ne)?", ("Procedure",)),
    (r"visits?|encounters?|admissions?|admitted|stays?|hospitali[sz]\w*|appointments?|consultations?",
     ("Encounter",)),
    (r"labs?|laboratory|test results?|tests?|results?|measurements?|panels?|vitals?|vital signs",
     ("Observation", "DiagnosticReport")),
    (r"care ?plans?|plans? of care|treatment plans?", ("CarePlan",)),
    (r"notes?|narratives?", ("DocumentReference",)),
)

#: Status words -> row statuses (the codes FHIR uses for clinicalStatus or status).
STATUS_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"active|current|currently|ongoing|still|right now|presently|at present|is on|are on",
     ("active", "recurrence", "relapse", "on-hold", "in-progress")),
    (r"resolved|inactive|healed|past|former|previous|prior|no longer|remission",
     ("resolved", "inactive", "remission", "completed", "stopped")),
    (r"stopped|discontinued|ceased|cancell?ed|ended|completed|finished",
     ("stopped", "cancelled", "completed", "entered-in-error", "finished")),
)

#: Encounter class words -> v3 ActCode class codes (as Synthea and most EHR exports write them).
CLASS_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"emergency|emergencies|er|ed|a&e|urgent", ("EMER",)),
    (r"inpatient|in-patient|hospitali[sz]\w*|hospital stays?|admitted", ("IMP", "ACUTE", "NONAC")),
    (r"ambulatory|outpatient|out-patient|office|clinic|wellness|check-?ups?", ("AMB",)),
    (r"virtual|telehealth|telemedicine|video", ("VR",)),
    (r"home health|home visits?", ("HH",)),
)

_LIST = re.compile(r"\b(list|lists|which|all|any|every|each|how many|enumerate|what are|show)\b", re.I)
#: A question about one extreme row ("the latest", "first") wants that row, not the whole list.
_SINGLE = re.compile(r"\b(latest|last|most recent|first|earliest|initial|oldest|newest)\b", re.I)
_WHEN = re.compile(r"^\W*when\b", re.I)
_YEAR = re.compile(r"\b(19\d{2}|20\d{2})(?:-(\d{2}))?(?:-(\d{2}))?\b")


def _compile(table):
    return tuple((re.compile(rf"\b(?:{pat})\b", re.I), values) for pat, values in table)


_TYPES = _compile(TYPE_WORDS)
_STATUSES = _compile(STATUS_WORDS)
_CLASSES = _compile(CLASS_WORDS)


@dataclass(frozen=True)
class Intent:
    """What a question asks for (empty tuples when it does not say)."""

    types: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    """Encounter class codes (``EMER``, ``IMP``, ``AMB``...): only when the question is about encounters."""
    period: str | None = None
    """``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD`` written in the question."""
    listing: bool = False
    """The question wants every matching row (a list), not one extreme row."""
    words: tuple[str, ...] = field(default=())
    """The words that set the intent, for explanations."""

    @property
    def typed(self) -> bool:
        """The question names a kind of record."""
        return bool(self.types)

    def matches(self, row: Row) -> bool:
        """Whether a row is of the kind, status, class and period the question asks about."""
        if not self.types or row.type not in self.types:
            return False
        if self.statuses and (row_status(row) or "") not in self.statuses:
            return False
        if self.classes and row.type == "Encounter" and encounter_class(row) not in self.classes:
            return False
        if self.period and not (row.date or "").startswith(self.period):
            return False
        return True


def _scan(table, text: str) -> tuple[list[str], list[str]]:
    values: list[str] = []
    words: list[str] = []
    for pat, vals in table:
        m = pat.search(text)
        if m:
            words.append(m.group(0).lower())
            values.extend(v for v in vals if v not in values)
    return values, words


_TAG = re.compile(r"\s*\([a-z /-]+\)\s*$")


def subject_phrase(display: str) -> str:
    """A code display as a question would write it: lower case, semantic tag dropped
    (``Documentation of current medications (procedure)`` -> ``documentation of current medications``)."""
    return " ".join(_TAG.sub("", display).lower().split())


def mask_subjects(question: str, subjects) -> str:
    """The question with every subject phrase it names (a code display of the record, at least two
    words) blanked out, longest first: the words of a named thing say what it is, not what kind of
    record is asked about ("documentation of current medications" is a procedure, "alpha-fetoprotein
    test" a procedure too, not lab results)."""
    low = question.lower()
    for phrase in sorted(subjects, key=len, reverse=True):
        if " " not in phrase:
            continue
        i = low.find(phrase)
        while i >= 0:
            before = low[i - 1] if i > 0 else " "
            after = low[i + len(phrase)] if i + len(phrase) < len(low) else " "
            if not before.isalnum() and not after.isalnum():
                low = low[:i] + " " * len(phrase) + low[i + len(phrase):]
            i = low.find(phrase, i + 1)
    return low


def parse_intent(question: str, subjects=()) -> Intent:
    """The :class:`Intent` of a question (see the module docstring for the vocabulary).  ``subjects``
    are the code displays of the record asked about (see :func:`subject_phrase`); a question's words
    inside one of them do not count as intent words (:func:`mask_subjects`)."""
    q = " ".join(question.split())
    if subjects:
        q = " ".join(mask_subjects(q, subjects).split())
    types, tw = _scan(_TYPES, q)
    statuses, sw = _scan(_STATUSES, q) if types else ([], [])
    classes, cw = _scan(_CLASSES, q) if "Encounter" in types else ([], [])
    m = _YEAR.search(q)
    period = "-".join(x for x in m.groups() if x) if m else None
    # A type word asks for the rows of that kind ("What is the patient allergic to?") unless the question
    # wants one extreme row ("the latest", "first") or the date of one thing ("When was ... diagnosed?");
    # list and status words ask for the list even after "when" ("When ...? Give all dates.").
    listing = bool(types) and not _SINGLE.search(q) and (bool(_LIST.search(q)) or bool(statuses) or not _WHEN.search(q))
    return Intent(types=tuple(types), statuses=tuple(statuses), classes=tuple(classes), period=period,
                  listing=listing, words=tuple(tw + sw + cw))


_STATUS_IN_TEXT = re.compile(r"(?:^|; )(?:clinical )?status ([\w-]+)")


def row_status(row: Row) -> str | None:
    """A row's status: the projected ``status`` field when set, else read from its line (``clinical
    status X`` first, the resource's workflow ``status X`` otherwise)."""
    status = getattr(row, "status", None)
    if status:
        return status
    found = _STATUS_IN_TEXT.findall(row.text)
    return found[0] if found else None


_CLASS_IN_TEXT = re.compile(r"\bEncounter ([A-Za-z]+)\b")


def encounter_class(row: Row) -> str | None:
    """The class code an Encounter row was projected with (``Encounter EMER: ...``)."""
    m = _CLASS_IN_TEXT.search(row.text)
    return m.group(1).upper() if m else None
