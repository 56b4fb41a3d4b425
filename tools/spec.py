"""The types a tool session shares with whoever drives it: what a tool looks like to the model
(:class:`ToolSpec`), what a call returns (:class:`ToolOutput`), and the table a session keeps of its tools.

They live with the tools, the lower layer; the graph (``agent/``) imports them from here
(``agent.models.base`` re-exports :class:`ToolSpec` for the model backends).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from pydantic import BaseModel, Field


class ToolSpec(BaseModel):
    """A tool as the model sees it: name, description and JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


class ToolOutput(BaseModel):
    """What one tool call returns: the text the model reads plus what the graph records.

    ``evidence`` maps each reference returned (``Type/id`` or ``DocumentReference/id#n``) to its
    projection line, which is what the citation check compares a cited sentence against.
    ``computed`` holds calculator values a cited sentence may state.
    """

    text: str
    evidence: dict[str, str] = Field(default_factory=dict)
    computed: list[str] = Field(default_factory=list)
    #: a computed value -> the references that prove it (a count -> the records counted), so an answer that
    #: states the value without citing can be cited by code, and the claim check then recounts them
    proofs: dict[str, list[str]] = Field(default_factory=dict)
    refused: bool = False
    error: bool = False


class Tool(NamedTuple):
    """One entry of a session's tool table: the pydantic model of its arguments, the function that runs it
    (given the validated arguments) and the description the model reads."""

    args: type[BaseModel]
    run: Callable[[Any], ToolOutput]
    description: str


#: name -> tool, in the order the tools are offered
ToolTable = Mapping[str, Tool]


def compact_schema(model: type[BaseModel]) -> dict:
    """A pydantic model's JSON schema without titles and ``anyOf null`` noise (fewer prompt tokens)."""
    schema = model.model_json_schema()
    props = {}
    for name, p in schema.get("properties", {}).items():
        q = {k: v for k, v in p.items() if k not in ("title", "default")}
        if "anyOf" in q:
            non_null = [x for x in q.pop("anyOf") if x.get("type") != "null"]
            if non_null:
                q.update(non_null[0])
        props[name] = q
    out: dict[str, Any] = {"type": "object", "properties": props}
    if schema.get("required"):
        out["required"] = schema["required"]
    return out


def specs_of(tools: ToolTable) -> list[ToolSpec]:
    """Every tool of a table as a :class:`ToolSpec`, in table order."""
    return [ToolSpec(name=n, description=t.description, parameters=compact_schema(t.args)) for n, t in tools.items()]
