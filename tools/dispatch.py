"""Running a tool call by name: the one dispatcher the patient and cohort tools share.

Whatever the model sends, a call ends as a :class:`ToolOutput` the model can act on; nothing it can
send raises out of here (store failures included), and no output is longer than its session allows.
"""

from __future__ import annotations

from pydantic import ValidationError

from ehr_agent.tools.spec import ToolOutput, ToolTable
from ehr_agent.tools.store.base import NotFound, SearchError, StoreError


def dispatch_tool(
    tools: ToolTable,
    name: str,
    arguments: dict | None,
    *,
    max_chars: int,
    tool_errors: tuple[type[Exception], ...] = (),
) -> ToolOutput:
    """Validate ``arguments`` against the tool's pydantic model, run it, and turn every expected failure
    into a message the model can act on: unknown tool, invalid arguments, a rejected search, a missing
    resource, a failing store, or one of the toolkit's own ``tool_errors``. Output is cut to ``max_chars``."""
    if name not in tools:
        return ToolOutput(text=f"error: unknown tool '{name}'. Available tools: {', '.join(tools)}.", error=True)
    model, fn, _ = tools[name]
    try:
        args = model.model_validate(arguments or {})
    except ValidationError as e:
        probs = "; ".join(f"{'.'.join(str(x) for x in err['loc']) or 'arguments'}: {err['msg']}"
                          for err in e.errors()[:4])
        return ToolOutput(text=f"error: invalid arguments for {name}: {probs}. Fix them and call again.", error=True)
    try:
        out = fn(args)
    except tool_errors as e:
        return ToolOutput(text=f"error: {e}", error=True)
    except SearchError as e:
        return ToolOutput(text=f"error: search rejected: {e.message}. Fix the parameters and try again.", error=True)
    except NotFound as e:
        return ToolOutput(text=f"not found: {e.message}", error=True)
    except StoreError as e:
        return ToolOutput(text=f"error: the record store failed: {e.message}", error=True)
    return truncate(out, max_chars)


def truncate(out: ToolOutput, max_chars: int) -> ToolOutput:
    """``out`` with its text cut to ``max_chars`` at a line end; evidence the cut removed goes with it."""
    if len(out.text) > max_chars:
        out.text = out.text[:max_chars].rsplit("\n", 1)[0] + "\n... (output truncated; narrow the query)"
        # A row cut from the text was never seen by the model: it must not back a citation either.
        out.evidence = {k: v for k, v in out.evidence.items() if f"[{k}]" in out.text}
    return out
