"""Retrieval subcommands: ``retrieve``, ``context``, ``index``.

Errors the user can fix (unknown patient, empty record, budget too small, bad date, model missing)
print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys


def _common(p: argparse.ArgumentParser, *, patient_required: bool = True) -> None:
    p.add_argument("--store", required=True, help="store directory (embedded) or FHIR server base URL")
    p.add_argument("--patient", required=patient_required, help="Patient id")
    p.add_argument("--index-dir", help="where the index lives (default: the store directory, or the cache dir for a URL)")
    p.add_argument("--embedding-model", help="sentence-transformers model directory or name (offline)")
    p.add_argument("--chroma-url", help="Chroma server URL (default: a persistent Chroma in the index dir)")


def register(subparsers) -> None:
    """Add ``retrieve``, ``context`` and ``index`` to the dispatcher's subparsers."""
    p = subparsers.add_parser("retrieve", help="rank a patient's rows for a query (hybrid dense + lexical)")
    _common(p)
    p.add_argument("query", help="question or keywords")
    p.add_argument("-k", type=int, default=20, help="number of rows (default 20)")
    p.add_argument("--type", action="append", dest="types", metavar="T", help="resource type filter (repeatable)")
    p.add_argument("--since", help="earliest date (YYYY[-MM[-DD]])")
    p.add_argument("--until", help="latest date (YYYY[-MM[-DD]])")
    p.add_argument("--mode", choices=("hybrid", "lexical", "dense"), default="hybrid", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help='print a JSON list of {"ref","text","score"}')
    p.set_defaults(func=_retrieve)

    p = subparsers.add_parser("context", help="pack a patient's evidence for a question into a token budget")
    _common(p)
    p.add_argument("question")
    p.add_argument("--budget", type=int, help="tokens (default: 128K window minus a reserve for prompt and answer)")
    p.add_argument("--tokenizer", help="serving model's tokenizer (directory or tokenizer.json) for exact counts")
    p.add_argument("--lexical-only", action="store_true", help="rank without embeddings (no model load)")
    p.add_argument("--json", action="store_true", help="print the PackedContext as JSON")
    p.set_defaults(func=_context)

    p = subparsers.add_parser("index", help="build or refresh the retrieval index ahead of time")
    _common(p, patient_required=False)
    p.add_argument("--lexical-only", action="store_true", help="skip embeddings")
    p.add_argument("--force", action="store_true", help="re-check patients already indexed at the current data version")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (one line per patient on stderr)")
    p.set_defaults(func=_index)


def _settings(args):
    from .settings import RetrievalSettings

    return RetrievalSettings.from_env(
        embedding_model=args.embedding_model, chroma_url=args.chroma_url, tokenizer_path=getattr(args, "tokenizer", None)
    )


def _open(args, *, dense: bool = True):
    from pathlib import Path

    from ehr_agent.tools.store import open_store

    from .index import HybridIndex

    store = open_store(args.store)
    index_dir = args.index_dir
    if index_dir is None and not args.store.startswith(("http://", "https://")):
        index_dir = args.store
    return store, HybridIndex(store, Path(index_dir) if index_dir else None, _settings(args), dense=dense)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _guard(fn):
    """Turn the errors a user can cause into one line on stderr and exit status 2."""

    def run(args) -> int:
        from ehr_agent.tools.store.base import StoreError

        from .errors import RetrievalError

        try:
            return fn(args)
        except RetrievalError as e:
            return _fail(e.message)
        except StoreError as e:
            return _fail(e.message)

    run.__doc__ = fn.__doc__
    return run


