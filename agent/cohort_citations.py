"""The citation check for cohort answers, by code.

A cohort answer cites the query that produced each number: ``[query:Type?params]`` for a count of
resources, ``[patients:Type?params]`` for a count of distinct patients (the keys the cohort tools print).
It may also cite resources a tool listed (``[Encounter/abc]``), as patient answers do. For every sentence:

1. each cited query must have been run by a tool in this session (parameter order and URL escapes do
   not matter), and each cited resource must have been returned by a tool;
2. each cited query is run again, read-only, and every number the sentence states must equal the count
   of one of its cited queries, or be a number of the question, a year or date written in a cited query
   (``date=2010``), a value in a cited resource's row, or the number of resources cited;
3. dates the sentence states must come from the question, a cited query or a cited row.

Numbers written as words (``two patients``) are checked like digits, and in a sentence citing a query
``no``/``none`` state a zero. A sentence stating a number with no citation is unsupported; an answer
citing nothing passes only when it says the data does not hold the answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from ehr_agent.agent.citations import (
    NEGATIVE,
    UNSUPPORTED_MARK,
    CitationReport,
    ClaimCheck,
    cited_refs,
    extract_values,
    split_sentences,
)
from ehr_agent.tools.cohort_tools import CohortToolError, canonical_cite, counts_patients_themselves, parse_cite, \
    query_dates
from ehr_agent.tools.facts import one_sex, one_year
from ehr_agent.tools.store.base import StoreError

QUERY_CITE = re.compile(r"\[\s*((?:query|patients):[^\[\]]+?)\s*\]")
_PLACEHOLDER = re.compile(r"\u27e6q(\d+)\u27e7")
_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_WORD_NUM = re.compile(r"\b(" + "|".join(_WORDS) + r")\b", re.I)
# "No patient received it [query:...]" states a count of zero, which the cited query must give.
_ZERO = re.compile(r"\b(?:no|none|nobody|no one|not any)\b", re.I)


def cited_queries(text: str) -> list[str]:
    """Every query citation key in ``text`` (as written), in order of first use."""
    out: list[str] = []
    for m in QUERY_CITE.finditer(text):
        if m.group(1) not in out:
            out.append(m.group(1))
    return out


def _numbers(text: str, *, zero_words: bool = False) -> tuple[set[str], set[str]]:
    dates, nums = extract_values(text)
    nums |= {str(_WORDS[m.group(1).lower()]) for m in _WORD_NUM.finditer(text)
             if not re.match(r"\s*-", text[m.end():])}  # "one-year" is not a count
    if zero_words and _ZERO.search(text):
        nums.add("0")
    return dates, nums


def _date_values(values: list[str]) -> tuple[set[str], set[str]]:
    dates, nums = set(), set()
    for v in values:
        year = int(v[:4])
        if 1800 <= year <= 2100:  # a code such as LOINC 8867-4 is not a year
            nums.add(str(year))
            if len(v) >= 7:
                dates.add(v[:7])
            if len(v) == 10:
                dates.add(v)
    return dates, nums


def _bounded_to(values: list[str], year: str) -> bool:
    """Whether date search values (``2019``, ``ge2019-01-01``...) keep a count within ``year``: that year, or
    a lower and an upper bound in it."""
    return any(v.startswith(year) for v in values) or (
        any(re.match(rf"(ge|gt){year}", v) for v in values) and any(re.match(rf"(le|lt){year}", v) for v in values))


def check_cohort_answer(
    answer: str,
    *,
    ran: Iterable[str],
    recount: Callable[[str], int],
    evidence: dict[str, str] | None = None,
    question: str = "",
) -> CitationReport:
    """Check a cohort answer (see module doc).

    ``ran`` holds the citation keys the tools produced this session (as :func:`tools.cohort_tools.cite_key`
    writes them); ``recount(key)`` runs a query
    again (e.g. :meth:`tools.cohort_tools.CohortSession.recount`); ``evidence`` maps resource
    references a tool returned to their rows.
    """
    evidence = evidence or {}
    ran_canon = {c for c in (_safe_canon(k) for k in ran) if c}
    free_dates, free_nums = _numbers(question)
    year = one_year(question)
    counts: dict[str, int | str] = {}

    def count_of(key: str) -> int | str:
        # One re-run per distinct query, whatever the number of sentences citing it.
        if key not in counts:
            try:
                counts[key] = recount(key)
            except (StoreError, CohortToolError) as e:
                counts[key] = f"could not be run again ({getattr(e, 'message', e)})"
        return counts[key]

    # Query citations hold '?', '&' and '.', which must not split sentences: stand-ins while splitting.
    keys: list[str] = []

    def hide(m: re.Match) -> str:
        keys.append(m.group(1))
        return f"\u27e6q{len(keys) - 1}\u27e7"

    hidden = QUERY_CITE.sub(hide, answer)
    claims: list[ClaimCheck] = []
    any_citation = False
    for hidden_sentence in split_sentences(hidden):
        sentence = _PLACEHOLDER.sub(lambda m: f"[{keys[int(m.group(1))]}]", hidden_sentence)
        queries = [keys[int(i)] for i in _PLACEHOLDER.findall(hidden_sentence)]
        refs = cited_refs(hidden_sentence)
        any_citation = any_citation or bool(queries or refs)
        claim = ClaimCheck(sentence=sentence, refs=queries + refs)
        ok_nums: set[str] = set()
        ok_dates: set[str] = set()
        for q in queries:
            try:
                canon = canonical_cite(q)
                params = parse_cite(q)[2]
            except CohortToolError as e:
                claim.reasons.append(str(e))
                continue
            if canon not in ran_canon:
                claim.reasons.append(f"[{q}] was not run by a tool in this session; run it with count_resources "
                                     "or count_patients and cite the key the tool prints")
                continue
            n = count_of(canon)
            if isinstance(n, str):
                claim.reasons.append(f"[{q}] {n}")
                continue
            ok_nums.add(str(n))
            if parse_cite(q)[1] == "Patient" and question.strip() and not counts_patients_themselves(question):
                # "How many female patients had covid-19?" answered with every woman: a true count of another
                # question.
                claim.reasons.append(f"[{q}] counts the patients themselves, but the question names a record about "
                                     "them; count the records that name it")
            sex = one_sex(question)
            if sex and not any(k in ("gender", "patient.gender") and v == sex for k, v in params):
                # "How many male patients..." counted over everyone (or the other sex).
                claim.reasons.append(f"[{q}] does not count {sex} patients only, but the question asks about them; "
                                     f"count with sex {sex}")
            clinical = [v for k, v in params if k.split(":")[0] in ("date", "onset-date", "authoredon",
                                                                     "recorded-date", "period")]
            if question.strip() and clinical and not re.search(r"\b(1[89]\d\d|20\d\d)\b|\b(since|before|after|"
                                                               r"between|year|month|during)\b", question, re.I):
                # The count is limited to a period the question never asked about ("have had prediabetes"
                # counted in 2010 only): a true count of another question.
                claim.reasons.append(f"[{q}] counts only {', '.join(query_dates(params))}, but the question asks "
                                     "about no period; count without a date")
            if year and clinical and not _bounded_to(clinical, year):
                # "stays that started in 2019" counted from 2019 on (date=ge2019): another question's count.
                claim.reasons.append(f"[{q}] counts date={', '.join(clinical)}, but the question asks about "
                                     f"{year}; count that year (start and end {year})")
            d, y = _date_values(query_dates(params))
            ok_dates |= d
            ok_nums |= y
        for ref in refs:
            line = evidence.get(ref)
            if line is None:
                claim.reasons.append(f"{ref} was not returned by any tool in this session")
                continue
            d, y = extract_values(line)
            ok_dates |= d | {x[:7] for x in d}
            ok_nums |= y | {str(int(x[:4])) for x in d}
        if refs:
            ok_nums.add(str(len(refs)))
        body = _PLACEHOLDER.sub(" ", hidden_sentence)
        body = re.sub(r"\[[^\[\]]*\]", lambda m: " " if cited_refs(m.group(0)) else m.group(0), body)
        dates, nums = _numbers(body, zero_words=bool(queries))
        stated_counts = {str(counts[canonical_cite(q)]) for q in queries
                         if _safe_canon(q) in counts and not isinstance(counts[_safe_canon(q)], str)}
        for d in sorted(dates):
            if d in free_dates or d in ok_dates:
                continue
            claim.reasons.append(f"date {d} is stated without a citation" if not claim.refs
                                 else f"date {d} does not appear in the cited queries or rows")
        for n in sorted(nums, key=lambda x: (len(x), x)):
            if n in free_nums or n in ok_nums:
                continue
            if not claim.refs:
                claim.reasons.append(f"value {n} is stated without a citation")
            elif stated_counts:
                claim.reasons.append(f"value {n} does not equal the count of the cited query "
                                     f"({', '.join(sorted(stated_counts))})")
            else:
                claim.reasons.append(f"value {n} does not appear in the cited queries or rows")
        claim.ok = not claim.reasons
        claims.append(claim)

    if not any_citation:
        for c in claims:
            if c.ok and not NEGATIVE.search(c.sentence):
                c.ok = False
                c.reasons.append("the answer cites nothing; cite the query whose count you state, "
                                 "e.g. [query:Encounter?class=IMP&date=2010]")
    bad = [c for c in claims if not c.ok]
    marked = answer
    for c in bad:
        marked = marked.replace(c.sentence, f"{c.sentence} {UNSUPPORTED_MARK}", 1)
    citations: list[str] = []
    for c in claims:
        for r in c.refs:
            if r not in citations:
                citations.append(r)
    return CitationReport(citations=citations, claims=claims, verified=not bad and bool(answer.strip()),
                          unsupported=[c.sentence for c in bad], marked_answer=marked)


def _safe_canon(key: str) -> str | None:
    try:
        return canonical_cite(key)
    except CohortToolError:
        return None

