"""Graph overhead per question, model time excluded, against a baseline without the graph.

Each question runs the agent with a scripted model (instant replies: one or two tool calls, then an
answer built from the rows the tools returned, so the citation check passes, plus one question that
needs a repair round). Measured per question:

- ``graph``: wall time of :func:`agent.runner.answer` (fresh graph, fresh tool caches, as evaluation
  runs it) minus the time spent inside the model;
- ``baseline``: the same tool calls made directly on a fresh :class:`PatientSession` plus the same
  citation check, with no graph (so ``graph - baseline`` is what LangGraph, state and prompts cost).

Both share the per-store record cache (``tools.patient_tools``), as repeated questions about a patient
do in evaluation; the first, cold question per patient (which reads the whole record once) is reported
separately.

Usage::

    python -m benchmarks.graph [--store DIR --patient ID] [--rounds 10]

Without ``--store`` it loads two real patients of ../shared/data/synthea-blaze-120 into a temporary
store. The last line printed is a one-line JSON summary (issue goal: median graph overhead <= 50 ms).
"""

from __future__ import annotations

import argparse
import glob
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

from ehr_agent.agent.citations import check_answer
from ehr_agent.agent.configuration import AgentSettings
from ehr_agent.agent.models.base import ChatMessage, ChatModel, ChatResult
from ehr_agent.agent.models.scripted import ScriptedModel
from ehr_agent.agent.runner import answer
from ehr_agent.tools.patient_tools import PatientSession
from ehr_agent.tools.record_cache import DEFAULT_RECORD_CACHE

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "synthea-blaze-120"
AS_OF = "2030-01-01"


def _call(tool: str, **args) -> str:
    return f"```tool_call\n{json.dumps({'tool': tool, 'arguments': args})}\n```"


def _cite_first_row(messages: list[ChatMessage]) -> str:
    # Answer with the first row the last tool returned, restated with its citation (passes the check).
    for m in reversed(messages):
        if m.role == "tool":
            for line in m.content.splitlines():
                hit = re.search(r"\[([A-Z][A-Za-z]+/[^\]]+)\]$", line)
                if hit:
                    # One sentence per citation, as the prompt asks: a note chunk is cut at its first full stop.
                    first = re.split(r"(?<=[.!?])\s", line[: hit.start()].strip(), maxsplit=1)[0].rstrip(".")
                    return f"The record shows: {first} [{hit.group(1)}]."
            return "Not in the record."
    return "Not in the record."


QUESTIONS: list[tuple[str, list]] = [
    ("latest HbA1c or glucose", [_call("observations", text="glucose"), _cite_first_row]),
    ("active conditions", [_call("records", kind="conditions", status="active"), _cite_first_row]),
    ("medications", [_call("records", kind="medications"), _cite_first_row]),
    ("body weight trend", [_call("observations", text="body weight", mode="all"), _cite_first_row]),
    ("search notes", [_call("search_record", query="follow-up visit plan"), _cite_first_row]),
    ("repair round", [_call("observations", text="body height"),
                      "Her height was 999.123 cm [Observation/none].", _cite_first_row]),
]


class TimedModel(ChatModel):
    """Wraps a model and adds up the time spent inside it."""

    def __init__(self, inner: ChatModel):
        self.inner = inner
        self.seconds = 0.0

    def chat(self, messages, tools=None, *, on_token=None, max_tokens=None) -> ChatResult:
        t0 = time.perf_counter()
        try:
            return self.inner.chat(messages, tools, on_token=on_token, max_tokens=max_tokens)
        finally:
            self.seconds += time.perf_counter() - t0


def _default_store(tmp: Path):
    from ehr_agent.tools.store.loader import load_paths
    from ehr_agent.tools.store.sqlite_store import SQLiteStore

    files = sorted(glob.glob(str(DATA / "*.json.bz2")))
    if len(files) < 4:
        raise SystemExit(f"no shared data at {DATA}; pass --store DIR --patient ID")
    store = SQLiteStore(tmp / "store", create=True)
    load_paths(store, files[:4])  # the two 0-*Information batch bundles sort first, then two patients
    return store


