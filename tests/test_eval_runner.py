"""Evaluation runner: concurrency, per-task timeout, failures recorded, resume; gold solver self-check."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from ehr_agent.agent.eval.runner import read_results, run
from ehr_agent.agent.eval.solvers import GoldSolver
from ehr_agent.agent.eval.tasks import IntegerGold, Task
from ehr_agent.agent.schema import AnswerResult

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "synthea-blaze-120"


def tasks(n):
    return [Task(id=f"t{i}", patient="p", category="c" if i % 2 else "d", question=f"how many {i}?",
                 answer=IntegerGold(value=i), gold_refs=[f"Encounter/{i}"]) for i in range(n)]


class FakeSolver:
    name = "fake"

    def __init__(self, delay=0.0, fail=(), slow=(), slow_delay=3.0):
        self.delay, self.fail, self.slow, self.slow_delay = delay, set(fail), set(slow), slow_delay
        self.active = self.peak = 0
        self.lock = threading.Lock()
        self.calls = []

    def solve(self, task, store):
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.calls.append(task.id)
        try:
            time.sleep(self.slow_delay if task.id in self.slow else self.delay)
            if task.id in self.fail:
                raise RuntimeError("backend exploded")
            return AnswerResult(answer=f"There were {task.answer.value} [Encounter/{task.answer.value}]",
                                citations=[f"Encounter/{task.answer.value}"], prompt_tokens=10, completion_tokens=2)
        finally:
            with self.lock:
                self.active -= 1


def test_concurrency_is_bounded_and_used(tmp_path):
    s = FakeSolver(delay=0.15)
    summary = run(tasks(9), s, None, tmp_path / "r.jsonl", progress=False, concurrency=3)
    assert summary.ran == 9 and summary.correct == 9 and summary.errors == 0
    assert s.peak == 3
    recs = read_results(tmp_path / "r.jsonl")
    assert sorted(r.task_id for r in recs) == sorted(t.id for t in tasks(9))
    assert all(r.solver == "fake" and r.prompt_tokens == 10 for r in recs)


def test_timeout_and_failure_are_recorded_not_fatal(tmp_path):
    s = FakeSolver(delay=0.01, fail={"t2"}, slow={"t4"}, slow_delay=2.0)
    t0 = time.perf_counter()
    summary = run(tasks(6), s, None, tmp_path / "r.jsonl", progress=False, concurrency=2, timeout=0.5)
    assert time.perf_counter() - t0 < 1.9  # the slow task did not hold the run
    by_id = {r.task_id: r for r in read_results(tmp_path / "r.jsonl")}
    assert len(by_id) == 6 and summary.errors == 2
    assert "timeout" in by_id["t4"].error and not by_id["t4"].correct
    assert "backend exploded" in by_id["t2"].error and not by_id["t2"].correct
    assert by_id["t1"].correct and by_id["t1"].error is None


def test_resume_skips_done_tasks_and_survives_a_torn_line(tmp_path):
    out = tmp_path / "r.jsonl"
    s = FakeSolver()
    first = run(tasks(5), s, None, out, progress=False, limit=2)
    assert first.ran == 2
    with out.open("a") as f:
        f.write('{"task_id": "t4", "categ')  # an interrupted write
    s2 = FakeSolver()
    second = run(tasks(5), s2, None, out, progress=False)
    assert second.skipped == 2 and second.ran == 3
    assert set(s2.calls) == {"t2", "t3", "t4"}
    ids = [r.task_id for r in read_results(out)]
    assert sorted(ids) == ["t0", "t1", "t2", "t3", "t4"]


# A run in a child process, slow enough per task to be killed midway.
_CHILD = """
import sys, time
from ehr_agent.agent.eval.runner import run
from ehr_agent.agent.eval.tasks import read_tasks
from ehr_agent.agent.schema import AnswerResult

class Slow:
    name = "slow"
    def solve(self, task, store):
        time.sleep(0.1)
        return AnswerResult(answer=f"There were {task.answer.value}")

