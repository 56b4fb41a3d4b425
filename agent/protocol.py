"""Our text tool-call protocol, for models without native tool calling (MedGemma, the embedded model).

The model sees the tools listed in its system prompt (``prompts/tool_protocol.md``) and calls one by
writing a fenced block::

    ```tool_call
    {"tool": "get_conditions", "arguments": {"active_only": true}}
    ```

Small and medical models are sloppy about this, so :func:`parse_tool_calls` also accepts other
fences (json, python, tool_code, none), ``<tool_call>`` tags (Qwen/Hermes habit), bare JSON objects,
OpenAI-shaped ``{"name": .., "arguments": ".."}``, pythonic calls ``get_conditions(active_only=True)``
(Gemma's habit), single quotes, Python literals and light JSON damage (trailing commas, missing closing
braces). Parsed calls are validated against the tool's JSON schema; any problem becomes one clear
``parse_error`` the graph sends back (:func:`repair_messages`, :func:`chat_with_repairs`).
"""

from __future__ import annotations

import ast
import json
import re
import uuid
from typing import TYPE_CHECKING, Any

import jsonschema
from pydantic import BaseModel, Field

from ehr_agent import prompts
from ehr_agent.agent.models.base import ChatMessage, ChatResult, ToolCall, ToolSpec

if TYPE_CHECKING:
    from ehr_agent.agent.models.base import ChatModel, TokenCallback

#: fence languages that mark a block as a tool call (others are parsed only if they hold a call)
TOOL_FENCES = {"tool_call", "tool", "tool_code", "function_call", "call"}
#: the sequence that begins a tool result we feed back; a model that starts writing one is
#: hallucinating results, so text-mode backends stop generation there
RESULT_STOP = "Tool result"

_THINKING = [
    re.compile(r"<unused94>.*?(?:<unused95>|\Z)", re.S),  # Gemma 3 / MedGemma thinking span
    re.compile(r"<think>.*?(?:</think>|\Z)", re.S),
]
_FENCE = re.compile(r"```[ \t]*([A-Za-z_][\w-]*)?[ \t]*\n?(.*?)(?:```|\Z)", re.S)
_TAG = re.compile(r"<(tool_call|function_call)>(.*?)(?:</\1>|\Z)", re.S)
_ARG_KEYS = ("arguments", "args", "parameters", "params", "input", "kwargs")
_NAME_KEYS = ("tool", "name", "tool_name", "function")


class ParseOutcome(BaseModel):
    """What :func:`parse_tool_calls` found in one model reply."""

    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)

    @property
    def error(self) -> str | None:
        """All problems as one message for the model, or None."""
        return "; ".join(self.errors) if self.errors else None


# ---------------------------------------------------------------------------------------------
# prompt rendering


load_prompt = prompts.load


