"""Gemma message shaping: no system role, strict user/assistant alternation, thinking spans."""

from __future__ import annotations

import pytest

from ehr_agent.agent.models.base import ChatMessage as M
from ehr_agent.agent.models.base import ToolCall, ToolSpec
from ehr_agent.agent.models.common import native_mode_messages, text_mode_messages
from ehr_agent.agent.models.shaping import GEMMA_SAMPLING, SamplingDefaults, is_gemma, shape_for_gemma

TOOL = ToolSpec(name="get_conditions", description="List conditions.", parameters={"type": "object", "properties": {}})


def roles(messages: list) -> list[str]:
    return [m.role if isinstance(m, M) else m["role"] for m in messages]


def test_system_is_merged_into_first_user_turn() -> None:
    out = shape_for_gemma([M(role="system", content="Rules."), M(role="user", content="Q?")])
    assert roles(out) == ["user"] and out[0].content == "Rules.\n\nQ?"


def test_several_system_messages_and_no_user_turn() -> None:
    out = shape_for_gemma([M(role="system", content="A"), M(role="system", content="B"), M(role="assistant", content="Hi")])
    assert roles(out) == ["user", "assistant"] and out[0].content == "A\n\nB"


def test_conversation_must_start_with_user() -> None:
    out = shape_for_gemma([M(role="assistant", content="Hello"), M(role="user", content="Q")])
    assert roles(out) == ["user", "assistant", "user"] and out[0].content == ""


def test_consecutive_roles_are_merged_so_roles_alternate() -> None:
    out = shape_for_gemma(
        [M(role="user", content="a"), M(role="user", content="b"), M(role="assistant", content="c"),
         M(role="assistant", content="d"), M(role="user", content="e")]
    )
    assert roles(out) == ["user", "assistant", "user"]
    assert out[0].content == "a\n\nb" and out[1].content == "c\n\nd"


def test_thinking_spans_are_stripped_from_history() -> None:
    out = shape_for_gemma([M(role="user", content="q"), M(role="assistant", content="<unused94>plan\n<unused95>Answer")])
    assert out[1].content == "Answer"


def test_tool_messages_need_text_protocol_first() -> None:
    with pytest.raises(ValueError, match="text protocol"):
        shape_for_gemma([M(role="user", content="q"), M(role="tool", content="r", tool_call_id="1")])


def test_text_mode_for_gemma_alternates_with_tool_results_as_user_turns() -> None:
    call = ToolCall(id="c1", name="get_conditions", arguments={})
    msgs = [
        M(role="system", content="Sys"),
        M(role="user", content="Q"),
        M(role="assistant", content="", tool_calls=[call]),
        M(role="tool", content="Hypertension", tool_call_id="c1", name="get_conditions"),
    ]
    out = text_mode_messages(msgs, [TOOL], gemma=True)
    assert roles(out) == ["user", "assistant", "user"]
    assert out[0]["content"].startswith("Sys\n\n# Tools") and out[0]["content"].endswith("Q")
    assert "Tool result for get_conditions" in out[2]["content"]
    # non-Gemma keeps its system turn
    assert roles(text_mode_messages(msgs, [TOOL], gemma=False)) == ["system", "user", "assistant", "user"]


def test_native_mode_keeps_tool_role_and_never_sends_null_content() -> None:
    call = ToolCall(id="c1", name="get_conditions", arguments={"x": 1})
    msgs = [M(role="system", content="S"), M(role="user", content="Q"), M(role="assistant", content="", tool_calls=[call]),
            M(role="tool", content="R", tool_call_id="c1", name="get_conditions")]
    out = native_mode_messages(msgs, gemma=True)
    assert roles(out) == ["user", "assistant", "tool"]
    assert out[1]["content"] == "" and out[1]["tool_calls"][0]["function"]["arguments"] == '{"x": 1}'
    assert out[2]["tool_call_id"] == "c1"
    assert all(isinstance(m["content"], str) for m in out)


def test_gemma_detection_and_sampling() -> None:
    assert is_gemma("google/medgemma-27b-text-it") and is_gemma("gemma-3-4b-it")
    assert not is_gemma("qwen2.5") and not is_gemma(None)
    assert is_gemma("anything", family="medgemma") and not is_gemma("gemma-x", family="qwen")
    assert GEMMA_SAMPLING.merged() == {"temperature": 1.0, "top_p": 0.95, "top_k": 64}
    assert GEMMA_SAMPLING.merged(temperature=0.0)["temperature"] == 0.0
    assert SamplingDefaults().merged(top_p=None) == {}
