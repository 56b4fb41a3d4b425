"""Run a solver over tasks: asyncio concurrency (sync solvers in threads), per-task timeout, failures
recorded and never fatal, resumable (task ids already in the results file are skipped).

Results are JSON Lines, one :class:`ResultRecord` per task, appended as each task finishes, so an
interrupted run loses at most the tasks in flight. The file opens with a :class:`~.runlog.RunHeader` (how the
run was made); a resumed run appends a :class:`~.runlog.ResumeNote`, and refuses to mix its records with a
file started with other settings, model spec, solver or task file (see :func:`run_tasks`).
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from ehr_agent.agent.schema import AnswerResult

from .runlog import ResumeNote, RunHeader, make_header, parse_line, read_header, resume_note
from .scorers import Scores, score_result
from .tasks import Task


class ResultRecord(BaseModel):
    """One answered (or failed) task, scored."""

    task_id: str
    category: str
    patient: str | None
    solver: str
    #: The model that answered, by its own name (``embedded:qwen2.5-coder-1.5b``), so specs that name the same
    #: model (``embedded``, ``embedded:1.5b``) stay one group in reports.
    model: str
    #: The spec as given to ``--model``, options included (``embedded#n_threads=1``): how the model ran.
    model_spec: str = ""
    question: str
    gold: str
    answer: str
    correct: bool
    score: float
    scores: Scores
    citations: list[str] = Field(default_factory=list)
    evidence_refs: list[str] = Field(default_factory=list)
    verified: bool = False
    unsupported: list[str] = Field(default_factory=list)
    #: Why each sentence of ``unsupported`` failed (same order); empty in files written before it existed.
    unsupported_reasons: list[str] = Field(default_factory=list)
    computed: list[str] = Field(default_factory=list)
    #: the run's tool calls in order (name, arguments, rows returned, refused/error, seconds), so a miss can be
    #: explained without a re-run
    tool_calls: list[dict] = Field(default_factory=list)
    #: Where ``verified`` comes from when it was not the solver's own check: "rechecked" by ``eval rescore
    #: --store``, or "stored verdict kept: <why>". Empty for a verdict given at run time.
    verified_note: str = ""
    steps: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    error: str | None = None
    finished_at: str = ""
    #: each model turn, tool call (with the text it returned, capped) and the final check, in order
    #: (:func:`agent.trajectory.trajectory_from_state`); empty in files written before it existed
    trajectory: list[dict] = Field(default_factory=list)


class RunSummary(BaseModel):
    """What a run did."""

    total: int
    skipped: int
    ran: int
    correct: int
    errors: int
    seconds: float
    tasks_per_minute: float
    #: the line appended when the run resumed into an existing file (None for a new file)
    resume: ResumeNote | None = None

    @property
    def accuracy(self) -> float:
        return self.correct / self.ran if self.ran else 0.0


def read_results(path: str | Path) -> list[ResultRecord]:
    """Every readable task record of a results file: the header and resume lines are left out (read the header
    with :func:`~.runlog.read_header`), and so is a torn last line from an interrupted run."""
    p = Path(path)
    if not p.is_file():
        return []
    out = []
    with p.open(encoding="utf-8") as f:
        for line in f:
            obj = parse_line(line)
            if obj is None or "record" in obj:
                continue
            try:
                out.append(ResultRecord.model_validate(obj))
            except ValidationError:
                continue
    return out


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(-1, 2)
        return f.read(1) == b"\n"


def record_for(task: Task, result: AnswerResult, *, solver: str, model: str, seconds: float,
               model_spec: str = "") -> ResultRecord:
    """Score ``result`` and wrap it as a results-file record."""
    scores = score_result(task, result)
    return ResultRecord(
        task_id=task.id, category=task.category, patient=task.patient, solver=solver, model=model,
        model_spec=model_spec,
        question=task.question, gold=task.answer.display(), answer=result.answer, correct=scores.answer.correct,
        score=scores.answer.score, scores=scores, citations=result.citations, evidence_refs=result.evidence_refs,
        verified=result.verified, unsupported=result.unsupported, unsupported_reasons=result.unsupported_reasons,
        computed=result.computed, tool_calls=result.tool_calls, trajectory=result.trajectory,
        steps=result.steps, prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens, seconds=result.seconds or seconds, error=result.error,
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def rescore(tasks: list[Task], records: list[ResultRecord], store: Any = None) -> list[ResultRecord]:
    """Records scored again with the current scorers (after a scorer fix), without running any model.

    With a ``store``, ``verified`` and ``unsupported`` are recomputed too: the current citation and claim
    checks run on each stored answer (:func:`agent.eval.verify.recheck`). Without one, the stored verdict
    is kept and ``verified_note`` says so. Records whose task is not in ``tasks`` are dropped; a judge
    verdict already present is kept.
    """
    by_id = {t.id: t for t in tasks}
    out = []
    for r in records:
        t = by_id.get(r.task_id)
        if t is None:
            continue
        verdict = _verdict(t, r, store)
        res = AnswerResult(answer=r.answer, citations=r.citations, evidence_refs=r.evidence_refs,
                           verified=verdict.verified, unsupported=verdict.unsupported,
                           unsupported_reasons=verdict.unsupported_reasons, steps=r.steps,
                           prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens, seconds=r.seconds,
                           error=r.error, computed=r.computed, tool_calls=r.tool_calls, trajectory=r.trajectory)
        new = record_for(t, res, solver=r.solver, model=r.model, seconds=r.seconds, model_spec=r.model_spec)
        new.scores.judge = r.scores.judge
        new.finished_at = r.finished_at
        new.verified_note = verdict.note
        out.append(new)
    return out


def _verdict(task: Task, r: ResultRecord, store: Any):
    """The record's verdict recomputed against ``store``, or kept (no store, or the check cannot run)."""
    from .verify import Recheck, answer_as_of, kept, recheck

    stored = (r.verified, r.unsupported, r.unsupported_reasons)
    if store is None:
        # A file rescored earlier keeps saying how its verdict was reached.
        return Recheck(verified=r.verified, unsupported=r.unsupported, unsupported_reasons=r.unsupported_reasons,
                       note=r.verified_note or "stored verdict kept: no --store given")
    try:
        task = resolve_patient(task, store)
    except LookupError as e:
        return kept(*stored, why=str(e))
    try:
        return recheck(store, patient=task.patient, question=task.question, answer=r.answer, solver=r.solver,
                       evidence_refs=r.evidence_refs, as_of=answer_as_of(task.as_of, r.finished_at),
                       stored_verified=r.verified, stored_unsupported=r.unsupported,
                       stored_reasons=r.unsupported_reasons, error=r.error, computed=r.computed)
    except Exception as e:  # one unreadable record must not stop the rescore of the others
        return kept(*stored, why=f"check failed: {type(e).__name__}: {e}")


