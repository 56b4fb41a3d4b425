"""Deterministic scorers: answer correctness by gold type, retrieval against gold refs, citation validity.

Every scorer is a pure function of the task and the :class:`~ehr_agent.agent.schema.AnswerResult`, so a result
file can be re-scored later without running the model again.
"""

from __future__ import annotations

import re

from pydantic import BaseModel

from ehr_agent.agent.schema import AnswerResult

from . import textparse, units
from .tasks import (AgeGold, ChoiceGold, DateGold, DirectionGold, IntegerGold, QuantityGold, SetGold, Task, TextGold,
                    YesNoGold)

# More distinct values than this in one answer reads as guessing: only the first few count.
MAX_CANDIDATES = 3
# Extra slack only for a value converted from another unit (conversion factors are rounded). Not applied
# otherwise: lab series move by less than 1%, so a relative slack would accept a neighbouring observation.
CONVERSION_TOLERANCE = 0.002

# Words that do not identify an item (dose forms, SNOMED tags, articles; "allergy" and its kin say what kind
# of item it is, not which: "allergic to mould" names "Allergy to mould").
_STOP = set("""a an the of and or for with to in on by at from per
procedure disorder finding situation regime record artifact qualifier value
oral tablet tablets capsule capsules extended release hr mg ml mcg ug unt actuat injectable injection solution
suspension topical prefilled syringe product dose hydrochloride hcl
allergy allergic intolerance""".split())


class AnswerScore(BaseModel):
    """Correctness of one answer: ``score`` in [0, 1] (F1 for sets), ``correct`` the strict verdict."""

    correct: bool
    score: float
    detail: str = ""
    precision: float | None = None
    recall: float | None = None


class RetrievalScore(BaseModel):
    """Precision and recall of the refs the agent read (or cited) against the task's gold refs."""

    precision: float
    recall: float
    f1: float
    n_gold: int
    n_pred: int


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def score_quantity(gold: QuantityGold, text: str) -> AnswerScore:
    seen = []
    known = units.lookup(gold.unit) is not None
    if gold.unit and known and not re.search(r"\d\s*/\s*\d", textparse.strip_refs(text)):
        # (a pair such as "122/80 mmHg" is left to the candidates below: its first number has no unit)
        # The first value written with a unit of the gold's dimension is the answer, whatever unitless numbers
        # come before it (a month "2017-11", the "1.73" of "Glomerular filtration rate/1.73 sq M").
        for v, u, _after in textparse.find_numbers(text):
            conv = units.convert(v, u, gold.unit) if u is not None else None
            if conv is None:
                continue
            tol = gold.tolerance + 1e-9
            if u != gold.unit.lower() and conv != v:
                tol = max(tol, abs(gold.value) * CONVERSION_TOLERANCE)
            ok = abs(conv - gold.value) <= tol
            return AnswerScore(correct=ok, score=float(ok), detail=f"first value in {gold.unit}: {conv:g} "
                                                                   f"({'within' if ok else 'not within'} {tol:g} of {gold.value:g})")
    for v, u, after in textparse.find_numbers(text):
        if gold.unit and not known and after.lstrip().lower().startswith(gold.unit.lower()):
            u = None  # the gold's own (unlisted) unit, written as is
        tol = gold.tolerance + 1e-9
        if u is not None and gold.unit and known:
            conv = units.convert(v, u, gold.unit)
            if conv is None:
                continue  # a number in another dimension (a date part, a count) is not the answer
            if u != gold.unit.lower() and conv != v:
                tol = max(tol, abs(gold.value) * CONVERSION_TOLERANCE)
            v = conv
        elif u is not None and gold.unit and u != gold.unit.lower():
            continue
        seen.append(v)
        if len(seen) > MAX_CANDIDATES:
            break
        if abs(v - gold.value) <= tol:
            return AnswerScore(correct=True, score=1.0, detail=f"{v:g} within {tol:g} of {gold.value:g}")
    return AnswerScore(correct=False, score=0.0, detail=f"no value within tolerance of {gold.display()} in {seen[:3]}")


def score_date(gold: DateGold, text: str) -> AnswerScore:
    dates = [d for _, d in textparse.find_dates(textparse.strip_refs(text))]
    distinct = list(dict.fromkeys(dates))
    ok = bool(distinct) and (distinct[0] == gold.value or (gold.value in distinct and len(distinct) <= MAX_CANDIDATES))
    return AnswerScore(correct=ok, score=float(ok), detail=f"dates found: {distinct[:5]}")


