"""``eval rescore --store``: the verdict ``verified`` recomputed with the current citation and claim checks,
without running a model (agent.eval.verify, agent.eval.runner.rescore), and the 2x2 verified x right
table with the wrong-but-verified list (agent.eval.stats, agent.eval.report).

Results files here are hand-made (no model runs); the store is the project's fixtures (tests/conftest.py).
"""

from __future__ import annotations

import json

import pytest

from ehr_agent.agent.eval.report import write_report
from ehr_agent.agent.eval.runner import ResultRecord, read_results, record_for, rescore
from ehr_agent.agent.eval.stats import verified_table, wilson_interval, wrong_but_verified
from ehr_agent.agent.eval.tasks import QuantityGold, Task, write_tasks
from ehr_agent.agent.eval.verify import strip_marks
from ehr_agent.agent.schema import AnswerResult
from tests.conftest import ALICE, BOB
from ehr_agent.tools.patient_tools import PatientSession

AS_OF = "2030-01-01"
A1C_2015 = "Observation/8f90a2c8-46b4-5b1f-8c7d-4193bf9ea288"  # 7.4 % on 2015-06-20
A1C_LAST = "Observation/d893c882-91af-5d97-9d17-396be4423115"  # 6.5 % on 2023-10-03, ALICE's last HbA1c
PATIENT_ALICE = f"Patient/{ALICE}"


def _task(tid: str = "a1c", patient: str | None = ALICE, question: str = "What was her last HbA1c?") -> Task:
    return Task(id=tid, patient=patient, category="observation_latest", question=question, as_of=AS_OF,
                answer=QuantityGold(value=6.5, unit="%", tolerance=0.05), gold_refs=[A1C_LAST])


def _record(task: Task, answer: str, *, verified: bool, solver: str = "agent",
            evidence: list[str] | None = None) -> ResultRecord:
    """A results record as a run would have written it, with a stored verdict."""
    res = AnswerResult(answer=answer, citations=[], verified=verified,
                       evidence_refs=[PATIENT_ALICE, A1C_2015, A1C_LAST] if evidence is None else evidence)
    return record_for(task, res, solver=solver, model="m", seconds=1.0, model_spec="m")


WRONG = f"The last HbA1c was 7.4 % [{A1C_2015}]."
RIGHT = f"The last HbA1c was 6.5 % on 2023-10-03 [{A1C_LAST}]."


def test_wrong_latest_stored_as_verified_becomes_unverified_naming_the_later_reading(fixture_store):
    tw, tr = _task("wrong"), _task("right")
    old = [_record(tw, WRONG, verified=True), _record(tr, RIGHT, verified=True)]
    assert all(r.verified for r in old) and not old[0].correct and old[1].correct
    new = {r.task_id: r for r in rescore([tw, tr], old, store=fixture_store)}
    bad, good = new["wrong"], new["right"]
    assert not bad.verified and bad.verified_note == "rechecked"
    assert bad.unsupported == [WRONG]
    reason = bad.unsupported_reasons[0]
    assert "later" in reason and "6.5 %" in reason and "2023-10-03" in reason and A1C_LAST in reason
    assert bad.scores.citations.n_unsupported == 1 and not bad.scores.citations.verified
    assert good.verified and good.verified_note == "rechecked" and not good.unsupported
    # the answer text and the correctness verdict are not touched by the recheck
    assert bad.answer == WRONG and not bad.correct and good.correct


def test_stored_unverified_right_answer_can_become_verified(fixture_store):
    t = _task()
    new = rescore([t], [_record(t, RIGHT, verified=False)], store=fixture_store)
    assert new[0].verified and new[0].unsupported == [] and new[0].unsupported_reasons == []


def test_marks_of_an_earlier_check_are_not_part_of_the_answer(fixture_store):
    marked = f"{RIGHT} [unsupported: the record has 3, not 2]\nNo more. [unsupported]"
    assert strip_marks(marked) == f"{RIGHT}\nNo more."
    t = _task()
    new = rescore([t], [_record(t, f"{RIGHT} [unsupported: the record has 3, not 2]", verified=False)],
                  store=fixture_store)
    assert new[0].verified, new[0].unsupported_reasons


