"""The text tool-call protocol: rendering, the lenient parser, schema validation, repairs.

Repair tests use ScriptedModel (a deterministic stand-in for a real model).
"""

from __future__ import annotations

import pytest

from ehr_agent.agent.models.base import ChatMessage, ChatResult, ToolCall, ToolSpec
from ehr_agent.agent.models.scripted import ScriptedModel
from ehr_agent.agent.protocol import (
    chat_with_repairs,
    format_call,
    loads_lenient,
    parse_tool_calls,
    render_tools_section,
    repair_messages,
    strip_thinking,
    to_text_protocol,
    validate_arguments,
)

TOOLS = [
    ToolSpec(
        name="get_conditions",
        description="List the patient's conditions.",
        parameters={
            "type": "object",
            "properties": {
                "active_only": {"type": "boolean", "description": "only active ones"},
                "limit": {"type": "integer", "minimum": 1, "default": 20},
            },
            "additionalProperties": False,
        },
    ),
    ToolSpec(
        name="search_notes",
        description="Search the patient's clinical notes.",
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "words to look for"},
                "codes": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["query"],
        },
    ),
    ToolSpec(name="list_encounters", description="List encounters.", parameters={"type": "object", "properties": {}}),
]

GC = "get_conditions"
SN = "search_notes"

# (reply text, expected [(name, arguments)], expected content)
GOOD = [
    ('```tool_call\n{"tool": "get_conditions", "arguments": {"active_only": true}}\n```', [(GC, {"active_only": True})], ""),
    ('```json\n{"tool": "search_notes", "arguments": {"query": "a1c"}}\n```', [(SN, {"query": "a1c"})], ""),
    ('```\n{"tool": "search_notes", "arguments": {"query": "a1c"}}\n```', [(SN, {"query": "a1c"})], ""),
    # prose before and after the block
    ('Let me look.\n```tool_call\n{"tool": "list_encounters", "arguments": {}}\n```\nThen I will answer.',
     [("list_encounters", {})], "Let me look.\n\nThen I will answer."),
    # single quotes and Python literals
    ("```tool_call\n{'tool': 'get_conditions', 'arguments': {'active_only': True}}\n```", [(GC, {"active_only": True})], ""),
    ("{'tool': 'search_notes', 'arguments': {'query': \"patient's pain\", 'codes': None}}",
     [], None),  # codes None violates the schema -> error (checked in BAD below too)
    # trailing comma, missing closing braces, unclosed fence
    ('```tool_call\n{"tool": "search_notes", "arguments": {"query": "x",},}\n```', [(SN, {"query": "x"})], ""),
    ('```tool_call\n{"tool": "get_conditions", "arguments": {"active_only": false', [(GC, {"active_only": False})], ""),
    # several calls: two blocks, a JSON list, concatenated objects
    ('```tool_call\n{"tool": "list_encounters", "arguments": {}}\n```\n```tool_call\n{"tool": "search_notes", "arguments": {"query": "x"}}\n```',
     [("list_encounters", {}), (SN, {"query": "x"})], ""),
    ('[{"tool": "list_encounters", "arguments": {}}, {"tool": "get_conditions", "arguments": {}}]',
     [("list_encounters", {}), (GC, {})], ""),
    ('{"tool": "list_encounters", "arguments": {}}\n{"tool": "get_conditions", "arguments": {"limit": 3}}',
     [("list_encounters", {}), (GC, {"limit": 3})], ""),
    # Qwen/Hermes tags and OpenAI shapes
    ('<tool_call>\n{"name": "search_notes", "arguments": {"query": "x"}}\n</tool_call>', [(SN, {"query": "x"})], ""),
    ('{"name": "search_notes", "arguments": "{\\"query\\": \\"x\\"}"}', [(SN, {"query": "x"})], ""),
    ('{"type": "function", "function": {"name": "get_conditions", "arguments": {}}}', [(GC, {})], ""),
    ('{"tool_calls": [{"function": {"name": "get_conditions", "arguments": "{}"}}]}', [(GC, {})], ""),
    # arguments inline next to the tool name
    ('{"tool": "search_notes", "query": "x"}', [(SN, {"query": "x"})], ""),
    # a fence label without the fence (seen from Qwen2.5-Coder-0.5B)
    ('tool_call\n{"tool": "get_conditions", "arguments": {"active_only": true}}', [(GC, {"active_only": True})], ""),
    # pythonic calls (Gemma's habit), bare at a line start, in a list, in a fence, positional
    ('search_notes(query="hba1c")', [(SN, {"query": "hba1c"})], ""),
    ("[get_conditions(active_only=True), search_notes(query='x')]", [(GC, {"active_only": True}), (SN, {"query": "x"})], ""),
    ('```tool_code\nsearch_notes(query="x", codes=["4548-4"])\n```', [(SN, {"query": "x", "codes": ["4548-4"]})], ""),
    ('```python\nget_conditions(active_only=true)\n```', [(GC, {"active_only": True})], ""),
    ('search_notes("chest pain")', [(SN, {"query": "chest pain"})], ""),
    # type slips coerced to the schema ("5" for 5, "true" for true, scalar for a list)
    ('{"tool": "get_conditions", "arguments": {"limit": "5", "active_only": "true"}}', [(GC, {"limit": 5, "active_only": True})], ""),
    ('{"tool": "search_notes", "arguments": {"query": "x", "codes": "4548-4"}}', [(SN, {"query": "x", "codes": ["4548-4"]})], ""),
    # smart quotes from a word processor
    ('{\u201ctool\u201d: \u201clist_encounters\u201d, \u201carguments\u201d: {}}', [("list_encounters", {})], ""),
    # thinking spans never count
    ('<unused94>maybe search_notes(query="no")<unused95>```tool_call\n{"tool": "list_encounters", "arguments": {}}\n```',
     [("list_encounters", {})], ""),
    # plain answers: no calls, content kept
    ("The patient has hypertension [Condition/1].", [], "The patient has hypertension [Condition/1]."),
    ("You could use get_conditions() to list them.", [], "You could use get_conditions() to list them."),
    ('Result as JSON:\n```json\n{"count": 3}\n```', [], 'Result as JSON:\n```json\n{"count": 3}\n```'),
    ("Example:\n```python\nprint(len(rows))\n```", [], "Example:\n```python\nprint(len(rows))\n```"),
    ('<think>I should look</think>\n{\n  "tool": "search_notes",\n  "arguments": {\n    "query": "x"\n  }\n}', [(SN, {"query": "x"})], ""),
    # data that merely has a "name" key is not a call
    ('The drug was {"name": "Aspirin", "dose": "81 mg"} [MedicationRequest/m1].', [],
     'The drug was {"name": "Aspirin", "dose": "81 mg"} [MedicationRequest/m1].'),
    ('```json\n[{"name": "Aspirin"}]\n```', [], '```json\n[{"name": "Aspirin"}]\n```'),
    ("", [], ""),
    ("<unused94>unfinished thought", [], ""),
]


