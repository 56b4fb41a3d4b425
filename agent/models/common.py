"""Pieces every text-generating backend shares: turning our messages into the dicts a chat template
or server takes, and turning raw text back into a ChatResult."""

from __future__ import annotations

import json
from typing import Any, Literal

from ehr_agent.agent.models.base import ChatMessage, ChatResult, ToolSpec
from ehr_agent.agent.models.shaping import shape_for_gemma
from ehr_agent.agent.protocol import merge_consecutive, result_from_text, strip_thinking, to_text_protocol

ToolMode = Literal["text", "native"]


def text_mode_messages(
    messages: list[ChatMessage], tools: list[ToolSpec] | None, *, gemma: bool
) -> list[dict[str, str]]:
    """Messages for a model that sees tools only through our text protocol, as role/content dicts."""
    shaped = to_text_protocol(messages, tools)
    shaped = shape_for_gemma(shaped) if gemma else merge_consecutive(shaped)
    return [{"role": m.role, "content": m.content} for m in shaped]


def native_mode_messages(messages: list[ChatMessage], *, gemma: bool) -> list[dict[str, Any]]:
    """OpenAI-shaped messages for a server doing its own tool calling.

    Content is always a string: llama.cpp's server answers HTTP 500 to ``content: null``.
    """
    shaped = shape_for_gemma(messages, keep_tool_role=True) if gemma else messages
    out: list[dict[str, Any]] = []
    for m in shaped:
        item: dict[str, Any] = {"role": m.role, "content": m.content or ""}
        if m.role == "assistant":
            item["content"] = strip_thinking(item["content"])
            if m.tool_calls:
                item["tool_calls"] = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)},
                    }
                    for c in m.tool_calls
                ]
        if m.role == "tool":
            item["tool_call_id"] = m.tool_call_id or ""
            if m.name:
                item["name"] = m.name
        out.append(item)
    return out


def openai_tools(tools: list[ToolSpec]) -> list[dict[str, Any]]:
    """ToolSpecs in the OpenAI ``tools`` request shape."""
    return [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in tools
    ]


def finish_text(raw: str, tools: list[ToolSpec] | None, **usage: Any) -> ChatResult:
    """ChatResult for raw text under the text protocol (thinking spans stripped, calls parsed)."""
    return result_from_text(raw or "", tools, **usage)
