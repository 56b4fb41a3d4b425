"""A scripted model that answers the generator's cohort tasks the way a good model would.

It reads the task's ``meta`` (what :mod:`agent.eval.gen_cohort` counted), issues the queries that count
the same thing with the cohort tools (``find_codes`` first when a name has to become a code), and
answers with the count the tool returned, citing the tool's key. It never sees the gold number, so a run
through :func:`agent.cohort.answer_cohort` measures whether the tools and the check reach the gold answer
(and the overhead of the cohort graph), not the scripted model's knowledge.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ehr_agent.agent.models.base import ChatMessage
from ehr_agent.agent.models.scripted import ScriptedModel

from .tasks import Task

_CITE = re.compile(r"^(\d+) .*Cite as \[([^\]]+)\]", re.S)


def tool_call(name: str, arguments: dict[str, Any]) -> str:
    """One tool call in the text protocol."""
    return "```tool_call\n" + json.dumps({"tool": name, "arguments": arguments}) + "\n```"


def _last_tool(messages: list[ChatMessage]) -> str:
    for m in reversed(messages):
        if m.role == "tool" or (m.role == "user" and "Cite as [" in m.content):
            return m.content
    return ""


def _count_answer(messages: list[ChatMessage]) -> str:
    text = _last_tool(messages)
    m = _CITE.search(text.strip().split("\n")[-1]) or _CITE.search(text)
    if not m:
        return "No count was found: the query failed."
    return f"The count is {m.group(1)} [{m.group(2)}]."


def _code_param(messages: list[ChatMessage], name: str) -> str | None:
    # find_codes lines: 'param=system|code  "Display" (n resources)'; the one whose display is the name.
    for line in _last_tool(messages).splitlines():
        m = re.match(r'^(\S+?)=(\S+)\s+"(.*)" \(\d+ resources\)$', line.strip())
        if m and m.group(3).strip().lower() == name.strip().lower():
            return f"{m.group(1)}={m.group(2)}"
    return None


def _count_by_code(rtype: str, name: str, extra: dict[str, str]):
    text_param = "vaccine-code" if rtype == "Immunization" else "code"

    def turn(messages: list[ChatMessage]) -> str:
        found = _code_param(messages, name)
        params = dict(extra)
        if found:
            k, _, v = found.partition("=")
            params[k] = v
        else:
            # Not among the codes listed: fall back to a name search (commas would make an OR list).
            params[f"{text_param}:text"] = name.replace(",", r"\,")
        return tool_call("count_patients", {"resource_type": rtype, "params": params})

    return turn


def cohort_script(task: Task) -> list:
    """The turns for a generated cohort task (``meta["op"]`` of :mod:`agent.eval.gen_cohort`)."""
    op = task.meta.get("op")
    if op == "gender":
        return [tool_call("count_resources", {"resource_type": "Patient", "params": {"gender": task.meta["gender"]}}),
                _count_answer]
    if op == "born_before":
        return [tool_call("count_resources", {"resource_type": "Patient",
                                              "params": {"birthdate": f"lt{task.meta['year']}"}}), _count_answer]
    if op == "condition":
        name = task.meta["name"]
        return [tool_call("find_codes", {"resource_type": "Condition", "text": name}),
                _count_by_code("Condition", name, {}), _count_answer]
    if op == "vaccine_year":
        name = task.meta["name"]
        return [tool_call("find_codes", {"resource_type": "Immunization", "text": name}),
                _count_by_code("Immunization", name, {"date": str(task.meta["year"])}), _count_answer]
    return ["I cannot count this kind of question."]


def scripted_cohort_model(task: Task) -> ScriptedModel:
    """A :class:`ScriptedModel` playing :func:`cohort_script` (plus the same answer again for a repair round)."""
    turns = cohort_script(task)
    return ScriptedModel(turns + [turns[-1]], name="scripted-cohort")
