"""Retrieval benchmark on the shared Synthea data.

    python -m benchmarks.retrieval                 # indexing throughput, latency, recall@k, packing
    python -m benchmarks.retrieval --dev           # tuning run: DEV phrasings over synthea-smart-75
    python -m benchmarks.retrieval --token-table   # projected vs raw JSON tokens for every patient of 3 sets

The default run loads a size-stratified sample of synthea-blaze-120 patients plus every patient with an
allergy into a fresh embedded store, indexes them (lexical first, then dense, alternating patient by
patient with the bare embedder on the same rows, so the throughput ratio is measured under the same
load), asks the held-out questions (tools/retrieval/evalset.py: generated single-answer kinds and the
frozen type-intent / list phrasings) in four modes (hybrid; hybrid without the intent signal; lexical
only; dense only: the baselines in the same run), times ``ehr-agent retrieve`` in a fresh process on a
patient not yet indexed and again once it is, and packs contexts.  The last line printed is a one-line
JSON summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CONTEXT_128K = 131_072


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def blaze_sample(n: int, blaze: Path) -> list[Path]:
    """``n`` patient files spread evenly over the size distribution (small to large)."""
    files = sorted((p for p in blaze.glob("*.json.bz2") if not p.name.startswith("0-")), key=lambda p: (p.stat().st_size, p.name))
    if n >= len(files):
        return files
    step = (len(files) - 1) / max(1, n - 1)
    return [files[round(i * step)] for i in range(n)]


# --- token table ------------------------------------------------------------------------------------


def _patient_files(set_dir: Path) -> list[Path]:
    return sorted(p for p in set_dir.iterdir() if p.name.endswith((".json", ".json.bz2")) and not p.name.startswith("0-"))


def token_table(tokenizer: str | None = None) -> dict:
    """Per data set: projected-record and raw-JSON token counts of every patient."""
    from ehr_agent.tools.retrieval.budget import TokenCounter
    from ehr_agent.tools.retrieval.manifest import build_manifest
    from ehr_agent.tools.retrieval.memory_store import MemoryStore, read_bundle
    from ehr_agent.tools.retrieval.records import patient_record, render_rows

    counter = TokenCounter(tokenizer)
    out: dict = {"counting": counter.method, "sets": {}}
    for name in ("synthea-blaze-120", "synthea-smart-75", "synthea-spezi-8"):
        d = SHARED / name
        if not d.exists():
            continue
        shared = sorted(d.glob("0-*.json.bz2"))
        per: list[dict] = []
        for f in _patient_files(d):
            store = MemoryStore.from_files([*shared, f])
            raw_resources = [e["resource"] for e in read_bundle(f).get("entry", []) if e.get("resource")]
            raw = "\n".join(json.dumps(r, separators=(",", ":")) for r in raw_resources)
            pids = [r["id"] for r in raw_resources if r.get("resourceType") == "Patient"]
            if not pids:
                continue
            pid = pids[0]
            rec = patient_record(store, pid)
            rec_fin = patient_record(store, pid, include_financial=True)
            manifest = build_manifest(store, pid, record=rec).render()
            projected = counter.count(manifest + "\n\n" + render_rows(rec.rows))
            with_fin = counter.count(manifest + "\n\n" + render_rows(rec_fin.rows))
            fin_raw = "\n".join(json.dumps(r, separators=(",", ":")) for r in raw_resources
                                if r.get("resourceType") in ("Claim", "ExplanationOfBenefit"))
            per.append({"patient": pid, "resources": len(raw_resources), "rows": len(rec.rows), "raw": counter.count(raw),
                        "projected": projected, "projected_with_financial": with_fin, "raw_financial": counter.count(fin_raw)})
            print(f"  {name} {pid[:8]} raw {per[-1]['raw']:>9,} projected {projected:>8,}", file=sys.stderr)
        raw_t = [p["raw"] for p in per]
        proj_t = [p["projected"] for p in per]
        fin_t = [p["projected_with_financial"] for p in per]
        out["sets"][name] = {
            "patients": len(per),
            "raw_median": int(statistics.median(raw_t)), "raw_max": max(raw_t),
            "projected_median": int(statistics.median(proj_t)), "projected_max": max(proj_t),
            "projected_with_financial_median": int(statistics.median(fin_t)),
            "fit_128k_raw": sum(t <= CONTEXT_128K for t in raw_t),
            "fit_128k_projected": sum(t <= CONTEXT_128K for t in proj_t),
            "fit_128k_projected_with_financial": sum(t <= CONTEXT_128K for t in fin_t),
            "financial_share_of_raw": round(sum(p["raw_financial"] for p in per) / max(1, sum(raw_t)), 3),
            "per_patient": per,
        }
    return out


def print_token_table(result: dict) -> None:
    """Markdown table of :func:`token_table`'s result."""
    print(f"Token counts ({result['counting']}); 128K = {CONTEXT_128K:,} tokens\n")
    print("| set | patients | raw JSON median | raw JSON max | projected median | projected max | "
          "fit 128K raw | fit 128K projected | projected + Claim/EOB median | fit 128K with Claim/EOB | Claim/EOB share of raw |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, s in result["sets"].items():
        print(f"| {name} | {s['patients']} | {s['raw_median']:,} | {s['raw_max']:,} | {s['projected_median']:,} | "
              f"{s['projected_max']:,} | {s['fit_128k_raw']} | {s['fit_128k_projected']} | "
              f"{s['projected_with_financial_median']:,} | {s['fit_128k_projected_with_financial']} | "
              f"{s['financial_share_of_raw']:.0%} |")


# --- retrieval benchmark ----------------------------------------------------------------------------


def _raw(f: Path) -> bytes:
    import bz2

    return bz2.open(f).read() if f.name.endswith(".bz2") else f.read_bytes()


def allergy_files(set_dir: Path) -> list[Path]:
    """Patient files holding at least one AllergyIntolerance (the allergy questions need them all)."""
    out = []
    for f in _patient_files(set_dir):
        raw = _raw(f)
        if b'"AllergyIntolerance"' in raw and b'"entry"' in raw:  # a bundle (not search-expectations.json)
            out.append(f)
    return out


def patient_of(f: Path) -> str:
    """The Patient id a bundle file holds."""
    for e in json.loads(_raw(f)).get("entry", []):
        r = e.get("resource") or {}
        if r.get("resourceType") == "Patient":
            return r["id"]
    raise SystemExit(f"no Patient in {f}")


def sample_files(data_set: str, n_patients: int) -> list[Path]:
    """``n_patients`` of the set spread over sizes (the first ``n`` files for a non-blaze set), plus
    every patient with an allergy."""
    d = SHARED / data_set
    files = set(blaze_sample(n_patients, d)) if data_set == "synthea-blaze-120" else set(_patient_files(d)[:n_patients])
    return sorted(files | set(allergy_files(d)))


def _bare_embed(encoder, texts: list[str], batch_size: int) -> float:
    """Seconds the encoder alone takes for ``texts`` (one call, as a user of the model would make it)."""
    t = time.perf_counter()
    encoder.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    return time.perf_counter() - t


def _list_recall(gold: list[str], refs: list[str], k: int) -> float:
    """Share of the gold rows in the top k, out of as many as fit (a list of 30 can score 1.0 at k=20)."""
    return sum(g in refs[:k] for g in gold) / min(len(gold), k)


def _cli_seconds(store_dir: Path, index_dir: Path, patient: str, query: str) -> float:
    """Wall time of one ``ehr-agent retrieve`` in a fresh process (imports, model load, query)."""
    import subprocess

    cmd = [sys.executable, "-m", "ehr_agent.agent.cli", "retrieve", "--store", str(store_dir), "--index-dir", str(index_dir),
           "--patient", patient, "--json", "-k", "20", query]
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"ehr-agent retrieve failed: {done.stderr.strip()[-500:]}")
    return dt


