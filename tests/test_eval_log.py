"""Evaluation logs: the run header of a results file, the trajectory each record keeps, the wrong answers of the
HTML report, and results files written before either (docs/evaluation.md, "Results files")."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from datetime import datetime
from importlib import metadata
from pathlib import Path

import pytest
from test_agent_support import AS_OF, make_store

from ehr_agent.agent.cli import main
from ehr_agent.agent.eval.report import write_report
from ehr_agent.agent.eval.runlog import ResumeMismatch, make_header, read_header
from ehr_agent.agent.eval.runner import read_results, run
from ehr_agent.agent.eval.tasks import IntegerGold, Task, write_tasks
from ehr_agent.agent.schema import AnswerResult

ROOT = Path(__file__).resolve().parents[1]
OLD = ROOT / "tests" / "eval_fixtures"

# The scripted model (deterministic): one tool call, then a wrong count (the store holds three HbA1c results).
CALL = {"tool": "observations", "arguments": {"text": "a1c", "mode": "all"}}
TURNS = ["```tool_call\n" + json.dumps(CALL) + "\n```", "There were 2 HbA1c results [Observation/a1c-1].",
         "There were 2 HbA1c results [Observation/a1c-1]."]
SPEC = "scripted:" + json.dumps(TURNS)


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("logstore")
    make_store(d).close()
    return str(d / "store")


def _task(tid: str = "a1c-count", value: int = 3) -> Task:
    return Task(id=tid, patient="pa", category="observation_count", question="How many HbA1c results are there?",
                as_of=AS_OF, answer=IntegerGold(value=value), gold_refs=["Observation/a1c-1"])


def _git_head() -> str | None:
    try:
        p = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except OSError:
        return None
    return p.stdout.strip() if p.returncode == 0 else None


@pytest.fixture(scope="module")
def cli_run(store_dir, tmp_path_factory):
    """One ``eval run`` of the agent with the scripted model (see TURNS) on one task."""
    d = tmp_path_factory.mktemp("logrun")
    tasks, out = d / "tasks.jsonl", d / "results.jsonl"
    write_tasks(tasks, [_task()])
    rc = main(["eval", "run", str(tasks), "--store", store_dir, "--model", SPEC, "--out", str(out),
               "--concurrency", "1", "-q"])
    assert rc == 0
    return tasks, out


def test_results_file_opens_with_the_run_header(cli_run, store_dir):
    """Scripted model. The first line is the header: settings, model, spec, backend options, version, commit
    (``git rev-parse HEAD`` of this checkout), task file and its sha256, solver, concurrency, start time."""
    from ehr_agent.agent.configuration import AgentSettings

    tasks, out = cli_run
    first = json.loads(out.read_text().splitlines()[0])
    assert first["record"] == "header" and first["log_format"] == 1
    assert first["task_file"] == str(tasks)
    assert first["task_sha256"] == hashlib.sha256(tasks.read_bytes()).hexdigest()
    assert first["git_commit"] == _git_head()
    if first["git_commit"] is not None:
        assert re.fullmatch(r"[0-9a-f]{40}", first["git_commit"]) and isinstance(first["git_dirty"], bool)
    assert first["package_version"] == metadata.version("ehr-agent")
    assert first["solver"] == "agent" and first["model_spec"] == SPEC and first["model"]
    assert first["backend_options"]["kind"] == "scripted"
    assert first["settings"] == json.loads(AgentSettings().model_dump_json())
    assert first["settings"]["max_steps"] == AgentSettings().max_steps
    assert first["concurrency"] == 1 and first["store"] == store_dir and first["tasks"] == 1
    assert datetime.fromisoformat(first["started_at"]).tzinfo is not None
    assert read_header(out).task_sha256 == first["task_sha256"]
    assert [r.task_id for r in read_results(out)] == ["a1c-count"]  # the header is no record


def test_record_keeps_the_trajectory(cli_run):
    """Scripted model. The record holds each model turn, the tool call with its arguments and the text the tool
    returned, and the check's verdict."""
    (rec,) = read_results(cli_run[1])
    assert not rec.correct
    kinds = [i["type"] for i in rec.trajectory]
    assert kinds[0] == "system" and kinds[-1] == "check"
    model = [i for i in rec.trajectory if i["type"] == "model"]
    assert model[0]["step"] == 1 and model[0]["tool_calls"][0]["name"] == "observations"
    assert model[0]["tool_calls"][0]["arguments"] == CALL["arguments"]
    (tool,) = [i for i in rec.trajectory if i["type"] == "tool"]
    assert tool["name"] == "observations" and tool["arguments"] == CALL["arguments"]
    assert tool["rows"] == 3 and "a1c-1" in tool["text"] and "a1c-3" in tool["text"]
    assert any(i["type"] == "model" and "2 HbA1c results" in i["text"] for i in rec.trajectory)
    question = [i for i in rec.trajectory if i["type"] == "user" and i["kind"] == "question"]
    assert len(question) == 1 and "How many HbA1c results" in question[0]["text"]
    assert [i["step"] for i in model] == [1, 2, 3]  # the tool turn, the draft, the repaired draft
    (repair,) = [i for i in rec.trajectory if i["type"] == "user" and i["kind"] == "repair"]
    assert "the record has 3" in repair["text"]  # the claim check's finding, sent back to the model
    check = rec.trajectory[-1]
    assert check["verified"] is False and check["repairs"] == 1 and check["citations"] == ["Observation/a1c-1"]
    assert check["unsupported"] == ["There were 2 HbA1c results [Observation/a1c-1]."]


