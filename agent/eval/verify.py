"""Recompute an answer's ``verified`` verdict after the fact, without running any model.

The agent's verdict is fixed when it answers: results written before a claim check existed (or by a
solver that never checks, like the full-context baseline) carry a verdict that today's checks may
reject. :func:`recheck` runs the same citation check and claim checks the agent's ``check`` node runs
(:func:`agent.citations.check_answer` with an :class:`agent.claims.ClaimChecker`) on a stored answer,
against the store:

- the evidence is what the solver had in front of it, read again from the store and projected by the
  same :meth:`PatientSession.row` the tools use: the rows of the record's ``evidence_refs`` for the agent
  (every row a tool returned), and for the full-context baseline (whose prompt held the whole record)
  the rows the answer cites that belong to the patient;
- everything is scoped to the task's patient (``PatientSession(store, patient, as_of)``), at the task's
  as-of date, or, when the task has none, the day the record was written (the agent's "today" then).

What cannot be rechecked keeps its stored verdict, with a note saying why: cohort tasks (no patient),
records that ended in an error, and a patient the store does not hold. Values the tools computed (calculator
results, counts, ages) are in results files written since they carry ``computed``; in older files a value
only the calculator computed counts as unsupported here (ages and counts are vouched for by the claim checks).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from pydantic import BaseModel, Field

from ehr_agent.agent.citations import check_answer, cited_refs
from ehr_agent.agent.claims import ClaimChecker
from ehr_agent.agent.cohort import is_query_key
from ehr_agent.agent.cohort_citations import check_cohort_answer
from ehr_agent.tools.cohort_tools import CohortSession
from ehr_agent.tools.facts import ref_of
from ehr_agent.tools.patient_tools import PatientSession, note_chunks
from ehr_agent.tools.store.base import StoreError

#: The marks the agent adds to failing sentences ("[unsupported]", "[unsupported: a later HbA1c exists]"):
#: they are the old verdict, not part of the claim, and a label's numbers must not be checked as values.
_MARK = re.compile(r"[ \t]*\[unsupported(?::[^\[\]]*)?\]", re.I)

#: Solvers that had the whole record in the prompt: their evidence is whatever of the patient's they cite.
WHOLE_RECORD_SOLVERS = frozenset({"full-context"})


class Recheck(BaseModel):
    """A recomputed (or kept) verdict for one results record."""

    verified: bool
    unsupported: list[str] = Field(default_factory=list)
    unsupported_reasons: list[str] = Field(default_factory=list)
    #: "rechecked" when the checks ran, else "stored verdict kept: <why>".
    note: str


def strip_marks(answer: str) -> str:
    """The answer without the ``[unsupported...]`` marks a previous check added."""
    return _MARK.sub("", answer or "")


def answer_as_of(task_as_of: str | None, finished_at: str = "") -> str:
    """The as-of date the answer was given at: the task's, else the day the record was written, else today."""
    if task_as_of:
        return task_as_of[:10]
    if re.match(r"^\d{4}-\d{2}-\d{2}", finished_at or ""):
        return finished_at[:10]
    return date.today().isoformat()


def evidence_rows(session: PatientSession, refs: list[str]) -> dict[str, str]:
    """The projected rows of ``refs`` that belong to the session's patient (a note chunk ``#n`` by its text).

    Refs the store lacks or that are another patient's are left out, so citing them fails the check as it
    would have in the agent."""
    out: dict[str, str] = {}
    for ref in refs:
        base, _, chunk = ref.partition("#")
        rtype, _, rid = base.partition("/")
        if not rtype or not rid:
            continue
        try:
            r = session.store.read(rtype, rid)
        except StoreError:
            continue
        if not session.allowed(r):
            continue
        out[ref_of(r)] = session.row(r).text
        if chunk and rtype == "DocumentReference":
            out.update({c: line for c, line in note_chunks(r) if c == ref})
    return out


def kept(verified: bool, unsupported: list[str], reasons: list[str], why: str) -> Recheck:
    """The stored verdict, unchanged, with the reason it was not recomputed."""
    return Recheck(verified=verified, unsupported=list(unsupported), unsupported_reasons=list(reasons),
                   note=f"stored verdict kept: {why}")


def recheck(store: Any, *, patient: str | None, question: str, answer: str, solver: str, evidence_refs: list[str],
            as_of: str, stored_verified: bool = False, stored_unsupported: list[str] | None = None,
            stored_reasons: list[str] | None = None, error: str | None = None,
            computed: list[str] | None = None) -> Recheck:
    """Run the citation and claim checks on a stored answer (see the module docstring)."""
    old = (stored_verified, list(stored_unsupported or []), list(stored_reasons or []))
    if error is not None:
        return kept(*old, why="the run ended in an error")
    if patient is None:
        return recheck_cohort(store, question=question, answer=answer, evidence_refs=evidence_refs, old=old)
    session = PatientSession(store, patient, as_of)
    if not session.exists():
        return kept(*old, why=f"patient {patient} is not in the store")
    text = strip_marks(answer)
    refs = cited_refs(text) if solver in WHOLE_RECORD_SOLVERS else list(evidence_refs)
    evidence = evidence_rows(session, refs)

    belongs = session.belongs

    report = check_answer(text, evidence, belongs=belongs, computed=list(computed or []), question=question, as_of=as_of,
                          claims=ClaimChecker(session, question))
    return Recheck(verified=report.verified, unsupported=report.unsupported,
                   unsupported_reasons=report.unsupported_reasons, note="rechecked")


def recheck_cohort(store: Any, *, question: str, answer: str, evidence_refs: list[str],
                   old: tuple[bool, list[str], list[str]]) -> Recheck:
    """The cohort check on a stored cohort answer: its cited queries must be among those the run made
    (``evidence_refs``), and running them again on the store must give the numbers stated."""
    text = strip_marks(answer)
    if any(not is_query_key(r) for r in cited_refs(text)):
        # Rows cited beside the counts were read through tools whose text the log keeps only in part.
        return kept(*old, why="cohort answer cites resources, not only queries")
    report = check_cohort_answer(text, ran=[r for r in evidence_refs if is_query_key(r)],
                                 recount=CohortSession(store).recount, evidence={}, question=question)
    return Recheck(verified=report.verified, unsupported=report.unsupported,
                   unsupported_reasons=report.unsupported_reasons, note="rechecked")