def _type_label(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(json.dumps(v) for v in schema["enum"])
    t = schema.get("type", "any")
    if isinstance(t, list):
        t = " or ".join(t)
    if t == "array" and isinstance(schema.get("items"), dict):
        return f"array of {_type_label(schema['items'])}"
    return str(t)


def _example_value(schema: dict[str, Any]) -> Any:
    if "default" in schema:
        return schema["default"]
    if "enum" in schema:
        return schema["enum"][0]
    t = schema.get("type")
    t = t[0] if isinstance(t, list) else t
    return {"integer": 1, "number": 1.0, "boolean": True, "array": [], "object": {}}.get(t, "...")


def render_tool(tool: ToolSpec) -> str:
    """One tool as listed in the prompt: name, description and one line per argument."""
    props: dict[str, Any] = tool.parameters.get("properties", {}) or {}
    required = set(tool.parameters.get("required", []) or [])
    lines = [f"- `{tool.name}`: {tool.description.strip()}"]
    if not props:
        lines.append("  arguments: none")
    for arg, schema in props.items():
        bits = [_type_label(schema), "required" if arg in required else "optional"]
        if "default" in schema:
            bits.append(f"default {json.dumps(schema['default'])}")
        desc = schema.get("description", "").strip()
        lines.append(f"  - `{arg}` ({', '.join(bits)})" + (f": {desc}" if desc else ""))
    return "\n".join(lines)


def render_tools_section(tools: list[ToolSpec]) -> str:
    """The system-prompt section that lists ``tools`` and explains how to call them."""
    if not tools:
        return ""
    # The example shows arguments when some tool has required ones: an empty {} teaches less.
    first = next((t for t in tools if t.parameters.get("required")), tools[0])
    props = first.parameters.get("properties", {}) or {}
    required = first.parameters.get("required", []) or list(props)[:1]
    example = {k: _example_value(props[k]) for k in required if k in props}
    return load_prompt("tool_protocol").format(
        tools="\n".join(render_tool(t) for t in tools),
        example_name=first.name,
        example_arguments=json.dumps(example),
    ).strip()


def format_call(call: ToolCall) -> str:
    """A call written the way the protocol asks the model to write it (for conversation history)."""
    body = json.dumps({"tool": call.name, "arguments": call.arguments}, ensure_ascii=False)
    return f"```tool_call\n{body}\n```"


def format_tool_result(message: ChatMessage) -> str:
    """A tool message rendered as the user-turn text a text-protocol model sees."""
    return load_prompt("tool_protocol_result").format(
        name=message.name or "tool", call_id=message.tool_call_id or "?", content=message.content
    ).strip()


def to_text_protocol(messages: list[ChatMessage], tools: list[ToolSpec] | None) -> list[ChatMessage]:
    """Rewrite an OpenAI-shaped conversation for a model that only knows system/user/assistant text.

    The tools section joins the system prompt; earlier assistant calls are written back as
    ``tool_call`` blocks; tool results become user turns; consecutive same-role turns are merged.
    """
    out: list[ChatMessage] = []
    section = render_tools_section(tools or [])
    if section:
        if messages and messages[0].role == "system":
            out.append(ChatMessage(role="system", content=f"{messages[0].content.rstrip()}\n\n{section}"))
            messages = messages[1:]
        else:
            out.append(ChatMessage(role="system", content=section))
    end_note = load_prompt("tool_protocol_results_end").strip()
    for i, m in enumerate(messages):
        if m.role == "tool":
            out.append(ChatMessage(role="user", content=format_tool_result(m)))
            if i + 1 == len(messages) or messages[i + 1].role != "tool":
                # Small models tend to call the same tool again; one nudge after each batch of results.
                out.append(ChatMessage(role="user", content=end_note))
        elif m.role == "assistant" and m.tool_calls:
            parts = [strip_thinking(m.content).strip()] + [format_call(c) for c in m.tool_calls]
            out.append(ChatMessage(role="assistant", content="\n\n".join(p for p in parts if p)))
        else:
            out.append(ChatMessage(role=m.role, content=m.content))
    return merge_consecutive(out)


def merge_consecutive(messages: list[ChatMessage]) -> list[ChatMessage]:
    """Merge neighbouring messages of the same role (user/assistant/system) into one."""
    out: list[ChatMessage] = []
    for m in messages:
        if out and m.role == out[-1].role and m.role != "tool":
            prev = out[-1]
            out[-1] = prev.model_copy(
                update={
                    "content": "\n\n".join(p for p in (prev.content, m.content) if p),
                    "tool_calls": prev.tool_calls + m.tool_calls,
                }
            )
        else:
            out.append(m)
    return out


# ---------------------------------------------------------------------------------------------
# parsing


def strip_thinking(text: str) -> str:
    """Remove thinking spans (Gemma's ``<unused94>…<unused95>``, ``<think>…</think>``), closed or not."""
    for pattern in _THINKING:
        text = pattern.sub("", text)
    return text


def _scan_balanced(text: str, start: int) -> tuple[int, bool]:
    """End index (exclusive) of the bracketed value opening at ``text[start]``, string-aware.

    Returns (end, closed); an unclosed value runs to the end of the text.
    """
    pairs = {"{": "}", "[": "]", "(": ")"}
    stack: list[str] = []
    quote: str | None = None
    i = start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in pairs:
            stack.append(pairs[ch])
        elif ch in "}])":
            if stack and ch == stack[-1]:
                stack.pop()
                if not stack:
                    return i + 1, True
            elif stack:
                return i + 1, False  # mismatched bracket: treat as damage, stop here
        i += 1
    return len(text), False


def _map_bare_words(text: str, mapping: dict[str, str]) -> str:
    """Replace bare words (outside string literals) per ``mapping``, e.g. true -> True."""
    out: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            out.append(ch)
            if ch == "\\" and i + 1 < len(text):
                out.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = None
            i += 1
            continue
        if ch in "\"'":
            quote = ch
            out.append(ch)
            i += 1
            continue
        m = re.match(r"[A-Za-z_]\w*", text[i:])
        if m:
            word = m.group(0)
            out.append(mapping.get(word, word))
            i += len(word)
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _close_open(text: str) -> str:
    """Append the closers a truncated JSON/Python value is missing (and close an open string)."""
    stack: list[str] = []
    quote: str | None = None
    pairs = {"{": "}", "[": "]", "(": ")"}
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in pairs:
            stack.append(pairs[ch])
        elif ch in "}])" and stack and stack[-1] == ch:
            stack.pop()
        i += 1
    return text + (quote or "") + "".join(reversed(stack))


_SMART_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})
_PY = {"true": "True", "false": "False", "null": "None"}
_JS = {"True": "true", "False": "false", "None": "null"}