def test_resume_refuses_another_task_file_unless_allowed(cli_run, store_dir, tmp_path, capsys):
    """Scripted model. Resuming with the same task file runs nothing again; a changed task file is refused
    before any task runs, and with --allow-mismatch the resume line records the difference."""
    tasks, out = cli_run
    copy = tmp_path / "r.jsonl"
    copy.write_text(out.read_text())
    args = ["eval", "run", str(tasks), "--store", store_dir, "--model", SPEC, "--out", str(copy), "-q"]
    assert main(args) == 0 and len(read_results(copy)) == 1
    other = tmp_path / "tasks2.jsonl"
    write_tasks(other, [_task(), _task("a1c-count-2", 2)])
    before = copy.read_text()
    args[2] = str(other)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "task_sha256" in err and "--allow-mismatch" in err
    assert copy.read_text() == before  # refused before anything was written
    assert main(args + ["--allow-mismatch"]) == 0
    lines = [json.loads(x) for x in copy.read_text().splitlines()]
    (note,) = [x for x in lines if x.get("record") == "resume"]
    assert note["changed"]["task_sha256"][1] == hashlib.sha256(other.read_bytes()).hexdigest()
    assert sorted(r.task_id for r in read_results(copy)) == ["a1c-count", "a1c-count-2"]
    assert read_header(copy).task_file == str(tasks)  # the header stays the first run's


class Answers:
    """A solver that answers from a table (right or wrong by task) with a small trajectory."""

    name = "agent"
    settings = None

    def __init__(self, right: set[str]):
        self.right = right

    def solve(self, task, store):
        value = task.answer.value if task.id in self.right else task.answer.value + 1
        steps = [{"type": "model", "step": 1, "text": f"thinking about {task.id}",
                  "tool_calls": [{"id": "c1", "name": "records", "arguments": {"kind": "encounters"}}]},
                 {"type": "tool", "name": "records", "arguments": {"kind": "encounters"}, "rows": 1,
                  "text": f"row returned for {task.id}"},
                 {"type": "check", "verified": False, "citations": [], "unsupported": [], "repairs": 0}]
        return AnswerResult(answer=f"There were {value}.", trajectory=steps)


def test_settings_change_is_refused_on_resume(tmp_path):
    from ehr_agent.agent.configuration import AgentSettings

    out = tmp_path / "r.jsonl"
    ts = [_task("a", 1), _task("b", 2)]
    first = make_header(solver="agent", model="m", settings=AgentSettings())
    run(ts[:1], Answers({"a"}), None, out, progress=False, header=first)
    changed = make_header(solver="agent", model="m", settings=AgentSettings(max_steps=3))
    with pytest.raises(ResumeMismatch, match="settings"):
        run(ts, Answers({"a"}), None, out, progress=False, header=changed)
    assert [r.task_id for r in read_results(out)] == ["a"]
    same = make_header(solver="agent", model="m", settings=AgentSettings())
    assert run(ts, Answers({"a"}), None, out, progress=False, header=same).ran == 1


