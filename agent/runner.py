"""One question in, one :class:`AnswerResult` out: the helper the CLI and evaluation use."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from ehr_agent.agent.configuration import AgentSettings
from ehr_agent.agent.context import EHRContext, SessionCache
from ehr_agent.agent.models.base import ChatModel
from ehr_agent.agent.schema import AnswerResult
from ehr_agent.tools.store.base import FHIRStore


def answer(
    store: FHIRStore,
    patient_id: str,
    question: str,
    *,
    model: ChatModel,
    settings: AgentSettings | None = None,
    as_of: str | None = None,
    index: Any = None,
    graph: Any = None,
    on_event: Callable[[str, Any], None] | None = None,
    sessions: SessionCache | None = None,
) -> AnswerResult:
    """Answer ``question`` about ``patient_id`` with the agent graph; never raises.

    The run's :class:`EHRContext` is built from ``store``, ``model``, ``settings`` and ``index``;
    ``graph`` is a graph from :func:`agent.graph.build_graph` (default: one compiled graph shared by all
    calls, which holds no data); ``sessions`` keeps tool sessions across calls (pass one
    :class:`SessionCache` for many questions, e.g. per evaluation run); ``on_event(mode, chunk)`` receives
    LangGraph stream chunks (``"updates"`` per node, ``"custom"`` for tokens, tool calls and the citation
    verdict) as they happen.
    """
    ctx = EHRContext(store=store, model=model, index=index, settings=settings, sessions=sessions or SessionCache())
    inp = {"patient_id": patient_id, "question": question, "as_of": as_of}
    return run_graph(graph or shared_graph(), inp, ctx, on_event, who="the agent")


def run_graph(g: Any, inp: dict, context: EHRContext | None, on_event: Callable[[str, Any], None] | None = None, *,
              who: str = "the agent", config: dict | None = None) -> AnswerResult:
    """Invoke (or stream, when ``on_event`` is given) a compiled answer graph with ``context`` and return its
    :class:`AnswerResult`; never raises: a failure becomes an ``AnswerResult`` with ``error`` set."""
    t0 = time.perf_counter()
    try:
        result = None
        if on_event is None:
            result = (g.invoke(inp, config, context=context) or {}).get("result")
        else:
            for mode, chunk in g.stream(inp, config, context=context, stream_mode=["updates", "custom"]):
                on_event(mode, chunk)
                if mode == "updates":
                    for upd in chunk.values():
                        if isinstance(upd, dict) and upd.get("result"):
                            result = upd["result"]
        if not result:
            raise RuntimeError("the graph ended without a result")
        return AnswerResult.model_validate(result)
    except Exception as e:  # noqa: BLE001 - callers (CLI, evaluation) need an AnswerResult, not a traceback
        return AnswerResult(answer=f"No answer: {who} failed ({type(e).__name__}: {e}).",
                            error=f"{type(e).__name__}: {e}", seconds=round(time.perf_counter() - t0, 4))


@functools.cache
def shared_graph():
    """The patient graph :func:`answer` uses when given none: compiled once (about as costly as the rest of a
    question's overhead), with no default context and no caches, so sharing it shares no data."""
    from ehr_agent.agent.graph import build_graph

    return build_graph()
