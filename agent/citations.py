"""Citation verification by code, not by the model.

An answer cites evidence as ``[Type/id]`` or ``[DocumentReference/id#n]`` (several may share one
bracket, separated by commas or semicolons). For every sentence:

1. each cited reference must have been returned by a tool in this session (it is in ``evidence``);
2. it must belong to the patient (``belongs(ref)``: in the compartment, or a shared resource the
   patient's data references);
3. every number and date the sentence states must appear in the projection of one of the resources it
   cites (numbers and dates are normalised: ``7.20`` = ``7.2``, ``1,200`` = ``1200``, ``March 4, 2019`` =
   ``2019-03-04``; a rounded value matches when the evidence rounds to it), or be a value the calculator
   computed this session, or come from the question or the as-of date.

A sentence that states a number or date without any citation is unsupported too, unless that value was
computed, asked about or is the as-of date. Sentences with neither citations nor values pass as
commentary when the answer cites something; in an answer citing nothing they pass only when they say
the record lacks the answer ("Not in the record.").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, Field

from ehr_agent.tools.store.compartment import PATIENT_COMPARTMENT, SHARED_TYPES
from ehr_agent.tools.facts import iso_date

UNSUPPORTED_MARK = "[unsupported]"
_RANGE_WORDS = re.compile(r"\b(since|between|and|from|after|before|as of|until|till|through|by|prior to|up to|during)\W*$", re.I)


def _is_age_day(text: str, date: str) -> bool:
    """Whether ``date`` is the day an age is stated for ("5 years old on 1963-12-01"): no row holds that day,
    and the age itself is the claim checks' to verify against the birth date."""
    return bool(re.search(r"\byears? old,? (?:on|as of|at)\s+" + re.escape(date), text))


def _is_range_bound(text: str, date: str) -> bool:
    """Whether ``date`` (normalised) is written as a range bound: a range word right before it
    ("since 2015", "as of March 4, 2019", "between 2010-01-01 and 2012-01-01"). Only the few characters
    before the date count, so "Blood by Automated count on 2019-09-11" is not a range."""
    year = date[:4]
    for m in re.finditer(re.escape(year), text):
        start = m.start()
        # A written-out date ("March 4, 2019") starts before its year: step back over it.
        head = re.sub(r"(?:\b[A-Za-z]{3,9}\.? \d{1,2},? ?|\d{1,2}[/.-]\d{1,2}[/.-])$", "", text[:start])
        if _RANGE_WORDS.search(head[-24:]):
            return True
    return False

_BRACKET = re.compile(r"\[([^\[\]]{3,400})\]")
_REF = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(#\d+)?$")
# Only FHIR resource types make a citation: "[Mass/volume]" in a LOINC display is not one.
RESOURCE_TYPES = frozenset(PATIENT_COMPARTMENT) | SHARED_TYPES | {
    "Group", "Specimen", "Substance", "Questionnaire", "ValueSet", "CodeSystem", "HealthcareService",
    "Endpoint", "Composition", "List", "Flag", "RiskAssessment", "NutritionOrder", "VisionPrescription",
    "DetectedIssue", "FamilyMemberHistory", "ClinicalImpression", "Media", "BodyStructure", "Communication",
    "CommunicationRequest", "Consent", "EpisodeOfCare", "Appointment", "Schedule", "Slot", "Task"}
_ABBREV = re.compile(r"(?:\b(?:Dr|Mr|Mrs|Ms|Prof|St|Jr|Sr|vs|approx|No|e\.g|i\.e|etc)\.)$", re.I)
_MONTHS = {m: i + 1 for i, m in enumerate(
    ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
     "november", "december"])}
_MONTHS.update({k[:3]: v for k, v in list(_MONTHS.items())})
_MONTHS["sept"] = 9
_MON = r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"

