"""Shared pieces of the category generators: task construction, phrasing choice, cross-patient vocabulary."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from .tasks import Task

# Phrases that express a direction of change, for trend questions.
TREND_OPTIONS = {
    # The questions ask "trending up or down", so the answers echo that wording: "trending up" must count.
    "increased": ["increase", "increased", "increasing", "rose", "risen", "rising", "went up", "gone up", "going up",
                  "trending up", "trended up", "upward"],
    "decreased": ["decrease", "decreased", "decreasing", "fell", "fallen", "falling", "dropped", "went down",
                  "gone down", "going down", "trending down", "trended down", "downward", "declined", "declining"],
}

GENDER_OPTIONS = {
    "male": ["male", "man", "boy", "m"],
    "female": ["female", "woman", "girl", "f"],
}


@dataclass
class Vocabulary:
    """Names seen across all patients, used to ask questions whose true answer is "no"."""

    allergies: set[str] = field(default_factory=set)
    medications: set[str] = field(default_factory=set)
    conditions: set[str] = field(default_factory=set)


def task_id(category: str, patient: str | None, question: str) -> str:
    """Stable id: category plus a digest of patient and question (same inputs, same id)."""
    h = hashlib.sha1(f"{patient}|{question}".encode()).hexdigest()[:12]
    return f"{category}-{h}"


def make_task(category: str, patient: str | None, question: str, answer, refs, *, as_of=None, meta=None,
              refs_mode: str = "all") -> Task:
    """A :class:`Task` with a stable id and de-duplicated, sorted gold refs."""
    m = dict(meta or {})
    if refs_mode != "all":
        m["refs_mode"] = refs_mode
    return Task(
        id=task_id(category, patient, question),
        patient=patient,
        category=category,
        question=question,
        as_of=as_of,
        answer=answer,
        gold_refs=sorted(set(refs)),
        meta=m,
    )


def pick(rng: random.Random, templates: list[str], **kw) -> str:
    """One of several phrasings, filled in."""
    return rng.choice(templates).format(**kw)


def decimals(v: float) -> int:
    """Decimal places of a number as JSON wrote it."""
    s = repr(float(v))
    if "e" in s or "." not in s:
        return 0
    frac = s.split(".")[1].rstrip("0")
    return len(frac)


def tolerance_for(v: float) -> float:
    """Half a unit of the last digit a reader would keep (at most two decimals)."""
    return 0.5 * 10 ** -min(decimals(v), 2)