@pytest.mark.parametrize("text,calls,content", [g for g in GOOD if g[2] is not None])
def test_parser_accepts(text: str, calls: list, content: str) -> None:
    outcome = parse_tool_calls(text, TOOLS)
    assert outcome.errors == []
    assert [(c.name, c.arguments) for c in outcome.tool_calls] == calls
    assert outcome.content == content
    assert len({c.id for c in outcome.tool_calls}) == len(calls)  # ids are unique


# (reply text, a fragment every error message must contain)
BAD = [
    ('```tool_call\n{"tool": "delete_patient", "arguments": {}}\n```', "unknown tool 'delete_patient'"),
    ('```tool_call\n{"tool": "search_notes", "arguments": {}}\n```', "'query' is a required property"),
    ('```tool_call\n{"tool": "get_conditions", "arguments": {"limit": 0}}\n```', "argument 'limit'"),
    ('```tool_call\n{"tool": "get_conditions", "arguments": {"limit": "many"}}\n```', "is not of type 'integer'"),
    ('```tool_call\n{"tool": "get_conditions", "arguments": {"colour": "red"}}\n```', "allowed: active_only, limit"),
    ('```tool_call\n{"tool": "get_conditions", "arguments": [1, 2]}\n```', "must be a JSON object"),
    ("```tool_call\nplease call the conditions tool\n```", "could not read the tool call"),
    ('```tool_call\n{"arguments": {"query": "x"}}\n```', 'no "tool" key'),
    ('```tool_call\n{"tool": "search_notes", "arguments": {"query": x y z}}\n```', "could not read the tool call"),
    ("{'tool': 'search_notes', 'arguments': {'query': \"patient's pain\", 'codes': None}}", "argument 'codes'"),
    ("search_notes(query=open('/etc/passwd'))", "must be literal values"),
    ('get_conditions(True, 5, "extra")', "too many positional arguments"),
    ("<tool_call>not a call</tool_call>", "could not read the call"),
    # undeclared arguments are rejected even without additionalProperties: false
    ('{"tool": "list_encounters", "arguments": {"status": "all"}}', "'status' was unexpected) (allowed: none)"),
]


@pytest.mark.parametrize("text,fragment", BAD)
def test_parser_reports_errors(text: str, fragment: str) -> None:
    outcome = parse_tool_calls(text, TOOLS)
    assert outcome.tool_calls == []
    assert outcome.error is not None and fragment in outcome.error, outcome.error


def test_one_bad_call_rejects_the_whole_turn() -> None:
    text = (
        '```tool_call\n{"tool": "list_encounters", "arguments": {}}\n```\n'
        '```tool_call\n{"tool": "nope", "arguments": {}}\n```'
    )
    outcome = parse_tool_calls(text, TOOLS)
    assert outcome.tool_calls == [] and "unknown tool 'nope'" in outcome.error