def score_integer(gold: IntegerGold, text: str, question: str = "") -> AnswerScore:
    """The first whole number of the answer that is not a year and not one the question itself states.

    An answer that restates its question ("men with at least one inpatient stay in 2013 is 2") echoes the
    question's numbers before giving its own; an echoed number is skipped unless nothing else is left."""
    vals = textparse.find_integers(text)
    if not (1900 <= gold.value <= 2100):
        vals = [v for v in vals if not (1900 <= v <= 2100)]  # years are not counts
    echoed = set(textparse.find_integers(question)) if question else set()
    vals = [v for v in vals if v not in echoed] or vals
    ok = bool(vals) and vals[0] == gold.value
    return AnswerScore(correct=ok, score=float(ok), detail=f"integers found: {vals[:5]}")


def score_age(gold: AgeGold, text: str) -> AnswerScore:
    """The age the answer states ("37 years old", "age 37", "aged 37"), else the first whole number that is
    not a year (dates removed), within the gold's tolerance. An age phrase wins over a number in a name
    ("Body mass index 30+ ... (age 37)")."""
    phrased = [int(x) for pair in re.findall(r"\b(\d{1,3})\s*(?:-\s*)?(?:years?|yrs?)(?:\s*|-)old\b|\bage[sd]?\s+(?:of\s+)?(\d{1,3})\b",
                                          text, re.I) for x in pair if x]
    vals = phrased or [v for v in textparse.find_integers(text) if not (1900 <= v <= 2100)]
    ok = bool(vals) and abs(vals[0] - gold.value) <= gold.tolerance
    return AnswerScore(correct=ok, score=float(ok), detail=f"ages found: {vals[:5]} (tolerance {gold.tolerance})")


_UP_WORDS = {"increase", "increased", "increases", "increasing", "rose", "risen", "rise", "rises", "rising", "climbed",
             "climbing", "higher", "upward", "upwards", "up"}
_DOWN_WORDS = {"decrease", "decreased", "decreases", "decreasing", "fell", "fallen", "fall", "falls", "falling",
               "dropped", "drop", "drops", "dropping", "declined", "decline", "declining", "lower", "downward",
               "downwards", "reduced", "down"}
# A bare "up"/"down" is a direction only after a verb of change ("went up", "was down"), never in "follow up".
_BARE_AFTER = {"went", "gone", "go", "goes", "going", "was", "were", "is", "are", "been", "be", "trended", "trending",
               "trend", "moved", "moving", "came", "come", "it", "slightly", "way", "has", "had", "s", "then"}
_NEGATORS = {"not", "no", "never", "neither", "nor", "didn", "didnt", "wasn", "wasnt", "hasn", "hasnt", "t"}
_ECHO = re.compile(r"\b(up or down|down or up|higher or lower|lower or higher|increase or decrease|"
                   r"increased or decreased|rise or fall|rose or fell|go up or down)\b")


def direction_of(text: str, start: str | None = None, end: str | None = None) -> set[str]:
    """The directions an answer states ("up", "down"): change words that are not negated and not the
    question's own "up or down" echoed back; "lower back" and "the fall of 2016" are not directions.

    With the question's ``start`` and ``end`` periods, a comparison written backwards ("lower in 2012 than
    in 2016") reads the right way round (up)."""
    clean = _ECHO.sub(" ", textparse.strip_refs(text).lower().replace("\u2019", "'"))
    if start and end:
        backwards = (rf"\b(higher|lower)\s+in\s+{re.escape(start.lower())}\s+than\s+(?:in\s+)?"
                     rf"{re.escape(end.lower())}\b")
        clean = re.sub(backwards, lambda m: " went down " if m.group(1) == "higher" else " went up ", clean)
    toks = re.findall(r"[a-z]+", clean)
    found: set[str] = set()
    for i, w in enumerate(toks):
        if w not in _UP_WORDS and w not in _DOWN_WORDS:
            continue
        prev = toks[i - 1] if i else ""
        nxt = toks[i + 1] if i + 1 < len(toks) else ""
        if w in ("up", "down") and i and prev not in _BARE_AFTER:
            continue
        if (w == "lower" and nxt == "back") or (w in ("fall", "rise") and (prev == "the" or nxt == "of")):
            continue
        if any(t in _NEGATORS for t in toks[max(0, i - 3):i]):
            continue
        found.add("up" if w in _UP_WORDS else "down")
    return found


def score_direction(gold: DirectionGold, text: str, start: str | None = None, end: str | None = None) -> AnswerScore:
    """Correct when the answer states the gold direction and not the other one."""
    got = direction_of(text, start, end)
    ok = got == {gold.value}
    return AnswerScore(correct=ok, score=float(ok), detail=f"directions stated: {sorted(got)}")


_YES = {"yes", "yeah", "yep", "correct", "affirmative", "true", "indeed"}
_NO = {"no", "nope", "not", "none", "never", "false", "negative"}
_NEG = re.compile(r"\b(no|not|never|none|neither|nor|without|cannot)\b|n't\b")