@_guard
def _retrieve(args) -> int:
    """ehr-agent retrieve"""
    if args.k < 1:
        return _fail("-k must be at least 1")
    store, index = _open(args, dense=args.mode != "lexical")
    hits = index.search(args.patient, args.query, k=args.k, types=args.types, since=args.since, until=args.until, mode=args.mode)
    more = getattr(hits, "note", None)
    if args.json:
        print(json.dumps([{"ref": h.ref, "text": h.text, "score": h.score} for h in hits], indent=1))
        if more:
            print(more, file=sys.stderr)  # stdout stays a plain JSON list
    else:
        for h in hits:
            print(f"{h.score:.4f}  {h.text}")
        if more:
            print(f"... {more}")
        if not hits:
            print("no matching rows", file=sys.stderr)
    return 0


@_guard
def _context(args) -> int:
    """ehr-agent context"""
    from .budget import TokenCounter, pack_context

    if args.budget is not None and args.budget < 1:
        return _fail("--budget must be a positive number of tokens")
    store, index = _open(args, dense=not args.lexical_only)
    settings = index.settings
    counter = TokenCounter(settings.tokenizer_path)
    packed = pack_context(store, args.patient, args.question, args.budget, counter=counter, index=index, settings=settings)
    if args.json:
        print(packed.model_dump_json(indent=1))
    else:
        print(packed.text)
        print(f"\n[{packed.tokens} tokens ({packed.counting}); {packed.note}]")
    return 0


@_guard
def _index(args) -> int:
    """ehr-agent index"""
    import time

    store, index = _open(args, dense=not args.lexical_only)
    patients = [args.patient] if args.patient else store.patient_ids()
    todo = [p for p in patients if args.force or not index.is_indexed(p)]
    skipped = len(patients) - len(todo)
    if skipped:
        print(f"{skipped} of {len(patients)} patient(s) already indexed at the store's current data version: skipped",
              file=sys.stderr)
    t0 = time.perf_counter()
    total = 0
    try:
        with _IndexProgress(len(todo), enabled=sys.stderr.isatty() and not args.no_progress) as bar:
            for pid in todo:
                n = index.ensure_patient(pid, progress=bar.rows if index.use_dense else None)
                total += n
                bar.patient_done(pid, n, len(index.rows(pid)), count_rows=not index.use_dense)
    except KeyboardInterrupt:
        print(f"interrupted after {total} rows; run the same command again to resume", file=sys.stderr)
        return 130
    dt = time.perf_counter() - t0
    print(f"indexed {total} rows for {len(todo)} patient(s) in {dt:.1f}s ({total / dt if dt else 0:.0f} rows/s); "
          f"{skipped} already indexed")
    return 0


class _IndexProgress:
    """A rich progress bar over patients (rows embedded, rows/s, ETA) on a terminal; one line per
    patient on stderr otherwise (logs, CI)."""

    def __init__(self, patients: int, *, enabled: bool):
        self.enabled = enabled
        self.patients = patients
        self.done_rows = 0
        self.t0 = 0.0
        self._progress = None

    def __enter__(self) -> "_IndexProgress":
        import time

        self.t0 = time.perf_counter()
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("indexing patients"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rows]:,} rows, {task.fields[rate]:.0f} rows/s"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                console=_stderr_console(), transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("index", total=self.patients, rows=0, rate=0.0)
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def _rate(self) -> float:
        import time

        dt = time.perf_counter() - self.t0
        return self.done_rows / dt if dt > 0 else 0.0

    def rows(self, n: int) -> None:
        """``n`` more rows embedded."""
        self.done_rows += n
        if self._progress is not None:
            self._progress.update(self._task, rows=self.done_rows, rate=self._rate())

    def patient_done(self, pid: str, indexed: int, in_record: int, *, count_rows: bool) -> None:
        """One more patient finished (``count_rows`` when :meth:`rows` was not called for it)."""
        if count_rows:
            self.done_rows += indexed
        if self._progress is not None:
            self._progress.update(self._task, advance=1, rows=self.done_rows, rate=self._rate())
        else:
            print(f"Patient/{pid}: {indexed} rows indexed ({in_record} in record)", file=sys.stderr)


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)
