"""``kill -9`` of a multi-file ``ehr-agent load`` leaves no process of the load behind.

The validation workers (a process pool ahead of the writer) must die with the loading process: they
hold its stdout/stderr pipes, so a caller waiting for those pipes to close would otherwise hang.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from conftest import BLAZE, need_shared

ROOT = Path(__file__).resolve().parents[1]


def _children(pid: int) -> set[int]:
    """Direct children of ``pid`` from /proc (every thread's list)."""
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out.update(int(x) for x in (task / "children").read_text().split())
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a zombie has ended; only its exit status is left)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _patients(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
            return c.execute("SELECT count(*) FROM resources WHERE type='Patient'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_kill9_of_a_multi_file_load_leaves_no_worker_behind(tmp_path):
    need_shared(BLAZE)
    if not Path("/proc/self/task").exists():  # pragma: no cover - the PID check reads /proc
        import pytest

        pytest.skip("needs /proc to list the load's processes")
    data = tmp_path / "data"
    data.mkdir()
    for p in sorted(BLAZE.glob("*.json.bz2"))[:30]:
        shutil.copy(p, data)
    store = tmp_path / "s"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ehr_agent.agent.cli", "load", "--store", str(store), "--quiet", str(data)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    workers: set[int] = set()
    deadline = time.time() + 180
    while time.time() < deadline:
        assert proc.poll() is None, "the load ended before it could be killed"
        workers |= _children(proc.pid)
        if len(workers) >= 2 and _patients(store / "store.sqlite") >= 3:
            break
        time.sleep(0.1)
    assert len(workers) >= 2, f"expected validation workers under the load, found {workers}"
    assert all(_alive(w) for w in workers)
    descendants = set(workers)
    for w in workers:
        descendants |= _children(w)

    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    gone_by = time.time() + 10
    while time.time() < gone_by and any(_alive(p) for p in descendants):
        time.sleep(0.05)
    assert [p for p in descendants if _alive(p)] == [], "processes of the killed load are still running"
    # Nobody holds the pipes any more: a caller reading them to the end returns at once.
    t0 = time.time()
    proc.stdout.read()
    proc.stderr.read()
    assert time.time() - t0 < 5