def loads_lenient(text: str) -> Any:
    """Decode a JSON-ish value: strict JSON first, then repaired JSON, then a Python literal.

    Raises ValueError with the strict JSON error when nothing works.
    """
    text = text.strip().translate(_SMART_QUOTES)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        first_error = exc
    fixed = re.sub(r",\s*([}\]])", r"\1", _close_open(text))
    for candidate in (_map_bare_words(fixed, _JS),):
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            pass
    try:
        return ast.literal_eval(_map_bare_words(fixed, _PY))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    raise ValueError(f"not valid JSON ({first_error.msg} at line {first_error.lineno} column {first_error.colno})")


def _call_from_obj(obj: Any) -> list[tuple[str | None, Any]]:
    """(name, arguments) pairs from a decoded value; name None when the value is not call-shaped."""
    if isinstance(obj, list):
        return [pair for item in obj for pair in _call_from_obj(item)]
    if not isinstance(obj, dict):
        return [(None, obj)]
    if isinstance(obj.get("tool_calls"), list):
        return _call_from_obj(obj["tool_calls"])
    fn = obj.get("function")
    if isinstance(fn, dict):  # OpenAI shape {"type": "function", "function": {...}}
        return _call_from_obj(fn)
    name = next((obj[k] for k in _NAME_KEYS if isinstance(obj.get(k), str)), None)
    if name is None:
        return [(None, obj)]
    arg_key = next((k for k in _ARG_KEYS if k in obj), None)
    if arg_key is not None:
        args = obj[arg_key]
    else:  # {"tool": "x", "patient_id": "1"}: the remaining keys are the arguments
        args = {k: v for k, v in obj.items() if k not in _NAME_KEYS and k not in ("id", "type")}
    if isinstance(args, str):  # OpenAI sends arguments as a JSON string
        args = loads_lenient(args) if args.strip() else {}
    return [(name, args)]


class _Found(BaseModel):
    name: str
    arguments: Any = None
    positional: list[Any] = Field(default_factory=list)
    error: str | None = None


