"""The trajectory of one answered question: what the model said, what it called, what the tools returned and
how the check ended, as plain JSON-able dicts that an evaluation record keeps (see docs/evaluation.md).

It is read from the graph's final state (``messages``, ``tool_log``, ``report``), so it costs nothing while the
graph runs. Messages may be the plain dicts of :class:`agent.models.base.ChatMessage` or LangChain message
objects (``AIMessage``, ``ToolMessage``...) or their serialised forms: the few fields read here are normalised
by hand because no LangChain converter reads our ``{"id", "name", "arguments"}`` tool-call dicts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

#: Characters kept of one item's text (a model turn, a tool result, a prompt). Above the default tool-result
#: cap (``max_tool_chars`` = 2400), so a tool result is normally kept whole; a longer text is cut and the item
#: says how long it was (``chars``).
TEXT_CAP = 4000
#: The system prompt is the same in every record and can be rebuilt from the prompts at the header's commit,
#: so only its opening is kept.
SYSTEM_CAP = 300

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "user": "user",
          "assistant": "assistant", "AIMessageChunk": "assistant"}


def trajectory_from_state(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The question's trajectory, in order: ``system``, ``user`` (kind ``history``, ``question``, ``repair``,
    ``nudge``, ``protocol_repair``), ``model`` (text, tool calls, tokens when the message carries them),
    ``tool`` (name, arguments, returned text, rows, refused/error, seconds) and a last ``check`` verdict.

    Never raises on an odd message: an item it cannot read is kept as its text."""
    messages = [_normal(m) for m in state.get("messages") or []]
    log = [dict(e) for e in state.get("tool_log") or []]
    run_log = [e for e in log if not e.get("prefetch")]
    asked = _question_index(messages, str(state.get("question") or "").strip(), len((state.get("history") or [])[-4:]))
    out: list[dict[str, Any]] = []
    calls: dict[str, dict[str, Any]] = {}
    step = tool_i = 0
    for i, m in enumerate(messages):
        role = m["role"]
        if role == "system":
            out.append({"type": "system", **capped(m["content"], SYSTEM_CAP)})
        elif asked is not None and i < asked:
            # Earlier turns of the thread: their own records hold their tool calls.
            if role in ("user", "assistant"):
                out.append({"type": "user" if role == "user" else "model", "kind": "history", **capped(m["content"])})
        elif role == "user":
            kind = "question" if i == asked else _feedback_kind(m["content"])
            out.append({"type": "user", "kind": kind, **capped(m["content"])})
            if kind == "question":  # rows a search put in the first prompt came with the question
                out += [{"type": "tool", **_tool_entry(e)} for e in log if e.get("prefetch")]
        elif role == "assistant":
            step += 1
            item: dict[str, Any] = {"type": "model", "step": step, **capped(m["content"])}
            if m["tool_calls"]:
                item["tool_calls"] = m["tool_calls"]
                calls.update({c["id"]: c for c in m["tool_calls"] if c.get("id")})
            item.update(m["usage"])
            out.append(item)
        elif role == "tool":
            call = calls.get(m["tool_call_id"] or "", {})
            name = m["name"] or call.get("name")
            # The tool log holds the same calls in the same order, with rows, refusal and time.
            entry = run_log[tool_i] if tool_i < len(run_log) and run_log[tool_i].get("name") == name else None
            tool_i += entry is not None
            item = {"type": "tool", "name": name, "arguments": call.get("arguments", (entry or {}).get("arguments"))}
            if entry is not None:
                item.update({k: v for k, v in _tool_entry(entry).items() if k not in ("name", "arguments")})
            out.append(item | capped(m["content"]))
    report = state.get("report")
    if isinstance(report, Mapping):
        out.append({"type": "check", "verified": bool(report.get("verified")),
                    "citations": list(report.get("citations") or []),
                    "unsupported": list(report.get("unsupported") or []),
                    "unsupported_reasons": list(report.get("unsupported_reasons") or []),
                    "repairs": int(state.get("repairs") or 0)})
    return out


