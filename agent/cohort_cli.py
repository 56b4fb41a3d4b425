"""``ehr-agent ask-cohort``: one question about all patients of a store, answered with cited counts.

Each number in the answer cites the query that counted it, e.g.
``[query:Encounter?class=IMP&date=2010&patient.gender=male]``; the check re-runs every cited query.
Without ``--json`` the steps stream to stderr and the answer is printed with numbered citations; with
``--json`` one object is printed, the same shape as ``ehr-agent ask --json``.
"""

from __future__ import annotations

import argparse
import json
import sys

from ehr_agent.agent.ask_cli import JSON_KEYS, _print_answer, _Printer


def register(subparsers) -> None:
    """Add the ``ask-cohort`` subcommand."""
    p = subparsers.add_parser("ask-cohort", help="answer a question about all patients (counts), with cited queries",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", required=True, help="store directory or FHIR server base URL (http[s]://...)")
    p.add_argument("--model", default=None,
                   help="model spec (default $EHR_AGENT_MODEL or the embedded model), e.g. "
                        "openai:http://127.0.0.1:8000/v1#medgemma")
    p.add_argument("--max-steps", type=int, default=None, help="model turns allowed (default 6)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the streamed steps")
    p.add_argument("question", help="the question, in quotes")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``ask-cohort``; exit code 0 for an answer, 1 when the run ended with an error, 2 for bad input."""
    from ehr_agent.agent.cohort import answer_cohort
    from ehr_agent.agent.configuration import AgentSettings
    from ehr_agent.agent.models.base import ModelError
    from ehr_agent.tools.store import open_store

    if not args.question.strip():
        print("error: the question is empty", file=sys.stderr)
        return 2
    try:
        settings = AgentSettings(**({"max_steps": args.max_steps} if args.max_steps is not None else {}))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    store = open_store(args.store)  # StoreError -> the dispatcher prints it
    try:
        from ehr_agent.agent.models.factory import make_model

        model = make_model(args.model)
    except (ValueError, ModelError) as e:
        store.close()
        print(f"error: cannot set up the model: {e}", file=sys.stderr)
        return 2
    on_event = None if args.json else _Printer().on_event
    try:
        result = answer_cohort(store, args.question, model=model, settings=settings, on_event=on_event)
    finally:
        model.close()
        store.close()
    if args.json:
        print(json.dumps({k: getattr(result, k) for k in JSON_KEYS}, ensure_ascii=False))
    else:
        _print_answer(result)
    return 1 if result.error else 0