def test_report_shows_a_details_block_per_wrong_answer_only(tmp_path):
    out = tmp_path / "r.jsonl"
    run([_task("right-one", 3), _task("wrong-one", 4)], Answers({"right-one"}), None, out, progress=False,
        model_name="m")
    page = write_report([out], tmp_path / "rep")["html"].read_text()
    blocks = re.findall(r"<details.*?</details>", page, re.S)
    assert len(blocks) == 1
    (block,) = blocks
    assert "wrong-one" in block and "right-one" not in block
    assert "How many HbA1c results are there?" in block  # the question
    assert "<b>Gold:</b> 4" in block and "There were 5." in block  # gold and answer
    assert "row returned for wrong-one" in block and "{&quot;kind&quot;: &quot;encounters&quot;}" in block
    assert "agent / m: 1 wrong</h3>" in page


def test_report_of_a_scripted_run_shows_the_tool_text(cli_run, tmp_path):
    """Scripted model: the wrong answer's block holds the tool call and what it returned."""
    page = write_report([cli_run[1]], tmp_path / "rep")["html"].read_text()
    (block,) = re.findall(r"<details.*?</details>", page, re.S)
    assert "observations" in block and "a1c-3" in block and "check" in block
    assert _git_head() is None or _git_head()[:10] in page  # the runs table names the commit


# ---- files written before headers and trajectories (lines copied from docs/results/agent-embedded.jsonl) ----

def test_old_results_file_loads_and_reports(tmp_path):
    old = OLD / "results-before-headers.jsonl"
    recs = read_results(old)
    assert len(recs) == 3 and all(r.trajectory == [] for r in recs) and read_header(old) is None
    page = write_report([old], tmp_path / "rep")["html"].read_text()
    assert len(re.findall(r"<details", page)) == sum(not r.correct for r in recs) == 2
    assert "no header" in page


def test_old_results_file_rescores_with_a_header_noting_it(tmp_path, capsys):
    old, tasks = OLD / "results-before-headers.jsonl", OLD / "tasks-before-headers.jsonl"
    out = tmp_path / "rescored.jsonl"
    assert main(["eval", "rescore", str(tasks), str(old), "--out", str(out)]) == 0
    header = read_header(out)
    assert header is not None and header.solver == "agent" and header.model_spec == "embedded#n_threads=1"
    (note,) = header.notes
    assert note["op"] == "rescore" and note["had_header"] is False
    assert note["task_sha256"] == hashlib.sha256(tasks.read_bytes()).hexdigest()
    assert [r.task_id for r in read_results(out)] == [r.task_id for r in read_results(old)]


def test_rescore_keeps_header_and_trajectories(cli_run, tmp_path):
    """Scripted model run, then rescored: the header stays (with a note) and so does each trajectory."""
    tasks, out = cli_run
    new = tmp_path / "rescored.jsonl"
    assert main(["eval", "rescore", str(tasks), str(out), "--out", str(new)]) == 0
    before, after = read_header(out), read_header(new)
    assert after.model_dump(exclude={"notes"}) == before.model_dump(exclude={"notes"})
    assert [n["op"] for n in after.notes] == ["rescore"] and after.notes[0]["had_header"] is True
    (a,), (b,) = read_results(out), read_results(new)
    assert b.trajectory == a.trajectory and b.trajectory


def test_old_results_file_resumes(tmp_path):
    """A file without a header resumes: done tasks are skipped and the new header is appended."""
    from ehr_agent.agent.eval.solvers import GoldSolver
    from ehr_agent.agent.eval.tasks import read_tasks

    out = tmp_path / "old.jsonl"
    out.write_text((OLD / "results-before-headers.jsonl").read_text())
    tasks = read_tasks(OLD / "tasks-before-headers.jsonl")
    extra = tasks[0].model_copy(update={"id": "extra-task"})
    summary = run([*tasks, extra], GoldSolver(), None, out, progress=False)
    assert summary.skipped == 3 and summary.ran == 1
    assert read_header(out).solver == "gold"
    assert [r.task_id for r in read_results(out)][-1] == "extra-task" and len(read_results(out)) == 4


def test_header_masks_secrets(monkeypatch):
    from ehr_agent.agent.eval.runlog import settings_dict

    monkeypatch.setenv("EHR_AGENT_API_KEY", "sk-not-for-logs")
    h = make_header(solver="agent", model_spec="openai:http://127.0.0.1:9/v1#m&temperature=0",
                    settings={"answer_max_tokens": 300, "model": {"api_key": "sk-2", "n_ctx": 4096}})
    assert "sk-" not in h.model_dump_json()
    assert h.backend_options["env"]["api_key"] == "***" and h.backend_options["options"] == {"temperature": "0"}
    assert h.settings == {"answer_max_tokens": 300, "model": {"api_key": "***", "n_ctx": 4096}}
    assert settings_dict(None) == {}
