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

# Grammar and counting words end a noun phrase; kind words ("vaccine", "shot", "allergic") do not, because
# they belong to the name ("meningitis vaccine", "allergic rhinitis"). Kept apart from the vocabulary's
# filler list, which drops kind words on purpose.
_STOP = frozenset("""
a an the of in on at for to by from with without and or as into during since before after between until
how many much number count total what which who whom that this these those there here ever any all every
is are was were be been being has have had having do does did done get got gets given received receive
patient patients people persons person individuals individual women woman men man female females male males
children child kids kid adults adult different distinct unique separate everyone everybody anyone across among
data record records recorded chart database diagnosed diagnosis history year years time times spent
their his her its they them he she it we our us you your
""".split())

_SEGMENTS = re.compile(r"[^\w\s'-]+")


def noun_phrases(question: str) -> list[list[str]]:
    """The question's runs of words that are not grammar or counting words (numbers dropped), in order.

    Punctuation ends a run: "thin bones (osteoporosis)" gives ``["thin", "bones"]`` and ``["osteoporosis"]``."""
    runs: list[list[str]] = []
    for segment in _SEGMENTS.split(question.lower()):
        run: list[str] = []
        for w in vocab.words(segment):
            if len(w) == 1 and run:
                run.append(w)  # a letter after a word is part of the name ("hepatitis a", "vitamin d")
            elif w in _STOP or re.fullmatch(r"[\d-]+", w):
                if run:
                    runs.append(run)
                run = []
            else:
                run.append(w)
        if run:
            runs.append(run)
    return runs


def choose_what(model_what: str, question: str, resolves: Callable[[str], bool]) -> str:
    """The ``what`` to count: the question's noun phrase that holds every word of the model's ``what`` (a
    word may be part of a longer one: "diabetes" in "prediabetes"), if that phrase names something in the
    store; else the model's own words, if they do; else the first phrase of the question that does, longest
    first; else the model's words unchanged (the tool then says that nothing matched)."""
    mine = vocab.words(model_what)
    runs = noun_phrases(question)
    if mine:
        for run in runs:
            if all(any(m in w for w in run) for m in mine):
                phrase = " ".join(run)
                if phrase != " ".join(mine) and resolves(phrase):
                    return phrase
                break
    if mine and resolves(model_what):
        return model_what
    for run in sorted(runs, key=len, reverse=True):
        phrase = " ".join(run)
        if resolves(phrase):
            return phrase
    return model_what


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


__all__ = ["choose_what", "compose_answer", "noun_phrases"]
