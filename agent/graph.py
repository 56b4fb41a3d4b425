"""The LangGraph agent: manifest -> bounded act/observe loop -> answer -> citation check -> repair -> end.

Build it with :func:`build_graph`; the result is a compiled LangGraph graph, so a notebook can
``invoke`` it, ``stream`` it (``stream_mode="updates"`` for steps, ``"custom"`` for tokens and tool
events), draw it (``graph.get_graph().draw_mermaid()``) and give it a checkpointer for follow-up
questions in one thread::

    from langgraph.checkpoint.memory import InMemorySaver
    g = build_graph(store=store, model=model, checkpointer=InMemorySaver())
    cfg = {"configurable": {"thread_id": "t1"}}
    g.invoke({"patient_id": pid, "question": "Latest HbA1c?"}, cfg)["result"]
    g.invoke({"patient_id": pid, "question": "And the one before?"}, cfg)["result"]

:func:`make_graph` builds one from ``EHR_AGENT_*`` environment variables, for ``langgraph dev``.
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph

from ehr_agent.agent.configuration import AgentSettings
from ehr_agent.agent.models.base import ChatModel
from ehr_agent.agent.nodes import AgentNodes, after_tools, route
from ehr_agent.agent.state import AgentInput, AgentOutput, AgentState
from ehr_agent.tools.store.base import FHIRStore


def build_graph(*, store: FHIRStore, model: ChatModel, settings: AgentSettings | None = None, index: Any = None,
                checkpointer: Any = None):
    """Compile the agent graph over ``store`` with ``model``.

    ``index`` is an optional retrieval ``HybridIndex`` for the ``search_record`` tool; ``checkpointer``
    (e.g. ``InMemorySaver()``) enables follow-up questions in a thread (pass a ``thread_id``).
    Input: ``{"patient_id", "question", "as_of"?}``; output: ``{"result": AnswerResult-as-dict, "history"}``.
    """
    settings = settings or AgentSettings()
    nodes = AgentNodes(store, model, settings, index=index)
    return assemble_graph(nodes, settings, first=("manifest", nodes.manifest), input_schema=AgentInput,
                          checkpointer=checkpointer, name="ehr-agent")


def assemble_graph(nodes: Any, settings: AgentSettings, *, first: tuple[str, Any], input_schema: Any,
                   checkpointer: Any = None, name: str):
    """Wire ``first`` -> agent <-> tools -> check -> (repair -> agent) -> finish, plus limit, and compile.

    Shared by the patient graph (first node: manifest) and the cohort graph (first node: start)."""
    g = StateGraph(AgentState, input_schema=input_schema, output_schema=AgentOutput)
    g.add_node(first[0], first[1])
    g.add_node("agent", nodes.agent)
    g.add_node("tools", nodes.tools)
    g.add_node("check", nodes.check)
    g.add_node("repair", nodes.repair)
    g.add_node("limit", nodes.limit)
    g.add_node("finish", nodes.finish)
    g.add_edge(START, first[0])
    g.add_conditional_edges(first[0], route, {"agent": "agent", "finish": "finish"})
    g.add_conditional_edges("agent", route, {"tools": "tools", "agent": "agent", "check": "check",
                                             "limit": "limit", "finish": "finish"})
    g.add_conditional_edges("tools", after_tools(settings), {"agent": "agent", "limit": "limit"})
    g.add_conditional_edges("check", route, {"repair": "repair", "finish": "finish"})
    g.add_edge("repair", "agent")
    g.add_edge("limit", END)
    g.add_edge("finish", END)
    compiled = g.compile(checkpointer=checkpointer, name=name)
    compiled.nodes_impl = nodes  # type: ignore[attr-defined]  # lets callers reach the sessions (tests, benchmarks)
    return compiled


def make_graph(config: dict | None = None):
    """Build the graph from ``EHR_AGENT_STORE``, ``EHR_AGENT_MODEL`` (and the other settings) for ``langgraph dev``."""
    from ehr_agent.agent.models.factory import make_model
    from ehr_agent.tools.store import open_store

    settings = AgentSettings()
    if not settings.store:
        raise RuntimeError("set EHR_AGENT_STORE to a store directory or FHIR base URL")
    store = open_store(settings.store)
    index = None
    if settings.index_dir:
        from ehr_agent.tools.retrieval import HybridIndex

        index = HybridIndex(store, settings.index_dir)
    return build_graph(store=store, model=make_model(settings.model), settings=settings, index=index)
