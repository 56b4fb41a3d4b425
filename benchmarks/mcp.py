"""Token sizes of the MCP server: the tool list a client puts in its model's context, and typical results,
against the raw FHIR JSON of the same resources (what a search/read FHIR MCP server would return).

The server runs as ``ehr-agent serve-mcp`` over stdio and is driven by the MCP SDK's ``ClientSession``,
so the sizes are those of what really crosses the wire (``tools/list`` as JSON, each result's text).

Tokens are counted with ``--tokenizer`` (a ``tokenizer.json``, a tokenizer directory, or a ``.gguf`` file
whose embedded tokenizer transformers reads, e.g. the default embedded model's
``~/.cache/ehr-agent/models/qwen2.5-coder-1.5b-instruct.gguf``), and always also with the project's
documented estimate (:func:`tools.retrieval.budget.estimate_tokens`, upper-leaning).

Usage::

    python -m benchmarks.mcp [--store DIR --patient ID | --load BUNDLE...] [--tokenizer PATH] [--exchange]

Without ``--store`` the project's fixtures are loaded into a temporary store and Alice (the diabetes
fixture) is the patient; ``ask`` then runs with a scripted model. ``--exchange`` also prints each
request and the text of its result (the README's example exchange). The last line printed is a
one-line JSON summary.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio

from ehr_agent.tools.retrieval.budget import estimate_tokens

ROOT = Path(__file__).resolve().parents[1]
ALICE = "4a3b1eaa-e40e-5bdd-9d4c-47cfdcced897"
BOB_OBSERVATION = "Observation/966c5efd-979f-5d84-9d14-476f9776b7dc"
A1C_2023 = "Observation/d893c882-91af-5d97-9d17-396be4423115"
A1C_2015 = "Observation/8f90a2c8-46b4-5b1f-8c7d-4193bf9ea288"
ASK_TURNS = [
    "```tool_call\n" + json.dumps({"tool": "observations", "arguments": {"code": "4548-4", "mode": "all"}}) + "\n```",
    f"Her last HbA1c was 6.5 % on 2023-10-03 [{A1C_2023}]; it was 7.4 % on 2015-06-20 [{A1C_2015}].",
]
_REF = re.compile(r"\[([A-Z][A-Za-z]+/[A-Za-z0-9\-.]+)(?:#\d+)?\]$")


def load_counter(path: str | None):
    """``(name, count)``: the exact tokenizer at ``path`` (None: none)."""
    if not path:
        return None
    p = Path(path).expanduser()
    if p.suffix == ".gguf":
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
        return f"{p.name} (its embedded tokenizer)", lambda t: len(tok.encode(t, add_special_tokens=False))
    from ehr_agent.tools.retrieval.budget import TokenCounter

    counter = TokenCounter(str(p))
    return str(p), counter.count


def plan(patient: str, fixtures: bool) -> list[tuple[str, dict[str, Any]]]:
    """The calls measured: one of each kind of tool, as a client would make them."""
    calls: list[tuple[str, dict[str, Any]]] = [
        ("find_patients", {"name": "Moreau"} if fixtures else {}),
        ("record_overview", {"patient_id": patient}),
        ("observations", {"patient_id": patient, "mode": "all"}),
        ("observations", {"patient_id": patient, "code": "4548-4"}),
        ("records", {"patient_id": patient, "kind": "conditions"}),
        ("search_record", {"patient_id": patient, "query": "hobbies social history"}),
        ("calculate", {"patient_id": patient, "op": "age"}),
    ]
    if fixtures:
        calls += [
            ("read_resource", {"patient_id": patient, "reference": A1C_2023, "raw": True}),
            ("read_resource", {"patient_id": patient, "reference": BOB_OBSERVATION}),
            ("ask", {"patient_id": patient, "question": "What was her last HbA1c and how has it moved?"}),
        ]
    return calls


async def measure(store: str, patient: str, fixtures: bool, script: str, audit: str) -> dict[str, Any]:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    args = ["-m", "ehr_agent.agent.cli", "serve-mcp", "--store", store, "--audit-log", audit, "--model", f"scripted:{script}"]
    if fixtures:
        args += ["--as-of", "2024-06-01"]
    params = StdioServerParameters(command=sys.executable, args=args, cwd=str(ROOT),
                                   env={"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})
    out: dict[str, Any] = {"calls": []}
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            listed = await session.list_tools()
            out["tools_list"] = listed.model_dump(mode="json", by_alias=True, exclude_none=True)
            for name, arguments in plan(patient, fixtures):
                res = await session.call_tool(name, arguments)
                text = "\n".join(c.text for c in res.content if c.type == "text")
                out["calls"].append({"tool": name, "arguments": arguments, "is_error": res.is_error, "text": text})
    return out


def raw_json_of(store_dir: str, text: str) -> str:
    """The raw FHIR JSON of every resource a result's rows cite (compact separators, as stored)."""
    from ehr_agent.tools.store import open_store

    store = open_store(store_dir)
    try:
        refs: dict[str, None] = {}  # each resource once (a note's chunks all cite the same document)
        for line in text.splitlines():
            m = _REF.search(line.strip())
            if m:
                refs[m.group(1)] = None
        parts = []
        for ref in refs:
            rtype, _, rid = ref.partition("/")
            parts.append(json.dumps(store.read(rtype, rid), ensure_ascii=False, separators=(",", ":")))
        return "\n".join(parts)
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", help="store directory (default: the fixtures, loaded into a temporary store)")
    ap.add_argument("--load", nargs="+", help="bundles to load into a temporary store instead (e.g. one Synthea patient)")
    ap.add_argument("--patient", help="patient id (default: Alice of the fixtures; with --load, the first patient)")
    ap.add_argument("--tokenizer", help="tokenizer.json, tokenizer directory or .gguf for exact counts")
    ap.add_argument("--exchange", action="store_true", help="print each request and its result text")
    args = ap.parse_args(argv)

    tmp = tempfile.TemporaryDirectory(prefix="bench-mcp-")
    fixtures = args.store is None and not args.load
    store = args.store
    patient = args.patient or (ALICE if fixtures else None)
    if args.store is None:
        from ehr_agent.tools.store.sqlite_store import SQLiteStore

        s = SQLiteStore(Path(tmp.name) / "store", create=True)
        s.load([Path(p) for p in args.load] if args.load else [ROOT / "fhir_fixtures"])
        patient = patient or s.patient_ids()[0]
        s.close()
        store = str(Path(tmp.name) / "store")
    if not patient:
        ap.error("--patient is required with --store")
    script = Path(tmp.name) / "turns.json"
    script.write_text(json.dumps(ASK_TURNS), encoding="utf-8")
    exact = load_counter(args.tokenizer)

    got = anyio.run(measure, store, patient, fixtures, str(script), str(Path(tmp.name) / "audit.jsonl"))

    def count(text: str) -> dict[str, int]:
        c = {"chars": len(text), "estimate": estimate_tokens(text)}
        if exact:
            c["tokens"] = exact[1](text)
        return c

    unit = "tokens" if exact else "estimate"
    print(f"tokenizer: {exact[0] if exact else 'none'}; estimate: tools.retrieval.budget.estimate_tokens")
    tools_json = json.dumps(got["tools_list"], ensure_ascii=False, separators=(",", ":"))
    whole = count(tools_json)
    print(f"\ntools/list ({len(got['tools_list']['tools'])} tools), as JSON on the wire: {whole}")
    per_tool = {}
    for t in got["tools_list"]["tools"]:
        per_tool[t["name"]] = count(json.dumps(t, ensure_ascii=False, separators=(",", ":")))[unit]
    print("  per tool (" + unit + "): " + ", ".join(f"{k} {v}" for k, v in per_tool.items()))

    print(f"\n{'call':58} {'result ' + unit:>14} {'raw FHIR JSON':>14} {'ratio':>6}")
    results = []
    for c in got["calls"]:
        label = c["tool"] + " " + json.dumps({k: v for k, v in c["arguments"].items() if k != "patient_id"})
        size = count(c["text"])
        compact_rows = c["tool"] not in ("ask", "calculate", "record_overview") and not c["arguments"].get("raw")
        raw = raw_json_of(store, c["text"]) if compact_rows and not c["is_error"] else ""
        raw_size = count(raw)[unit] if raw else None
        ratio = f"{raw_size / size[unit]:.1f}x" if raw_size else ""
        results.append({"call": label, **size, "raw_" + unit: raw_size, "error": c["is_error"]})
        print(f"{label[:58]:58} {size[unit]:>14} {raw_size if raw_size else '':>14} {ratio:>6}")
        if args.exchange:
            print("  -> " + json.dumps({"name": c["tool"], "arguments": c["arguments"]}))
            print("  <- " + ("(isError) " if c["is_error"] else "") + c["text"].replace("\n", "\n     "))
    tmp.cleanup()
    typical = [r for r in results if not r["error"]]
    sizes = sorted(r[unit] for r in typical)
    summary = {"tokenizer": exact[0] if exact else "estimate", "tools": len(per_tool), "tools_list": whole,
               "per_tool": per_tool, "results": results, "median_result_" + unit: sizes[len(sizes) // 2]}
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