_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})(?:T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)?\b")
_ISO_MONTH = re.compile(r"\b(\d{4})-(\d{2})\b")
# (also "13-May-2015", "May-13-2015": the ways tools.facts.written_dates reads a question)
_MDY = re.compile(_MON + r"[\s/-]+(\d{1,2})(?:st|nd|rd|th)?,?[\s/-]+(\d{4})\b", re.I)
_DMY = re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)?[\s/-]+" + _MON + r",?[\s/-]+(\d{4})\b", re.I)
_YMD = re.compile(r"\b(\d{4})/(\d{1,2})/(\d{1,2})\b")
_MY = re.compile(r"\b" + _MON + r",?\s+(\d{4})\b", re.I)
_US = re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})\b(?!/)")
# A standalone number: not glued to letters (A1c, COVID-19, LOINC codes written 4548-4 stay out).
_NUM = re.compile(r"(?<![\w.\-/])(-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?)(?![\w\-/]|\.\d)")
_LIST_MARK = re.compile(r"^\s*(?:[-*\u2022]|\d{1,2}[.)])\s+")


#: Sentences that say the record lacks something need no citation.
NEGATIVE = re.compile(
    r"\b(?:not (?:in|found|recorded|documented|available|mentioned|listed|present)|no (?:record|mention|evidence|data|"
    r"information|result|entry|entries|such)|nothing|none|does not (?:contain|include|show|mention|list|have)|"
    r"doesn't|do not have|(?:has|have|had) no|^\s*no|cannot (?:find|answer)|could not (?:find|answer)|there (?:is|are|were|was) no|never)\b",
    re.I)


class ClaimCheck(BaseModel):
    """The verdict on one sentence of the answer."""

    sentence: str
    refs: list[str] = Field(default_factory=list)
    ok: bool = True
    reasons: list[str] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
    """Short names of failed claims (agent.claims), shown in the answer as ``[unsupported: label]``."""
    suggested: list[str] = Field(default_factory=list)
    """Evidence rows holding every value and date of the sentence (a hint for the repair prompt)."""


class CitationReport(BaseModel):
    """The verdict on a whole answer; ``marked_answer`` has ``[unsupported]`` after each failing sentence."""

    citations: list[str] = Field(default_factory=list)
    claims: list[ClaimCheck] = Field(default_factory=list)
    verified: bool = False
    unsupported: list[str] = Field(default_factory=list)
    unsupported_reasons: list[str] = Field(default_factory=list)
    """Why each entry of ``unsupported`` failed (same order)."""
    marked_answer: str = ""
    claim_evidence: dict[str, str] = Field(default_factory=dict)
    """Rows the claim checks found that contradict the answer (for the repair turn to cite)."""

    def problems(self) -> list[str]:
        """One line per failing sentence, for the repair prompt."""
        out = []
        for c in self.claims:
            if not c.ok:
                hint = f" (these rows show its values: {' '.join(f'[{r}]' for r in c.suggested)})" if c.suggested else ""
                out.append(f'"{c.sentence}": ' + "; ".join(c.reasons) + hint)
        return out


# ------------------------------------------------------------------------------------------ values


def _mk(y: str | int, m: str | int, d: str | int | None = None) -> str | None:
    try:
        y, m = int(y), int(m)
        if not (1 <= m <= 12 and 1000 <= y <= 2999):
            return None
        if d is None:
            return f"{y:04d}-{m:02d}"
        d = int(d)
        return f"{y:04d}-{m:02d}-{d:02d}" if 1 <= d <= 31 else None
    except (TypeError, ValueError):
        return None


def extract_values(text: str) -> tuple[set[str], set[str]]:
    """Dates (``YYYY-MM-DD`` or ``YYYY-MM``) and numbers (canonical decimal strings) stated in ``text``."""
    dates: set[str] = set()
    rest = text

    def take(rx: re.Pattern, fn: Callable[[re.Match], str | None]) -> None:
        nonlocal rest

        def sub(m: re.Match) -> str:
            v = fn(m)
            if v:
                dates.add(v)
                return " "
            return m.group(0)

        rest = rx.sub(sub, rest)

    take(_ISO_DATE, lambda m: _mk(m.group(1), m.group(2), m.group(3)))
    take(_MDY, lambda m: _mk(m.group(3), _MONTHS.get(m.group(1).lower().rstrip("."), 0), m.group(2)))
    take(_DMY, lambda m: _mk(m.group(3), _MONTHS.get(m.group(2).lower().rstrip("."), 0), m.group(1)))
    take(_US, lambda m: _mk(m.group(3) if len(m.group(3)) == 4 else iso_date(m.group(0))[:4], m.group(1), m.group(2)))
    take(_YMD, lambda m: _mk(m.group(1), m.group(2), m.group(3)))
    take(_ISO_MONTH, lambda m: _mk(m.group(1), m.group(2)))
    take(_MY, lambda m: _mk(m.group(2), _MONTHS.get(m.group(1).lower().rstrip("."), 0)))
    nums = {n for n in (canon_number(m.group(1)) for m in _NUM.finditer(rest)) if n is not None}
    return dates, nums


