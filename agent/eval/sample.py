"""Stratified samples of a task set: the same number of tasks from every category."""

from __future__ import annotations

import random
from collections import defaultdict

from .tasks import Task


def _stratum(t: Task) -> str:
    return str(t.meta.get("stratum", t.meta.get("op")))


def stratified_sample(tasks: list[Task], per_category: int, seed: int = 0) -> list[Task]:
    """Up to ``per_category`` tasks of each category, drawn without replacement, deterministic for a seed.

    Within a category the draw prefers distinct patients and distinct question types (``meta.op``, or
    ``meta.stratum`` where a task names a finer stratum: the concept asked about, yes against no) before
    repeating one, so a small sample still covers the category's variety. The result keeps the
    input's order.
    """
    if per_category < 1:
        raise ValueError("per_category must be at least 1")
    by_cat: dict[str, list[Task]] = defaultdict(list)
    for t in tasks:
        by_cat[t.category].append(t)
    chosen: set[str] = set()
    for cat in sorted(by_cat):
        rng = random.Random(f"{seed}:{cat}")
        pool = list(by_cat[cat])
        rng.shuffle(pool)
        used_patients: set[str | None] = set()
        used_ops: dict[str, int] = defaultdict(int)
        picked: list[Task] = []
        while pool and len(picked) < per_category:
            # Least-used question type first, then a patient not yet drawn.
            pool.sort(key=lambda t: (used_ops[_stratum(t)], t.patient in used_patients))
            t = pool.pop(0)
            picked.append(t)
            used_ops[_stratum(t)] += 1
            used_patients.add(t.patient)
        chosen.update(t.id for t in picked)
    return [t for t in tasks if t.id in chosen]


def interleave_categories(tasks: list[Task]) -> list[Task]:
    """Round-robin over categories (in order of first appearance), each category's tasks in input order.

    A run over an interleaved sample that is stopped part way still covers every category about
    equally, which a run in file order does not.
    """
    by_cat: dict[str, list[Task]] = {}
    for t in tasks:
        by_cat.setdefault(t.category, []).append(t)
    rounds = max((len(v) for v in by_cat.values()), default=0)
    return [v[i] for i in range(rounds) for v in by_cat.values() if i < len(v)]
