"""The LangGraph agent: manifest -> bounded act/observe loop -> answer -> citation check -> repair -> end.

Build it with :func:`build_graph`; the result is a compiled LangGraph graph whose runtime context is
:class:`agent.context.EHRContext` (store, model, index, settings). A notebook can ``invoke`` it,
``stream`` it (``stream_mode="messages"`` for the model's tokens and the tool messages, ``"updates"``
for steps, ``"custom"`` for tokens, tool events and the citation verdict), draw it
(``graph.get_graph().draw_mermaid()``) and give it a checkpointer for follow-up questions in one thread::

    from langgraph.checkpoint.memory import InMemorySaver
    g = build_graph(checkpointer=InMemorySaver())
    ctx = EHRContext(store=store, model=model)
    cfg = {"configurable": {"thread_id": "t1"}}
    g.invoke({"patient_id": pid, "question": "Latest HbA1c?"}, cfg, context=ctx)["result"]
    g.invoke({"patient_id": pid, "question": "And the one before?"}, cfg, context=ctx)["result"]

``build_graph(store=..., model=...)`` is the short form: it builds the context and makes it the default
of every run. :func:`make_graph` builds one from ``EHR_AGENT_*`` environment variables and the run's
``config["configurable"]``, for ``langgraph dev``.
"""

from __future__ import annotations

import asyncio

import threading
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from ehr_agent.agent.configuration import AgentSettings
from ehr_agent.agent.context import EHRContext
from ehr_agent.agent.models.base import ChatModel
from ehr_agent.agent.nodes import AgentNodes, GraphMode, PatientMode, route
from ehr_agent.agent.state import AgentInput, AgentOutput, AgentState
from ehr_agent.tools.store.base import FHIRStore


def build_graph(context: EHRContext | None = None, *, store: FHIRStore | None = None, model: ChatModel | None = None,
                settings: AgentSettings | None = None, index: Any = None, checkpointer: Any = None):
    """Compile the patient graph.

    ``context`` is the default :class:`EHRContext` of runs that pass none to ``invoke``/``stream``
    (``store``, ``model``, ``settings`` and ``index`` are the short form of one); a run's own context
    takes precedence, field by field. ``checkpointer`` (e.g. ``InMemorySaver()``) enables follow-up
    questions in a thread (pass a ``thread_id``).
    Input: ``{"patient_id", "question", "as_of"?}``; output: ``{"result": AnswerResult-as-dict, "history"}``.
    """
    return assemble_graph(PatientMode(), _context(context, store, model, settings, index), input_schema=AgentInput,
                          checkpointer=checkpointer)


def _context(context: EHRContext | None, store: Any, model: Any, settings: Any, index: Any) -> EHRContext:
    given = {k: v for k, v in {"store": store, "model": model, "settings": settings, "index": index}.items()
             if v is not None}
    if context is not None and given:
        raise TypeError("pass either context= or store=/model=/settings=/index=, not both")
    return context if context is not None else EHRContext(**given)


def assemble_graph(mode: GraphMode, default: EHRContext, *, input_schema: Any, checkpointer: Any = None):
    """Wire first -> agent <-> tools -> check -> (repair -> agent) -> finish, plus direct (the first tool round's
    computed answer, when it passes) and limit, and compile.

    Shared by the patient graph (first node: manifest) and the cohort graph (first node: start): one set of
    nodes, the mode supplies what differs."""
    nodes = AgentNodes(mode, default)
    g = StateGraph(AgentState, context_schema=EHRContext, input_schema=input_schema, output_schema=AgentOutput)
    g.add_node(mode.first, nodes.begin)
    g.add_node("agent", nodes.agent)
    g.add_node("tools", nodes.tools)
    g.add_node("check", nodes.check)
    g.add_node("repair", nodes.repair)
    g.add_node("direct", nodes.direct)
    g.add_node("limit", nodes.limit)
    g.add_node("finish", nodes.finish)
    g.add_edge(START, mode.first)
    g.add_conditional_edges(mode.first, route, {"agent": "agent", "finish": "finish"})
    g.add_conditional_edges("agent", route, {"tools": "tools", "agent": "agent", "check": "check",
                                             "limit": "limit", "finish": "finish"})
    g.add_conditional_edges("tools", nodes.after_tools, {"agent": "agent", "limit": "limit", "direct": "direct"})
    g.add_conditional_edges("direct", route, {"agent": "agent", "finish": "finish"})
    g.add_conditional_edges("check", route, {"repair": "repair", "finish": "finish"})
    g.add_edge("repair", "agent")
    g.add_edge("limit", END)
    g.add_edge("finish", END)
    compiled = g.compile(checkpointer=checkpointer, name=mode.name)
    compiled.nodes_impl = nodes  # type: ignore[attr-defined]  # lets callers reach the default context and mode
    return compiled


