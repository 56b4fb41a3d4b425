"""Chat-model backends behind one interface (:class:`ChatModel`), built from a spec string by
:func:`make_model`. See docs/models.md."""

from typing import Any

from ehr_agent.agent.models.base import ChatMessage, ChatModel, ChatResult, ModelError, ToolCall, ToolSpec

# The rest is imported lazily: agent.protocol imports agent.models.base, and the backends import
# agent.protocol, so importing them here would be circular.
_LAZY = {
    "make_model": "ehr_agent.agent.models.factory",
    "DEFAULT_EMBEDDED": "ehr_agent.agent.models.factory",
    "ScriptedModel": "ehr_agent.agent.models.scripted",
    "ModelSettings": "ehr_agent.agent.models.spec",
    "ModelSpec": "ehr_agent.agent.models.spec",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ehr_agent.agent.models' has no attribute {name!r}")


__all__ = ["ChatMessage", "ChatModel", "ChatResult", "ModelError", "ToolCall", "ToolSpec", *_LAZY]