def load_sample(data_set: str, files: list[Path], work: Path):
    """A fresh embedded store holding the shared resources of the set and ``files``; ``(store, dir)``."""
    from ehr_agent.tools.store.sqlite_store import SQLiteStore

    store_dir = work / "store"
    store = SQLiteStore(store_dir, create=True)
    summary = store.load([*sorted((SHARED / data_set).glob("0-*.json.bz2")), *files])
    if summary.refused:
        raise SystemExit(f"load refused files: {[f.path for f in summary.refused]}")
    return store, store_dir


def run_benchmark(n_patients: int, per_kind: int, k: int, seed: int, budget: int, *, dev: bool = False,
                  cli: bool = True, store_dir: str | None = None, index_dir: str | None = None,
                  throughput_patients: int = 4, only_modes: Sequence[str] | None = None) -> dict:
    """Index a blaze sample (timed against the bare embedder on the same rows), ask the held-out
    questions (generated single-answer kinds and type-intent / list kinds) in four modes, time the CLI,
    pack contexts.  ``dev`` asks the DEV phrasings over synthea-smart-75 instead (for tuning only)."""
    from ehr_agent.tools.retrieval.budget import TokenCounter, pack_context
    from ehr_agent.tools.retrieval.dense import embed_text
    from ehr_agent.tools.retrieval.evalset import DEV, HELD_OUT, generate_questions, intent_questions
    from ehr_agent.tools.retrieval.index import HybridIndex
    from ehr_agent.tools.retrieval.settings import RetrievalSettings

    from ehr_agent.tools.store.sqlite_store import SQLiteStore

    work = Path(tempfile.mkdtemp(prefix="ehr-retrieval-bench-"))
    data_set = "synthea-smart-75" if dev else "synthea-blaze-120"
    files = sample_files(data_set, n_patients)
    if store_dir:  # a store that already holds the whole set: ask about the sample's patients in it
        store, store_path = SQLiteStore(store_dir), Path(store_dir)
        indexed = [patient_of(f) for f in files]
        others = [p for p in store.patient_ids() if p not in set(indexed)]
    else:
        store, store_path = load_sample(data_set, files, work)
        indexed, others = store.patient_ids(), []
    settings = RetrievalSettings(progress=False)
    index_path = Path(index_dir) if index_dir else work / "index"
    if not others and cli:
        # A patient kept out of the index: the CLI's first retrieve on it is timed at the end.
        sizes = sorted((sum(1 for _ in store.everything_all(p)), p) for p in indexed)
        others = [sizes[len(sizes) // 2][1]]
        indexed = [p for p in indexed if p != others[0]]
    probe = HybridIndex(store, index_path, settings, dense=False)
    # Unindexed other patients, smallest first (by resources in their compartment).
    unindexed = sorted((p for p in others if not probe.is_indexed(p)),
                       key=lambda p: int((probe.data_version(p) or "|||0").split("|")[2]))
    probe.close()
    # The CLI's first retrieve is timed on a median-sized patient nobody indexed yet; throughput on
    # patients from the lower half (other patients of the store when there are, so a rerun over a kept
    # index still measures it; else the sample itself on a fresh index).
    fresh = unindexed.pop(len(unindexed) // 2) if cli and unindexed else (others[0] if cli and others else None)
    lower = unindexed[: max(1, len(unindexed) // 2)]
    step = max(1, len(lower) // max(1, throughput_patients))
    timed = lower[::step][:throughput_patients] if lower else []
    index_dir = index_path

    lex_index = HybridIndex(store, index_dir, settings, dense=False)
    t0 = time.perf_counter()
    rows_total = sum(lex_index.ensure_patient(p) for p in [*timed, *indexed])
    t_lex = time.perf_counter() - t0
    index = HybridIndex(store, index_dir, settings)
    for p in [*timed, *indexed]:  # records are read again by this object; keep that out of the embedding timing
        index.rows(p)
    t = time.perf_counter()
    encoder = index.dense.encoder
    t_model = time.perf_counter() - t
    if not timed:
        pending = [p for p in indexed if index.lexical.pending_dense(p, index.dense_name)]
        step = max(1, len(pending) // max(1, throughput_patients))
        timed = pending[::step][:throughput_patients]
    # Indexing and the bare encoder alternate patient by patient, so both see the same load on a shared
    # machine; the ratio is what the claim is about.
    t_dense = t_bare = 0.0
    distinct = timed_rows = 0
    for p in timed:
        texts = [embed_text(index.rows(p)[ref].text) for ref in index.lexical.pending_dense(p, index.dense_name)]
        timed_rows += len(texts)
        distinct += len(set(texts))
        t_bare += _bare_embed(encoder, texts, settings.batch_size)
        t = time.perf_counter()
        index.ensure_patient(p)
        t_dense += time.perf_counter() - t
    for p in indexed:
        index.ensure_patient(p)

    modes = {"hybrid": ("hybrid", True), "hybrid_no_intent": ("hybrid", False),
             "lexical": ("lexical", False), "dense": ("dense", False)}
    if only_modes:
        modes = {m: v for m, v in modes.items() if m in only_modes}
    phrasings = DEV if dev else HELD_OUT
    questions: list = []
    for p in indexed:
        questions += generate_questions(list(index.rows(p).values()), p, per_kind=per_kind, seed=seed)
        questions += intent_questions(list(store.everything_all(p)), p, phrasings, seed=seed)
    scores: dict[str, dict[str, list[float]]] = {m: {} for m in modes}
    latency: dict[str, list[float]] = {m: [] for m in modes}
    misses = []
    for q in questions:
        list_kind = hasattr(q, "target")
        for m, (mode, use_intent) in modes.items():
            index.dense._queries.clear()  # every mode pays for embedding the question, as a real query does
            t = time.perf_counter()
            hits = index.search(q.patient, q.query, k=k, mode=mode, intent=use_intent)
            latency[m].append(time.perf_counter() - t)
            refs = [h.ref for h in hits]
            score = _list_recall(q.gold, refs, k) if list_kind else float(any(g in refs for g in q.gold))
            scores[m].setdefault(q.kind, []).append(score)
            if m == "hybrid" and score < 1.0:
                misses.append(f"{q.kind} ({score:.2f}, gold {len(q.gold)}): {q.query} [{q.patient[:8]}]")

    def mean(xs: list[float]) -> float:
        return round(sum(xs) / len(xs), 3) if xs else float("nan")

    recall = {m: {"overall": mean([x for v in per.values() for x in v]), **{kind: mean(v) for kind, v in sorted(per.items())}}
              for m, per in scores.items()}
    kinds = {kind: len(v) for kind, v in sorted(scores["hybrid"].items())}

    timing: dict = {}
    if cli and fresh:
        query = "Which medications are currently active?"
        timing["cli_patient"] = fresh
        timing["cli_patient_rows"] = len(HybridIndex(store, index_dir, settings, dense=False).record(fresh).rows)
        timing["cli_first_retrieve_s"] = round(_cli_seconds(store_path, index_dir, fresh, query), 2)
        timing["cli_retrieve_indexed_s"] = [round(_cli_seconds(store_path, index_dir, fresh, query), 2) for _ in range(2)]

    counter = TokenCounter(settings.tokenizer_path)
    packs = []
    for p in indexed[:12]:
        q = next((x for x in questions if x.patient == p), None)
        if q is None:
            continue
        pc = pack_context(store, p, q.query, budget, counter=counter, index=index)
        packs.append({"packed": pc.tokens, "full": pc.full_record_tokens, "gold_kept": any(g in {r.ref for r in pc.rows} for g in q.gold)})
    store.close()
    return {
        "data_set": data_set,
        "phrasings": "dev" if dev else "held-out",
        "patients": len(indexed),
        "rows": rows_total,
        "questions": len(questions),
        "questions_by_kind": kinds,
        "k": k,
        "indexing": {
            "lexical_rows_per_s": round(rows_total / t_lex, 1) if rows_total else None,
            "timed_patients": len(timed),
            "timed_rows": timed_rows,
            "dense_rows_per_s": round(timed_rows / t_dense, 1) if timed_rows else None,
            "bare_embedder_rows_per_s": round(timed_rows / t_bare, 1) if timed_rows else None,
            "ratio_to_bare_embedder": round(t_bare / t_dense, 3) if timed_rows else None,
            "distinct_encoder_texts_share": round(distinct / max(1, timed_rows), 3),
            "model_load_s": round(t_model, 2),
        },
        "recall": recall,
        "latency_ms": {m: {"p50": round(1000 * _pct(v, 0.5), 1), "p95": round(1000 * _pct(v, 0.95), 1)} for m, v in latency.items()},
        "cli": timing,
        "packing": {
            "budget": budget,
            "full_record_tokens_median": int(statistics.median(x["full"] for x in packs)) if packs else None,
            "packed_tokens_median": int(statistics.median(x["packed"] for x in packs)) if packs else None,
            "gold_kept_at_budget": round(sum(x["gold_kept"] for x in packs) / max(1, len(packs)), 3),
        },
        "counting": counter.method,
        "misses": misses,
    }


def print_recall_table(result: dict) -> None:
    """Markdown table: recall@k per question kind and mode."""
    modes = list(result["recall"])
    print(f"| kind | questions | {' | '.join(modes)} |")
    print("|---|---|" + "---|" * len(modes))
    for kind, n in result["questions_by_kind"].items():
        print(f"| {kind} | {n} | " + " | ".join(f"{result['recall'][m][kind]:.3f}" for m in modes) + " |")
    print(f"| **overall** | {result['questions']} | " + " | ".join(f"**{result['recall'][m]['overall']:.3f}**" for m in modes) + " |")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.retrieval", description=__doc__.split("\n\n")[0])
    ap.add_argument("--token-table", action="store_true", help="projected vs raw JSON tokens over the three shared sets")
    ap.add_argument("--tokenizer", help="tokenizer directory or tokenizer.json for exact counts (default: estimate)")
    ap.add_argument("--patients", type=int, default=12, help="blaze patients in the recall sample (default 12)")
    ap.add_argument("--per-kind", type=int, default=2, help="questions per kind per patient (default 2)")
    ap.add_argument("-k", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=int, default=8_000, help="small packing budget to compare with the full record")
    ap.add_argument("--dev", action="store_true", help="tuning run: DEV phrasings over synthea-smart-75 (never reported as held-out)")
    ap.add_argument("--no-cli", action="store_true", help="skip timing the ehr-agent retrieve command")
    ap.add_argument("--store", help="an existing store holding the whole set (default: load the sample into a fresh one)")
    ap.add_argument("--index-dir", help="keep the index here (reused when it exists; default: a fresh temporary one)")
    ap.add_argument("--modes", help="comma-separated subset of hybrid,hybrid_no_intent,lexical,dense (default: all)")
    ap.add_argument("--throughput-patients", type=int, default=4,
                    help="patients whose indexing is timed against the bare embedder (default 4)")
    ap.add_argument("--json-out", help="also write the full result as JSON to this file")
    args = ap.parse_args(argv)
    if not SHARED.exists():
        print(f"error: shared data not found at {SHARED}", file=sys.stderr)
        return 2
    if args.token_table:
        result = token_table(args.tokenizer)
        print_token_table(result)
        summary = {"token_table": {n: {k: v for k, v in s.items() if k != "per_patient"} for n, s in result["sets"].items()},
                   "counting": result["counting"]}
    else:
        result = run_benchmark(args.patients, args.per_kind, args.k, args.seed, args.budget, dev=args.dev, cli=not args.no_cli,
                               store_dir=args.store, index_dir=args.index_dir, throughput_patients=args.throughput_patients,
                               only_modes=args.modes.split(",") if args.modes else None)
        print(f"{result['data_set']} ({result['phrasings']} phrasings): patients {result['patients']}, rows {result['rows']}, "
              f"questions {result['questions']}")
        ix = result["indexing"]
        if ix["timed_rows"]:
            print(f"indexing: lexical {ix['lexical_rows_per_s']} rows/s; dense {ix['dense_rows_per_s']} rows/s against the bare "
                  f"embedder's {ix['bare_embedder_rows_per_s']} rows/s on the same {ix['timed_rows']} rows of "
                  f"{ix['timed_patients']} patients = {ix['ratio_to_bare_embedder']:.0%} (distinct encoder texts "
                  f"{ix['distinct_encoder_texts_share']:.0%}; model load {ix['model_load_s']} s)")
        else:
            print("indexing: every patient was already indexed (no throughput measured; use a fresh --index-dir)")
        for m, lat in result["latency_ms"].items():
            print(f"{m:17s} recall@{args.k} {result['recall'][m]['overall']:.3f}  latency p50 {lat['p50']} ms p95 {lat['p95']} ms")
        print_recall_table(result)
        if result["cli"]:
            c = result["cli"]
            print(f"ehr-agent retrieve: first on an unindexed patient ({c['cli_patient_rows']} rows) {c['cli_first_retrieve_s']} s, "
                  f"then on the indexed patient {c['cli_retrieve_indexed_s']} s (wall, fresh process each, 2 runs)")
        print(f"packing: {result['packing']}")
        for m in result["misses"]:
            print(f"  miss {m}")
        summary = {k: v for k, v in result.items() if k != "misses"}
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=1))
    print(json.dumps(summary, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
