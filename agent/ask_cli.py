"""``ehr-agent ask``: one question about one patient, answered by the agent with verified citations.

Without ``--json`` the steps stream to stderr as they happen (model turns, tool calls and rows found,
the citation verdict) and the answer is printed with numbered citations; with ``--json`` one object is
printed: ``{"answer", "citations", "verified", "unsupported", "steps", "prompt_tokens",
"completion_tokens", "seconds", "error"}``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import date
from typing import Any

JSON_KEYS = ("answer", "citations", "verified", "unsupported", "steps", "prompt_tokens", "completion_tokens",
             "seconds", "error")


def _as_of(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"--as-of must be a date YYYY-MM-DD, not {text!r}") from None


def register(subparsers) -> None:
    """Add the ``ask`` subcommand."""
    p = subparsers.add_parser("ask", help="answer a question about one patient, with verified citations",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", required=True, help="store directory or FHIR server base URL (http[s]://...)")
    p.add_argument("--patient", required=True, help="patient id")
    p.add_argument("--as-of", type=_as_of, default=None,
                   help="the date that counts as 'now' (default: today, or the record's last date with "
                        "EHR_AGENT_AS_OF_POLICY=last_record)")
    p.add_argument("--model", default=None,
                   help="model spec (default $EHR_AGENT_MODEL or the embedded model), e.g. "
                        "openai:http://127.0.0.1:8000/v1#medgemma")
    p.add_argument("--index", default=None, help="hybrid index directory for semantic search (optional)")
    p.add_argument("--max-steps", type=int, default=None, help="model turns allowed (default 6)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the streamed steps")
    p.add_argument("question", help="the question, in quotes")
    p.set_defaults(func=run)


def _numbered(answer: str, citations: list[str]) -> str:
    # [Observation/abc] -> [1]; the list of references follows the answer.
    idx = {c: i + 1 for i, c in enumerate(citations)}

    def sub(m: re.Match) -> str:
        items = [x.strip() for x in re.split(r"[,;]\s*|\s+", m.group(1)) if x.strip()]
        if items and all(x in idx for x in items):
            return "[" + ", ".join(str(idx[x]) for x in items) + "]"
        return m.group(0)

    return re.sub(r"\[([^\[\]]+)\]", sub, answer)


def run(args: argparse.Namespace) -> int:
    """Run ``ask``; exit code 0 for an answer, 1 when the run ended with an error, 2 for bad input."""
    from ehr_agent.agent.configuration import AgentSettings
    from ehr_agent.agent.models.base import ModelError
    from ehr_agent.agent.runner import answer
    from ehr_agent.tools.store import open_store

    if not args.question.strip():
        print("error: the question is empty", file=sys.stderr)
        return 2
    try:
        overrides: dict[str, Any] = {}
        if args.max_steps is not None:
            overrides["max_steps"] = args.max_steps
        settings = AgentSettings(**overrides)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    store = open_store(args.store)  # StoreError -> the dispatcher prints it
    try:
        from ehr_agent.agent.models.factory import make_model

        model = make_model(args.model)
    except (ValueError, ModelError) as e:
        print(f"error: cannot set up the model: {e}", file=sys.stderr)
        return 2
    index = None
    if args.index:
        try:
            from ehr_agent.tools.retrieval import HybridIndex

            index = HybridIndex(store, args.index)
        except Exception as e:  # noqa: BLE001 - the agent still works without semantic search
            print(f"warning: hybrid index unavailable ({e}); using keyword search", file=sys.stderr)

    on_event = None if args.json else _Printer().on_event
    try:
        result = answer(store, args.patient, args.question, model=model, settings=settings, as_of=args.as_of,
                        index=index, on_event=on_event)
    finally:
        model.close()
        store.close()
    if args.json:
        print(json.dumps({k: getattr(result, k) for k in JSON_KEYS}, ensure_ascii=False))
    else:
        _print_answer(result)
    return 1 if result.error else 0


class _Printer:
    """Streams the graph's progress to stderr with rich."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self.tokens = False

    def on_event(self, mode: str, chunk: Any) -> None:
        if mode != "custom" or not isinstance(chunk, dict):
            return
        kind = chunk.get("type")
        if kind == "token":
            return  # the answer is printed whole at the end; tokens would interleave with tool lines
        if kind == "model":
            calls = ", ".join(chunk.get("tool_calls") or []) or ("unparsable tool call" if chunk.get("parse_error")
                                                                 else "answer")
            self.console.print(f"[dim]step {chunk.get('step')}: model -> {calls} "
                               f"({chunk.get('seconds', 0):.1f}s)[/dim]")
        elif kind == "tool":
            args = json.dumps(chunk.get("arguments") or {}, ensure_ascii=False)
            status = "[red]refused[/red]" if chunk.get("refused") else (
                "[yellow]error[/yellow]" if chunk.get("error") else f"{chunk.get('rows', 0)} rows")
            self.console.print(f"  [cyan]{chunk.get('name')}[/cyan] {args} -> {status}")
        elif kind == "check":
            verdict = "[green]verified[/green]" if chunk.get("verified") else (
                f"[yellow]{len(chunk.get('unsupported') or [])} unsupported[/yellow]")
            self.console.print(f"  citation check: {verdict}")
        elif kind == "repair":
            self.console.print("  [yellow]repair round[/yellow]")


def _print_answer(result) -> None:
    from rich.console import Console

    out = Console(highlight=False)
    out.print(_numbered(result.answer, result.citations), markup=False)
    if result.citations:
        out.print()
        for i, c in enumerate(result.citations, 1):
            out.print(f"[{i}] {c}", markup=False)
    status = "verified" if result.verified else "NOT verified"
    extra = f"; error: {result.error}" if result.error else ""
    out.print(f"\n({status}; {result.steps} step{'' if result.steps == 1 else 's'}; {result.prompt_tokens}+{result.completion_tokens} tokens; "
              f"{result.seconds:.1f}s{extra})", markup=False, style="dim")