class GraphFactory:
    """Builds graphs from settings (``EHR_AGENT_*``) and a run's ``config["configurable"]`` (``langgraph dev``).

    The stores, indexes and models it opens are kept here by spec (a server builds a graph per run;
    loading the embedded model per run would take seconds), except scripted models, which replay their
    script from the start in each run. :meth:`close` releases them.
    """

    def __init__(self) -> None:
        self._opened: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def make_graph(self, config: RunnableConfig | dict | None = None):
        """The patient graph for a run: ``config["configurable"]`` may set ``store``, ``model``, ``index_dir``,
        any other :class:`AgentSettings` field, and ``patient_id`` / ``as_of`` (the context's defaults; a
        graph given a ``patient_id`` answers about that patient only). The rest comes from ``EHR_AGENT_*``."""
        from ehr_agent.agent.models.factory import make_model
        from ehr_agent.tools.store import open_store

        conf = dict((config or {}).get("configurable") or {})
        fields = AgentSettings.model_fields
        settings = AgentSettings(**{k: v for k, v in conf.items() if k in fields and v is not None})
        if not settings.store:
            raise RuntimeError("set EHR_AGENT_STORE (or the configurable 'store') to a store directory or "
                               "FHIR base URL")
        store = self._open("store", settings.store, lambda: open_store(settings.store))
        index = None
        if settings.index_dir:
            from ehr_agent.tools.retrieval import HybridIndex

            index = self._open("index", f"{settings.store}|{settings.index_dir}",
                               lambda: HybridIndex(store, settings.index_dir))
        if settings.model.startswith("scripted"):
            model = make_model(settings.model)
        else:
            model = self._open("model", settings.model, lambda: make_model(settings.model))
        context = EHRContext(store=store, model=model, index=index, settings=settings,
                             patient_id=conf.get("patient_id") or None, as_of=conf.get("as_of") or None)
        return build_graph(context)

    def _open(self, kind: str, spec: str, make: Any) -> Any:
        with self._lock:
            if (kind, spec) not in self._opened:
                self._opened[(kind, spec)] = make()
            return self._opened[(kind, spec)]

    def close(self) -> None:
        """Close what was opened (models, stores)."""
        with self._lock:
            opened, self._opened = list(self._opened.values()), {}
        for obj in opened:
            close = getattr(obj, "close", None)
            if callable(close):
                close()


#: the factory ``langgraph.json`` points at (through :func:`make_graph`); it lives as long as the server
FACTORY = GraphFactory()


def make_graph(config: RunnableConfig | dict | None = None):
    """The patient graph built from settings and ``config``: see :meth:`GraphFactory.make_graph`."""
    return FACTORY.make_graph(config)


async def serve_graph(config: RunnableConfig | dict | None = None):
    """The graph ``langgraph dev`` serves (``langgraph.json``): :func:`make_graph` in a worker thread, because
    opening a store and loading a model are blocking I/O that the server's event loop refuses."""
    return await asyncio.to_thread(FACTORY.make_graph, config)
