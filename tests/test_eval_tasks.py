"""Task files (JSONL IO, clear errors) and stratified sampling."""

from __future__ import annotations

import json

import pytest

from ehr_agent.agent.eval.runner import read_results, run
from ehr_agent.agent.eval.sample import stratified_sample
from ehr_agent.agent.eval.solvers import GoldSolver
from ehr_agent.agent.eval.tasks import DateGold, IntegerGold, SetGold, Task, TaskFileError, read_tasks, write_tasks


def mk(i, cat, op, patient):
    return Task(id=f"{cat}-{i}", patient=patient, category=cat, question=f"q{i}?", answer=IntegerGold(value=i),
                meta={"op": op})


def pool():
    out = []
    for c in ("a", "b", "c"):
        for i in range(12):
            out.append(mk(i, c, "x" if i < 9 else "y", f"p{i % 4}"))
    return out


def test_roundtrip_keeps_gold_types(tmp_path):
    ts = [mk(1, "a", "x", "p"),
          Task(id="d", patient=None, category="cohort", question="when?", answer=DateGold(value="2015-03-02")),
          Task(id="s", patient="p", category="m", question="which?", answer=SetGold(items=["A"], distractors=["B"]))]
    assert write_tasks(tmp_path / "t.jsonl", ts) == 3
    back = read_tasks(tmp_path / "t.jsonl")
    assert [type(t.answer).__name__ for t in back] == ["IntegerGold", "DateGold", "SetGold"]
    assert back[2].answer.distractors == ["B"]


@pytest.mark.parametrize("content,msg", [
    ("{not json\n", "1: not JSON"),
    (json.dumps({"id": "x", "patient": None, "category": "c", "question": "q", "answer": {"kind": "weird"}}) + "\n",
     "1: not a task"),
])
def test_bad_task_files_name_the_line(tmp_path, content, msg):
    p = tmp_path / "t.jsonl"
    p.write_text(content)
    with pytest.raises(TaskFileError, match=msg):
        read_tasks(p)


def test_duplicate_ids_and_missing_file(tmp_path):
    p = tmp_path / "t.jsonl"
    write_tasks(p, [mk(1, "a", "x", "p"), mk(1, "a", "x", "p")])
    with pytest.raises(TaskFileError, match="duplicate task id"):
        read_tasks(p)
    with pytest.raises(TaskFileError, match="not found"):
        read_tasks(tmp_path / "nope.jsonl")


def test_stratified_sample_balances_categories_ops_and_patients():
    ts = pool()
    s = stratified_sample(ts, 4, seed=1)
    assert len(s) == 12
    for c in ("a", "b", "c"):
        picked = [t for t in s if t.category == c]
        assert len(picked) == 4
        assert {t.meta["op"] for t in picked} == {"x", "y"}  # the rare question type is not left out
        assert len({t.patient for t in picked}) >= 3
    assert [t.id for t in stratified_sample(ts, 4, seed=1)] == [t.id for t in s]
    assert [t.id for t in stratified_sample(ts, 4, seed=2)] != [t.id for t in s]
    assert len(stratified_sample(ts, 50)) == len(ts)
    with pytest.raises(ValueError):
        stratified_sample(ts, 0)


def test_progress_bar_run(tmp_path, capsys):
    run(pool()[:5], GoldSolver(), None, tmp_path / "r.jsonl", progress=True)
    assert len(read_results(tmp_path / "r.jsonl")) == 5


def test_interleave_categories_round_robin_in_first_appearance_order():
    from ehr_agent.agent.eval.sample import interleave_categories
    from ehr_agent.agent.eval.tasks import IntegerGold, Task

    def t(i, cat):
        return Task(id=f"t{i}", patient="p", category=cat, question="q?", answer=IntegerGold(value=1))

    tasks = [t(1, "b"), t(2, "b"), t(3, "a"), t(4, "b"), t(5, "c"), t(6, "a")]
    assert [x.id for x in interleave_categories(tasks)] == ["t1", "t3", "t5", "t2", "t6", "t4"]
    assert interleave_categories([]) == []


def test_unknown_patients_are_named_by_line(tmp_path):
    from ehr_agent.agent.eval.tasks import check_patients, read_numbered_tasks

    p = tmp_path / "t.jsonl"
    cohort = Task(id="c", patient=None, category="cohort", question="how many?", answer=IntegerGold(value=3))
    # Line 2 is blank: numbering follows the file, not the list.
    p.write_text("\n".join([mk(1, "a", "x", "p1").model_dump_json(), "", mk(2, "a", "x", "ghost").model_dump_json(),
                            cohort.model_dump_json(), mk(3, "a", "x", "ghost2").model_dump_json()]) + "\n")
    numbered = read_numbered_tasks(p)
    assert [n for n, _ in numbered] == [1, 3, 4, 5]
    with pytest.raises(TaskFileError, match=r"t\.jsonl:3: patient 'ghost' is not in the store; 1 more line\(s\).*: 5$"):
        check_patients(numbered, ["p1"], p)
    check_patients(numbered, ["p1", "ghost", "ghost2"], p)  # cohort task (no patient) passes