def _parse_json_region(body: str, tool_fence: bool) -> list[_Found] | None:
    """Calls in a JSON-ish region; None when it is not a call (and was not marked as one)."""
    body = body.strip()
    try:
        value = loads_lenient(body)
    except ValueError as exc:
        if tool_fence or re.search(r"""["']?(tool|name)["']?\s*:""", body):
            return [_Found(name="?", error=f"could not read the tool call: {exc}")]
        return None
    pairs = _call_from_obj(value)
    if all(name is None for name, _ in pairs):
        if tool_fence:
            return [_Found(name="?", error='the tool call has no "tool" key naming the tool')]
        return None
    found: list[_Found] = []
    for name, args in pairs:
        if name is None:
            found.append(_Found(name="?", error='an item of the call list has no "tool" key'))
        else:
            found.append(_Found(name=name, arguments=args))
    return found


def _parse_pythonic(snippet: str) -> list[_Found] | None:
    """Calls written as Python, ``name(a=1)`` or ``[a(x=1), b()]``; None when not a call."""
    snippet = snippet.strip().rstrip(";")
    try:
        tree = ast.parse(_map_bare_words(snippet, _PY), mode="eval")
    except SyntaxError:
        try:
            tree = ast.parse(_map_bare_words(_close_open(snippet), _PY), mode="eval")
        except SyntaxError:
            return None
    nodes = tree.body.elts if isinstance(tree.body, (ast.List, ast.Tuple)) else [tree.body]
    found: list[_Found] = []
    for node in nodes:
        if not (isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute))):
            return None
        name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
        try:
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
            positional = [ast.literal_eval(a) for a in node.args]
        except (ValueError, SyntaxError, TypeError):
            found.append(_Found(name=name, error=f"the arguments of {name}(...) must be literal values"))
            continue
        found.append(_Found(name=name, arguments=kwargs, positional=positional))
    return found


def _coerce(value: Any, schema: dict[str, Any]) -> Any:
    """Fix the scalar type slips small models make ("20" for 20, "true" for true, x for [x])."""
    t = schema.get("type")
    if isinstance(value, str):
        s = value.strip()
        if t == "integer" and re.fullmatch(r"[+-]?\d+", s):
            return int(s)
        if t == "number" and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", s):
            return float(s)
        if t == "boolean" and s.lower() in ("true", "false"):
            return s.lower() == "true"
    if t == "array" and value is not None and not isinstance(value, list):
        return [_coerce(value, schema.get("items", {}) or {})]
    if t == "array" and isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_coerce(v, schema["items"]) for v in value]
    if t == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def validate_arguments(tool: ToolSpec, arguments: Any) -> tuple[dict[str, Any], list[str]]:
    """Check (and lightly coerce) ``arguments`` against ``tool.parameters``.

    Returns the arguments to use and a list of problems, each naming the tool and the argument.
    """
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        return {}, [f"{tool.name}: arguments must be a JSON object, got {type(arguments).__name__}"]
    props = tool.parameters.get("properties", {}) or {}
    arguments = {k: (_coerce(v, props[k]) if k in props else v) for k, v in arguments.items()}
    schema = dict(tool.parameters)
    if schema.get("type", "object") == "object":
        # An argument the tool does not declare would crash the tool call; reject it here, with the
        # allowed names, unless the schema says extras are fine.
        schema.setdefault("additionalProperties", False)
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for err in sorted(validator.iter_errors(arguments), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in err.path)
        message = err.message
        if err.validator == "additionalProperties":
            message += f" (allowed: {', '.join(props) or 'none'})"
        problems.append(f"{tool.name}: " + (f"argument '{where}': " if where else "") + message)
    return arguments, problems


def _new_id() -> str:
    return f"call_{uuid.uuid4().hex[:12]}"