def _baseline(store, pid: str, turns: list) -> float:
    """The same tool calls and the same check, without the graph."""
    t0 = time.perf_counter()
    session = PatientSession(store, pid, AS_OF)
    evidence: dict[str, str] = {}
    msgs: list[ChatMessage] = []
    for turn in turns:
        if isinstance(turn, str) and turn.startswith("```tool_call"):
            spec = json.loads(turn.split("\n", 1)[1].rsplit("```", 1)[0])
            out = session.call(spec["tool"], spec["arguments"])
            evidence.update(out.evidence)
            msgs.append(ChatMessage(role="tool", content=out.text))
        else:
            text = turn if isinstance(turn, str) else turn(msgs)
            check_answer(text, evidence, belongs=lambda r: True, question="q", as_of=AS_OF)
    return time.perf_counter() - t0


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", help="store directory (default: a temporary store of two shared-data patients)")
    ap.add_argument("--patient", help="patient id (default: every patient in the store, max 2)")
    ap.add_argument("--rounds", type=int, default=8, help="passes over the question set")
    args = ap.parse_args(argv)

    tmp = tempfile.TemporaryDirectory()
    if args.store:
        from ehr_agent.tools.store import open_store

        store = open_store(args.store)
    else:
        store = _default_store(Path(tmp.name))
    pids = [args.patient] if args.patient else store.patient_ids()[:2]
    settings = AgentSettings()

    # Imports and graph compilation are once per process, not per patient: done before any timing.
    from ehr_agent.agent.runner import shared_graph

    shared_graph()

    # Cold: the first question about each patient reads the record (manifest, $everything) into the cache.
    cold_ms = []
    for pid in pids:
        DEFAULT_RECORD_CACHE.clear(store)
        model = TimedModel(ScriptedModel(list(QUESTIONS[0][1])))
        t0 = time.perf_counter()
        answer(store, pid, "cold question", model=model, settings=settings, as_of=AS_OF)
        cold_ms.append((time.perf_counter() - t0 - model.seconds) * 1000)

    graph_ms, base_ms, verified = [], [], 0
    for _ in range(args.rounds):
        for pid in pids:
            for _name, turns in QUESTIONS:
                model = TimedModel(ScriptedModel(list(turns)))
                t0 = time.perf_counter()
                res = answer(store, pid, "benchmark question", model=model, settings=settings, as_of=AS_OF)
                wall = time.perf_counter() - t0
                if res.error:
                    raise SystemExit(f"benchmark run failed: {res.error}")
                verified += res.verified
                graph_ms.append((wall - model.seconds) * 1000)
                base_ms.append(_baseline(store, pid, list(turns)) * 1000)

    n = len(graph_ms)
    summary = {
        "benchmark": "graph_overhead",
        "questions": n,
        "patients": len(pids),
        "graph_median_ms": round(statistics.median(graph_ms), 2),
        "graph_p95_ms": round(_pct(graph_ms, 95), 2),
        "baseline_median_ms": round(statistics.median(base_ms), 2),
        "baseline_p95_ms": round(_pct(base_ms, 95), 2),
        "overhead_vs_baseline_median_ms": round(statistics.median(g - b for g, b in zip(graph_ms, base_ms)), 2),
        "cold_first_question_ms": [round(x, 1) for x in cold_ms],
        "verified_fraction": round(verified / n, 3),
        "goal_median_ms": 50,
    }
    print(f"{n} questions over {len(pids)} patient(s), scripted model (model time excluded)")
    print(f"graph:    median {summary['graph_median_ms']} ms, p95 {summary['graph_p95_ms']} ms")
    print(f"cold first question per patient (reads the record): {summary['cold_first_question_ms']} ms")
    print(f"baseline: median {summary['baseline_median_ms']} ms, p95 {summary['baseline_p95_ms']} ms "
          "(same tool calls + check, no graph)")
    store.close()
    tmp.cleanup()
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
