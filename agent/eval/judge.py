"""Optional LLM-judge panel for free-text answers (off by default).

A single small judge is unreliable, so the panel needs at least two different models and takes several
votes; the verdict is the majority, and a tie counts as incorrect. The deterministic scorers stay the
primary measure; the panel's verdict is stored next to them, never instead of them.
"""

from __future__ import annotations

import re

from pydantic import BaseModel

from ehr_agent.agent.models.base import ChatMessage, ChatModel, ModelError

from .solvers import fill, load_prompt
from .tasks import Task

_VERDICT = re.compile(r"\b(INCORRECT|CORRECT)\b", re.I)


class JudgeVerdict(BaseModel):
    """Votes of the panel on one answer."""

    correct: bool
    votes_correct: int
    votes: int
    failures: int = 0


class JudgePanel:
    """Majority vote of several chat models, ``votes_per_model`` calls each."""

    def __init__(self, models: list[ChatModel], *, votes_per_model: int = 1, min_models: int = 2):
        # The same model twice is still one judge: count distinct model names.
        if len({getattr(m, "name", None) or id(m) for m in models}) < min_models:
            raise ValueError(f"a judge panel needs at least {min_models} different models (got {len(models)})")
        if len(models) * votes_per_model < 3:
            raise ValueError("a judge panel needs at least 3 votes in all; raise votes_per_model")
        self.models = models
        self.votes_per_model = votes_per_model
        self.template = load_prompt("judge")

    def judge(self, task: Task, answer: str) -> JudgeVerdict:
        """The panel's verdict on ``answer`` (a failed call is not a vote)."""
        prompt = fill(self.template, question=task.question, gold=task.answer.display(), answer=answer)
        yes = total = failures = 0
        for m in self.models:
            for _ in range(self.votes_per_model):
                try:
                    out = m.chat([ChatMessage(role="user", content=prompt)], None, max_tokens=8).content
                except ModelError:
                    failures += 1
                    continue
                hit = _VERDICT.search(out or "")
                if not hit:
                    failures += 1
                    continue
                total += 1
                yes += hit.group(1).upper() == "CORRECT"
        return JudgeVerdict(correct=total > 0 and yes * 2 > total, votes_correct=yes, votes=total, failures=failures)