def _line_start_calls(text: str, names: list[str]) -> list[tuple[int, int]]:
    """Spans of pythonic calls of known tools that begin a line (prose mentions do not)."""
    if not names:
        return []
    pattern = re.compile(
        r"^[ \t>*`-]*(\[?\s*)(" + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) + r")\s*\(",
        re.M,
    )
    spans = []
    pos = 0
    while (m := pattern.search(text, pos)) is not None:
        start = m.start(1) if m.group(1) else m.start(2)
        opener = start if text[start] == "[" else m.end() - 1
        end, _ = _scan_balanced(text, opener)
        spans.append((start, end))
        pos = end
    return spans


def parse_tool_calls(text: str, tools: list[ToolSpec] | None = None) -> ParseOutcome:
    """Find the tool calls in a model reply and validate them against ``tools``.

    ``content`` is the reply without calls and thinking spans. With ``tools`` given, unknown tool
    names and schema violations become ``errors`` (and no calls are returned, so the graph asks for
    a repair of the whole turn); with ``tools`` None, names and arguments are not checked.
    """
    original = strip_thinking(text or "")
    # Curly quotes (one char for one, so offsets hold) are read as straight ones inside calls;
    # the content keeps the original characters.
    text = original.translate(_SMART_QUOTES)
    found: list[_Found] = []
    cut: list[tuple[int, int]] = []
    names = [t.name for t in tools or []]

    def overlaps(a: int, b: int) -> bool:
        return any(a < e and s < b for s, e in cut)

    for m in _FENCE.finditer(text):
        lang = (m.group(1) or "").lower()
        body = m.group(2)
        if lang in TOOL_FENCES or lang in ("json", "", "python", "py"):
            is_tool_fence = lang in TOOL_FENCES
            looks = is_tool_fence or _looks_like_call(body, names)
            calls = _parse_json_region(body, is_tool_fence) if body.strip()[:1] in "{[" and looks else None
            if calls is None and (is_tool_fence or lang in ("python", "py", "")):
                calls = _parse_pythonic(body)
                if calls is not None and not is_tool_fence:
                    # ordinary code in a python fence is a call only when it calls our tools
                    calls = calls if names and all(c.name in names for c in calls) else None
                if calls is None and is_tool_fence:
                    calls = [_Found(name="?", error="could not read the tool call in the tool_call block")]
            if calls is not None:
                found.extend(calls)
                cut.append(m.span())

    for m in _TAG.finditer(text):
        if overlaps(*m.span()):
            continue
        body = m.group(2)
        calls = _parse_json_region(body, True) if body.strip()[:1] in "{[" else _parse_pythonic(body)
        found.extend(calls or [_Found(name="?", error=f"could not read the call inside <{m.group(1)}>")])
        cut.append(m.span())

    # bare JSON objects/lists mentioning a tool key
    i = 0
    while (j := _next_open(text, i)) is not None:
        end, _ = _scan_balanced(text, j)
        if overlaps(j, end):
            i = j + 1
            continue
        chunk = text[j:end]
        if _looks_like_call(chunk, names):
            calls = _parse_json_region(chunk, False)
            if calls is not None:
                found.extend(calls)
                cut.append((j, end))
                i = end
                continue
        i = j + 1

    for s, e in _line_start_calls(text, names):
        if overlaps(s, e):
            continue
        calls = _parse_pythonic(text[s:e])
        if calls is not None:
            found.extend(calls)
            cut.append((s, e))

    content = original
    for s, e in sorted(cut, reverse=True):
        content = content[:s] + content[e:]
    if cut:
        # labels left behind by a call written without its fence ("tool_call" alone on a line)
        content = re.sub(r"(?m)^[ \t]*(?:```[ \t]*)?(?:tool_call|tool_code|json)?[ \t]*(?:```)?[ \t]*$", "", content)
    content = re.sub(r"\n{3,}", "\n\n", content).strip()

    by_name = {t.name: t for t in tools or []}
    calls_out: list[ToolCall] = []
    errors: list[str] = []
    for f in found:
        if f.error:
            errors.append(f.error)
            continue
        args = f.arguments if f.arguments is not None else {}
        tool = by_name.get(f.name)
        if tools is not None and tool is None:
            errors.append(f"unknown tool '{f.name}' (available: {', '.join(names) or 'none'})")
            continue
        if f.positional:
            props = list((tool.parameters.get("properties", {}) if tool else {}) or {})
            if len(f.positional) > len(props):
                errors.append(f"{f.name}: too many positional arguments; name the arguments")
                continue
            args = {**dict(zip(props, f.positional)), **(args if isinstance(args, dict) else {})}
        if tool is not None:
            args, problems = validate_arguments(tool, args)
            if problems:
                errors.extend(problems)
                continue
        elif not isinstance(args, dict):
            errors.append(f"{f.name}: arguments must be a JSON object")
            continue
        calls_out.append(ToolCall(id=_new_id(), name=f.name, arguments=args))
    if errors:
        calls_out = []
    return ParseOutcome(content=content, tool_calls=calls_out, errors=errors)


