"""The answer the agent returns: the shape ``ehr-agent ask --json`` prints and evaluation scores."""

from __future__ import annotations

from pydantic import BaseModel, Field


class AnswerResult(BaseModel):
    """A finished question.

    ``citations`` are every ``Type/id`` the answer cites (in order of first use); ``verified`` is true only
    when code checked every cited claim; ``unsupported`` lists the sentences (or claims) that failed the
    check and are marked in ``answer``. ``error`` is set when the run ended abnormally (model down,
    step limit), in which case ``answer`` still says so in words.
    """

    answer: str
    citations: list[str] = Field(default_factory=list)
    verified: bool = False
    unsupported: list[str] = Field(default_factory=list)
    unsupported_reasons: list[str] = Field(default_factory=list)
    computed: list[str] = Field(default_factory=list)
    """Values the tools computed in this question (calculator results, counts, ages), which the check accepts."""
    """Why each sentence of ``unsupported`` failed, in the same order (citation or claim check)."""
    steps: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    tool_calls: list[dict] = Field(default_factory=list)
    evidence_refs: list[str] = Field(default_factory=list)
    error: str | None = None
    trajectory: list[dict] = Field(default_factory=list)
    """Each model turn, tool call (with the text it returned, capped) and the final check, in order
    (:func:`agent.trajectory.trajectory_from_state`); evaluation records keep it to explain a miss."""
