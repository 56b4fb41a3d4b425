"""The LangGraph state of one agent thread.

Plain JSON-able values only (dicts, lists, strings, numbers) so any checkpointer (InMemorySaver,
SqliteSaver) can store it without custom serialisers. Messages are :class:`agent.models.base.ChatMessage`
dumps; ``evidence`` maps each reference a tool returned to its one-line projection.
"""

from __future__ import annotations

from typing import Any, TypedDict


class AgentInput(TypedDict, total=False):
    """What a caller passes to ``invoke``/``stream``."""

    patient_id: str
    question: str
    as_of: str | None


class AgentState(AgentInput, total=False):
    """Everything the nodes read and write (per question, except ``history`` and the evidence of the thread)."""

    resolved_as_of: str
    manifest: str
    messages: list[dict[str, Any]]
    evidence: dict[str, str]
    computed: list[str]
    proofs: dict[str, list[str]]
    evidence_patient: str
    steps: int
    repairs: int
    draft: str
    report: dict[str, Any] | None
    tool_log: list[dict[str, Any]]
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
