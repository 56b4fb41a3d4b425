"""Aggregates over results records: per-group accuracy with intervals, paired comparisons, failure kinds.

Plain data (pydantic models) computed from ``ResultRecord``s; :mod:`agent.eval.report` renders them.
Results are grouped by (solver, model), so the agent and the full-context baseline, or two models,
compare when their results files are read together.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from itertools import combinations
from pathlib import Path

from pydantic import BaseModel

from .runner import ResultRecord, read_results


class GroupStats(BaseModel):
    """Aggregates of one (solver, model) group."""

    label: str
    n: int
    accuracy: float
    accuracy_ci: tuple[float, float]
    mean_score: float
    errors: int
    prompt_tokens: float
    prompt_tokens_median: float
    completion_tokens: float
    seconds_median: float
    seconds_p90: float
    retrieval_recall: float | None
    retrieval_precision: float | None
    verified_rate: float
    grounded: float
    unsupported_rate: float
    by_category: dict[str, tuple[int, float]]


def _mean(xs: list[float]) -> float | None:
    return statistics.fmean(xs) if xs else None


def _p(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for ``k`` successes in ``n`` trials.

    Chosen over the normal approximation because evaluation samples are small (about 100 tasks, a
    handful per category) and accuracies sit near 0 or 1, where the normal interval leaves [0, 1].
    """
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test on the discordant pairs (tasks one side got right)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


class PairedStats(BaseModel):
    """Two groups compared on the tasks both answered, so a partial or failed run does not skew the comparison."""

    a: str
    b: str
    n: int
    accuracy_a: float
    accuracy_b: float
    both: int
    only_a: int
    only_b: int
    neither: int
    p_value: float
    prompt_tokens_median_a: float
    prompt_tokens_median_b: float


def paired_stats(groups: dict[str, list[ResultRecord]]) -> list[PairedStats]:
    """Every pair of groups on their common tasks (pairs with no common task are left out)."""
    out: list[PairedStats] = []
    for a, b in combinations(groups, 2):
        ra = {r.task_id: r for r in groups[a]}
        rb = {r.task_id: r for r in groups[b]}
        common = sorted(ra.keys() & rb.keys())
        if not common:
            continue
        ca = [ra[t].correct for t in common]
        cb = [rb[t].correct for t in common]
        only_a = sum(x and not y for x, y in zip(ca, cb))
        only_b = sum(y and not x for x, y in zip(ca, cb))
        out.append(PairedStats(
            a=a, b=b, n=len(common), accuracy_a=sum(ca) / len(common), accuracy_b=sum(cb) / len(common),
            both=sum(x and y for x, y in zip(ca, cb)), only_a=only_a, only_b=only_b,
            neither=sum(not x and not y for x, y in zip(ca, cb)), p_value=mcnemar_exact(only_a, only_b),
            prompt_tokens_median_a=statistics.median(ra[t].prompt_tokens for t in common),
            prompt_tokens_median_b=statistics.median(rb[t].prompt_tokens for t in common),
        ))
    return out


_GAVE_UP = re.compile(
    r"not in the record|(does not|doesn't|did not|do not) (contain|mention|include|show|have|list|record)"
    r"|no (record|information|data|mention) (of|about|on)|(is|are|was|were) not (mentioned|recorded|found|documented)",
    re.I)


def gave_up(answer: str) -> bool:
    """Whether an answer declines ("Not in the record.", "The record does not contain ...")."""
    return bool(_GAVE_UP.search(answer or ""))


class FailureStats(BaseModel):
    """Why one group's wrong answers were wrong: was the proving resource in front of the model?

    "Read" means every gold reference was among what the solver saw (its ``evidence_refs``: tool
    results for the agent, the packed prompt for the full-context baseline). A give-up with the answer
    read is a reading failure of the model; without it, a retrieval failure.
    """

    label: str
    wrong: int
    errors: int
    gave_up_read: int
    gave_up_not_read: int
    wrong_read: int
    wrong_not_read: int


def failure_stats(label: str, recs: list[ResultRecord]) -> FailureStats:
    """Split the wrong answers of one group by give-up vs wrong value and by whether the gold was read."""
    counts = {"errors": 0, "gave_up_read": 0, "gave_up_not_read": 0, "wrong_read": 0, "wrong_not_read": 0}
    wrong = [r for r in recs if not r.correct]
    for r in wrong:
        if r.error is not None:
            counts["errors"] += 1
            continue
        read = r.scores.retrieval is not None and r.scores.retrieval.recall >= 1.0
        kind = "gave_up" if gave_up(r.answer) else "wrong"
        counts[f"{kind}_{'read' if read else 'not_read'}"] += 1
    return FailureStats(label=label, wrong=len(wrong), **counts)


