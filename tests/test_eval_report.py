"""Reports and the statistics under them (agent.eval.stats): Markdown + HTML written, PNGs valid, solver
comparison when several solvers are present, intervals, paired comparison, failure kinds."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from ehr_agent.agent.eval.report import write_report  # noqa: E402
from ehr_agent.agent.eval.runner import read_results, run  # noqa: E402
from ehr_agent.agent.eval.tasks import IntegerGold, Task  # noqa: E402
from ehr_agent.agent.schema import AnswerResult  # noqa: E402


class Solver:
    def __init__(self, name, right):
        self.name, self.right = name, right

    def solve(self, task, store):
        v = task.answer.value if self.right(task) else task.answer.value + 1
        return AnswerResult(answer=f"{v} [Encounter/{task.id}]", citations=[f"Encounter/{task.id}"],
                            evidence_refs=[f"Encounter/{task.id}"], verified=self.right(task),
                            prompt_tokens=100 if self.name == "agent" else 5000, completion_tokens=20, seconds=0.1)


def tasks():
    return [Task(id=f"t{i}", patient="p", category=["demographics", "notes", "encounters"][i % 3], question="q?",
                 answer=IntegerGold(value=i), gold_refs=[f"Encounter/t{i}"]) for i in range(12)]


def test_report_files_and_pngs(tmp_path):
    a, b = tmp_path / "agent.jsonl", tmp_path / "fc.jsonl"
    run(tasks(), Solver("agent", lambda t: True), None, a, progress=False, model_name="m")
    run(tasks(), Solver("full-context", lambda t: t.category == "notes"), None, b, progress=False, model_name="m")
    files = write_report([a, b], tmp_path / "rep")
    md = files["markdown"].read_text()
    assert "agent / m" in md and "full-context / m" in md
    assert "| notes |" in md and "100.0%" in md and "33.3%" in md
    html = files["html"].read_text()
    assert html.startswith("<!doctype html>") and "<img src='accuracy_by_category.png'" in html
    pngs = [p for k, p in files.items() if k.endswith(".png")]
    assert {p.name for p in pngs} >= {"accuracy_by_category.png", "tokens_vs_accuracy.png", "latency.png",
                                      "citations.png", "solver_comparison.png"}
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        img = plt.imread(p)
        assert img.shape[0] > 100 and img.shape[1] > 100


def test_single_solver_has_no_comparison_and_missing_file_errors(tmp_path):
    a = tmp_path / "agent.jsonl"
    run(tasks(), Solver("agent", lambda t: True), None, a, progress=False)
    files = write_report([a], tmp_path / "rep")
    assert "solver_comparison.png" not in files
    with pytest.raises(FileNotFoundError):
        write_report([tmp_path / "nope.jsonl"], tmp_path / "rep2")


def test_wilson_interval_matches_known_values():
    from ehr_agent.agent.eval.stats import wilson_interval

    # 15/30 and 0/10: values computed by hand from the Wilson formula (z = 1.96).
    lo, hi = wilson_interval(15, 30)
    assert lo == pytest.approx(0.3315, abs=1e-4) and hi == pytest.approx(0.6685, abs=1e-4)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_mcnemar_exact_p_values():
    from ehr_agent.agent.eval.stats import mcnemar_exact

    assert mcnemar_exact(0, 0) == 1.0
    # 8 discordant pairs all one way: 2 * (1/2)^8.
    assert mcnemar_exact(8, 0) == pytest.approx(2 / 256)
    # 1 vs 5: 2 * (C(6,0) + C(6,1)) / 2^6 = 14/64.
    assert mcnemar_exact(1, 5) == pytest.approx(14 / 64)
    assert mcnemar_exact(3, 3) == 1.0


def test_paired_comparison_uses_only_common_tasks(tmp_path):
    a, b = tmp_path / "agent.jsonl", tmp_path / "fc.jsonl"
    run(tasks(), Solver("agent", lambda t: True), None, a, progress=False, model_name="m")
    # The baseline ran only the first 6 tasks; it is right on "notes" (t1, t4) only.
    run(tasks()[:6], Solver("full-context", lambda t: t.category == "notes"), None, b, progress=False,
        model_name="m")
    md = write_report([a, b], tmp_path / "rep")["markdown"].read_text()
    section = md.split("## Paired comparison on common tasks")[1].split("##")[0]
    row = [line for line in section.splitlines() if line.startswith("| agent / m")][0]
    cells = [c.strip() for c in row.strip("|").split("|")]
    # A, B, common, acc A, acc B, both, only A, only B, neither, p, tokens A, tokens B
    assert cells[1] == "full-context / m" and cells[2] == "6"
    assert cells[3] == "100.0%" and cells[4] == "33.3%"
    assert cells[5:9] == ["2", "4", "0", "0"]
    assert float(cells[9]) == pytest.approx(2 / 16)
    assert cells[10] == "100.0" and cells[11] == "5,000.0"
    # The overall table still counts every task each solver ran.
    assert "| agent / m | 12 |" in md and "| full-context / m | 6 |" in md


@pytest.mark.parametrize("answer,expected", [
    ("Not in the record.", True),
    ("The record does not contain any order for Hydrocortisone 10 MG/ML Topical Cream.", True),
    ("The patient's notes do not mention any education. [unsupported]", True),
    ("Latex allergy is not recorded.", True),
    ("The latest HbA1c was 7.2 % on 2019-03-04 [Observation/a].", False),
    ("The patient is not allergic to latex [AllergyIntolerance/x].", False),
])
def test_gave_up_phrases(answer, expected):
    from ehr_agent.agent.eval.stats import gave_up

    assert gave_up(answer) is expected


def test_failure_breakdown_separates_reading_from_retrieval(tmp_path):
    from ehr_agent.agent.eval.stats import failure_stats
    from ehr_agent.agent.eval.runner import read_results

    class Mixed:
        name = "agent"

        def solve(self, task, store):
            i = int(task.id[1:])
            read = [f"Encounter/{task.id}"] if i % 2 == 0 else ["Encounter/other"]
            if i < 4:  # right
                return AnswerResult(answer=f"{task.answer.value} [Encounter/{task.id}]", evidence_refs=read)
            if i < 8:  # gives up: t4, t6 had read the gold, t5, t7 had not
                return AnswerResult(answer="Not in the record.", evidence_refs=read)
            if i < 11:  # wrong value: t8, t10 read, t9 not
                return AnswerResult(answer=f"{task.answer.value + 1}", evidence_refs=read)
            raise RuntimeError("model server down")  # t11: an error

    out = tmp_path / "r.jsonl"
    run(tasks(), Mixed(), None, out, progress=False, model_name="m")
    f = failure_stats("agent / m", list(read_results(out)))
    assert (f.wrong, f.gave_up_read, f.gave_up_not_read, f.wrong_read, f.wrong_not_read, f.errors) == (8, 2, 2, 2, 1, 1)
    md = write_report([out], tmp_path / "rep")["markdown"].read_text()
    assert "| agent / m | 8 | 2 | 2 | 2 | 1 | 1 |" in md


def test_runtime_options_do_not_split_a_group(tmp_path):
    a = tmp_path / "agent.jsonl"
    run(tasks()[:6], Solver("agent", lambda t: True), None, a, progress=False, model_name="embedded")
    # resumed with other threads: the same model, so one group of 12
    run(tasks(), Solver("agent", lambda t: True), None, a, progress=False, model_name="embedded#n_threads=1")
    md = write_report([a], tmp_path / "rep")["markdown"].read_text()
    assert "| agent / embedded | 12 |" in md and "n_threads" not in md


def test_records_with_a_spec_group_by_the_models_own_name(tmp_path):
    """New records name the model (``model``) and how it ran (``model_spec``): two models on one server stay
    two groups, one model reached by two specs stays one."""
    a = tmp_path / "a.jsonl"
    run(tasks()[:4], Solver("agent", lambda t: True), None, a, progress=False,
        model_name="openai:http://127.0.0.1:8000/v1#medgemma", model_spec="openai:http://127.0.0.1:8000/v1#medgemma")
    run(tasks(), Solver("agent", lambda t: False), None, a.with_name("b.jsonl"), progress=False,
        model_name="openai:http://127.0.0.1:8000/v1#qwen", model_spec="openai:http://127.0.0.1:8000/v1#qwen&temperature=0")
    c = tmp_path / "c.jsonl"
    run(tasks()[:3], Solver("full-context", lambda t: True), None, c, progress=False,
        model_name="embedded:qwen2.5-coder-1.5b", model_spec="embedded")
    run(tasks(), Solver("full-context", lambda t: True), None, c, progress=False,
        model_name="embedded:qwen2.5-coder-1.5b", model_spec="embedded:1.5b#n_threads=1")
    md = write_report([a, a.with_name("b.jsonl"), c], tmp_path / "rep")["markdown"].read_text()
    assert "| agent / openai:http://127.0.0.1:8000/v1#medgemma | 4 |" in md
    assert "| agent / openai:http://127.0.0.1:8000/v1#qwen | 12 |" in md
    assert "| full-context / embedded:qwen2.5-coder-1.5b | 12 |" in md
    assert {r.model_spec for r in read_results(c)} == {"embedded", "embedded:1.5b#n_threads=1"}
