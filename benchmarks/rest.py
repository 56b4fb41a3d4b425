"""REST facade benchmark: requests/s and latency of mixed searches, the ASGI facade against the old
``http.server`` facade (the baseline) under the same client load, in the same run.

    python -m benchmarks.rest [--store DIR] [--requests 2400] [--clients 8]

Each facade runs in its own process on 127.0.0.1 (loopback only) over the same store; the client load is
``--clients`` threads, each with one keep-alive connection, sending a fixed, seeded mix of agent-typical
searches, reads and ``$everything`` pages. The baseline is ``tools/store/server.py`` as it was before the
move to Starlette/uvicorn, read from git (``--baseline-rev``). Without ``--store``, the project's fixtures
are loaded into a temporary store. The last line is a JSON summary with both results and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BASELINE_REV = "0625d18"  # the last commit with the http.server facade

SERVE = textwrap.dedent("""
    import importlib.util, sys, types
    kind, store_dir, path = sys.argv[1], sys.argv[2], sys.argv[3]
    from ehr_agent.tools.store.sqlite_store import SQLiteStore
    store = SQLiteStore(store_dir)
    if kind == "baseline":
        spec = importlib.util.spec_from_file_location("tools.store._baseline_server", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
    else:
        import ehr_agent.tools.store.server as mod
    server = mod.make_server(store, "127.0.0.1", 0, quiet=True)
    print(server.base_url, flush=True)
    server.serve_forever()
""")


def workload(store_dir: str, n: int, seed: int = 5) -> list[str]:
    """A seeded mix of request paths over the store's patients."""
    from ehr_agent.tools.store.sqlite_store import SQLiteStore

    store = SQLiteStore(store_dir)
    pids = store.patient_ids()
    store.close()
    rng = random.Random(seed)
    kinds = [
        lambda p: f"/Observation?patient={p}&code=http://loinc.org|4548-4,http://loinc.org|29463-7&_sort=-date",
        lambda p: f"/Patient/{p}/Condition",
        lambda p: f"/Observation?patient={p}&date=ge2015-01-01&date=lt2017-01-01&_count=20",
        lambda p: f"/Encounter?patient={p}&date=2016",
        lambda p: f"/MedicationRequest?patient={p}&status=active",
        lambda p: f"/Patient/{p}",
        lambda p: f"/Patient/{p}/$everything?_count=50",
        lambda p: "/Patient?gender=female&_count=10",
    ]
    return [kinds[i % len(kinds)](rng.choice(pids)) for i in range(n)]


def drive(base: str, paths: list[str], clients: int) -> dict:
    """Send ``paths`` from ``clients`` threads; latency per request, errors, wall time."""
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    shards = [paths[i::clients] for i in range(clients)]

    def run(shard: list[str]) -> None:
        mine = []
        with httpx.Client(base_url=base, timeout=60) as c:
            for p in shard:
                t = time.perf_counter()
                r = c.get(p)
                mine.append((time.perf_counter() - t) * 1000)
                if r.status_code != 200:
                    with lock:
                        errors[0] += 1
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=run, args=(s,)) for s in shards]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    return {
        "requests": len(lat), "errors": errors[0], "requests_per_s": round(len(lat) / wall, 1),
        "p50_ms": round(statistics.median(lat), 2), "p95_ms": round(lat[int(0.95 * (len(lat) - 1))], 2),
    }


def start(kind: str, store_dir: str, baseline_file: str) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", SERVE, kind, store_dir, baseline_file], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)
    base = proc.stdout.readline().strip()
    if not base.startswith("http://127.0.0.1:"):
        proc.kill()
        raise SystemExit(f"{kind} facade did not start")
    return proc, base


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", help="an embedded store directory (default: the fixtures, loaded into a temp dir)")
    ap.add_argument("--requests", type=int, default=2400)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds per facade (the best is kept)")
    ap.add_argument("--baseline-rev", default=BASELINE_REV)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="ehr-rest-bench-"))
    store_dir = args.store
    if store_dir is None:
        from ehr_agent.tools.store.sqlite_store import SQLiteStore

        store_dir = str(tmp / "store")
        SQLiteStore(store_dir, create=True).load([ROOT / "fhir_fixtures"])
    old = subprocess.run(["git", "show", f"{args.baseline_rev}:tools/store/server.py"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    baseline_file = tmp / "baseline_server.py"
    baseline_file.write_text(old)
    paths = workload(store_dir, args.requests)
    results: dict[str, list[dict]] = {"baseline": [], "asgi": []}
    for _ in range(args.rounds):
        for kind in ("baseline", "asgi"):  # alternate, so a busy spell on the machine hits both
            proc, base = start(kind, store_dir, str(baseline_file))
            try:
                drive(base, paths[:200], args.clients)  # warm-up
                results[kind].append(drive(base, paths, args.clients))
            finally:
                proc.terminate()
                proc.wait(10)
    best = {k: max(v, key=lambda r: r["requests_per_s"]) for k, v in results.items()}
    print(f"REST facade benchmark: {args.requests} requests, {args.clients} clients, store {store_dir}")
    for k, r in best.items():
        print(f"  {k:9s} {r['requests_per_s']:8.1f} req/s  p50 {r['p50_ms']:7.2f} ms  p95 {r['p95_ms']:7.2f} ms  "
              f"errors {r['errors']}")
    summary = {
        "baseline": best["baseline"], "asgi": best["asgi"],
        "throughput_ratio": round(best["asgi"]["requests_per_s"] / best["baseline"]["requests_per_s"], 2),
        "p95_ratio": round(best["asgi"]["p95_ms"] / best["baseline"]["p95_ms"], 2),
        "all_rounds": results,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
