"""Reports over results files: Markdown and HTML with PNG plots (matplotlib, Agg backend).

Results are grouped by (solver, model), so one report can compare the agent with the full-context
baseline, or two models, when their results files are passed together.
"""

from __future__ import annotations

import html
import json
import statistics
from collections import defaultdict
from itertools import zip_longest
from pathlib import Path

from .runlog import read_header
from .runner import ResultRecord
from .stats import (FailureStats, GroupStats, PairedStats, VerifiedTable, failure_stats, group_stats, load_groups,
                    paired_stats, verified_table, wrong_but_verified)


def _plots(groups: dict[str, list[ResultRecord]], stats: list[GroupStats], out: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files: list[tuple[str, str]] = []
    cats = sorted({c for s in stats for c in s.by_category})
    width = 0.8 / max(1, len(stats))

    fig, ax = plt.subplots(figsize=(max(6, len(cats) * 0.8), 4))
    for i, s in enumerate(stats):
        xs = [j + i * width for j in range(len(cats))]
        ax.bar(xs, [s.by_category.get(c, (0, 0.0))[1] for c in cats], width, label=s.label)
    ax.set_xticks([j + width * (len(stats) - 1) / 2 for j in range(len(cats))], cats, rotation=45, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy by category")
    ax.legend(fontsize="small")
    files.append(("Accuracy by category", _save(fig, out / "accuracy_by_category.png")))

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, recs in groups.items():
        by: dict[str, list[ResultRecord]] = defaultdict(list)
        for r in recs:
            by[r.category].append(r)
        xs = [statistics.fmean(r.prompt_tokens + r.completion_tokens for r in rs) for rs in by.values()]
        ys = [sum(r.correct for r in rs) / len(rs) for rs in by.values()]
        ax.scatter(xs, ys, label=label)
    ax.set_xlabel("mean tokens per task (prompt + completion), per category")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Tokens vs accuracy")
    ax.legend(fontsize="small")
    files.append(("Tokens vs accuracy", _save(fig, out / "tokens_vs_accuracy.png")))

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, recs in groups.items():
        ax.hist([r.seconds for r in recs], bins=30, alpha=0.6, label=label)
    ax.set_xlabel("seconds per task")
    ax.set_ylabel("tasks")
    ax.set_title("Latency")
    ax.legend(fontsize="small")
    files.append(("Latency distribution", _save(fig, out / "latency.png")))

    fig, ax = plt.subplots(figsize=(6, 4))
    metrics = ["verified", "grounded citations", "has unsupported"]
    for i, s in enumerate(stats):
        ax.bar([j + i * width for j in range(3)], [s.verified_rate, s.grounded, s.unsupported_rate], width,
               label=s.label)
    ax.set_xticks([j + width * (len(stats) - 1) / 2 for j in range(3)], metrics)
    ax.set_ylim(0, 1)
    ax.set_title("Citation validity")
    ax.legend(fontsize="small")
    files.append(("Citation validity", _save(fig, out / "citations.png")))

    solvers = {r.solver for recs in groups.values() for r in recs}
    if len(solvers) > 1:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(max(9, len(cats) * 1.0), 4))
        for i, s in enumerate(stats):
            xs = [j + i * width for j in range(len(cats))]
            a1.bar(xs, [s.by_category.get(c, (0, 0.0))[1] for c in cats], width, label=s.label)
        a1.set_xticks([j + width * (len(stats) - 1) / 2 for j in range(len(cats))], cats, rotation=45, ha="right")
        a1.set_ylim(0, 1)
        a1.set_title("Accuracy by category")
        a2.boxplot([[r.prompt_tokens for r in recs] for recs in groups.values()])
        a2.set_xticks(range(1, len(groups) + 1), list(groups), rotation=20, ha="right", fontsize="small")
        a2.set_title("Prompt tokens per task")
        a1.legend(fontsize="small")
        files.append(("Solver comparison", _save(fig, out / "solver_comparison.png")))
    return files


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path.name


def _fmt(x: float | None, pct: bool = True) -> str:
    if x is None:
        return "-"
    return f"{x:.1%}" if pct else f"{x:,.1f}"


def _tables(stats: list[GroupStats]) -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
    head = ["solver / model", "tasks", "accuracy", "95% CI", "mean score", "errors", "prompt tok (mean)",
            "prompt tok (median)", "completion tok", "median s", "p90 s", "retrieval recall", "retrieval precision",
            "verified", "grounded cites"]
    rows = [[s.label, str(s.n), _fmt(s.accuracy), f"{s.accuracy_ci[0]:.0%}-{s.accuracy_ci[1]:.0%}",
             _fmt(s.mean_score), str(s.errors), _fmt(s.prompt_tokens, False), _fmt(s.prompt_tokens_median, False),
             _fmt(s.completion_tokens, False), f"{s.seconds_median:.2f}", f"{s.seconds_p90:.2f}",
             _fmt(s.retrieval_recall), _fmt(s.retrieval_precision), _fmt(s.verified_rate), _fmt(s.grounded)]
            for s in stats]
    cats = sorted({c for s in stats for c in s.by_category})
    chead = ["category"] + [s.label for s in stats]
    crows = [[c] + [(f"{s.by_category[c][1]:.1%} (n={s.by_category[c][0]})" if c in s.by_category else "-")
                    for s in stats] for c in cats]
    return head, rows, chead, crows


def _failure_table(fails: list[FailureStats]) -> tuple[list[str], list[list[str]]]:
    head = ["solver / model", "wrong", "gave up, answer was read", "gave up, answer not read",
            "wrong value, answer was read", "wrong value, answer not read", "errors"]
    rows = [[f.label, str(f.wrong), str(f.gave_up_read), str(f.gave_up_not_read), str(f.wrong_read),
             str(f.wrong_not_read), str(f.errors)] for f in fails]
    return head, rows


def _paired_table(pairs: list[PairedStats]) -> tuple[list[str], list[list[str]]]:
    head = ["A", "B", "common tasks", "accuracy A", "accuracy B", "both right", "only A", "only B", "neither",
            "McNemar p", "median prompt tok A", "median prompt tok B"]
    rows = [[p.a, p.b, str(p.n), _fmt(p.accuracy_a), _fmt(p.accuracy_b), str(p.both), str(p.only_a),
             str(p.only_b), str(p.neither), f"{p.p_value:.3g}", _fmt(p.prompt_tokens_median_a, False),
             _fmt(p.prompt_tokens_median_b, False)] for p in pairs]
    return head, rows


def _verified_table(tables: list[VerifiedTable],
                    groups: dict[str, list[ResultRecord]]) -> tuple[list[str], list[list[str]]]:
    head = ["solver / model", "tasks", "verified, right", "verified, wrong", "unverified, right", "unverified, wrong",
            "precision of verified", "95% CI", "right answers verified", "verdicts rechecked"]
    rows = []
    for t in tables:
        recs = groups[t.label]
        rechecked = sum(r.verified_note == "rechecked" for r in recs)
        rows.append([t.label, str(t.n), str(t.verified_right), str(t.verified_wrong), str(t.unverified_right),
                     str(t.unverified_wrong), _fmt(t.precision), f"{t.precision_ci[0]:.0%}-{t.precision_ci[1]:.0%}"
                     if t.precision is not None else "-", _fmt(t.coverage), f"{rechecked} of {len(recs)}"])
    return head, rows


_WRONG_VERIFIED_NOTE = "Answers that passed every check and are wrong: the next hole in the checks."
_VERIFIED_NOTE = ("\"Verified\": code checked every cited claim (citation check and claim checks). Precision of "
                  "verified: right answers among the verified ones (Wilson 95% interval). Right answers verified: "
                  "the share of right answers that carry the mark. \"Verdicts rechecked\": recomputed by `eval rescore "
                  "--store` with the current checks; the others are the verdicts given at run time.")


def _one_line(text: str, limit: int = 400) -> str:
    """A field on one line (answers span lines), cut at ``limit`` characters."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _wrong_verified_md(groups: dict[str, list[ResultRecord]]) -> list[str]:
    out: list[str] = []
    for label, recs in groups.items():
        bad = wrong_but_verified(recs)
        out += [f"### {label}: {len(bad)} wrong but verified", ""]
        for r in bad:
            cites = ", ".join(r.citations) or "none"
            out.append(f"- `{r.task_id}` ({r.category}). **Question:** {_one_line(r.question)} **Gold:** "
                       f"{_one_line(r.gold)} **Answer:** {_one_line(r.answer)} **Cites:** {cites}")
        out.append("")
    return out


def _wrong_verified_html(groups: dict[str, list[ResultRecord]]) -> list[str]:
    e = html.escape
    out: list[str] = []
    for label, recs in groups.items():
        bad = wrong_but_verified(recs)
        out.append(f"<h3>{e(label)}: {len(bad)} wrong but verified</h3><ul>")
        for r in bad:
            cites = ", ".join(r.citations) or "none"
            out.append(f"<li><code>{e(r.task_id)}</code> ({e(r.category)}). "
                       f"<b>Question:</b> {e(_one_line(r.question))} "
                       f"<b>Gold:</b> {e(_one_line(r.gold))} <b>Answer:</b> {e(_one_line(r.answer))} "
                       f"<b>Cites:</b> {e(cites)}</li>")
        out.append("</ul>")
    return out


_WRONG_NOTE = ("Every wrong answer with its question, gold and trajectory (model turns, tool calls with their "
               "arguments and what they returned, the check's verdict). Files written before trajectories were "
               "recorded show the tool calls only.")


def _runs(paths: list[str | Path]) -> tuple[list[str], list[list[str]]]:
    """One row per results file: how its run was made (from the header; '-' for a file without one)."""
    head = ["file", "started", "solver", "model spec", "commit", "version", "task file sha256", "notes"]
    rows = []
    for p in paths:
        h = read_header(p)
        if h is None:
            rows.append([str(p), "-", "-", "-", "-", "-", "-", "no header (written before run headers)"])
            continue
        commit = (h.git_commit or "-")[:10] + (" (dirty)" if h.git_dirty else "")
        notes = "; ".join(f"{n.get('op', 'note')} {n.get('at', '')}".strip() for n in h.notes)
        rows.append([str(p), h.started_at or "-", h.solver or "-", h.model_spec or "-", commit,
                     h.package_version or "-", (h.task_sha256 or "-")[:16], notes])
    return head, rows


def _pre(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"


def _step_html(item: dict) -> str:
    """One trajectory item as an HTML list entry."""
    e = html.escape
    kind = item.get("type", "?")
    cut = f" (cut from {item['chars']} characters)" if item.get("chars") else ""
    if kind == "model":
        label = "model (history)" if item.get("kind") == "history" else f"model, step {item.get('step', '?')}"
        tokens = (f", {item['prompt_tokens']} prompt + {item['completion_tokens']} completion tokens"
                  if "prompt_tokens" in item else "")
        calls = "".join(f"<li><code>{e(str(c.get('name')))}({e(json.dumps(c.get('arguments'), ensure_ascii=False))})"
                        f"</code></li>" for c in item.get("tool_calls") or [])
        return (f"<li><b>{e(label)}</b>{e(tokens + cut)}{_pre(item.get('text', '')) if item.get('text') else ''}"
                + (f"<ul>{calls}</ul>" if calls else "") + "</li>")
    if kind == "tool":
        flags = [f"{item['rows']} rows" if "rows" in item else "", "refused" if item.get("refused") else "",
                 "error" if item.get("error") else "", "prefetch" if item.get("prefetch") else "",
                 f"{item['seconds']} s" if "seconds" in item else ""]
        meta = ", ".join(f for f in flags if f)
        return (f"<li><b>tool</b> <code>{e(str(item.get('name')))}("
                f"{e(json.dumps(item.get('arguments'), ensure_ascii=False))})</code> {e(meta + cut)}"
                f"{_pre(item['text']) if item.get('text') else ''}</li>")
    if kind == "check":
        bad = "".join(f"<li>{e(u)}{(': ' + e(r)) if r else ''}</li>" for u, r in
                      zip_longest(item.get("unsupported") or [], item.get("unsupported_reasons") or [], fillvalue="")
                      if u)
        return (f"<li><b>check</b>: {'verified' if item.get('verified') else 'not verified'}, "
                f"{item.get('repairs', 0)} repair(s), cites {e(', '.join(item.get('citations') or []) or 'none')}"
                + (f"<ul>{bad}</ul>" if bad else "") + "</li>")
    label = f"{kind} ({item['kind']})" if item.get("kind") else kind
    return f"<li><b>{e(label)}</b>{e(cut)}{_pre(item.get('text', ''))}</li>"


def _wrong_html(groups: dict[str, list[ResultRecord]]) -> list[str]:
    """A collapsible block per wrong answer: question, gold, answer and trajectory."""
    e = html.escape
    out: list[str] = []
    for label, recs in groups.items():
        wrong = [r for r in recs if not r.correct]
        out.append(f"<h3>{e(label)}: {len(wrong)} wrong</h3>")
        for r in wrong:
            if r.trajectory:
                steps = "".join(_step_html(i) for i in r.trajectory)
            elif r.tool_calls:  # an older record: the calls without what they returned
                steps = "".join(_step_html({"type": "tool", **c}) for c in r.tool_calls)
            else:
                steps = "<li>no trajectory recorded</li>"
            verdict = "verified" if r.verified else "not verified"
            err = f" <b>Error:</b> {e(r.error)}" if r.error else ""
            out.append(
                f"<details class='wrong'><summary><code>{e(r.task_id)}</code> ({e(r.category)}) "
                f"{e(_one_line(r.question, 160))}</summary>"
                f"<p><b>Question:</b> {e(r.question)}</p><p><b>Gold:</b> {e(r.gold)}</p>"
                f"<p><b>Answer</b> ({verdict}, {r.steps} steps, {r.seconds:.1f} s):{err}</p>{_pre(r.answer)}"
                f"<p><b>Trajectory</b></p><ol>{steps}</ol></details>")
    return out


def write_report(paths: list[str | Path], out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and PNG plots into ``out_dir``; returns the files written."""
    groups = load_groups(paths)
    if not groups:
        raise ValueError("no results in " + ", ".join(str(p) for p in paths))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stats = [group_stats(k, v) for k, v in groups.items()]
    plots = _plots(groups, stats, out)
    head, rows, chead, crows = _tables(stats)
    phead, prows = _paired_table(paired_stats(groups))
    fhead, frows = _failure_table([failure_stats(k, v) for k, v in groups.items()])
    vhead, vrows = _verified_table([verified_table(k, v) for k, v in groups.items()], groups)
    rhead, rrows = _runs(paths)

    def md_table(h: list[str], rs: list[list[str]]) -> str:
        lines = ["| " + " | ".join(h) + " |", "|" + "---|" * len(h)]
        lines += ["| " + " | ".join(r) + " |" for r in rs]
        return "\n".join(lines)

    md = ["# Evaluation report", "", "Sources: " + ", ".join(f"`{p}`" for p in paths), "", "## Runs", "",
          md_table(rhead, rrows), "", "## Overall", "", md_table(head, rows), ""]
    if prows:
        md += ["## Paired comparison on common tasks", "", md_table(phead, prows), ""]
    md += ["## Verified vs right", "", _VERIFIED_NOTE, "", md_table(vhead, vrows), "",
           "## Wrong but verified", "", _WRONG_VERIFIED_NOTE, ""]
    md += _wrong_verified_md(groups)
    md += ["## Why answers were wrong", "", "\"Read\": every gold resource was among what the solver saw "
           "(tool results, or the packed prompt).", "", md_table(fhead, frows), "",
           "## Accuracy by category (table)", "", md_table(chead, crows), ""]
    for title, f in plots:
        md += [f"## {title}", "", f"![{title}]({f})", ""]
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")

    def html_table(h: list[str], rs: list[list[str]]) -> str:
        th = "".join(f"<th>{html.escape(x)}</th>" for x in h)
        trs = "".join("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in r) + "</tr>" for r in rs)
        return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"

    body = [f"<h1>Evaluation report</h1><p>Sources: {html.escape(', '.join(str(p) for p in paths))}</p>",
            "<h2>Runs</h2>", html_table(rhead, rrows), "<h2>Overall</h2>", html_table(head, rows)]
    if prows:
        body += ["<h2>Paired comparison on common tasks</h2>", html_table(phead, prows)]
    body += ["<h2>Verified vs right</h2>", f"<p>{html.escape(_VERIFIED_NOTE)}</p>", html_table(vhead, vrows),
             f"<h2>Wrong but verified</h2><p>{html.escape(_WRONG_VERIFIED_NOTE)}</p>"]
    body += _wrong_verified_html(groups)
    body += ["<h2>Why answers were wrong</h2>", html_table(fhead, frows),
             "<h2>Accuracy by category (table)</h2>", html_table(chead, crows)]
    body += [f"<h2>{html.escape(t)}</h2><img src='{html.escape(f)}' alt='{html.escape(t)}'>" for t, f in plots]
    body += [f"<h2>Wrong answers</h2><p>{html.escape(_WRONG_NOTE)}</p>"] + _wrong_html(groups)
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child{text-align:left}"
             "details{margin:.3em 0}pre{white-space:pre-wrap;background:#f6f6f6;padding:4px;max-height:24em;"
             "overflow:auto}")
    (out / "report.html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>Evaluation report</title><style>{style}</style>"
        f"</head><body>{''.join(body)}</body></html>", encoding="utf-8")
    files = {"markdown": out / "report.md", "html": out / "report.html"}
    files.update({f: out / f for _, f in plots})
    return files
