"""Cohort mode: questions about the whole population of a store, answered with counted, cited queries.

``start`` -> ``agent`` <-> ``tools`` ... ``agent`` -> ``check`` -> (``repair`` -> ``agent``) -> ``finish``;
``limit`` ends a run that used up its steps. The model turn, tool loop, step limit and result assembly are
the nodes the patient graph uses too (:class:`agent.nodes.AgentNodes`); this module's :class:`CohortMode`
gives them the cohort tools (:class:`tools.cohort_tools.CohortSession`), a cohort prompt, and the cohort
citation check (:mod:`agent.cohort_citations`), which re-runs every cited query and compares its count
with the number the answer states::

    from ehr_agent.agent.cohort import answer_cohort
    result = answer_cohort(store, "How many patients received the HPV vaccine in 2015?", model=model)
    result.answer     # "3 patients ... [patients:Immunization?date=2015&vaccine-code=...|62]."
    result.verified   # True: the query was run by a tool, and re-running it gives 3
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from langchain_core.messages import BaseMessage
from langgraph.config import get_stream_writer
from typing_extensions import TypedDict  # pydantic (LangGraph's JSON schemas) needs it before Python 3.12

from ehr_agent import prompts
from ehr_agent.agent.citations import CitationReport
from ehr_agent.agent.align import align_call
from ehr_agent.agent.cohort_answer import compose_answer
from ehr_agent.agent.cohort_citations import check_cohort_answer
from ehr_agent.agent.configuration import AgentSettings
from ehr_agent.agent.context import EHRContext, SessionCache
from ehr_agent.agent.graph import _context, assemble_graph
from ehr_agent.agent.lc import to_lc_message
from ehr_agent.agent.models.base import ChatMessage, ChatModel, ToolCall
from ehr_agent.agent.nodes import fresh_question, history_messages
from ehr_agent.agent.runner import run_graph
from ehr_agent.agent.schema import AnswerResult
from ehr_agent.agent.state import AgentState
from ehr_agent.tools.cohort_tools import CITE_KINDS, CohortSession
from ehr_agent.tools.store.base import FHIRStore, StoreError

class CohortInput(TypedDict, total=False):
    """What a caller passes to ``invoke``/``stream``."""

    question: str


def render(name: str, **values: object) -> str:
    """The prompt ``prompts/cohort_<name>.md`` with ``{key}`` replaced by ``values[key]``."""
    return prompts.render(f"cohort_{name}", **values)


def _writer():
    try:
        return get_stream_writer()
    except Exception:  # noqa: BLE001 - outside a runnable context there is simply no stream
        return lambda _chunk: None


def _msg(role: str, content: str) -> BaseMessage:
    return to_lc_message(ChatMessage(role=role, content=content))


def is_query_key(key: str) -> bool:
    """Whether an evidence key is a cohort count (``query:...`` or ``patients:...``) rather than a resource."""
    return key.split(":", 1)[0] in CITE_KINDS and ":" in key


class CohortMode:
    """The cohort graph: cohort tools, prompt and citation check for the shared nodes.

    Which queries ran in a question is read from the state's evidence (reset per question), so the
    :class:`CohortSession` holds no per-question state and one serves every run on a store (at one data
    version).
    """

    name = "ehr-agent-cohort"
    first = "start"
    direct_tools = ("cohort_count",)

    def toolkit(self, ctx: EHRContext, state: AgentState | None = None) -> CohortSession:
        """The cohort tools of this run's store."""
        store, s = ctx.store, ctx.agent_settings
        version = store.data_version() if store is not None else ""
        key = ("cohort", id(store), version, s.max_rows, s.max_tool_chars)
        return ctx.sessions.get(key, store, lambda: CohortSession(store, max_rows=s.max_rows,
                                                                   max_chars=s.max_tool_chars))

    def first_call_tools(self, settings: AgentSettings) -> tuple[str, ...]:
        """The constrained first turn of a cohort question is the answer-shaped count."""
        return ("cohort_count",)

    def prepare_calls(self, calls: list[ToolCall], state: AgentState, ctx: EHRContext) -> list[ToolCall]:
        """Hold ``cohort_count`` to what the question says (:func:`~ehr_agent.agent.align.align_call`): a small
        model adds a year to "have ever had" questions, counts stays when asked for women, and shortens the
        thing counted; the question's words decide."""
        question = state.get("question") or ""
        session = self.toolkit(ctx)
        return [c.model_copy(update={"arguments": align_call(c.name, c.arguments, question, session.names_something)})
                if c.name == "cohort_count" and isinstance(c.arguments, dict) else c for c in calls]

    def begin(self, state: AgentState, ctx: EHRContext) -> dict[str, Any]:
        """Start a question: system prompt, earlier turns of the thread, the question."""
        question = str(state.get("question") or "").strip()
        # Queries cited must have run in THIS question, so evidence never carries over.
        fresh: dict[str, Any] = fresh_question(time.perf_counter()) | {"evidence": {}, "computed": []}
        if not question:
            return fresh | {"route": "finish", "error": "a question is required",
                            "draft": "No answer: a question is required."}
        try:
            patients = self.toolkit(ctx).store.count("Patient")
        except StoreError as e:
            return fresh | {"route": "finish", "error": f"record store failed: {e.message}",
                            "draft": render("unknown", error=e.message)}
        messages = [_msg("system", render("system")), *history_messages(state),
                    _msg("user", render("question", patients=patients, question=question))]
        return fresh | {"messages": messages}

    def check(self, state: AgentState, ctx: EHRContext) -> dict[str, Any]:
        """Verify the draft: cited queries ran, and re-running them gives the numbers stated."""
        evidence = state.get("evidence") or {}
        draft = state.get("draft") or ""
        report = self.verdict(draft, state, ctx)
        _writer()({"type": "check", "verified": report.verified, "citations": report.citations,
                   "unsupported": report.unsupported, "auto_cited": []})
        if not report.verified:
            # The count tool printed its answer as a sentence with its citation; when the model's own sentence
            # fails, that sentence (for a count that ran in this question) is checked in its place, which
            # saves a repair turn that a small model often spends restating the instructions.
            found = self.compose(state, ctx)
            if found:
                draft, report = found
                _writer()({"type": "check", "verified": True, "citations": report.citations, "unsupported": [],
                           "auto_cited": [], "composed": True})
        repairs = int(state.get("repairs") or 0)
        route_to = "finish" if report.verified or repairs >= ctx.agent_settings.max_repairs else "repair"
        if route_to == "finish" and not report.verified and not set(report.citations) & set(evidence):
            # The draft cites no count that ran: say so plainly, with the counts that did run, rather than
            # return a draft that may be the model echoing the repair instructions.
            ran = [f"{v} [{k}]" for k, v in evidence.items() if is_query_key(k)]
            honest = "Could not answer with a verified count." + (
                " Counts that ran: " + "; ".join(ran[:4]) + "." if ran else "")
            report = report.model_copy(update={"marked_answer": honest})
        return {"report": report.model_dump(), "route": route_to, "draft": draft}

    def compose(self, state: AgentState, ctx: EHRContext, every_call: bool = False) -> tuple[str, CitationReport] | None:
        """The count tool's ``Answer:`` sentence for the last count that ran, if re-running it agrees
        (``every_call`` changes nothing: ``cohort_count``'s ``what`` is held to the question's phrase by align,
        and the check re-counts)."""
        if not ctx.agent_settings.answer_from_tools:
            return None
        ran = [k for k in state.get("evidence") or {} if is_query_key(k)]
        text = compose_answer([str(m.content) for m in state.get("messages") or []
                               if getattr(m, "type", "") == "tool"], ran)
        if not text:
            return None
        report = self.verdict(text, state, ctx)
        return (text, report) if report.verified else None

    def verdict(self, text: str, state: AgentState, ctx: EHRContext) -> CitationReport:
        """The cohort check of ``text``: cited queries ran in this question and re-running them agrees."""
        evidence = state.get("evidence") or {}
        return check_cohort_answer(text, ran=[k for k in evidence if is_query_key(k)],
                                   recount=self.toolkit(ctx).recount,
                                   evidence={k: v for k, v in evidence.items() if not is_query_key(k)},
                                   question=state.get("question") or "")

    def repair_prompt(self, state: AgentState, ctx: EHRContext) -> str:
        """The failing sentences and the counts the tools returned."""
        report = CitationReport.model_validate(state["report"])
        evidence = state.get("evidence") or {}
        counts = [f"[{k}] = {v.rsplit(': ', 1)[-1]}" for k, v in evidence.items() if is_query_key(k)]
        return render("repair", problems="\n".join(f"- {p}" for p in report.problems()),
                      evidence="\n".join(counts[-ctx.agent_settings.evidence_in_answer_prompt:]) or "(none)")


