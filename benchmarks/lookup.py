"""How often ``lookup`` returns the gold for lay-phrased questions when given the WHOLE question as ``what``.

No model: the operation comes from the task's kind and the dates from the question, and ``what`` is the
question itself, extra words and all (harder than what a model passes, which is usually just the noun).
This measures the resolver (tools/vocabulary.py) and the computations (tools/facts.py) apart from the
model. A task counts as found when the tool's ``Answer:`` line states the gold (date, number, age,
yes/no, direction).

    python -m benchmarks.lookup --store S [TASKS.jsonl ...]   # default: the two lay samples in docs/results
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
from pathlib import Path

from ehr_agent.agent.citations import extract_values
from ehr_agent.tools.patient_tools import PatientSession
from ehr_agent.tools.store import open_store

OPS = {"value_on_day": "on_date", "age_at_diagnosis": "age_at", "first_prescription": "first",
       "last_vaccine": "latest", "history": "exists", "up_or_down": "change", "visits_in_year": "count",
       "vaccine_count": "count", "latest_value": "latest"}
KIND = {"first_prescription": "medication", "last_vaccine": "vaccine", "visits_in_year": "visit",
        "vaccine_count": "vaccine", "history": "condition", "age_at_diagnosis": "condition"}
DEFAULT = ["docs/results/natural-sample.jsonl", "docs/results/natural-handwritten.jsonl"]


def call_for(task: dict) -> dict | None:
    """The lookup call a perfect planner would make, with the whole question as ``what``."""
    op = OPS.get(task["category"])
    if op is None:
        return None
    q = task["question"]
    args: dict = {"op": op, "what": q, "kind": KIND.get(task["category"], "any")}
    years = re.findall(r"\b(19\d\d|20\d\d)\b", q)
    if op == "on_date":
        days = sorted(d for d in extract_values(q)[0] if len(d) == 10)
        # else the date as the question writes it ("Dec 30 2016", "October 2019"), which a model copies
        written = re.search(r"\b(?:[A-Z][a-z]{2,8}\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4}|\d{1,2}\s+[A-Z][a-z]{2,8}\s+\d{4}|"
                            r"[A-Z][a-z]{2,8}\.?\s+\d{4})\b", q)
        args["date"] = days[0] if days else (written.group(0) if written else None)
    if op == "change" and len(years) >= 2:
        args["start"], args["end"] = min(years), max(years)
    if op == "count" and years:
        args["start"] = args["end"] = years[0]
    return args


def found(answer: dict, line: str) -> bool:
    """Whether the ``Answer:`` line states the gold."""
    k, v = answer["kind"], answer.get("value")
    if k == "yes_no":
        return line.startswith("Answer: Yes") == bool(v)
    if k == "direction":
        return ("went up" in line) if v == "up" else ("went down" in line)
    if k == "age":
        return f"{v} years old" in line
    if k == "integer":
        return line.startswith(f"Answer: {v} ")
    if k == "date":
        return str(v) in line
    if k == "quantity":
        tol = max(float(answer.get("tolerance") or 0), 1e-9)
        return any(abs(float(x) - float(v)) <= tol for x in re.findall(r"-?\d+(?:\.\d+)?", line))
    return str(v) in line


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tasks", nargs="*", default=DEFAULT)
    ap.add_argument("--store", required=True)
    ap.add_argument("--misses", action="store_true", help="print every miss")
    args = ap.parse_args(argv)
    store = open_store(args.store)
    total: collections.Counter = collections.Counter()
    ok: collections.Counter = collections.Counter()
    for path in args.tasks:
        for line in Path(path).read_text().splitlines():
            if not line.strip():
                continue
            task = json.loads(line)
            call = call_for(task)
            if call is None or not task.get("patient"):
                continue
            s = PatientSession(store, task["patient"], task.get("as_of"))
            text = s.call("lookup", call).text
            ans = next((x for x in text.splitlines() if x.startswith("Answer:")), text)
            hit = found(task["answer"], ans)
            total[task["category"]] += 1
            ok[task["category"]] += hit
            if not hit and args.misses:
                print(f"MISS {task['category']} | {task['question']} | {ans[:160]}")
    for cat in sorted(total):
        print(f"{cat:20s} {ok[cat]:3d} / {total[cat]:3d}")
    n, k = sum(total.values()), sum(ok.values())
    print(json.dumps({"found": k, "tasks": n, "ratio": round(k / n, 3) if n else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