def resolve_patient(task: Task, store: Any) -> Task:
    """An adapted task that carries only an MRN (``meta.patient_identifier``) gets the patient's FHIR id."""
    ident = task.meta.get("patient_identifier")
    if task.patient is not None or not ident:
        return task
    hits = [r["id"] for r in store.search_all("Patient", {"identifier": ident})]
    if len(hits) != 1:
        raise LookupError(f"patient identifier {ident!r} matches {len(hits)} patients")
    return task.model_copy(update={"patient": hits[0]})


async def run_tasks(
    tasks: list[Task],
    solver: Any,
    store: Any,
    out: str | Path,
    *,
    model_name: str = "",
    model_spec: str = "",
    concurrency: int = 4,
    timeout: float | None = None,
    limit: int | None = None,
    on_result: Callable[[ResultRecord, int, int], None] | None = None,
    judge: Any = None,
    header: RunHeader | None = None,
    allow_mismatch: bool = False,
) -> RunSummary:
    """Answer ``tasks`` with ``solver``, appending scored records to ``out``; see the module docstring.

    ``on_result(record, done, total)`` is called after each task (the progress bar uses it).
    ``judge`` (a :class:`~ehr_agent.agent.eval.judge.JudgePanel`) adds a panel verdict for free-text tasks; the
    deterministic verdict stays the record's ``correct``.
    ``header`` describes the run (the CLI adds the task file, store and judges); without one it is built from
    the arguments. A new file opens with it. Resuming a file whose header names other settings, model spec,
    solver or task-file hash raises :class:`~.runlog.ResumeMismatch` before any task runs, unless
    ``allow_mismatch``; the resume line then records the differences. A file without a header (written before
    headers) gets this one appended, describing the records after it.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if header is None:
        header = make_header(solver=getattr(solver, "name", "solver"), model=model_name, model_spec=model_spec,
                             settings=getattr(solver, "settings", None), tasks=len(tasks), concurrency=concurrency,
                             timeout=timeout, limit=limit, judge=[getattr(m, "name", "") for m in
                                                                   getattr(judge, "models", None) or []])
    old_header = read_header(out)
    note = resume_note(old_header, header, allow_mismatch=allow_mismatch) if old_header is not None else None
    done_ids = {r.task_id for r in read_results(out)}
    todo = [t for t in tasks if t.id not in done_ids]
    skipped = len(tasks) - len(todo)
    if limit is not None:
        todo = todo[:limit]
    sem = asyncio.Semaphore(concurrency)
    # Own pool: a timed-out solver thread cannot be killed, so it must not starve the default executor.
    pool = ThreadPoolExecutor(max_workers=concurrency * 2, thread_name_prefix="eval")
    loop = asyncio.get_running_loop()
    counts = {"ran": 0, "correct": 0, "errors": 0}
    start = time.perf_counter()

    def solve_sync(task: Task) -> AnswerResult:
        return solver.solve(resolve_patient(task, store), store)

    def judge_sync(task: Task, rec: ResultRecord) -> None:
        if judge is not None and task.answer.kind == "text" and rec.answer.strip() and rec.error is None:
            rec.scores.judge = judge.judge(task, rec.answer).model_dump()

    async def one(task: Task, f) -> None:
        async with sem:
            t0 = time.perf_counter()
            try:
                fut = loop.run_in_executor(pool, solve_sync, task)
                result = await (asyncio.wait_for(fut, timeout) if timeout else fut)
            except asyncio.TimeoutError:
                result = AnswerResult(answer="", error=f"timeout after {timeout:g} s")
            except Exception as e:  # a failing task is recorded, never fatal for the run
                tb = traceback.format_exception_only(type(e), e)[-1].strip()
                result = AnswerResult(answer="", error=f"{type(e).__name__}: {tb}")
            name, secs = getattr(solver, "name", "solver"), time.perf_counter() - t0
            try:
                rec = record_for(task, result, solver=name, model=model_name, seconds=secs, model_spec=model_spec)
            except Exception as e:  # a scorer bug must not end the run either
                rec = record_for(task, AnswerResult(answer="", error=f"scoring failed: {type(e).__name__}: {e}"),
                                 solver=name, model=model_name, seconds=secs, model_spec=model_spec)
                rec.answer = result.answer
            if judge is not None:
                try:
                    await loop.run_in_executor(pool, judge_sync, task, rec)
                except Exception as e:  # a failing judge leaves the deterministic score alone
                    rec.scores.judge = {"error": f"{type(e).__name__}: {e}"}
            f.write(rec.model_dump_json() + "\n")
            f.flush()
            counts["ran"] += 1
            counts["correct"] += rec.correct
            counts["errors"] += rec.error is not None
            if on_result:
                on_result(rec, counts["ran"], len(todo))

    try:
        with out.open("a", encoding="utf-8") as f:
            if out.stat().st_size and not _ends_with_newline(out):
                f.write("\n")  # close a line torn by an interrupted run, so the next record starts clean
            if old_header is None:
                f.write(header.model_dump_json() + "\n")
            elif todo:
                f.write(note.model_dump_json() + "\n")
            f.flush()
            await asyncio.gather(*(one(t, f) for t in todo))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    secs = time.perf_counter() - start
    return RunSummary(total=len(tasks), skipped=skipped, ran=counts["ran"], correct=counts["correct"],
                      errors=counts["errors"], seconds=secs,
                      tasks_per_minute=counts["ran"] / secs * 60 if secs > 0 else 0.0, resume=note)


def run(tasks: list[Task], solver: Any, store: Any, out: str | Path, *, progress: bool = True, **kw) -> RunSummary:
    """Synchronous :func:`run_tasks`, with a rich progress bar showing running accuracy when ``progress``."""
    if not progress:
        return asyncio.run(run_tasks(tasks, solver, store, out, **kw))
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("acc {task.fields[acc]}  err {task.fields[err]}")) as bar:
        pid = bar.add_task("eval", total=None, acc="-", err=0)
        state = {"correct": 0, "err": 0}

        def on_result(rec: ResultRecord, done: int, total: int) -> None:
            state["correct"] += rec.correct
            state["err"] += rec.error is not None
            bar.update(pid, completed=done, total=total, acc=f"{state['correct'] / done:.1%}", err=state["err"])

        return asyncio.run(run_tasks(tasks, solver, store, out, on_result=on_result, **kw))