run(read_tasks(sys.argv[1]), Slow(), None, sys.argv[2], progress=False, concurrency=2)
"""


def test_run_killed_midway_resumes_without_redoing_or_losing_a_task(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from ehr_agent.agent.eval.tasks import write_tasks

    all_tasks = tasks(60)
    tf, out = tmp_path / "t.jsonl", tmp_path / "r.jsonl"
    write_tasks(tf, all_tasks)
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(tf), str(out)], cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + 60
    # the header line, then at least 6 records
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 7):
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    before = {r.task_id for r in read_results(out)}
    assert 6 <= len(before) < len(all_tasks), len(before)  # killed midway, not before or after

    s2 = FakeSolver()
    # another solver than the killed run's: allowed here, this test is about the records, not the header
    summary = run(all_tasks, s2, None, out, progress=False, concurrency=2, allow_mismatch=True)
    assert summary.skipped == len(before)
    assert set(s2.calls) == {t.id for t in all_tasks} - before and len(s2.calls) == len(set(s2.calls))
    ids = [r.task_id for r in read_results(out)]
    assert sorted(ids) == sorted(t.id for t in all_tasks)  # each task exactly once


@pytest.mark.shared
def test_gold_solver_scores_every_generated_category_correct(tmp_path):
    """Scorer self-check: the gold answer, written out, must score correct for every generated task."""
    from ehr_agent.agent.eval.generator import generate_tasks
    from ehr_agent.tools.retrieval.memory_store import MemoryStore

    files = [DATA / f"{p}.json.bz2" for p in ("0ef7a3b5-53ee-e765-10e2-c63a904ad0fd",
                                              "5d2a2d08-cf2e-b7ad-a0db-77551a2777ec",
                                              "098fc002-b87e-49dc-4b8e-8900a1bc8661")]
    ts = generate_tasks(MemoryStore.from_files(files), per_patient=200, seed=1, cohort=8)
    summary = run(ts, GoldSolver(), None, tmp_path / "g.jsonl", progress=False, concurrency=4)
    recs = read_results(tmp_path / "g.jsonl")
    wrong = [(r.category, r.question, r.answer) for r in recs if not r.correct]
    assert not wrong, wrong[:5]
    assert summary.ran == len(ts) and len({r.category for r in recs}) >= 10
    assert all(r.scores.retrieval is None or r.scores.retrieval.recall == 1.0 for r in recs)


def test_results_file_is_jsonl_with_expected_fields(tmp_path):
    run(tasks(2), FakeSolver(), None, tmp_path / "r.jsonl", progress=False, model_name="m1")
    rec = json.loads((tmp_path / "r.jsonl").read_text().splitlines()[1])  # line 0 is the run header
    for k in ("task_id", "category", "solver", "model", "answer", "scores", "prompt_tokens", "completion_tokens",
              "seconds", "error"):
        assert k in rec
    assert rec["model"] == "m1"


def test_bad_concurrency_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="concurrency"):
        run(tasks(1), FakeSolver(), None, tmp_path / "r.jsonl", progress=False, concurrency=0)


def test_rescore_recomputes_with_current_scorers(tmp_path):
    from ehr_agent.agent.eval.runner import rescore

    ts = tasks(4)
    run(ts, FakeSolver(), None, tmp_path / "r.jsonl", progress=False)
    recs = read_results(tmp_path / "r.jsonl")
    # pretend the task's gold changed (as a scorer fix would change a verdict)
    ts[1] = ts[1].model_copy(update={"answer": IntegerGold(value=99)})
    new = rescore(ts[:3], recs)
    assert len(new) == 3  # t3 has no task any more
    by = {r.task_id: r for r in new}
    assert not by["t1"].correct and by["t0"].correct and by["t2"].correct
    assert by["t2"].citations == ["Encounter/2"] and by["t2"].prompt_tokens == 10
