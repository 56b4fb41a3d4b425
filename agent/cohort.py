"""Cohort mode: questions about the whole population of a store, answered with counted, cited queries.

``start`` -> ``agent`` <-> ``tools`` ... ``agent`` -> ``check`` -> (``repair`` -> ``agent``) -> ``finish``;
``limit`` ends a run that used up its steps. The model turn, tool loop, step limit and result assembly are
the patient graph's own nodes (:class:`agent.nodes.AgentNodes`); this module swaps in the cohort tools
(:class:`tools.cohort_tools.CohortSession`), a cohort prompt, and the cohort citation check
(:mod:`agent.cohort_citations`), which re-runs every cited query and compares its count with the number
the answer states::

    from ehr_agent.agent.cohort import answer_cohort
    result = answer_cohort(store, "How many patients received the HPV vaccine in 2015?", model=model)
    result.answer     # "3 patients ... [patients:Immunization?date=2015&vaccine-code=...|62]."
    result.verified   # True: the query was run by a tool, and re-running it gives 3
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer

from ehr_agent.agent.citations import CitationReport
from ehr_agent.agent.cohort_citations import check_cohort_answer
from ehr_agent.agent.configuration import AgentSettings
from ehr_agent.agent.models.base import ChatMessage, ChatModel
from ehr_agent.agent.graph import assemble_graph
from ehr_agent.agent.nodes import AgentNodes
from ehr_agent.agent.runner import run_graph
from ehr_agent import prompts
from ehr_agent.agent.schema import AnswerResult
from ehr_agent.agent.state import AgentState
from ehr_agent.tools.cohort_tools import CITE_KINDS, CohortSession
from ehr_agent.tools.store.base import FHIRStore, StoreError

#: what the patient-shaped state holds as ``patient_id`` in a cohort run (every patient)
COHORT = "*"


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


def _msg(role: str, content: str) -> dict[str, Any]:
    return ChatMessage(role=role, content=content).model_dump(exclude_defaults=True) | {"role": role}


def is_query_key(key: str) -> bool:
    """Whether an evidence key is a cohort count (``query:...`` or ``patients:...``) rather than a resource."""
    return key.split(":", 1)[0] in CITE_KINDS and ":" in key


class CohortNodes(AgentNodes):
    """The patient graph's nodes with cohort tools, prompt and citation check.

    The inherited ``agent``, ``tools``, ``limit`` and ``finish`` nodes call :meth:`session`, which here
    returns the store's :class:`CohortSession` whatever patient id the state holds. Which queries ran in a
    question is read from the state's evidence (reset per question), so the session holds no per-question
    state and one serves every run on a store.
    """

    def __init__(self, store: FHIRStore | None, model: ChatModel | None, settings: AgentSettings):
        super().__init__(store, model, settings)  # type: ignore[arg-type]
        self._cohort: OrderedDict[int, CohortSession] = OrderedDict()
        self._cohort_lock = threading.Lock()

    def session(self, patient_id: str, as_of: str, config: RunnableConfig | None = None) -> Any:  # type: ignore[override]
        """The cohort tools of this run's store (``patient_id`` and ``as_of`` do not apply)."""
        store = self.deps(config)[0]
        with self._cohort_lock:
            s = self._cohort.get(id(store))
            if s is None or s.store is not store:
                s = CohortSession(store, max_rows=self.settings.max_rows, max_chars=self.settings.max_tool_chars)
                self._cohort[id(store)] = s
                while len(self._cohort) > 8:
                    self._cohort.popitem(last=False)
            return s

    def tools(self, state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        """Run the calls, after holding ``cohort_count`` to what the question says: a small model adds a year
        to "have ever had" questions and counts stays when asked for women; the question's words decide."""
        messages = list(state.get("messages") or [])
        if messages:
            last = ChatMessage.model_validate(messages[-1])
            fixed = [c.model_copy(update={"arguments": align_count_args(c.arguments, state.get("question") or "")})
                     if c.name == "cohort_count" and isinstance(c.arguments, dict) else c for c in last.tool_calls]
            if fixed != last.tool_calls:
                messages[-1] = last.model_copy(update={"tool_calls": fixed}).model_dump(exclude_defaults=True) | {
                    "role": last.role}
                state = {**state, "messages": messages}
        return super().tools(state, config)

    def first_call_tools(self) -> tuple[str, ...]:
        """The constrained first turn of a cohort question is the answer-shaped count."""
        return ("cohort_count",)

    def start(self, state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        """Start a question: system prompt, earlier turns of the thread, the question."""
        question = str(state.get("question") or "").strip()
        fresh: dict[str, Any] = {
            "started": time.perf_counter(), "steps": 0, "repairs": 0, "draft": "", "report": None, "tool_log": [],
            "prompt_tokens": 0, "completion_tokens": 0, "model_seconds": 0.0, "error": None, "result": None,
            "route": "agent", "manifest": "", "messages": [], "patient_id": COHORT, "resolved_as_of": "",
            # Queries cited must have run in THIS question, so evidence never carries over.
            "evidence": {}, "computed": [], "evidence_patient": COHORT,
        }
        if not question:
            return fresh | {"route": "finish", "error": "a question is required",
                            "draft": "No answer: a question is required."}
        try:
            patients = self.session(COHORT, "", config).store.count("Patient")
        except StoreError as e:
            return fresh | {"route": "finish", "error": f"record store failed: {e.message}",
                            "draft": render("unknown", error=e.message)}
        messages = [_msg("system", render("system"))]
        for turn in (state.get("history") or [])[-4:]:
            messages.append(_msg("user", turn["question"]))
            messages.append(_msg("assistant", turn["answer"]))
        messages.append(_msg("user", render("question", patients=patients, question=question)))
        return fresh | {"messages": messages}

    def check(self, state: AgentState, config: RunnableConfig) -> dict[str, Any]:
        """Verify the draft: cited queries ran, and re-running them gives the numbers stated."""
        session = self.session(COHORT, "", config)
        evidence = state.get("evidence") or {}
        draft = state.get("draft") or ""
        report = check_cohort_answer(
            draft, ran=[k for k in evidence if is_query_key(k)], recount=session.recount,
            evidence={k: v for k, v in evidence.items() if not is_query_key(k)}, question=state.get("question") or "")
        _writer()({"type": "check", "verified": report.verified, "citations": report.citations,
                   "unsupported": report.unsupported, "auto_cited": []})
        repairs = int(state.get("repairs") or 0)
        route_to = "finish" if report.verified or repairs >= self.settings.max_repairs else "repair"
        if route_to == "finish" and not report.verified and not set(report.citations) & set(evidence):
            # The draft cites no count that ran: say so plainly, with the counts that did run, rather than
            # return a draft that may be the model echoing the repair instructions.
            ran = [f"{v} [{k}]" for k, v in evidence.items() if is_query_key(k)]
            honest = "Could not answer with a verified count." + (
                " Counts that ran: " + "; ".join(ran[:4]) + "." if ran else "")
            report = report.model_copy(update={"marked_answer": honest})
        return {"report": report.model_dump(), "route": route_to, "draft": draft}

    def repair(self, state: AgentState) -> dict[str, Any]:
        """Send the failing sentences and the counts the tools returned back to the model."""
        report = CitationReport.model_validate(state["report"])
        evidence = state.get("evidence") or {}
        counts = [f"[{k}] = {v.rsplit(': ', 1)[-1]}" for k, v in evidence.items() if is_query_key(k)]
        text = render("repair", problems="\n".join(f"- {p}" for p in report.problems()),
                      evidence="\n".join(counts[-self.settings.evidence_in_answer_prompt:]) or "(none)")
        _writer()({"type": "repair", "problems": report.problems()})
        messages = list(state.get("messages") or []) + [_msg("user", text)]
        return {"messages": messages, "repairs": int(state.get("repairs") or 0) + 1}


_YEARISH = re.compile(r"\b(1[89]\d\d|20\d\d)\b|\b(since|before|after|between|during|year|month)\b", re.I)
_WHO = re.compile(r"\b(how many|number of)\s+(?:\w+\s+){0,2}?(patients|people|persons|individuals|women|men|"
                  r"children|kids|females|males)\b", re.I)


def align_count_args(args: dict, question: str) -> dict:
    """``cohort_count`` arguments with no period the question does not name, and counting patients when the
    question asks how many patients (people, women...)."""
    out = dict(args)
    if question and not _YEARISH.search(question):
        out.pop("start", None)
        out.pop("end", None)
    if question and _WHO.search(question):
        out["count"] = "patients"
    return out


def build_cohort_graph(store: FHIRStore | None, model: ChatModel | None, settings: AgentSettings | None = None, *,
                       checkpointer: Any = None):
    """Compile the cohort graph over ``store`` with ``model`` (either may instead come per run in
    ``config["configurable"]`` as ``ehr_store`` / ``ehr_model``).

    Input: ``{"question"}``; output: ``{"result": AnswerResult-as-dict, "history"}``.
    """
    settings = settings or AgentSettings()
    nodes = CohortNodes(store, model, settings)
    return assemble_graph(nodes, settings, first=("start", nodes.start), input_schema=CohortInput,
                          checkpointer=checkpointer, name="ehr-agent-cohort")


_GRAPHS: dict[str, Any] = {}
_GRAPHS_LOCK = threading.Lock()


def _shared_graph(settings: AgentSettings):
    # Compile once per settings; each run's store and model travel in its config.
    key = settings.model_dump_json()
    with _GRAPHS_LOCK:
        if key not in _GRAPHS:
            _GRAPHS[key] = build_cohort_graph(None, None, settings)
        return _GRAPHS[key]


def answer_cohort(
    store: FHIRStore,
    question: str,
    *,
    model: ChatModel,
    settings: AgentSettings | None = None,
    graph: Any = None,
    on_event: Callable[[str, Any], None] | None = None,
) -> AnswerResult:
    """Answer a question about all patients of ``store``; never raises.

    ``graph`` reuses a graph from :func:`build_cohort_graph`; ``on_event(mode, chunk)`` receives the
    LangGraph stream chunks (``"updates"`` per node, ``"custom"`` for tokens, tool calls and the check).
    """
    g = graph or _shared_graph(settings or AgentSettings())
    return run_graph(g, {"question": question}, {"configurable": {"ehr_store": store, "ehr_model": model}},
                     on_event, who="the cohort agent")


__all__ = ["CohortNodes", "answer_cohort", "build_cohort_graph", "is_query_key", "render"]
