"""Settings of the agent: step and repair limits, the as-of policy, tool output bounds.

Read from keyword arguments or ``EHR_AGENT_*`` environment variables (pydantic-settings), so the
same values reach the CLI, a notebook and ``langgraph dev`` (which builds the graph from the
environment, see :func:`agent.graph.make_graph`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AgentSettings(BaseSettings):
    """Everything that tunes one agent run. Every field can be set as ``EHR_AGENT_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="EHR_AGENT_", extra="ignore")

    max_steps: int = Field(6, ge=1, le=50, description="model turns allowed before the honest step-limit answer")
    auto_cite: bool = Field(True, description="cite uncited sentences whose values match exactly one evidence row "
                                              "(checked like any citation) before asking the model to repair")
    check_claims: bool = Field(True, description="check what sentences claim (latest, first, counts, absence, "
                                                 "concept, direction, age, active) against the store (agent.claims)")
    max_repairs: int = Field(1, ge=0, le=3, description="repair rounds after a failed citation check")
    as_of_policy: Literal["today", "last_record"] = Field(
        "today", description="'now' when a call gives no as_of: today's date, or the last date in the record"
    )
    max_rows: int = Field(12, ge=1, le=200, description="rows a tool returns before it says 'N more; page with offset'")
    max_tool_chars: int = Field(2400, ge=200, description="hard cap on one tool result's text")
    answer_max_tokens: int = Field(300, ge=16, description="completion budget of a model turn")
    prefetch_k: int = Field(0, ge=0, le=30, description="rows a search of the record for the question puts in the "
                                                         "first prompt (0: none; the model calls tools first)")
    first_call_constrained: bool = Field(True, description="on backends that can enforce a JSON schema, the first "
                                                           "model turn must be tool calls (a grammar, not a request)")
    first_call_tools: tuple[str, ...] = Field(("lookup", "search_record"),
                                              description="tools the constrained first turn may call")
    manifest_top: int = Field(3, ge=0, le=20, description="most frequent codes per type shown in the record overview")
    evidence_in_answer_prompt: int = Field(40, ge=1, description="evidence lines shown to the model when repairing")

    # Only used where the graph is built from the environment (langgraph dev, make_graph).
    store: str | None = Field(None, description="store directory or FHIR base URL")
    model: str = Field("embedded", description="model spec for agent.models.factory.make_model")
    index_dir: str | None = Field(None, description="hybrid index directory for search_record (optional)")