def canon_number(s: str) -> str | None:
    """``'1,200.50'`` -> ``'1200.5'``; None if not a number."""
    try:
        d = Decimal(s.replace(",", ""))
    except InvalidOperation:
        return None
    d = d.normalize()
    out = format(d, "f")
    return "0" if out in ("-0", "") else out


def _decimals(n: str) -> int:
    return len(n.split(".", 1)[1]) if "." in n else 0


def _number_supported(n: str, pool: set[str]) -> bool:
    if n in pool:
        return True
    places = _decimals(n)
    target = Decimal(n)
    for e in pool:
        # A stated value may be the evidence rounded (7.24 -> 7.2), never the other way round.
        if _decimals(e) > places:
            try:
                if Decimal(e).quantize(Decimal(1).scaleb(-places)) == target:
                    return True
            except InvalidOperation:
                continue
    return False


def _evidence_values(lines: Iterable[str]) -> tuple[set[str], set[str]]:
    dates: set[str] = set()
    nums: set[str] = set()
    for line in lines:
        d, n = extract_values(line)
        dates |= d
        nums |= n
    # A full date also supports its month and its year stated alone ("in March 2019", "in 2019").
    for d in list(dates):
        dates.add(d[:7])
        nums.add(str(int(d[:4])))
    return dates, nums


# --------------------------------------------------------------------------------------- sentences


def split_sentences(answer: str) -> list[str]:
    """Sentences and list items, with a citation that follows a full stop kept with its sentence."""
    parts: list[str] = []
    for block in re.split(r"\n+", answer):
        if not block.strip():
            continue
        block = block.strip()
        marker = _LIST_MARK.match(block)
        head = marker.group(0) if marker else ""
        pieces = re.split(r"(?<=[.!?])\s+(?=[A-Z\[\(\"'])", block[len(head):])
        # A list marker ("1. ") belongs to the item it starts, not a sentence of its own.
        pieces[0] = head + pieces[0]
        merged: list[str] = []
        for piece in pieces:
            if merged and _ABBREV.search(merged[-1]):
                merged[-1] = merged[-1] + " " + piece  # "Dr. Hart" is one sentence
            else:
                merged.append(piece)
        pieces = merged
        for s in pieces:
            s = s.strip()
            if not s:
                continue
            lead = re.match(r"^((?:\[[^\[\]]+\][\s,;.]*)+)(.*)$", s)
            if parts and lead and _BRACKET.search(lead.group(1)) and all(
                    _is_ref_list(m.group(1)) for m in _BRACKET.finditer(lead.group(1))):
                parts[-1] = parts[-1] + " " + lead.group(1).strip()
                s = lead.group(2).strip()
                if not s:
                    continue
            parts.append(s)
    return parts


def _is_ref(item: str) -> bool:
    m = _REF.match(item)
    return bool(m) and m.group(1) in RESOURCE_TYPES


def _is_ref_list(inner: str) -> bool:
    items = [x.strip() for x in re.split(r"[,;]\s*|\s+", inner) if x.strip()]
    return bool(items) and all(_is_ref(x) for x in items)


def cited_refs(text: str) -> list[str]:
    """Every reference cited in ``text``, in order of first use (duplicates removed)."""
    out: list[str] = []
    for m in _BRACKET.finditer(text):
        if not _is_ref_list(m.group(1)):
            continue
        for x in re.split(r"[,;]\s*|\s+", m.group(1)):
            x = x.strip()
            if x and x not in out:
                out.append(x)
    return out


def _strip_citations(text: str) -> str:
    return _BRACKET.sub(lambda m: " " if _is_ref_list(m.group(1)) else m.group(0), text)


# ------------------------------------------------------------------------------------------- check