def build_cohort_graph(context: EHRContext | FHIRStore | None = None, model: ChatModel | None = None,
                       settings: AgentSettings | None = None, *, store: FHIRStore | None = None,
                       checkpointer: Any = None):
    """Compile the cohort graph. ``context`` is the default :class:`EHRContext` of runs that pass none
    (``build_cohort_graph(store, model, settings)`` and ``store=``/``model=`` are short forms of one).

    Input: ``{"question"}``; output: ``{"result": AnswerResult-as-dict, "history"}``.
    """
    if context is not None and not isinstance(context, EHRContext):
        context, store = None, context  # the positional short form: (store, model, settings)
    return assemble_graph(CohortMode(), _context(context, store, model, settings, None), input_schema=CohortInput,
                          checkpointer=checkpointer)


@functools.cache
def shared_graph():
    """The cohort graph :func:`answer_cohort` uses when given none: compiled once, no data and no caches."""
    return build_cohort_graph()


def answer_cohort(
    store: FHIRStore,
    question: str,
    *,
    model: ChatModel,
    settings: AgentSettings | None = None,
    graph: Any = None,
    on_event: Callable[[str, Any], None] | None = None,
    sessions: SessionCache | None = None,
) -> AnswerResult:
    """Answer a question about all patients of ``store``; never raises.

    ``graph`` reuses a graph from :func:`build_cohort_graph`; ``sessions`` keeps the cohort tools (and their
    caches) across calls; ``on_event(mode, chunk)`` receives the LangGraph stream chunks (``"updates"`` per
    node, ``"custom"`` for tokens, tool calls and the check).
    """
    ctx = EHRContext(store=store, model=model, settings=settings, sessions=sessions or SessionCache())
    return run_graph(graph or shared_graph(), {"question": question}, ctx, on_event, who="the cohort agent")


__all__ = ["CohortMode", "answer_cohort", "build_cohort_graph", "is_query_key", "render"]