# Answers that say they cannot tell: neither yes nor no, even though they hold a negation word.
_HEDGE = re.compile(r"\b(can ?not|can't|could not|couldn't|unable to|not able to) (determine|tell|say|confirm|"
                    r"answer|be determined)\b|\b(not sure|unclear|unknown|don't know|do not know|"
                    r"insufficient (information|data))\b")


def yes_no_of(text: str) -> bool | None:
    """The yes/no an answer gives: its first word when that is yes/no, else negation in its first sentence.

    ``None`` when there is none, or when the first sentence says it cannot tell ("I cannot determine
    whether...", "unclear"): a hedge is not a "no"."""
    clean = textparse.strip_refs(text).strip().lower().replace("\u2019", "'")
    words = re.findall(r"[a-z']+", clean)
    if not words:
        return None
    if _HEDGE.search(re.split(r"(?<=[.!?])\s", clean, maxsplit=1)[0]) and words[0] not in _YES | _NO:
        return None
    if words[0] in _YES:
        return True
    if words[0] in _NO:
        return False
    first = re.split(r"(?<=[.!?])\s", clean, maxsplit=1)[0]
    return not _NEG.search(first)


def score_yes_no(gold: YesNoGold, text: str) -> AnswerScore:
    got = yes_no_of(text)
    ok = got is not None and got == gold.value
    return AnswerScore(correct=ok, score=float(ok), detail=f"read as {got}")


def score_choice(gold: ChoiceGold, text: str) -> AnswerScore:
    clean = " ".join(textparse.strip_refs(text).lower().split())
    spans = []
    for opt, phrases in gold.options.items():
        for p in {*phrases, opt}:
            for m in re.finditer(rf"(?<![a-z0-9]){re.escape(p.lower())}(?![a-z0-9])", clean):
                spans.append((m.start(), m.end(), opt))
    # "high school" inside "less than high school" names only the longer phrase's option.
    named = {o for s, e, o in spans if not any(s2 <= s and e <= e2 and (e2 - s2) > (e - s) and o2 != o
                                                   for s2, e2, o2 in spans)}
    ok = named == {gold.value}
    return AnswerScore(correct=ok, score=float(ok), detail=f"options named: {sorted(named)}")


def key_tokens(name: str) -> list[str]:
    """Tokens that identify an item name (dose forms and tags dropped)."""
    return [t for t in textparse.tokens(name) if t not in _STOP]


def mentioned(item: str, answer_tokens: set[str]) -> bool:
    """An item counts as named when its first two name words are in the answer and at least half of
    its key tokens are (doses and forms are often shortened)."""
    keys = key_tokens(item) or textparse.tokens(item)
    if not keys:
        return False
    head = [k for k in keys if k[0].isalpha()][:2]
    if not all(h in answer_tokens for h in head):
        return False
    return sum(1 for t in keys if t in answer_tokens) * 2 >= len(keys)


def named(gold: SetGold, answer_tokens: set[str]) -> tuple[list[str], list[str]]:
    """Gold items and distractors the answer names.

    A distractor counts only when the answer holds one of its key tokens that no named gold item
    explains: "Acetaminophen 325 MG" is not named by an answer about "Acetaminophen 300 MG / Hydrocodone",
    nor "Hep B, adult" by one about "Hep A, adult"; "ferrous sulfate" is.
    """
    keys = {x: set(key_tokens(x) or textparse.tokens(x)) for x in [*gold.items, *gold.distractors]}
    hits = [i for i in gold.items if mentioned(i, answer_tokens)]
    explained = set().union(*(keys[i] for i in hits)) if hits else set()
    false = [d for d in gold.distractors if d not in gold.items and mentioned(d, answer_tokens)
             and any(k in answer_tokens and k not in explained for k in keys[d])]
    return hits, false


_NONE = re.compile(r"\b(none|no active|no current|no known|not any|nothing|no record|no \w+ (?:were|was|are|is) "
                   r"(?:found|recorded|listed|prescribed|active))\b")


def score_set(gold: SetGold, text: str) -> AnswerScore:
    toks = set(textparse.tokens(textparse.strip_refs(text)))
    hits, false = named(gold, toks)
    if not gold.items:
        ok = not false and bool(_NONE.search(text.lower()))
        return AnswerScore(correct=ok, score=float(ok), precision=float(not false), recall=1.0,
                           detail=f"expected none; distractors named: {false}")
    recall = len(hits) / len(gold.items)
    precision = len(hits) / (len(hits) + len(false)) if hits or false else 0.0
    f1 = _f1(precision, recall)
    return AnswerScore(correct=recall == 1.0 and precision == 1.0, score=f1, precision=precision, recall=recall,
                       detail=f"named {len(hits)}/{len(gold.items)}; distractors named: {false[:5]}")


