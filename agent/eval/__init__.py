"""Evaluation: generate tasks with gold answers from a FHIR store, run the agent (or a baseline) over
them, score deterministically, report.

Notebook use::

    from ehr_agent.tools.store import open_store
    from ehr_agent.agent.eval.generator import generate_tasks
    from ehr_agent.agent.eval.solvers import make_solver
    from ehr_agent.agent.eval.runner import run
    from ehr_agent.agent.eval.report import write_report

    store = open_store("store/")
    tasks = generate_tasks(store, per_patient=5, seed=0)
    run(tasks, make_solver("agent", "embedded"), store, "results.jsonl")
    write_report(["results.jsonl"], "report/")

See docs/evaluation.md.
"""
