"""Solvers: the ways a task gets answered.

* ``agent``: the LangGraph agent through :func:`agent.runner.answer` (tools, citations, verification);
  cohort tasks (``patient is None``) through the cohort graph, :func:`agent.cohort.answer_cohort`.
* ``full-context``: the patient's projected record cut to the model window by
  :func:`tools.retrieval.budget.pack_context`, answered in ONE model call (MedGemma's EHRQA baseline).
* ``gold``: answers straight from the gold answer, without a model; checks scorers and runner end to end.

Each solver is synchronous (the runner puts it in a thread) and returns an :class:`AnswerResult`.
Models come from a factory called once per task, so a per-task scripted model is possible; real
backends return the same shared instance (``ChatModel`` implementations are thread-safe).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any, Protocol

from ehr_agent.agent.models.base import ChatMessage, ChatModel, ModelError
from ehr_agent import prompts
from ehr_agent.agent.schema import AnswerResult

from .tasks import Task

REF_RE = re.compile(r"\b([A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64})")

ModelFactory = Callable[[Task], ChatModel]


class SolverError(ValueError):
    """A solver that cannot be set up (missing component, bad option)."""


class Solver(Protocol):
    name: str

    def solve(self, task: Task, store: Any) -> AnswerResult: ...


def load_prompt(name: str) -> str:
    """``prompts/eval_<name>.md``, stripped."""
    try:
        return prompts.load(f"eval_{name}").strip()
    except prompts.PromptMissing as e:
        raise SolverError(str(e)) from e


fill = prompts.fill


def gold_text(task: Task) -> str:
    """The gold answer as a sentence an ideal agent would write, with up to three citations."""
    cites = " ".join(f"[{r}]" for r in task.gold_refs[:3])
    return f"{task.answer.display()} {cites}".strip()


class GoldSolver:
    """Answers every task with its gold answer (upper bound; scorer self-check)."""

    name = "gold"

    def solve(self, task: Task, store: Any) -> AnswerResult:
        return AnswerResult(answer=gold_text(task), citations=task.gold_refs[:3], evidence_refs=list(task.gold_refs),
                            verified=True)


class AgentSolver:
    """The agent graph: :func:`agent.runner.answer` per task."""

    name = "agent"

    def __init__(self, model_factory: ModelFactory, settings: Any = None):
        try:
            from ehr_agent.agent import runner  # noqa: F401
        except ImportError as e:
            raise SolverError(f"the agent runner is not available (agent/runner.py): {e}") from None
        self.model_factory = model_factory
        self.settings = settings
        # Tool sessions (and their caches) shared by the tasks of this solver: tasks about one patient reuse them.
        from ehr_agent.agent.context import SessionCache

        self.sessions = SessionCache()

    def solve(self, task: Task, store: Any) -> AnswerResult:
        """A patient task through :func:`agent.runner.answer`, a cohort task (``patient is None``) through
        :func:`agent.cohort.answer_cohort`."""
        from ehr_agent.agent.runner import answer

        model = self.model_factory(task)
        if task.patient is None:
            from ehr_agent.agent.cohort import answer_cohort

            return answer_cohort(store, task.question, model=model, settings=self.settings, sessions=self.sessions)
        return answer(store, task.patient, task.question, model=model, settings=self.settings, as_of=task.as_of,
                      sessions=self.sessions)


class FullContextSolver:
    """The whole (projected) record in the prompt, one model call, no tools."""

    name = "full-context"

    def __init__(self, model_factory: ModelFactory, *, context_tokens: int = 8192, answer_tokens: int = 400,
                 tokenizer: str | None = None):
        try:
            from ehr_agent.tools.retrieval.budget import TokenCounter
        except ImportError as e:
            raise SolverError(f"retrieval's pack_context is not available (tools/retrieval/budget.py): {e}") from None
        # The model's own tokenizer when given (exact window use), else retrieval's conservative estimate.
        self.counter = TokenCounter(tokenizer)
        self.model_factory = model_factory
        self.context_tokens = context_tokens
        self.answer_tokens = answer_tokens
        self.template = load_prompt("full_context")

    def pack(self, store: Any, task: Task) -> tuple[str, list[str]]:
        """The record text within budget and the refs it holds."""
        from ehr_agent.tools.retrieval.budget import pack_context

        overhead = self.counter.count(fill(self.template, question=task.question, as_of=task.as_of or "", record=""))
        budget = max(256, self.context_tokens - overhead - self.answer_tokens)
        packed = pack_context(store, task.patient, task.question, budget, counter=self.counter)
        return packed.text, list(dict.fromkeys(r.ref for r in packed.rows))

    def solve(self, task: Task, store: Any) -> AnswerResult:
        start = time.perf_counter()
        if task.patient is None:
            return AnswerResult(answer="A single patient's record cannot answer a cohort question.",
                                error="cohort question: full-context holds one patient's record")
        model = self.model_factory(task)
        record, refs = self.pack(store, task)
        prompt = fill(self.template, question=task.question, as_of=task.as_of or "the end of the record", record=record)
        try:
            res = model.chat([ChatMessage(role="user", content=prompt)], None, max_tokens=self.answer_tokens)
        except ModelError as e:
            return AnswerResult(answer=f"The model failed: {e}", error=f"model: {e}", evidence_refs=refs,
                                seconds=time.perf_counter() - start)
        cites = [c for c in dict.fromkeys(REF_RE.findall(res.content))]
        return AnswerResult(answer=res.content, citations=cites, evidence_refs=refs, verified=False, steps=1,
                            prompt_tokens=res.prompt_tokens, completion_tokens=res.completion_tokens,
                            seconds=time.perf_counter() - start)


def scripted_gold_model(task: Task) -> ChatModel:
    """A scripted model that reads the gold refs it will cite with a tool, then answers with the gold text.

    Run through the agent, it measures the pure overhead of graph, tools and citation checking. A cohort task
    gets :func:`agent.eval.cohort_script.scripted_cohort_model` instead (the queries that count the gold).
    """
    from ehr_agent.agent.models.scripted import ScriptedModel

    if task.patient is None:
        from .cohort_script import scripted_cohort_model

        return scripted_cohort_model(task)
    calls = [json.dumps({"tool": "read_resource", "arguments": {"reference": r}}) for r in task.gold_refs[:3]] or \
        [json.dumps({"tool": "record_overview", "arguments": {}})]
    first = "\n".join(f"```tool_call\n{c}\n```" for c in calls)
    # The same answer again for the graph's repair round, when its citation check is not satisfied.
    return ScriptedModel([first, gold_text(task), gold_text(task)], name="scripted-gold")


def model_factory(spec: str, settings: Any = None, *, tools: bool = True) -> ModelFactory:
    """A factory for a model spec: ``scripted-gold`` builds a per-task script (with a tool call first when
    ``tools``), any other spec one shared model."""
    if spec == "scripted-gold":
        if tools:
            return scripted_gold_model
        from ehr_agent.agent.models.scripted import ScriptedModel

        return lambda task: ScriptedModel([gold_text(task)], name="scripted-gold")
    from ehr_agent.agent.models.factory import make_model

    shared = make_model(spec, settings)

    def factory(task: Task) -> ChatModel:
        return shared

    factory.shared_model = shared  # type: ignore[attr-defined]
    return factory


def solver_model_name(solver: Solver, spec: str) -> str:
    """The name results record for the model behind ``solver``: the shared model's own name when there is one
    (``embedded:qwen2.5-coder-1.5b``), else ``spec`` (per-task scripted models), ``gold`` for the gold solver."""
    if isinstance(solver, GoldSolver):
        return "gold"
    shared = getattr(getattr(solver, "model_factory", None), "shared_model", None)
    return str(getattr(shared, "name", None) or spec)


def make_solver(kind: str, model_spec: str | None, *, settings: Any = None, context_tokens: int = 8192,
                tokenizer: str | None = None) -> Solver:
    """A solver by name (``agent``, ``full-context``, ``gold``)."""
    if kind == "gold":
        return GoldSolver()
    if kind not in ("agent", "full-context"):
        raise SolverError(f"unknown solver {kind!r} (agent, full-context, gold)")
    from ehr_agent.agent.models.factory import resolve_spec

    factory = model_factory(resolve_spec(model_spec), tools=kind == "agent")
    if kind == "agent":
        return AgentSolver(factory, settings)
    return FullContextSolver(factory, context_tokens=context_tokens, tokenizer=tokenizer)