def check_answer(
    answer: str,
    evidence: dict[str, str],
    *,
    belongs: Callable[[str], bool] | None = None,
    computed: Iterable[str] = (),
    question: str = "",
    as_of: str | None = None,
    claims: Any = None,
) -> CitationReport:
    claims_fn = claims
    """Check every sentence of ``answer`` against the evidence the tools returned (see module doc).

    ``evidence`` maps ``Type/id`` or ``DocumentReference/id#n`` to its projection line.
    ``belongs(ref)`` re-checks that a reference is this patient's (defaults to "is in evidence").
    """
    free_dates, free_nums = extract_values(question)
    asked_dates, asked_nums = set(free_dates), set(free_nums)
    for c in computed:
        d, n = extract_values(str(c))
        free_dates |= d
        free_nums |= n
        cn = canon_number(str(c))
        if cn is not None:
            free_nums.add(cn)
    if as_of:
        free_dates |= {as_of[:10], as_of[:7]}
        free_nums.add(str(int(as_of[:4])))

    claim_list: list[ClaimCheck] = []
    for sentence in split_sentences(answer):
        refs = cited_refs(sentence)
        body = _LIST_MARK.sub(" ", _strip_citations(sentence))
        dates, nums = extract_values(body)
        claim = ClaimCheck(sentence=sentence, refs=refs)
        lines: list[str] = []
        for ref in refs:
            hits = _lookup(ref, evidence)
            if not hits:
                claim.reasons.append(f"{ref} was not returned by any tool in this session")
                continue
            if belongs is not None and not belongs(ref.split("#")[0]):
                claim.reasons.append(f"{ref} is not part of this patient's record")
                continue
            lines.extend(hits)
        ev_dates, ev_nums = _evidence_values(lines)
        # Counting the cited items is a claim the citations themselves support ("3 readings [a][b][c]").
        ev_nums.add(str(len(refs)))
        # A date taken from the question is exempt when the sentence restates it (no citation) or uses it
        # as a range bound ("since 2015", "as of ..."). In a point-in-time claim that cites rows ("on
        # 2019-09-11 it was 3.05 [ref]") it must be the cited row's date: otherwise a value from another
        # day would pass as the one asked about.
        for d in sorted(dates):
            if d in free_dates and (not refs or _is_range_bound(body, d) or _is_age_day(body, d)):
                continue
            if not refs:
                claim.reasons.append(f"date {d} is stated without a citation")
            elif d not in ev_dates:
                claim.reasons.append(f"date {d} does not appear in the cited resources")
        # Ages and counts are not in any row: the claim checks verify them (against the birth date, or by
        # counting the records), so here they need only a citation.
        vouched = claims_fn.numbers(body) if claims_fn is not None and refs else set()
        for n in sorted(nums):
            if _number_supported(n, free_nums) or n in vouched:
                continue
            if not refs:
                claim.reasons.append(f"value {n} is stated without a citation")
            elif not _number_supported(n, ev_nums):
                claim.reasons.append(f"value {n} does not appear in the cited resources")
        claim.ok = not claim.reasons
        claim_list.append(claim)

    citations = cited_refs(answer)
    if not citations:
        # An answer that cites nothing must either say the record lacks the answer or state only values
        # the calculator computed (or the question gave); anything else is a claim with no source.
        for c in claim_list:
            dates, nums = extract_values(_LIST_MARK.sub(" ", c.sentence))
            # Restating the question's own day or number ("symptoms on 2020-02-14") states nothing found.
            stated = (dates - asked_dates) or {n for n in nums if not _number_supported(n, asked_nums)}
            if c.ok and not NEGATIVE.search(c.sentence) and not stated:
                c.ok = False
                c.reasons.append("the answer cites nothing from the record; cite the rows that support it, "
                                 "or say the record does not contain it")
    checks = claims_fn
    claim_evidence: dict[str, str] = {}
    if checks is not None:
        # What the sentence claims (latest, count, absence...) is checked only once its values are
        # grounded: a claim about an ungrounded value is already unsupported.
        for c in claim_list:
            if not c.ok:
                continue
            for failure in checks.check(c.sentence, c.refs, bool(citations)):
                c.ok = False
                c.reasons.append(failure.detail)
                c.labels.append(failure.label)
                claim_evidence.update(failure.evidence)
        whole = checks.answer_failure(answer) if hasattr(checks, "answer_failure") and claim_list else None
        if whole is not None:
            # A claim of the whole answer is marked on its first sentence.
            first = claim_list[0]
            first.ok = False
            first.reasons.append(whole.detail)
            first.labels.append(whole.label)
    bad = [c for c in claim_list if not c.ok]
    for c in bad:
        c.suggested = suggest_refs(c.sentence, evidence)
    marked = answer
    for c in bad:
        mark = f"[unsupported: {'; '.join(c.labels)}]" if c.labels else UNSUPPORTED_MARK
        marked = marked.replace(c.sentence, f"{c.sentence} {mark}", 1)
    return CitationReport(citations=citations, claims=claim_list, verified=not bad and bool(answer.strip()),
                          unsupported=[c.sentence for c in bad], unsupported_reasons=["; ".join(c.reasons) for c in bad],
                          marked_answer=marked, claim_evidence=claim_evidence)


