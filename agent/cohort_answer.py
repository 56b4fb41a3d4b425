"""Cohort questions: hold ``cohort_count``'s ``what`` to the question's own words, and write the answer from
the count that ran when the model's sentence does not pass its check.

Both exist because a small model does the choosing and copying worse than code can:

- it shortens the thing counted ("2013: number of patients given a meningitis vaccine?" becomes
  ``what="vaccine"``, which counts every vaccine), or copies a word that is not the thing at all
  (``what="any"`` for "any history of chronic sinusitis");
- it runs the right count and then writes a sentence that cites it wrongly, or adds uncited commentary, so
  a count the tool computed ends as "Could not answer".

:func:`choose_what` picks the noun phrase of the question that holds the model's words (or, when the model's
words name nothing in the store, another phrase of the question that does). :func:`compose_answer` takes the
``Answer:`` line the count tool printed for the last count that ran; the graph re-checks it like any draft.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from ehr_agent.tools import vocabulary as vocab
from ehr_agent.tools.cohort_tools import people_word


def choose_what(model_what: str, question: str, resolves: Callable[[str], bool]) -> str:
    """The ``what`` to count: the question's noun phrase that holds every word of the model's ``what`` (a
    word may be part of a longer one: "diabetes" in "prediabetes"), if that phrase names something in the
    store; else the model's own words, if they do; else the first phrase of the question that does, longest
    first; else the model's words unchanged (the tool then says that nothing matched)."""
    mine = vocab.words(model_what)
    runs = vocab.noun_phrases(question)
    if mine:
        for run in runs:
            if _holds(run, mine):
                # The whole phrase, else its longest part that holds the model's words and names something
                # ("peanut allergy" of "peanut allergy prevalence").
                spans = sorted(((i, j) for i in range(len(run)) for j in range(i + 1, len(run) + 1)),
                               key=lambda ij: ij[0] - ij[1])
                for i, j in spans:
                    part = run[i:j]
                    phrase = " ".join(part)
                    if len(part) > len(mine) and _holds(part, mine) and resolves(phrase):
                        return phrase
                break
    ours = _naming(question)
    if mine and resolves(model_what) and _naming(model_what) & ours:
        return model_what
    # The model's words are not the question's ("inpatient stays" for "went to the ER"): a phrase of the
    # question that names something wins over them.
    for run in sorted(runs, key=len, reverse=True):
        phrase = " ".join(run)
        if _naming(phrase) and resolves(phrase):
            return phrase
    return model_what


def _holds(run: list[str], mine: list[str]) -> bool:
    """Whether every word of ``mine`` is in a word of ``run``, or its root is ("diabetes" in "prediabetic")."""
    return all(any(m in w or (len(m) >= 6 and m[:-2] in w) for w in run) for m in mine)


def _naming(text: str) -> set[str]:
    """The words of ``text`` that name a thing: content stems and lay phrases ("ER", "BP"); not the words that
    say who is counted ("female patients")."""
    return {w for w in vocab.content_stems(text) if not people_word(w)} | {p for p, _, _ in vocab.lay_phrases(text)}


_ANSWER_LINE = re.compile(r"^Answer: (.+\[(?:patients|query):[^\]]+\]\.?)\s*$", re.M)


def compose_answer(tool_texts: Iterable[str], ran: Iterable[str]) -> str | None:
    """The ``Answer:`` line of the last count tool output whose cited count ran in this question, or None."""
    ran = set(ran)
    for text in reversed(list(tool_texts)):
        for line in reversed(_ANSWER_LINE.findall(text or "")):
            keys = re.findall(r"\[((?:patients|query):[^\]]+)\]", line)
            if keys and all(k in ran for k in keys):
                return line if line.endswith(".") else line + "."
    return None


__all__ = ["choose_what", "compose_answer"]
