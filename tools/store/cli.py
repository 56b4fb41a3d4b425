"""Store subcommands: ``load``, ``search``, ``serve-fhir``, ``stats``."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    """Add the store subcommands to the ``ehr-agent`` parser."""
    p = subparsers.add_parser("load", help="load FHIR Bundles / NDJSON files or directories into an embedded store")
    p.add_argument("--store", required=True, help="store directory (created if missing)")
    p.add_argument("--strict", action="store_true",
                   help="validate every resource against the full R4 model (fhir.resources; ~8x slower) "
                        "instead of checking the elements the store indexes")
    p.add_argument("--no-validate", action="store_true", help="skip validation (faster, unsafe)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the load summary as JSON")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.set_defaults(func=cmd_load)

    s = subparsers.add_parser("search", help="run a FHIR search and print the searchset Bundle (every page) as JSON")
    s.add_argument("--store", required=True, help="store directory or FHIR server base URL")
    s.add_argument("--token", help="bearer token for a FHIR server")
    s.add_argument("query", help="e.g. 'Observation?patient=X&code=http://loinc.org|4548-4&_sort=-date', "
                   "'Patient/ID/Observation?...', 'Patient/ID/$everything?start=..&end=..'")
    s.set_defaults(func=cmd_search)

    f = subparsers.add_parser("serve-fhir", help="serve an embedded store as a read-only FHIR R4 REST API")
    f.add_argument("--store", required=True)
    f.add_argument("--host", default="127.0.0.1")
    f.add_argument("--port", type=int, default=8080)
    f.add_argument("--base-url", help="public base URL for paging links and fullUrls (e.g. https://fhir.example.org/fhir); "
                   "default: http://HOST:PORT as bound (the client's Host header is never used)")
    f.add_argument("--quiet", "-q", action="store_true", help="no access log")
    f.set_defaults(func=cmd_serve)

    st = subparsers.add_parser("stats", help="resources per type and unresolved references of an embedded store")
    st.add_argument("--store", required=True)
    st.set_defaults(func=cmd_stats)


def cmd_load(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .loader import RefusedFile
    from .sqlite_store import SQLiteStore

    out = Console()
    store = SQLiteStore(args.store, create=True)
    try:
        validate = False if args.no_validate else ("strict" if args.strict else True)
        summary = store.load(args.paths, validate=validate, progress=not args.quiet and sys.stderr.isatty())
    except RefusedFile as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({
            "files": len(summary.files), "refused": [f.model_dump() for f in summary.refused],
            "per_type": summary.per_type, "seconds": round(summary.seconds, 3),
            "unresolved": [{"reference": r, "count": n, "reason": why} for r, n, why in summary.unresolved_explained()],
        }, indent=2))
    else:
        print_summary(summary, out)
    for f in summary.refused:
        print(f"refused: {f.path}: {f.reason}", file=sys.stderr)
    return 1 if summary.refused else 0


def print_summary(summary, console) -> None:
    """Human summary of a load: files, resources per type, refused files, unresolved references."""
    from rich.table import Table

    n_loaded = sum(1 for f in summary.files if f.status == "loaded")
    ins = sum(f.inserted for f in summary.files)
    upd = sum(f.updated for f in summary.files)
    same = sum(f.unchanged for f in summary.files)
    rate = summary.resources / summary.seconds if summary.seconds else 0.0
    console.print(
        f"[bold]{n_loaded}[/] of {len(summary.files)} files loaded, {summary.resources} resources "
        f"({ins} new, {upd} updated, {same} unchanged) in {summary.seconds:.1f} s ({rate:,.0f}/s)"
    )
    if summary.per_type:
        t = Table("type", "resources", title="resources per type")
        for k, v in summary.per_type.items():
            t.add_row(k, str(v))
        console.print(t)
    for f in summary.skipped:
        console.print(f"skipped (not FHIR): {f.path}")
    if summary.refused:
        console.print(f"[red]{len(summary.refused)} refused file(s)[/]")
        for f in summary.refused:
            console.print(f"  {f.path}: {f.reason}")
    if summary.resolved_later:
        console.print(f"{summary.resolved_later} reference(s) left unresolved earlier were resolved by this load")
    groups = summary.unresolved_explained()
    if groups:
        console.print(f"[yellow]{len(summary.unresolved)} unresolved reference(s)[/] (kept as written; loading the "
                      "bundle that defines the target resolves them):")
        for ref, n, why in groups[:20]:
            console.print(f"  {n:>5} x {ref}: {why}")
        if len(groups) > 20:
            console.print(f"  ... {len(groups) - 20} more targets (ehr-agent stats --store DIR lists all)")


def cmd_search(args: argparse.Namespace) -> int:
    from . import open_store

    store = open_store(args.store, **({"token": args.token} if args.token else {}))
    try:
        result = store.run_path(args.query)
    finally:
        store.close()
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve

    serve(args.store, host=args.host, port=args.port, base_url=args.base_url, quiet=args.quiet)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from .sqlite_store import SQLiteStore

    store = SQLiteStore(args.store)
    counts = store.counts()
    unresolved = store.unresolved_references()
    print(json.dumps({
        "resources": sum(counts.values()), "per_type": counts,
        "unresolved": [u.model_dump() for u in unresolved],
    }, indent=1))
    return 0
