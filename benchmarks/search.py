"""Search latency on agent-typical queries, optionally on a store scaled up by replication.

    python -m benchmarks.search --store DIR [--scale 11 --scaled-dir DIR2] [--patients 40]

``--scale K`` copies the store to ``--scaled-dir`` and replicates every non-shared resource K-1 times
with fresh ids (``id~k``) and rids, rewriting index rows, references and compartments accordingly
(Organization, Practitioner, PractitionerRole and Location stay shared), so 92,114 Synthea resources
become about a million with realistic per-patient sizes. Then it times the queries below for
``--patients`` patients and prints p50/p95/max in milliseconds.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import statistics
import time
from pathlib import Path

from ehr_agent.tools.store.search.extract import INDEX_TABLES

SHARED = ("Organization", "Practitioner", "PractitionerRole", "Location")

# (label, resource type, params) run in the patient's compartment; {pid} is replaced in plain searches
QUERIES: list[tuple[str, str | None, str, bool]] = [
    ("latest HbA1c", "Observation", "code=http://loinc.org|4548-4&_sort=-date&_count=1", True),
    ("body height history", "Observation", "code=http://loinc.org|8302-2&_sort=-date&_count=20", True),
    ("labs since 2015", "Observation", "category=laboratory&date=ge2015&_sort=-date&_count=50", True),
    ("recent observations", "Observation", "_sort=-date&_count=20", True),
    ("active conditions", "Condition", "clinical-status=active", True),
    ("all conditions", "Condition", "_count=100", True),
    ("active medications", "MedicationRequest", "status=active&_count=100", True),
    ("encounters 2010s", "Encounter", "date=ge2010&date=lt2020&_sort=-date&_count=50", True),
    ("reports by date", "DiagnosticReport", "_sort=-date&_count=10", True),
    ("immunizations", "Immunization", "_count=100", True),
    ("everything count", None, "_summary=count", True),
    ("obs by patient param", "Observation", "patient={pid}&code=http://loinc.org|8302-2&_count=20", False),
    ("patient by id", "Patient", "_id={pid}", False),
]


def scale_store(src: Path, dst: Path, copies: int) -> None:
    """Copy ``src``'s store into ``dst`` with every non-shared resource replicated ``copies - 1`` times."""
    dst.mkdir(parents=True, exist_ok=True)
    src_conn = sqlite3.connect(src / "store.sqlite")
    src_conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    src_conn.close()
    shutil.copy(src / "store.sqlite", dst / "store.sqlite")
    c = sqlite3.connect(dst / "store.sqlite", isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=OFF")
    c.execute("PRAGMA cache_size=-1000000")
    max_rid = c.execute("SELECT max(rid) FROM resources").fetchone()[0]
    shared = ",".join(f"'{t}'" for t in SHARED)
    cols = {t: [r[1] for r in c.execute(f"PRAGMA table_info({t})")] for t in INDEX_TABLES}
    for k in range(1, copies):
        off = k * max_rid
        sfx = f"~{k}"
        c.execute("BEGIN")
        c.execute(
            f"INSERT INTO resources(rid, type, id, version, last_updated, hash, json) "
            f"SELECT rid + {off}, type, id || '{sfx}', version, last_updated, hash, json FROM resources "
            f"WHERE rid <= {max_rid} AND type NOT IN ({shared})"
        )
        c.execute(
            f"INSERT INTO compartment SELECT patient || '{sfx}', rid + {off} FROM compartment WHERE rid <= {max_rid}"
        )
        keep = f"rid IN (SELECT rid FROM resources WHERE rid <= {max_rid} AND type NOT IN ({shared}))"
        for t in INDEX_TABLES:
            sel = []
            for col in cols[t]:
                if col == "rid":
                    sel.append(f"rid + {off}")
                elif t == "sp_reference" and col == "tid":
                    sel.append(f"CASE WHEN ttype = '' OR ttype IN ({shared}) THEN tid ELSE tid || '{sfx}' END")
                elif col == "patient":
                    sel.append(f"CASE WHEN patient = '' THEN '' ELSE patient || '{sfx}' END")
                else:
                    sel.append(col)
            c.execute(f"INSERT INTO {t} SELECT {', '.join(sel)} FROM {t} WHERE {keep}")
        c.execute("COMMIT")
        print(f"copy {k}/{copies - 1} done", flush=True)
    c.close()  # no ANALYZE: stores in use have no statistics either, and the engine must not need them


def run_bench(store_dir: Path, n_patients: int, seed: int = 7) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Time each query of :data:`QUERIES` for ``n_patients`` random patients.

    Returns (wall ms, CPU ms) per label: on a shared machine the CPU time of this single-threaded
    process is the latency an unloaded machine would show (the page cache is warm).
    """
    from ehr_agent.tools.store.sqlite_store import SQLiteStore

    store = SQLiteStore(store_dir)
    pids = store.patient_ids()
    rng = random.Random(seed)
    chosen = rng.sample(pids, min(n_patients, len(pids)))
    times: dict[str, list[float]] = {label: [] for label, *_ in QUERIES}
    cpu: dict[str, list[float]] = {label: [] for label, *_ in QUERIES}
    for pid in chosen:
        for label, rtype, q, in_comp in QUERIES:
            params = q.replace("{pid}", pid)
            t0, c0 = time.perf_counter(), time.process_time()
            store.search(rtype, params, compartment=("Patient", pid) if in_comp else None)
            times[label].append((time.perf_counter() - t0) * 1000)
            cpu[label].append((time.process_time() - c0) * 1000)
    return times, cpu


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", required=True, type=Path)
    ap.add_argument("--scale", type=int, default=1)
    ap.add_argument("--scaled-dir", type=Path)
    ap.add_argument("--patients", type=int, default=40)
    args = ap.parse_args(argv)
    target = args.store
    if args.scale > 1:
        if not args.scaled_dir:
            ap.error("--scale needs --scaled-dir")
        scale_store(args.store, args.scaled_dir, args.scale)
        target = args.scaled_dir
    n = sqlite3.connect(target / "store.sqlite").execute("SELECT count(*) FROM resources").fetchone()[0]
    run_bench(target, 3, seed=1)  # warm the page cache first, like a store that has been in use
    times, cpu = run_bench(target, args.patients)
    allt = [x for xs in times.values() for x in xs]
    allc = [x for xs in cpu.values() for x in xs]
    print(f"{n} resources, {args.patients} patients, {len(allt)} searches (ms)")
    print(f"{'query':24} {'p50':>7} {'p95':>7} {'max':>7} | {'cpu p50':>7} {'cpu p95':>7}")
    for label, xs in times.items():
        c = cpu[label]
        print(f"{label:24} {statistics.median(xs):7.2f} {_pct(xs, 0.95):7.2f} {max(xs):7.2f} | "
              f"{statistics.median(c):7.2f} {_pct(c, 0.95):7.2f}")
    print(f"{'ALL':24} {statistics.median(allt):7.2f} {_pct(allt, 0.95):7.2f} {max(allt):7.2f} | "
          f"{statistics.median(allc):7.2f} {_pct(allc, 0.95):7.2f}")


if __name__ == "__main__":
    main()