def test_without_tools_names_are_not_checked() -> None:
    outcome = parse_tool_calls('{"tool": "anything", "arguments": {"a": 1}}', None)
    assert [(c.name, c.arguments) for c in outcome.tool_calls] == [("anything", {"a": 1})]


def test_loads_lenient_error_is_clear() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        loads_lenient("{oops: ")
    assert loads_lenient("{'a': None, 'b': true,}") == {"a": None, "b": True}


def test_validate_arguments_coerces_and_reports() -> None:
    args, problems = validate_arguments(TOOLS[0], {"limit": "7"})
    assert args == {"limit": 7} and problems == []
    _, problems = validate_arguments(TOOLS[1], {"query": 3})
    assert problems and problems[0].startswith("search_notes: argument 'query'")


def test_render_tools_section_lists_every_tool_and_argument() -> None:
    text = render_tools_section(TOOLS)
    for needle in ("`get_conditions`", "`search_notes`", "`query` (string, required): words to look for",
                   "`limit` (integer, optional, default 20)", "`codes` (array of string, optional)",
                   "```tool_call", '{"tool": "search_notes", "arguments": {"query": "..."}}'):
        assert needle in text
    assert "{tools}" not in text and render_tools_section([]) == ""
    # the example in the prompt is itself a valid call
    example = text[text.index("```tool_call"):]
    example = example[: example.index("```", 3) + 3]
    assert parse_tool_calls(example, TOOLS).tool_calls[0].name == "search_notes"


def test_to_text_protocol_rewrites_tool_turns() -> None:
    call = ToolCall(id="c1", name="search_notes", arguments={"query": "x"})
    messages = [
        ChatMessage(role="system", content="Be careful."),
        ChatMessage(role="user", content="Q?"),
        ChatMessage(role="assistant", content="<unused94>hm<unused95>Looking.", tool_calls=[call]),
        ChatMessage(role="tool", content="note 1", tool_call_id="c1", name="search_notes"),
        ChatMessage(role="tool", content="note 2", tool_call_id="c2", name="get_conditions"),
    ]
    out = to_text_protocol(messages, TOOLS)
    assert [m.role for m in out] == ["system", "user", "assistant", "user"]
    assert out[0].content.startswith("Be careful.") and "`search_notes`" in out[0].content
    assert "<unused94>" not in out[2].content and format_call(call) in out[2].content
    assert "Tool result for search_notes (call c1):\nnote 1" in out[3].content
    assert "Tool result for get_conditions (call c2):\nnote 2" in out[3].content
    assert out[3].content.count("answer now") == 1 and out[3].content.rstrip().endswith("still lack.")
    # the call written back into history parses to the same call
    assert parse_tool_calls(out[2].content, TOOLS).tool_calls[0].arguments == {"query": "x"}


def test_strip_thinking() -> None:
    assert strip_thinking("a<unused94>x\ny<unused95>b<think>z</think>c") == "abc"


BAD_CALL = '```tool_call\n{"tool": "search_notes", "arguments": {}}\n```'
GOOD_CALL = '```tool_call\n{"tool": "search_notes", "arguments": {"query": "x"}}\n```'


def test_repairs_send_the_error_back_and_succeed() -> None:
    """ScriptedModel: one broken call, then a good one."""
    model = ScriptedModel([BAD_CALL, GOOD_CALL])
    result = chat_with_repairs(model, [ChatMessage(role="user", content="Q")], TOOLS, max_repairs=2)
    assert result.parse_error is None and result.repairs == 1
    assert result.tool_calls[0].arguments == {"query": "x"}
    second = model.messages_seen[1]
    assert second[-2].role == "assistant" and second[-2].content == BAD_CALL
    assert second[-1].role == "user" and "'query' is a required property" in second[-1].content
    assert result.completion_tokens > 0 and result.prompt_tokens > 0


def test_repairs_are_bounded() -> None:
    """ScriptedModel: the model never gets it right; exactly 1 + max_repairs calls are made."""
    model = ScriptedModel([BAD_CALL] * 10)
    result = chat_with_repairs(model, [ChatMessage(role="user", content="Q")], TOOLS, max_repairs=2)
    assert len(model.calls) == 3
    assert result.parse_error and result.repairs == 2 and result.tool_calls == []
    with pytest.raises(ValueError):
        chat_with_repairs(model, [], TOOLS, max_repairs=-1)
    with pytest.raises(ValueError):
        repair_messages(ChatResult(content="fine"))


def test_no_repair_when_the_answer_is_plain_text() -> None:
    """ScriptedModel: a plain answer is returned after one call."""
    model = ScriptedModel(["The answer."])
    result = chat_with_repairs(model, [ChatMessage(role="user", content="Q")], TOOLS)
    assert result.content == "The answer." and result.repairs == 0 and len(model.calls) == 1
