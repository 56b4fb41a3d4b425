"""Solvers on a real store: the agent graph with the scripted gold model, the one-call full-context baseline,
and the ``ehr-agent eval`` command line end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ehr_agent.agent.cli import main
from ehr_agent.agent.eval.runner import read_results, run
from ehr_agent.agent.eval.solvers import FullContextSolver, load_prompt, make_solver
from ehr_agent.agent.eval.tasks import read_tasks
from ehr_agent.agent.models.scripted import ScriptedModel

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "synthea-blaze-120"
FILES = ["085e81c0-7a95-ef02-16ef-aa1b4344deed", "098fc002-b87e-49dc-4b8e-8900a1bc8661"]

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    from ehr_agent.tools.store import open_store

    d = tmp_path_factory.mktemp("solverstore")
    with open_store(str(d), create=True) as s:
        s.load([*sorted(DATA.glob("0-*.json.bz2")), *(DATA / f"{f}.json.bz2" for f in FILES)], validate=False)
    return d


@pytest.fixture(scope="module")
def task_file(store_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("tasks") / "tasks.jsonl"
    rc = main(["eval", "generate", "--store", str(store_dir), "--out", str(out), "--per-patient", "14",
               "--seed", "2", "--cohort", "3"])
    assert rc == 0
    return out


def test_cli_generate_and_sample(task_file, tmp_path, capsys):
    tasks = read_tasks(task_file)
    assert len(tasks) == 2 * 14 + 3
    out = tmp_path / "s.jsonl"
    assert main(["eval", "sample", str(task_file), "--per-category", "1", "--out", str(out), "--seed", "5"]) == 0
    sample = read_tasks(out)
    cats = {t.category for t in tasks}
    assert len(sample) == len(cats) and {t.category for t in sample} == cats
    assert main(["eval", "sample", str(task_file), "--per-category", "1", "--out", str(tmp_path / "b.jsonl"),
                 "--seed", "5"]) == 0
    assert (tmp_path / "b.jsonl").read_text() == out.read_text()  # deterministic for a seed

    # --exclude-category and --interleave (how docs/results/sample104.jsonl was drawn)
    inter = tmp_path / "i.jsonl"
    assert main(["eval", "sample", str(task_file), "--per-category", "2", "--out", str(inter), "--seed", "5",
                 "--exclude-category", "cohort", "--interleave"]) == 0
    got = read_tasks(inter)
    kept = cats - {"cohort"}
    assert {t.category for t in got} == kept and len(got) == 2 * len(kept)
    first, second = got[: len(kept)], got[len(kept):]
    assert {t.category for t in first} == kept and [t.category for t in second] == [t.category for t in first]
    assert main(["eval", "sample", str(task_file), "--per-category", "1", "--out", str(tmp_path / "x.jsonl"),
                 "--exclude-category", "cohrt"]) == 2
    assert "no task has category cohrt" in capsys.readouterr().err


def test_agent_with_scripted_gold_model_through_cli(task_file, store_dir, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    rc = main(["eval", "run", str(task_file), "--store", str(store_dir), "--model", "scripted-gold", "--out", str(out),
               "--limit", "8", "--concurrency", "2", "--timeout", "120", "-q"])
    assert rc == 0
    recs = read_results(out)
    assert len(recs) == 8
    patient_recs = [r for r in recs if r.patient]
    assert patient_recs and all(r.solver == "agent" and r.model == "scripted-gold" for r in recs)
    assert all(r.steps >= 2 for r in patient_recs)  # a tool round, then the answer
    assert sum(r.correct for r in patient_recs) >= len(patient_recs) - 1
    assert all(r.scores.retrieval is None or r.scores.retrieval.recall > 0 for r in patient_recs)
    # resume: nothing left of those 8 to run again
    rc = main(["eval", "run", str(task_file), "--store", str(store_dir), "--model", "scripted-gold", "--out", str(out),
               "--limit", "2", "-q"])
    assert rc == 0 and "(8 already in" in capsys.readouterr().out
    rep = tmp_path / "rep"
    assert main(["eval", "report", str(out), "--out", str(rep)]) == 0
    assert (rep / "report.md").is_file() and (rep / "latency.png").is_file()


def test_full_context_is_one_call_with_the_record_in_the_prompt(task_file, store_dir, tmp_path):
    from ehr_agent.tools.store import open_store

    tasks = [t for t in read_tasks(task_file) if t.patient][:4]
    models = []

    def factory(task):
        def reply(messages):
            prompt = messages[-1].content
            assert task.question in prompt and "# Record" in prompt
            seen = [r for r in task.gold_refs if r in prompt]
            return f"{task.answer.display()} " + " ".join(f"[{r}]" for r in seen[:2])

        m = ScriptedModel([reply])
        models.append(m)
        return m

    solver = FullContextSolver(factory, context_tokens=6000)
    with open_store(str(store_dir)) as store:
        run(tasks, solver, store, tmp_path / "fc.jsonl", progress=False, model_name="scripted")
    recs = read_results(tmp_path / "fc.jsonl")
    assert len(recs) == 4 and all(r.solver == "full-context" and r.error is None for r in recs)
    assert all(len(m.calls) == 1 and m.calls[0][1] is None for m in models)  # one call, no tools
    assert all(r.evidence_refs for r in recs)
    assert "{record}" in load_prompt("full_context")


def test_cli_errors_are_messages_not_tracebacks(tmp_path, capsys, store_dir):
    assert main(["eval", "run", str(tmp_path / "missing.jsonl"), "--store", str(store_dir), "--out",
                 str(tmp_path / "r.jsonl")]) == 2
    assert "task file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x"}) + "\n")
    assert main(["eval", "sample", str(bad), "--per-category", "2", "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "bad.jsonl:1: not a task" in capsys.readouterr().err
    assert main(["eval", "report", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "rep")]) == 2
    with pytest.raises(ValueError, match="unknown solver"):
        make_solver("oracle", None)
    assert main(["eval", "generate", "--store", str(store_dir), "--out", str(tmp_path / "t.jsonl"),
                 "--patients", "no-such-patient"]) == 2
    assert "not in the store: no-such-patient" in capsys.readouterr().err


def test_run_refuses_a_task_file_for_another_store_naming_the_line(task_file, store_dir, tmp_path, capsys):
    lines = task_file.read_text().splitlines()
    moved = json.loads(lines[1])
    moved["patient"] = "no-such-patient"
    bad = tmp_path / "other.jsonl"
    bad.write_text("\n".join([lines[0], json.dumps(moved), *lines[2:]]) + "\n")
    out = tmp_path / "r.jsonl"
    assert main(["eval", "run", str(bad), "--store", str(store_dir), "--solver", "gold", "--out", str(out), "-q"]) == 2
    assert "other.jsonl:2: patient 'no-such-patient' is not in the store" in capsys.readouterr().err
    assert not out.exists() or not out.read_text()  # nothing ran


def test_adapted_task_patient_is_resolved_by_identifier(store_dir, tmp_path):
    """MedAgentBench tasks know the patient by MRN only; the runner resolves it through the store."""
    from ehr_agent.agent.eval.tasks import IntegerGold, Task
    from ehr_agent.agent.schema import AnswerResult
    from ehr_agent.tools.store import open_store

    class Echo:
        name = "echo"

        def solve(self, task, store):
            return AnswerResult(answer=f"patient {task.patient}: 1")

    ts = [Task(id="a", patient=None, category="medagentbench-task2", question="age?", answer=IntegerGold(value=1),
               meta={"patient_identifier": FILES[0]}),
          Task(id="b", patient=None, category="medagentbench-task2", question="age?", answer=IntegerGold(value=1),
               meta={"patient_identifier": "S0000000"})]
    with open_store(str(store_dir)) as store:
        run(ts, Echo(), store, tmp_path / "r.jsonl", progress=False)
    by = {r.task_id: r for r in read_results(tmp_path / "r.jsonl")}
    assert by["a"].answer == f"patient {FILES[0]}: 1" and by["a"].error is None
    assert "matches 0 patients" in by["b"].error


def test_results_name_the_model_and_keep_the_spec(task_file, store_dir, tmp_path):
    from ehr_agent.agent.eval.solvers import GoldSolver, solver_model_name

    assert solver_model_name(GoldSolver(), None) == "gold"
    scripted = make_solver("full-context", 'scripted:["Not in the record."]')
    assert solver_model_name(scripted, 'scripted:["Not in the record."]') == "scripted"  # the model's own name
    assert solver_model_name(make_solver("agent", "scripted-gold"), "scripted-gold") == "scripted-gold"
    out = tmp_path / "r.jsonl"
    assert main(["eval", "run", str(task_file), "--store", str(store_dir), "--solver", "full-context", "--model",
                 'scripted:["Not in the record."]', "--limit", "1", "--out", str(out), "-q"]) == 0
    (rec,) = read_results(out)
    assert rec.model == "scripted" and rec.model_spec == 'scripted:["Not in the record."]'



def test_run_without_model_uses_the_environments_spec(task_file, store_dir, tmp_path, monkeypatch):
    """--help says the default is $EHR_AGENT_MODEL; the spec recorded is the one that ran."""
    spec = 'scripted:["Not in the record."]'
    monkeypatch.setenv("EHR_AGENT_MODEL", spec)
    out = tmp_path / "r.jsonl"
    assert main(["eval", "run", str(task_file), "--store", str(store_dir), "--solver", "full-context", "--limit", "1",
                 "--out", str(out), "-q"]) == 0
    (rec,) = read_results(out)
    assert rec.model == "scripted" and rec.model_spec == spec
