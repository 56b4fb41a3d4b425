"""The boundary between our model interface and LangChain's message types.

The graph state holds LangChain messages (``SystemMessage``, ``HumanMessage``, ``AIMessage`` with
``tool_calls``, ``ToolMessage``), which checkpointers serialise, LangGraph servers return as JSON, and
``stream_mode="messages"`` streams. The backends keep our own small interface
(:class:`agent.models.base.ChatModel` with :class:`ChatMessage`); :func:`to_chat_messages` and
:func:`to_lc_message` convert at the node boundary.

:class:`LangChainChat` presents a ``ChatModel`` to LangChain as a chat model for one call. LangGraph's
``"messages"`` stream mode listens to chat-model callbacks only (a stream writer feeds the ``"custom"``
mode, not this one), so the agent node calls the model through it: each token the backend reports
becomes an ``AIMessageChunk`` on that stream, under the same id as the finished ``AIMessage`` the
node puts in the state (so a consumer sees the message once).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any
from uuid import uuid4

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk
from langchain_core.outputs import ChatResult as LCChatResult
from langchain_core.utils.utils import LC_ID_PREFIX
from pydantic import ConfigDict, PrivateAttr

from ehr_agent.agent.models.base import ChatMessage, ChatResult, ToolCall, ToolSpec


def to_chat_messages(messages: Sequence[BaseMessage | dict[str, Any]]) -> list[ChatMessage]:
    """State messages (LangChain messages, or the ``ChatMessage`` dicts of older checkpoints) as the
    ``ChatMessage`` list a :class:`ChatModel` takes."""
    out: list[ChatMessage] = []
    for m in messages:
        if isinstance(m, dict):
            out.append(ChatMessage.model_validate(m))
        elif isinstance(m, AIMessage):
            calls = [ToolCall(id=str(c.get("id") or ""), name=c["name"], arguments=dict(c.get("args") or {}))
                     for c in m.tool_calls]
            out.append(ChatMessage(role="assistant", content=_text(m), tool_calls=calls))
        elif isinstance(m, ToolMessage):
            out.append(ChatMessage(role="tool", content=_text(m), tool_call_id=m.tool_call_id, name=m.name))
        elif isinstance(m, SystemMessage):
            out.append(ChatMessage(role="system", content=_text(m)))
        elif isinstance(m, HumanMessage):
            out.append(ChatMessage(role="user", content=_text(m)))
        else:
            raise TypeError(f"no chat role for a {type(m).__name__} in the agent state")
    return out


def to_lc_message(m: ChatMessage, *, id: str | None = None, **extra: Any) -> BaseMessage:  # noqa: A002
    """One ``ChatMessage`` as the LangChain message the state holds (with an id, so the ``"messages"``
    stream shows it once)."""
    mid = id or str(uuid4())
    if m.role == "system":
        return SystemMessage(content=m.content, id=mid, **extra)
    if m.role == "user":
        return HumanMessage(content=m.content, id=mid, **extra)
    if m.role == "tool":
        return ToolMessage(content=m.content, tool_call_id=m.tool_call_id or "", name=m.name, id=mid, **extra)
    calls = [{"name": c.name, "args": c.arguments, "id": c.id, "type": "tool_call"} for c in m.tool_calls]
    return AIMessage(content=m.content, tool_calls=calls, id=mid, **extra)


def usage_of(res: ChatResult) -> dict[str, int]:
    """The token counts of a model turn as LangChain's ``usage_metadata``."""
    return {"input_tokens": res.prompt_tokens, "output_tokens": res.completion_tokens,
            "total_tokens": res.prompt_tokens + res.completion_tokens}


def _text(m: BaseMessage) -> str:
    return m.content if isinstance(m.content, str) else m.text


class LangChainChat(BaseChatModel):
    """One call of a :class:`ChatModel`, seen by LangChain as a chat model (see the module docstring).

    ``invoke(messages, config)`` returns the ``AIMessage``; :attr:`result` then holds the backend's own
    :class:`ChatResult` (parse errors, raw text, timings), which the graph needs and LangChain has no place for.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    chat_model: Any
    tools: list[ToolSpec] | None = None
    max_tokens: int | None = None
    options: dict[str, Any] = {}
    on_token: Callable[[str], None] | None = None
    _result: ChatResult | None = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "ehr-agent"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": getattr(self.chat_model, "name", type(self.chat_model).__name__)}

    @property
    def result(self) -> ChatResult:
        """The backend's result of the call just made."""
        if self._result is None:
            raise RuntimeError("LangChainChat.result read before a call")
        return self._result

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> LCChatResult:
        # The id LangChain gives a streamed message, so the chunks and the final message match.
        mid = f"{LC_ID_PREFIX}-{run_manager.run_id}" if run_manager else str(uuid4())

        streamed = False

        def token(text: str) -> None:
            nonlocal streamed
            if self.on_token is not None:
                self.on_token(text)
            if run_manager is not None:
                streamed = True
                run_manager.on_llm_new_token(text, chunk=ChatGenerationChunk(message=AIMessageChunk(content=text,
                                                                                                   id=mid)))

        res = self.chat_model.chat(to_chat_messages(messages), self.tools, on_token=token,
                                   max_tokens=self.max_tokens, **self.options)
        self._result = res
        if streamed and run_manager is not None and res.tool_calls:
            # The tokens were the call's text; a last chunk carries the parsed calls, so chunks added up give
            # the same tool_calls as the message the state keeps.
            calls = [{"name": c.name, "args": json.dumps(c.arguments), "id": c.id, "index": i, "type": "tool_call_chunk"}
                     for i, c in enumerate(res.tool_calls)]
            run_manager.on_llm_new_token("", chunk=ChatGenerationChunk(message=AIMessageChunk(
                content="", tool_call_chunks=calls, id=mid, chunk_position="last")))
        ai = to_lc_message(ChatMessage(role="assistant", content=res.content, tool_calls=res.tool_calls), id=mid,
                           usage_metadata=usage_of(res))
        return LCChatResult(generations=[ChatGeneration(message=ai)])


__all__ = ["LangChainChat", "to_chat_messages", "to_lc_message", "usage_of"]