def score_text(gold: TextGold, text: str) -> AnswerScore:
    norm = textparse.normalise(text)
    for v in [gold.value, *gold.accept]:
        nv = textparse.normalise(v)
        if nv and re.search(rf"(?<![a-z0-9]){re.escape(nv)}(?![a-z0-9])", norm):
            return AnswerScore(correct=True, score=1.0, detail=f"contains {v!r}")
    keys = textparse.tokens(gold.value)
    got = set(textparse.tokens(text))
    recall = sum(1 for k in keys if k in got) / len(keys) if keys else 0.0
    return AnswerScore(correct=recall >= 0.8 and bool(keys), score=recall, detail=f"token recall {recall:.2f}")


def score_answer(task: Task, text: str) -> AnswerScore:
    """Correctness of ``text`` as an answer to ``task``, by the gold answer's type."""
    g = task.answer
    if not text or not text.strip():
        return AnswerScore(correct=False, score=0.0, detail="empty answer")
    if isinstance(g, (QuantityGold, IntegerGold, AgeGold)):
        name = str(task.meta.get("name") or "").strip()
        if name:
            # Digits inside the item's own name ("Pain severity - 0-10 verbal numeric rating", "Pneumococcal
            # conjugate PCV 13") are not values: a gold of 0, 10 or 13 would be "found" in an answer that only
            # repeats the question's name.
            text = re.sub(re.escape(name), " ", text, flags=re.I)
    if isinstance(g, QuantityGold):
        return score_quantity(g, text)
    if isinstance(g, DateGold):
        return score_date(g, text)
    if isinstance(g, IntegerGold):
        return score_integer(g, text, task.question)
    if isinstance(g, YesNoGold):
        return score_yes_no(g, text)
    if isinstance(g, AgeGold):
        return score_age(g, text)
    if isinstance(g, DirectionGold):
        return score_direction(g, text, task.meta.get("start_year"), task.meta.get("end_year"))
    if isinstance(g, ChoiceGold):
        return score_choice(g, text)
    if isinstance(g, SetGold):
        return score_set(g, text)
    return score_text(g, text)


def score_refs(gold: list[str], predicted: list[str], mode: str = "all") -> RetrievalScore | None:
    """Precision/recall of ``predicted`` refs against ``gold`` (``None`` when the task has no gold refs).

    ``mode="any"`` is for facts stated in many resources (every note repeats the education level):
    reading one of them is full recall.
    """
    g, p = set(gold), set(predicted)
    if not g:
        return None
    inter = g & p
    recall = (1.0 if inter else 0.0) if mode == "any" else len(inter) / len(g)
    precision = len(inter) / len(p) if p else 0.0
    return RetrievalScore(precision=precision, recall=recall, f1=_f1(precision, recall), n_gold=len(g), n_pred=len(p))


class CitationScore(BaseModel):
    """Whether the answer's citations hold: checked by code (``verified``), grounded in what was read."""

    n_citations: int
    verified: bool
    n_unsupported: int
    #: fraction of cited refs the agent actually read (1.0 when nothing was cited)
    grounded: float


def score_citations(result: AnswerResult) -> CitationScore:
    """Citation validity of an answer, from :class:`AnswerResult` fields."""
    cites = list(dict.fromkeys(result.citations))
    read = set(result.evidence_refs)
    grounded = sum(1 for c in cites if c in read) / len(cites) if cites else 1.0
    return CitationScore(n_citations=len(cites), verified=result.verified, n_unsupported=len(result.unsupported),
                         grounded=grounded)


def base_ref(ref: str) -> str:
    """``Type/id`` without a ``#chunk`` suffix or brackets."""
    return ref.strip("[]").split("#", 1)[0]


class Scores(BaseModel):
    """Everything scored for one task."""

    answer: AnswerScore
    retrieval: RetrievalScore | None = None
    citation_refs: RetrievalScore | None = None
    citations: CitationScore
    judge: dict | None = None


def score_result(task: Task, result: AnswerResult) -> Scores:
    """All deterministic scores of one answered task."""
    mode = task.meta.get("refs_mode", "all")
    # A note chunk "DocumentReference/x#2" is evidence from the resource DocumentReference/x.
    cited = list(dict.fromkeys(base_ref(r) for r in result.citations))
    read = list(dict.fromkeys([*(base_ref(r) for r in result.evidence_refs), *cited]))
    return Scores(
        answer=score_answer(task, result.answer) if not result.error or result.answer else
        AnswerScore(correct=False, score=0.0, detail="run failed"),
        retrieval=score_refs(task.gold_refs, read, mode),
        citation_refs=score_refs(task.gold_refs, cited, mode),
        citations=score_citations(result),
    )