def _question_index(messages: list[dict[str, Any]], question: str, history: int) -> int | None:
    """Index of this question's prompt: the last user message holding the question's words (a thread may keep
    earlier questions' messages), else the one after the ``history`` earlier turns the first node puts first."""
    if question:
        hits = [i for i, m in enumerate(messages) if m["role"] == "user" and question in m["content"]]
        if hits:
            return hits[-1]
    users = [i for i, m in enumerate(messages) if m["role"] != "system"]
    return users[2 * history] if len(users) > 2 * history and messages[users[2 * history]]["role"] == "user" else None


def capped(text: Any, limit: int = TEXT_CAP) -> dict[str, Any]:
    """``{"text": text}``, cut to ``limit`` characters with ``chars`` (the full length) when it was longer."""
    text = text if isinstance(text, str) else str(text or "")
    if len(text) <= limit:
        return {"text": text}
    return {"text": text[:limit], "chars": len(text)}


def _tool_entry(e: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("name", "arguments", "rows", "refused", "error", "seconds", "prefetch")
    return {k: e[k] for k in keep if k in e}


_FEEDBACK: list[tuple[str, str]] | None = None


def _feedback_kind(text: str) -> str:
    """Which of the graph's follow-up prompts a later user message is, by the prompt's fixed opening."""
    global _FEEDBACK
    if _FEEDBACK is None:
        _FEEDBACK = []
        try:
            from ehr_agent import prompts

            for name, kind in (("agent_repair", "repair"), ("cohort_repair", "repair"), ("agent_nudge", "nudge"),
                               ("tool_protocol_repair", "protocol_repair")):
                head = prompts.load(name).split("{", 1)[0].strip().split("\n", 1)[0]
                if head:
                    _FEEDBACK.append((head[:60], kind))
        except Exception:  # noqa: BLE001 - a missing prompt only loses the label
            pass
    start = text.lstrip()
    return next((kind for head, kind in _FEEDBACK if start.startswith(head)), "user")


def _normal(m: Any) -> dict[str, Any]:
    """``{"role", "content", "tool_calls", "tool_call_id", "name", "usage"}`` of any message form."""
    if isinstance(m, Mapping):
        if m.get("lc") and isinstance(m.get("kwargs"), Mapping):  # a LangChain message dumped with dumpd()
            d = dict(m["kwargs"])
            d.setdefault("type", str((m.get("id") or ["", "ai"])[-1]).replace("Message", "").lower())
        else:
            d = dict(m)
        get = d.get
    else:
        get = lambda k, default=None: getattr(m, k, default)  # noqa: E731 - a BaseMessage or look-alike
    role = get("role") or _ROLES.get(str(get("type") or ""), str(get("type") or "user"))
    role = _ROLES.get(role, role)
    return {"role": role, "content": _text(get("content")), "tool_calls": [_call(c) for c in get("tool_calls") or []],
            "tool_call_id": get("tool_call_id"), "name": get("name"), "usage": _usage(get)}


def _text(content: Any) -> str:
    """Message content as text (LangChain content may be a list of blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [b if isinstance(b, str) else str(b.get("text", "")) if isinstance(b, Mapping) else str(b)
                 for b in content]
        return "".join(parts)
    return "" if content is None else str(content)


def _call(c: Any) -> dict[str, Any]:
    """A tool call as ``{"id", "name", "arguments"}`` from our dicts, LangChain's ``args`` or OpenAI's ``function``."""
    if not isinstance(c, Mapping):
        c = {k: getattr(c, k, None) for k in ("id", "name", "arguments", "args")}
    fn = c.get("function") if isinstance(c.get("function"), Mapping) else None
    name = c.get("name") or (fn or {}).get("name")
    args = c.get("arguments", c.get("args"))
    if args is None and fn is not None:
        args = fn.get("arguments")
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            pass
    return {"id": c.get("id"), "name": name, "arguments": args if args is not None else {}}


def _usage(get: Any) -> dict[str, int]:
    """Token counts of one model turn when the message carries them (LangChain ``usage_metadata``)."""
    meta = get("usage_metadata") or {}
    if isinstance(meta, Mapping) and ("input_tokens" in meta or "output_tokens" in meta):
        return {"prompt_tokens": int(meta.get("input_tokens") or 0),
                "completion_tokens": int(meta.get("output_tokens") or 0)}
    if get("prompt_tokens") is not None or get("completion_tokens") is not None:
        return {"prompt_tokens": int(get("prompt_tokens") or 0), "completion_tokens": int(get("completion_tokens") or 0)}
    return {}