def test_a_ref_the_agent_never_read_fails_the_recheck(fixture_store):
    t = _task()
    new = rescore([t], [_record(t, RIGHT, verified=True, evidence=[PATIENT_ALICE])], store=fixture_store)
    assert not new[0].verified
    assert "was not returned by any tool" in new[0].unsupported_reasons[0]


def test_without_store_or_patient_the_stored_verdict_is_kept(fixture_store):
    t = _task()
    kept = rescore([t], [_record(t, WRONG, verified=True)])
    assert kept[0].verified and "no --store" in kept[0].verified_note
    failed = _record(t, "", verified=False)
    failed.error = "timeout after 5 s"
    out = rescore([t], [failed], store=fixture_store)
    assert not out[0].verified and "error" in out[0].verified_note


def test_full_context_answers_are_checked_against_what_they_cite(fixture_store):
    """The baseline had the whole record in its prompt: its evidence is the patient's rows it cites."""
    t = _task()
    bob_obs = PatientSession(fixture_store, BOB, AS_OF).of_type("Observation")[0]
    bob_ref = f"Observation/{bob_obs['id']}"
    recs = [
        _record(_task("fc-right"), RIGHT, verified=False, solver="full-context", evidence=[]),
        _record(_task("fc-wrong"), WRONG, verified=False, solver="full-context", evidence=[]),
        _record(_task("fc-uncited"), "The last HbA1c was 6.5 % on 2023-10-03.", verified=False,
                solver="full-context", evidence=[]),
        _record(_task("fc-other"), f"The last HbA1c was 6.5 % [{bob_ref}].", verified=False, solver="full-context",
                evidence=[]),
    ]
    new = {r.task_id: r for r in rescore([_task(r.task_id) for r in recs], recs, store=fixture_store)}
    assert t.patient == ALICE
    assert new["fc-right"].verified
    assert not new["fc-wrong"].verified and "2023-10-03" in new["fc-wrong"].unsupported_reasons[0]
    assert not new["fc-uncited"].verified and "without a citation" in new["fc-uncited"].unsupported_reasons[0]
    assert not new["fc-other"].verified  # another patient's row never backs a claim


def test_old_results_lines_without_the_new_fields_still_load(tmp_path):
    t = _task()
    line = json.loads(_record(t, RIGHT, verified=True).model_dump_json())
    for k in ("unsupported_reasons", "verified_note", "model_spec"):
        line.pop(k)
    p = tmp_path / "old.jsonl"
    p.write_text(json.dumps(line) + "\n")
    recs = read_results(p)
    assert len(recs) == 1 and recs[0].unsupported_reasons == [] and recs[0].verified_note == ""


