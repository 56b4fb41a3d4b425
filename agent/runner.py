"""One question in, one :class:`AnswerResult` out: the helper the CLI and evaluation use."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ehr_agent.agent.configuration import AgentSettings
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
) -> AnswerResult:
    """Answer ``question`` about ``patient_id`` with the agent graph; never raises.

    ``graph`` reuses a graph from :func:`agent.graph.build_graph` (cheaper across many questions);
    ``on_event(mode, chunk)`` receives LangGraph stream chunks (``"updates"`` per node, ``"custom"``
    for tokens, tool calls and the citation verdict) as they happen.
    """
    g = graph or _shared_graph(settings or AgentSettings())
    inp = {"patient_id": patient_id, "question": question, "as_of": as_of}
    # The run's own store, model and index travel in the config, so one compiled graph serves all runs.
    config = {"configurable": {"ehr_store": store, "ehr_model": model, "ehr_index": index}}
    return run_graph(g, inp, config, on_event, who="the agent")


def run_graph(g: Any, inp: dict, config: dict, on_event: Callable[[str, Any], None] | None = None, *,
              who: str = "the agent") -> AnswerResult:
    """Invoke (or stream, when ``on_event`` is given) a compiled answer graph and return its
    :class:`AnswerResult`; never raises: a failure becomes an ``AnswerResult`` with ``error`` set."""
    t0 = time.perf_counter()
    try:
        result = None
        if on_event is None:
            result = (g.invoke(inp, config) or {}).get("result")
        else:
            for mode, chunk in g.stream(inp, config, stream_mode=["updates", "custom"]):
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


_GRAPHS: dict[str, Any] = {}
_GRAPHS_LOCK = threading.Lock()


def _shared_graph(settings: AgentSettings):
    # Compiling a graph costs ~20 ms, about as much as the rest of a question's overhead: compile once per
    # settings and pass each run's store/model/index in its config instead.
    from ehr_agent.agent.graph import build_graph

    key = settings.model_dump_json()
    with _GRAPHS_LOCK:
        g = _GRAPHS.get(key)
        if g is None:
            g = _GRAPHS[key] = build_graph(store=None, model=None, settings=settings)  # type: ignore[arg-type]
        return g
