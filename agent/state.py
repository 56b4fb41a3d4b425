"""The LangGraph state of one agent thread.

JSON-able values (dicts, lists, strings, numbers) plus LangChain messages (``SystemMessage``,
``HumanMessage``, ``AIMessage`` with ``tool_calls``, ``ToolMessage``), which LangGraph's checkpointers
(InMemorySaver, SqliteSaver) serialise as they are. ``messages`` is replaced whole by the node that
changes it (no reducer), so a new question in a thread starts a fresh conversation; ``evidence`` maps
each reference a tool returned to its one-line projection.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AnyMessage
from typing_extensions import TypedDict  # pydantic (LangGraph's JSON schemas) needs it before Python 3.12


class AgentInput(TypedDict, total=False):
    """What a caller passes to ``invoke``/``stream``."""

    patient_id: str
    question: str
    as_of: str | None


class AgentState(AgentInput, total=False):
    """Everything the nodes read and write (per question, except ``history`` and the evidence of the thread)."""

    resolved_as_of: str
    manifest: str
    messages: list[AnyMessage]
    evidence: dict[str, str]
    computed: list[str]
    proofs: dict[str, list[str]]
    evidence_patient: str
    steps: int
    repairs: int
    draft: str
    report: dict[str, Any] | None
    tool_log: list[dict[str, Any]]
    #: the tool calls of the last tools step (their names; the entries are the last ones of tool_log)
    last_calls: list[str]
    prompt_tokens: int
    completion_tokens: int
    model_seconds: float
    started: float
    error: str | None
    route: str
    result: dict[str, Any] | None
    history: list[dict[str, str]]


class AgentOutput(TypedDict, total=False):
    """What ``invoke`` returns to the caller: the :class:`agent.schema.AnswerResult` as a dict, plus the thread history."""

    result: dict[str, Any] | None
    history: list[dict[str, str]]