_CALL_KEYS = re.compile(r"""["'](tool|tool_name|tool_calls|function|arguments|args|parameters)["']\s*:""")


def _looks_like_call(chunk: str, names: list[str]) -> bool:
    """Whether JSON outside a tool_call fence is meant as a call: it has a call key, or a "name"
    that is one of our tools. An answer quoting data such as {"name": "Aspirin"} is not a call."""
    if _CALL_KEYS.search(chunk):
        return True
    if not names:
        return bool(re.search(r"""["']name["']\s*:""", chunk))
    alternatives = "|".join(re.escape(n) for n in names)
    return bool(re.search(r"""["']name["']\s*:\s*["'](""" + alternatives + r""")["']""", chunk))


def _next_open(text: str, start: int) -> int | None:
    m = re.compile(r"[{\[]").search(text, start)
    return m.start() if m else None


def result_from_text(raw: str, tools: list[ToolSpec] | None, **usage: Any) -> ChatResult:
    """A :class:`ChatResult` from raw model text under the text protocol (never raises on bad text)."""
    if not tools:
        return ChatResult(content=strip_thinking(raw).strip(), raw=raw, **usage)
    outcome = parse_tool_calls(raw, tools)
    return ChatResult(
        content=outcome.content, tool_calls=outcome.tool_calls, raw=raw, parse_error=outcome.error, **usage
    )


# ---------------------------------------------------------------------------------------------
# repairs


def repair_messages(result: ChatResult) -> list[ChatMessage]:
    """The two turns to append after a reply whose calls failed: the reply itself, then the error."""
    if not result.parse_error:
        raise ValueError("repair_messages() needs a result with a parse_error")
    return [
        ChatMessage(role="assistant", content=result.raw or result.content),
        ChatMessage(role="user", content=load_prompt("tool_protocol_repair").format(error=result.parse_error).strip()),
    ]


def chat_with_repairs(
    model: ChatModel,
    messages: list[ChatMessage],
    tools: list[ToolSpec] | None = None,
    *,
    max_repairs: int = 2,
    on_token: TokenCallback | None = None,
    max_tokens: int | None = None,
) -> ChatResult:
    """Call ``model`` and, while the reply's tool calls fail to parse, send the error back.

    At most ``max_repairs`` extra calls are made; the returned result carries ``repairs`` (how many
    were needed) and token/time totals over all attempts. If the last attempt still has a
    ``parse_error`` it is returned as is: the caller decides (e.g. answer without tools).
    """
    if max_repairs < 0:
        raise ValueError("max_repairs must be >= 0")
    convo = list(messages)
    totals = {"prompt_tokens": 0, "completion_tokens": 0, "seconds": 0.0}
    attempt = 0
    while True:
        result = model.chat(convo, tools, on_token=on_token, max_tokens=max_tokens)
        totals = {k: totals[k] + getattr(result, k) for k in totals}
        if not result.parse_error or attempt >= max_repairs:
            return result.model_copy(update={**totals, "repairs": attempt})
        convo = convo + repair_messages(result)
        attempt += 1
