"""``ehr-agent eval``: generate tasks, adapt other benchmarks, sample, run a solver, report.

    ehr-agent eval generate --store DIR --out tasks.jsonl [--patients ID ...] [--per-patient N] [--seed S]
    ehr-agent eval generate-lay --store DIR --out lay.jsonl [--set patients|handwritten|cohort] [--seed S]
    ehr-agent eval sample tasks.jsonl --per-category N --out sample.jsonl [--seed S] [--exclude-category C] [--interleave]
    ehr-agent eval adapt {fhir-agentbench,medagentbench} FILE --out tasks.jsonl
    ehr-agent eval run tasks.jsonl --store DIR --model SPEC --out results.jsonl
                      [--solver agent|full-context|gold] [--concurrency N] [--limit N] [--timeout S]
                      [--allow-mismatch]
    ehr-agent eval rescore tasks.jsonl results.jsonl --out rescored.jsonl [--store DIR|URL]
    ehr-agent eval report results.jsonl [more.jsonl ...] --out DIR
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, not {v}")
    return v


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, not {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError("the timeout must be positive")
    return v


def register(subparsers) -> None:
    """Add ``eval`` and its subcommands."""
    p = subparsers.add_parser("eval", help="evaluation: generate tasks, run a solver, report",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="eval_command", metavar="SUBCOMMAND")
    sub.required = True

    g = sub.add_parser("generate", help="compute tasks with gold answers from a store's raw FHIR resources")
    g.add_argument("--store", required=True, help="store directory or FHIR server base URL")
    g.add_argument("--out", required=True, help="task file to write (JSON Lines)")
    g.add_argument("--patients", nargs="+", default=None, help="patient ids (default: every patient)")
    g.add_argument("--per-patient", type=_positive, default=10, help="tasks per patient (default 10)")
    g.add_argument("--cohort", type=int, default=20, help="cohort (cross-patient) tasks, 0 for none (default 20)")
    g.add_argument("--seed", type=int, default=0)
    g.set_defaults(func=cmd_generate)

    gl = sub.add_parser("generate-lay", help="questions as people type them (lay names, pronouns), gold from the "
                                             "raw FHIR resources; see docs/evaluation.md")
    gl.add_argument("--store", required=True, help="store directory or FHIR server base URL")
    gl.add_argument("--out", required=True, help="task file to write (JSON Lines)")
    gl.add_argument("--set", dest="task_set", choices=["patients", "handwritten", "cohort"], default="patients",
                    help="patients: generated patient questions (sample them with 'eval sample'); handwritten: the "
                         "hand-written questions over synthea-blaze-120; cohort: population questions (default patients)")
    gl.add_argument("--seed", type=int, default=0)
    gl.add_argument("--per-kind", type=_positive, default=8, help="cohort questions per kind (--set cohort; default 8)")
    gl.set_defaults(func=cmd_generate_lay)

    s = sub.add_parser("sample", help="stratified sample: N tasks per category")
    s.add_argument("tasks", help="task file")
    s.add_argument("--per-category", type=_positive, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--exclude-category", action="append", default=[], metavar="CATEGORY",
                   help="leave this category out (repeatable), e.g. cohort for a patient-scoped solver")
    s.add_argument("--interleave", action="store_true",
                   help="order the sample round-robin over categories, so a partial run stays stratified")
    s.set_defaults(func=cmd_sample)

    a = sub.add_parser("adapt", help="convert a FHIR-AgentBench CSV or MedAgentBench JSON into a task file")
    a.add_argument("format", choices=["fhir-agentbench", "medagentbench"])
    a.add_argument("file")
    a.add_argument("--out", required=True)
    a.set_defaults(func=cmd_adapt)

    r = sub.add_parser("run", help="answer tasks with a solver and score them (resumable)")
    r.add_argument("tasks", help="task file")
    r.add_argument("--store", required=True, help="store directory or FHIR server base URL")
    r.add_argument("--model", default=None,
                   help="model spec (default $EHR_AGENT_MODEL or embedded); 'scripted-gold' replays the gold "
                        "answer through the agent, to measure graph and tool overhead")
    r.add_argument("--out", required=True, help="results file (JSON Lines; tasks already in it are skipped)")
    r.add_argument("--solver", choices=["agent", "full-context", "gold"], default="agent")
    r.add_argument("--concurrency", type=_positive, default=2)
    r.add_argument("--limit", type=_positive, default=None, help="run at most N tasks not yet in the results")
    r.add_argument("--timeout", type=_seconds, default=None, help="seconds allowed per task")
    r.add_argument("--context-tokens", type=_positive, default=8192,
                   help="model window for --solver full-context (default 8192)")
    r.add_argument("--tokenizer", default=None,
                   help="tokenizer (directory or tokenizer.json) for exact full-context budgets (default: estimate)")
    r.add_argument("--judge", action="append", default=None, metavar="SPEC",
                   help="LLM-judge model spec for free-text answers; give it at least twice (a panel of "
                        "different models; off by default)")
    r.add_argument("--judge-votes", type=_positive, default=2, help="votes per judge model (default 2)")
    r.add_argument("--allow-mismatch", action="store_true",
                   help="resume into a results file started with other settings, model spec, solver or task file "
                        "(refused by default; the resume line records what differs)")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_run)

    rs = sub.add_parser("rescore", help="score a results file again with the current scorers and, given --store, "
                                        "the current citation and claim checks (no model run)")
    rs.add_argument("tasks", help="task file the results were run on")
    rs.add_argument("results")
    rs.add_argument("--out", required=True, help="new results file")
    rs.add_argument("--store", default=None,
                    help="store directory or FHIR server base URL the results were run on: recompute 'verified' "
                         "and 'unsupported' against it (without it the stored verdict is kept)")
    rs.set_defaults(func=cmd_rescore)

    rep = sub.add_parser("report", help="Markdown + HTML report with plots from results files")
    rep.add_argument("results", nargs="+")
    rep.add_argument("--out", required=True, help="output directory")
    rep.set_defaults(func=cmd_report)


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def cmd_generate(args) -> int:
    from ehr_agent.tools.store import open_store

    from .generator import generate_tasks
    from .tasks import write_tasks

    with open_store(args.store) as store:
        try:
            tasks = generate_tasks(store, patients=args.patients, per_patient=args.per_patient, seed=args.seed,
                                   cohort=args.cohort)
        except ValueError as e:
            return _fail(str(e))
    n = write_tasks(args.out, tasks)
    counts = Counter(t.category for t in tasks)
    print(f"wrote {n} tasks to {args.out}")
    for c, k in sorted(counts.items()):
        print(f"  {c:22s} {k}")
    return 0


def cmd_generate_lay(args) -> int:
    from ehr_agent.tools.store import open_store

    from .tasks import write_tasks

    with open_store(args.store) as store:
        try:
            if args.task_set == "handwritten":
                from .handwritten import handwritten_tasks

                tasks = handwritten_tasks(store)
            elif args.task_set == "cohort":
                from .gen_cohort_lay import generate_cohort_lay_tasks

                tasks = generate_cohort_lay_tasks(store, seed=args.seed, per_kind=args.per_kind)
            else:
                from .gen_lay import generate_lay_tasks

                tasks = generate_lay_tasks(store, seed=args.seed)
        except (ValueError, KeyError) as e:
            return _fail(str(e))
    n = write_tasks(args.out, tasks)
    print(f"wrote {n} {args.task_set} lay tasks to {args.out}")
    for c, k in sorted(Counter(t.category for t in tasks).items()):
        print(f"  {c:22s} {k}")
    return 0


def cmd_sample(args) -> int:
    from .sample import interleave_categories, stratified_sample
    from .tasks import TaskFileError, read_tasks, write_tasks

    try:
        tasks = read_tasks(args.tasks)
    except TaskFileError as e:
        return _fail(str(e))
    known = {t.category for t in tasks}
    unknown = sorted(set(args.exclude_category) - known)
    if unknown:
        return _fail(f"--exclude-category: no task has category {', '.join(unknown)} (categories: {', '.join(sorted(known))})")
    tasks = [t for t in tasks if t.category not in set(args.exclude_category)]
    picked = stratified_sample(tasks, args.per_category, args.seed)
    if args.interleave:
        picked = interleave_categories(picked)
    write_tasks(args.out, picked)
    print(f"wrote {len(picked)} of {len(tasks)} tasks ({len({t.category for t in picked})} categories) to {args.out}")
    return 0


def cmd_adapt(args) -> int:
    from .adapters import AdapterError, read_fhir_agentbench, read_medagentbench
    from .tasks import write_tasks

    try:
        tasks = (read_fhir_agentbench if args.format == "fhir-agentbench" else read_medagentbench)(args.file)
    except AdapterError as e:
        return _fail(str(e))
    write_tasks(args.out, tasks)
    print(f"wrote {len(tasks)} tasks to {args.out}")
    return 0


def cmd_run(args) -> int:
    from ehr_agent.agent.models.base import ModelError
    from ehr_agent.agent.models.factory import resolve_spec
    from ehr_agent.tools.retrieval.errors import RetrievalError
    from ehr_agent.tools.store import open_store
    from ehr_agent.tools.store.base import StoreError

    from .runlog import ResumeMismatch, make_header
    from .runner import run
    from .solvers import SolverError, make_solver, solver_model_name
    from .tasks import TaskFileError, check_patients, read_numbered_tasks

    try:
        numbered = read_numbered_tasks(args.tasks)
    except TaskFileError as e:
        return _fail(str(e))
    tasks = [t for _, t in numbered]
    settings = None
    if args.solver == "agent":
        from ehr_agent.agent.configuration import AgentSettings

        settings = AgentSettings()
    try:
        solver = make_solver(args.solver, args.model, settings=settings, context_tokens=args.context_tokens,
                             tokenizer=args.tokenizer)
    except (SolverError, ModelError, ValueError, RetrievalError) as e:
        return _fail(str(e))
    judge = None
    if args.judge:
        from ehr_agent.agent.models.factory import make_model

        from .judge import JudgePanel

        try:
            judge = JudgePanel([make_model(spec) for spec in args.judge], votes_per_model=args.judge_votes)
        except (ModelError, ValueError) as e:
            return _fail(f"judge panel: {e}")
    model_spec = "" if args.solver == "gold" else resolve_spec(args.model)
    model_name = solver_model_name(solver, model_spec)
    header = make_header(solver=solver.name, model=model_name, model_spec=model_spec, settings=settings,
                         task_file=args.tasks, tasks=len(tasks), store=args.store, concurrency=args.concurrency,
                         timeout=args.timeout, limit=args.limit, judge=args.judge)
    with open_store(args.store) as store:
        if any(t.patient is not None for t in tasks):
            try:
                check_patients(numbered, store.patient_ids(), args.tasks)
            except TaskFileError as e:
                return _fail(str(e))
            except StoreError as e:
                return _fail(f"cannot list the store's patients: {e}")
        try:
            summary = run(tasks, solver, store, args.out, progress=not args.quiet, model_name=model_name,
                          model_spec=model_spec, concurrency=args.concurrency, timeout=args.timeout, limit=args.limit,
                          judge=judge, header=header, allow_mismatch=args.allow_mismatch)
        except ResumeMismatch as e:
            return _fail(f"{args.out}: {e} (--allow-mismatch)")
    if summary.resume is not None and summary.resume.changed:
        changed = ", ".join(f"{k} {v[0]!r} -> {v[1]!r}" for k, v in summary.resume.changed.items())
        print(f"warning: resumed {args.out} with changes since it began: {changed}", file=sys.stderr)
    print(f"ran {summary.ran} task(s) ({summary.skipped} already in {args.out}): accuracy {summary.accuracy:.1%}, "
          f"{summary.errors} error(s), {summary.seconds:.1f} s, {summary.tasks_per_minute:.1f} tasks/min")
    return 0


def cmd_report(args) -> int:
    from .report import write_report

    try:
        files = write_report(args.results, args.out)
    except (FileNotFoundError, ValueError) as e:
        return _fail(str(e))
    print(f"wrote {files['markdown']} and {files['html']} (+{len(files) - 2} plots)")
    return 0


def cmd_rescore(args) -> int:
    from contextlib import nullcontext
    from pathlib import Path

    from .runlog import RunHeader, file_sha256, git_state, now, package_version, read_header
    from .runner import read_results, rescore
    from .stats import load_groups, verified_table
    from .tasks import TaskFileError, read_tasks

    try:
        tasks = read_tasks(args.tasks)
    except TaskFileError as e:
        return _fail(str(e))
    if not Path(args.results).is_file():
        return _fail(f"results file not found: {args.results}")
    if Path(args.out).resolve() == Path(args.results).resolve():
        return _fail("--out must not be the results file being rescored")
    if args.store is not None:
        from ehr_agent.tools.store import open_store
        from ehr_agent.tools.store.base import StoreError

        try:
            opened = open_store(args.store)
        except (StoreError, OSError, ValueError) as e:
            return _fail(f"--store {args.store}: {e}")
    else:
        opened = nullcontext(None)
    old = read_results(args.results)
    with opened as store:
        new = rescore(tasks, old, store=store)
    header = read_header(args.results)
    had_header = header is not None
    if header is None:  # a file from before headers: what its records say about the run
        first = old[0] if old else None
        header = RunHeader(solver=first.solver if first else "", model=first.model if first else "",
                           model_spec=first.model_spec if first else "")
    commit, _ = git_state()
    header.notes.append({"op": "rescore", "at": now(), "source": str(args.results), "had_header": had_header,
                         "task_file": str(args.tasks), "task_sha256": file_sha256(args.tasks), "store": args.store,
                         "package_version": package_version(), "git_commit": commit})
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(header.model_dump_json() + "\n")
        for r in new:
            f.write(r.model_dump_json() + "\n")
    kept_ids = {n.task_id for n in new}
    changed = sum(a.correct != b.correct for a, b in zip([o for o in old if o.task_id in kept_ids], new))
    acc = sum(r.correct for r in new) / len(new) if new else 0.0
    print(f"rescored {len(new)} record(s) ({len(old) - len(new)} without a task dropped): accuracy {acc:.1%}, "
          f"{changed} verdict(s) changed")
    if args.store is None:
        print("verified: stored verdicts kept (give --store to recompute them with the current checks)")
    else:
        rechecked = sum(r.verified_note == "rechecked" for r in new)
        print(f"verified: rechecked {rechecked} record(s), stored verdict kept for {len(new) - rechecked}")
    before = load_groups([args.results])
    after = load_groups([args.out])
    for label, recs in after.items():
        ids = {r.task_id for r in recs}
        for when, rs in (("before", [r for r in before.get(label, []) if r.task_id in ids]), ("after", recs)):
            t = verified_table(label, rs)
            lo, hi = t.precision_ci
            prec = "-" if t.precision is None else f"{t.precision:.1%} ({lo:.0%}-{hi:.0%})"
            cov = "-" if t.coverage is None else f"{t.coverage:.1%}"
            print(f"  {label} {when:6s}: verified right {t.verified_right}, verified wrong {t.verified_wrong}, "
                  f"unverified right {t.unverified_right}, unverified wrong {t.unverified_wrong}; "
                  f"precision of verified {prec}, right answers verified {cov}")
    return 0