def group_stats(label: str, recs: list[ResultRecord]) -> GroupStats:
    """Aggregate one group's records."""
    cats: dict[str, list[ResultRecord]] = defaultdict(list)
    for r in recs:
        cats[r.category].append(r)
    ret = [r.scores.retrieval for r in recs if r.scores.retrieval is not None]
    secs = [r.seconds for r in recs]
    right = sum(r.correct for r in recs)
    return GroupStats(
        label=label, n=len(recs), accuracy=right / len(recs), accuracy_ci=wilson_interval(right, len(recs)),
        mean_score=statistics.fmean(r.score for r in recs), errors=sum(r.error is not None for r in recs),
        prompt_tokens=statistics.fmean(r.prompt_tokens for r in recs),
        prompt_tokens_median=statistics.median(r.prompt_tokens for r in recs),
        completion_tokens=statistics.fmean(r.completion_tokens for r in recs),
        seconds_median=statistics.median(secs), seconds_p90=_p(secs, 0.9),
        retrieval_recall=_mean([x.recall for x in ret]), retrieval_precision=_mean([x.precision for x in ret]),
        verified_rate=sum(r.verified for r in recs) / len(recs),
        grounded=statistics.fmean(r.scores.citations.grounded for r in recs),
        unsupported_rate=sum(r.scores.citations.n_unsupported > 0 for r in recs) / len(recs),
        by_category={c: (len(rs), sum(r.correct for r in rs) / len(rs)) for c, rs in sorted(cats.items())},
    )


def model_label(model: str) -> str:
    """The model part of a group label for records written before ``model_spec`` existed, whose ``model`` was
    the spec: the spec without its ``#options``.

    Runtime options (threads, context size) change speed, not which model answered, and a run resumed
    with other threads must stay one group.
    """
    return model.split("#", 1)[0].strip()


def record_model(r: ResultRecord) -> str:
    """The model a record's group is named for: its ``model`` (the model's own name, without runtime options)
    when the record also carries ``model_spec``, else :func:`model_label` of the old spec-valued ``model``."""
    return r.model.strip() if r.model_spec else model_label(r.model)


def load_groups(paths: list[str | Path]) -> dict[str, list[ResultRecord]]:
    """Records of every file, grouped by ``solver / model`` (a task answered twice keeps its last record)."""
    groups: dict[str, dict[str, ResultRecord]] = defaultdict(dict)
    for p in paths:
        if not Path(p).is_file():
            raise FileNotFoundError(f"results file not found: {p}")
        for r in read_results(p):
            model = record_model(r) if r.model else ""
            groups[f"{r.solver} / {model}" if model else r.solver][r.task_id] = r
    return {k: list(v.values()) for k, v in sorted(groups.items()) if v}


class VerifiedTable(BaseModel):
    """The 2x2 table verified/unverified x right/wrong of one group, and what it says about ``verified``.

    ``precision``: right answers among the verified ones (what a reader filtering on ``verified`` gets),
    with its Wilson 95% interval; ``coverage``: the share of right answers that are verified (how much a
    strict filter throws away). ``None`` where the denominator is empty.
    """

    label: str
    n: int
    verified_right: int
    verified_wrong: int
    unverified_right: int
    unverified_wrong: int
    precision: float | None
    precision_ci: tuple[float, float]
    coverage: float | None


def verified_table(label: str, recs: list[ResultRecord]) -> VerifiedTable:
    """Count one group's records into the verified x right table."""
    vr = sum(r.verified and r.correct for r in recs)
    vw = sum(r.verified and not r.correct for r in recs)
    ur = sum(not r.verified and r.correct for r in recs)
    uw = len(recs) - vr - vw - ur
    return VerifiedTable(label=label, n=len(recs), verified_right=vr, verified_wrong=vw, unverified_right=ur,
                         unverified_wrong=uw, precision=vr / (vr + vw) if vr + vw else None,
                         precision_ci=wilson_interval(vr, vr + vw), coverage=vr / (vr + ur) if vr + ur else None)


def wrong_but_verified(recs: list[ResultRecord]) -> list[ResultRecord]:
    """The answers marked verified that are wrong: the holes the checks still let through."""
    return [r for r in recs if r.verified and not r.correct]
