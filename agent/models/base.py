"""The chat-model interface every backend implements (OpenAI-compatible server, transformers,
the embedded llama.cpp default, and the scripted test model).

Our own small interface rather than LangChain's: the text tool-call protocol, Gemma's role rules and
token accounting all live at this boundary, and a backend is one class with one method.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, Field

# A tool as the model sees it is a type of the tools' layer; re-exported so the backends keep importing it here.
from ehr_agent.tools.spec import ToolSpec

__all__ = ["ChatMessage", "ChatModel", "ChatResult", "ModelError", "TokenCallback", "ToolCall", "ToolSpec"]


class ToolCall(BaseModel):
    """One call of a tool by the model."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ChatMessage(BaseModel):
    """A message in the conversation, OpenAI-shaped."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None


class ChatResult(BaseModel):
    """What one model call returned.

    ``tool_calls`` is filled either by the server's native tool calling or by our text protocol
    parser; ``content`` is the text with any tool-call markup and thinking spans removed.
    ``parse_error`` is set when the model tried to call a tool but the call could not be parsed or
    validated, so the graph can send the error back for a repair.
    """

    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    raw: str = ""
    parse_error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    #: how many repair round-trips :func:`agent.protocol.chat_with_repairs` needed for this result
    repairs: int = 0


class ModelError(Exception):
    """The model backend failed (server down, timeout, HTTP 5xx after retries, garbage it cannot use)."""


TokenCallback = Callable[[str], None]


class ChatModel(abc.ABC):
    """A chat model. Implementations must be safe to call from several threads at once
    (the evaluation runner calls them concurrently)."""

    #: short identifier shown in reports, e.g. ``openai:http://127.0.0.1:8000/v1#medgemma``
    name: str = "model"
    #: whether :meth:`chat` accepts ``constrain=`` (a JSON schema its reply is forced to match, by a
    #: grammar or the server's guided decoding); callers pass it only to backends that say so
    constrained_output: bool = False

    @abc.abstractmethod
    def chat(
        self,
        messages: list[ChatMessage],
        tools: list[ToolSpec] | None = None,
        *,
        on_token: TokenCallback | None = None,
        max_tokens: int | None = None,
    ) -> ChatResult:
        """One model turn. ``on_token`` receives text pieces as they are generated (streaming).

        Raises :class:`ModelError` on failure; never returns a half-parsed result silently.
        """

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` with this model's tokenizer when it has one, else an estimate (chars/4)."""
        return max(1, (len(text) + 3) // 4)

    def close(self) -> None:
        """Release what the backend holds (HTTP connections, model weights). Safe to call twice."""

    def __enter__(self) -> ChatModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
