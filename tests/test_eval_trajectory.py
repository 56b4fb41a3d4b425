"""``trajectory_from_state``: the same trajectory from the graph's messages as plain dicts and as LangChain
message objects (or their ``dumpd`` form), with the tool log joined and long texts capped."""

from __future__ import annotations

import pytest
from langchain_core.load import dumpd
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from ehr_agent import prompts
from ehr_agent.agent.trajectory import SYSTEM_CAP, TEXT_CAP, trajectory_from_state

ARGS = {"text": "a1c", "mode": "all"}
ROWS = "observations 'a1c' all (2 found)\n2021-09-15 HbA1c = 6.8 % [Observation/a1c-3]\n2019-03-04 HbA1c = 7.2 % [Observation/a1c-1]"
REPAIR = prompts.render("agent_repair", problems="- value 9 is not in the cited rows", evidence="(none)")
REPORT = {"verified": True, "citations": ["Observation/a1c-3"], "unsupported": [], "unsupported_reasons": [],
          "marked_answer": ""}


def _dicts(tool_text: str = ROWS) -> list[dict]:
    return [
        {"role": "system", "content": "S" * 1000},
        {"role": "user", "content": "earlier question"},
        {"role": "assistant", "content": "earlier answer"},
        {"role": "user", "content": "Question: latest HbA1c?"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "name": "observations", "arguments": ARGS}]},
        {"role": "tool", "content": tool_text, "tool_call_id": "c1", "name": "observations"},
        {"role": "assistant", "content": "It was 9 % [Observation/a1c-3]."},
        {"role": "user", "content": REPAIR},
        {"role": "assistant", "content": "It was 6.8 % [Observation/a1c-3]."},
    ]


def _langchain(tool_text: str = ROWS) -> list:
    return [
        SystemMessage("S" * 1000),
        HumanMessage("earlier question"),
        AIMessage("earlier answer"),
        HumanMessage("Question: latest HbA1c?"),
        AIMessage("", tool_calls=[{"id": "c1", "name": "observations", "args": ARGS}],
                  usage_metadata={"input_tokens": 900, "output_tokens": 20, "total_tokens": 920}),
        ToolMessage(tool_text, tool_call_id="c1", name="observations"),
        AIMessage("It was 9 % [Observation/a1c-3]."),
        HumanMessage(REPAIR),
        AIMessage("It was 6.8 % [Observation/a1c-3]."),
    ]


def _state(messages: list, tool_text: str = ROWS) -> dict:
    return {"messages": messages, "history": [{"question": "earlier question", "answer": "earlier answer"}],
            "tool_log": [{"name": "observations", "arguments": ARGS, "rows": 2, "refused": False, "error": False,
                          "seconds": 0.01}],
            "report": REPORT, "repairs": 1}


def _without_tokens(items: list[dict]) -> list[dict]:
    return [{k: v for k, v in i.items() if k not in ("prompt_tokens", "completion_tokens")} for i in items]


def test_dict_messages_give_the_full_trajectory():
    t = trajectory_from_state(_state(_dicts()))
    assert [(i["type"], i.get("kind")) for i in t] == [
        ("system", None), ("user", "history"), ("model", "history"), ("user", "question"), ("model", None),
        ("tool", None), ("model", None), ("user", "repair"), ("model", None), ("check", None)]
    assert t[0]["chars"] == 1000 and len(t[0]["text"]) == SYSTEM_CAP
    call = t[4]
    assert call["step"] == 1 and call["tool_calls"] == [{"id": "c1", "name": "observations", "arguments": ARGS}]
    tool = t[5]
    assert tool == {"type": "tool", "name": "observations", "arguments": ARGS, "rows": 2, "refused": False,
                    "error": False, "seconds": 0.01, "text": ROWS}
    assert [i["step"] for i in t if i["type"] == "model" and "step" in i] == [1, 2, 3]
    assert t[-1] == {"type": "check", "verified": True, "citations": ["Observation/a1c-3"], "unsupported": [],
                     "unsupported_reasons": [], "repairs": 1}


@pytest.mark.parametrize("form", ["objects", "dumpd"])
def test_langchain_messages_give_the_same_trajectory(form):
    msgs = _langchain()
    if form == "dumpd":
        msgs = [dumpd(m) for m in msgs]
    lc = trajectory_from_state(_state(msgs))
    assert _without_tokens(lc) == trajectory_from_state(_state(_dicts()))
    # per-turn token counts come from the AIMessage's usage_metadata
    assert lc[4]["prompt_tokens"] == 900 and lc[4]["completion_tokens"] == 20


def test_long_tool_text_is_capped_and_says_how_long_it_was():
    long = "row\n" * (TEXT_CAP // 2)
    for msgs in (_dicts(long), _langchain(long)):
        (tool,) = [i for i in trajectory_from_state(_state(msgs, long)) if i["type"] == "tool"]
        assert len(tool["text"]) == TEXT_CAP and tool["chars"] == len(long) and tool["text"] == long[:TEXT_CAP]


def test_prefetch_follows_the_question_and_odd_messages_do_not_raise():
    state = _state(_dicts())
    state["tool_log"].insert(0, {"name": "search_record", "arguments": {"query": "a1c", "k": 5}, "rows": 4,
                                 "refused": False, "error": None, "seconds": 0.2, "prefetch": True})
    t = trajectory_from_state(state)
    at = [i.get("kind") for i in t].index("question")
    assert t[at + 1]["name"] == "search_record" and t[at + 1]["prefetch"] is True
    assert t[at + 3]["name"] == "observations" and t[at + 3]["rows"] == 2  # the joined log skips the prefetch
    odd = trajectory_from_state({"messages": [{"role": "assistant", "content": [{"type": "text", "text": "hi"}]},
                                              {"type": "tool", "content": None}]})
    assert odd[0] == {"type": "model", "step": 1, "text": "hi"}  # LangChain content blocks, flattened
    assert odd[1]["type"] == "tool" and odd[1]["text"] == ""
    assert trajectory_from_state({}) == []


def test_earlier_questions_of_a_thread_stay_history():
    """A thread whose state keeps every earlier message (LangChain's add_messages): only the turns after this
    question's prompt count as steps, and earlier tool results are left to their own records."""
    earlier = [HumanMessage("Question: first question?"),
               AIMessage("", tool_calls=[{"id": "c0", "name": "records", "args": {"kind": "encounters"}}]),
               ToolMessage("old rows", tool_call_id="c0", name="records"), AIMessage("first answer")]
    msgs = [SystemMessage("S")] + earlier + _langchain()[3:]
    state = _state(msgs) | {"question": "latest HbA1c?", "history": [{"question": "first question?",
                                                                      "answer": "first answer"}]}
    t = trajectory_from_state(state)
    assert [i["text"] for i in t if i.get("kind") == "history"] == ["Question: first question?", "", "first answer"]
    assert "old rows" not in str(t)
    assert [i["step"] for i in t if "step" in i] == [1, 2, 3]
    (q,) = [i for i in t if i.get("kind") == "question"]
    assert q["text"] == "Question: latest HbA1c?"
    assert _without_tokens(t[4:]) == trajectory_from_state(_state(_dicts()))[3:]  # from the question on