def test_cli_rescore_with_store_prints_the_table_before_and_after(fixture_store, tmp_path, capsys):
    from ehr_agent.agent.cli import main

    tw, tr = _task("wrong"), _task("right")
    tasks_file, results, out = tmp_path / "tasks.jsonl", tmp_path / "r.jsonl", tmp_path / "new.jsonl"
    write_tasks(tasks_file, [tw, tr])
    results.write_text("".join(_record(t, a, verified=True).model_dump_json() + "\n"
                               for t, a in ((tw, WRONG), (tr, RIGHT))))
    rc = main(["eval", "rescore", str(tasks_file), str(results), "--out", str(out),
               "--store", str(fixture_store.directory)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "rechecked 2 record(s)" in text
    assert "before: verified right 1, verified wrong 1" in text and "precision of verified 50.0%" in text
    assert "after : verified right 1, verified wrong 0, unverified right 0, unverified wrong 1" in text
    assert "precision of verified 100.0%" in text
    assert {r.task_id: r.verified for r in read_results(out)} == {"wrong": False, "right": True}


def test_cli_rescore_refuses_a_missing_store_and_overwriting(tmp_path, capsys):
    from ehr_agent.agent.cli import main

    t = _task()
    tasks_file, results = tmp_path / "tasks.jsonl", tmp_path / "r.jsonl"
    write_tasks(tasks_file, [t])
    results.write_text(_record(t, RIGHT, verified=True).model_dump_json() + "\n")
    assert main(["eval", "rescore", str(tasks_file), str(results), "--out", str(tmp_path / "n.jsonl"),
                 "--store", str(tmp_path / "nowhere")]) == 2
    assert "--store" in capsys.readouterr().err
    assert main(["eval", "rescore", str(tasks_file), str(results), "--out", str(results)]) == 2
    assert "--out" in capsys.readouterr().err
    assert results.read_text().count("\n") == 1


# ---- the 2x2 table and the report ------------------------------------------------------------------


def _crafted() -> list[ResultRecord]:
    """6 verified right, 2 verified wrong, 1 unverified right, 3 unverified wrong."""
    cells = [(True, True)] * 6 + [(True, False)] * 2 + [(False, True)] + [(False, False)] * 3
    out = []
    for i, (verified, right) in enumerate(cells):
        t = Task(id=f"t{i}", patient=ALICE, category="c", question=f"What was the value {i}?", as_of=AS_OF,
                 answer=QuantityGold(value=10 + i, unit="mg"))
        v = 10 + i if right else 99
        res = AnswerResult(answer=f"It was {v} mg | odd <b>text</b> [Observation/x{i}].",
                           citations=[f"Observation/x{i}"], verified=verified)
        out.append(record_for(t, res, solver="agent", model="m", seconds=1.0, model_spec="m"))
    return out


def test_verified_table_counts_precision_and_coverage():
    recs = _crafted()
    t = verified_table("agent / m", recs)
    assert (t.verified_right, t.verified_wrong, t.unverified_right, t.unverified_wrong) == (6, 2, 1, 3)
    assert t.n == 12
    assert t.precision == pytest.approx(0.75)
    assert t.coverage == pytest.approx(6 / 7)
    # Wilson 95% interval for 6 of 8 (published value: 0.409 to 0.929)
    assert t.precision_ci == pytest.approx((0.4093, 0.9285), abs=5e-4)
    assert t.precision_ci == wilson_interval(6, 8)
    assert [r.task_id for r in wrong_but_verified(recs)] == ["t6", "t7"]


def test_verified_table_without_verified_answers_has_no_precision():
    t = verified_table("g", [r for r in _crafted() if not r.verified])
    assert t.precision is None and t.precision_ci == (0.0, 1.0) and t.coverage == 0.0


def test_report_shows_the_table_and_lists_wrong_but_verified(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text("".join(r.model_dump_json() + "\n" for r in _crafted()))
    files = write_report([p], tmp_path / "rep")
    md = files["markdown"].read_text()
    assert "## Verified vs right" in md
    assert "| agent / m | 12 | 6 | 2 | 1 | 3 | 75.0% | 41%-93% | 85.7% | 0 of 12 |" in md
    assert "### agent / m: 2 wrong but verified" in md
    wrong_part = md.split("## Wrong but verified", 1)[1].split("## Why answers were wrong", 1)[0]
    for i in (6, 7):
        assert f"`t{i}`" in wrong_part and f"What was the value {i}?" in wrong_part
        assert f"**Gold:** {10 + i} mg" in wrong_part and f"**Cites:** Observation/x{i}" in wrong_part
    assert "It was 99 mg" in wrong_part and "`t0`" not in wrong_part
    page = files["html"].read_text()
    assert "<h2>Verified vs right</h2>" in page and "2 wrong but verified" in page
    assert "&lt;b&gt;text&lt;/b&gt;" in page and "<b>text</b>" not in page


def test_cohort_answers_are_rechecked_by_running_their_queries_again(fixture_store):
    """A cohort answer's cited count must be one the run made (its evidence) and equal a fresh count."""
    import re as _re

    from ehr_agent.tools.cohort_tools import CohortSession

    out = CohortSession(fixture_store).call("cohort_count", {"what": "flu shot", "count": "patients"})
    key = _re.search(r"\[((?:query|patients):[^\]]+)\]", out.text).group(1)
    n = CohortSession(fixture_store).recount(key)
    cohort = _task("cohort", patient=None, question="How many patients had a flu shot?")
    right = _record(cohort, f"{n} patients [{key}].", verified=False, evidence=[key])
    wrong = _record(cohort, f"{n + 1} patients [{key}].", verified=True, evidence=[key])
    never = _record(cohort, f"{n} patients [{key}].", verified=True, evidence=[])
    got = rescore([cohort], [right], store=fixture_store) + rescore([cohort], [wrong], store=fixture_store) \
        + rescore([cohort], [never], store=fixture_store)
    assert [g.verified for g in got] == [True, False, False], [g.unsupported_reasons for g in got]