def attach_citations(answer: str, report: CitationReport) -> tuple[str, list[str]]:
    """Cite, by code, uncited sentences whose every value and date appears in exactly one evidence row.

    Small models often state the right value and forget the reference. The row is unambiguous and the
    citation is checked again like any other, so nothing unsupported gets through; sentences without
    values, or matching several rows, are left alone. Returns the new answer and the sentences changed.
    """
    changed: list[str] = []
    for c in report.claims:
        worded = bool(c.suggested) and not any(extract_values(_strip_citations(c.sentence)))
        if c.ok or c.refs or not (len(c.suggested) == 1 or worded):
            continue
        body = c.sentence.rstrip()
        end = len(body) - len(body.rstrip(".!?"))
        cited = f"{body[: len(body) - end]} [{c.suggested[0]}]{body[len(body) - end:]}"
        if c.sentence in answer:
            answer = answer.replace(c.sentence, cited, 1)
            changed.append(cited)
    return answer, changed


def suggest_refs(sentence: str, evidence: dict[str, str], limit: int = 3) -> list[str]:
    """References whose rows hold every number and date ``sentence`` states; for a sentence that states none,
    rows that hold every one of its words (see :func:`_worded_refs`)."""
    dates, nums = extract_values(_LIST_MARK.sub(" ", _strip_citations(sentence)))
    if not dates and not nums:
        return _worded_refs(sentence, evidence, limit)
    out = []
    for ref, line in evidence.items():
        ev_dates, ev_nums = _evidence_values([line])
        if dates <= ev_dates and all(_number_supported(n, ev_nums) for n in nums):
            out.append(ref)
            if len(out) >= limit:
                break
    return out


#: words that say how, not what (shared with the note check of agent.claims)
GRAMMAR_WORDS = frozenset("""the a an and or of to in on at for with from by as is was were are be been has have had
his her their its he she they patient patients this that it per notes note according says said record also""".split())
_NEGATION = re.compile(r"\b(not|no|never|none|nothing|without|neither|nor|n't|cannot)\b", re.I)


def _worded_refs(sentence: str, evidence: dict[str, str], limit: int) -> list[str]:
    """Rows that hold every word of a value-free sentence ("The patient completed some college courses"
    <- a note's "Patient has completed some college courses"), for at least two words.

    Every word, not most: "comes from a middle socioeconomic background" must not borrow the row of a
    "high socioeconomic background". A negated sentence is never matched this way."""
    from ehr_agent.tools.vocabulary import stem, words

    body = _LIST_MARK.sub(" ", _strip_citations(sentence))
    if _NEGATION.search(body):
        return []
    want = {stem(w) for w in words(body) if w not in GRAMMAR_WORDS and len(w) > 1}
    if len(want) < 2:
        return []
    out = []
    for ref, line in evidence.items():
        if want <= {stem(w) for w in words(line)}:
            out.append(ref)
            if len(out) >= limit:
                break
    return out


def _lookup(ref: str, evidence: dict[str, str]) -> list[str]:
    if ref in evidence:
        return [evidence[ref]]
    if "#" not in ref:
        # Citing a whole note is backed by any of its chunks the tools returned.
        prefix = ref + "#"
        return [v for k, v in evidence.items() if k.startswith(prefix)]
    return []
