"""The package as a user installs it without ``-e``: a wheel built from the repository, installed into a fresh
venv, answers a question (scripted model) over the fixtures, and installs nothing under a top-level name
another distribution could own.

The fresh venv gets only the wheel (``--no-deps``); the dependencies it imports come from this interpreter's
site-packages through a ``.pth`` path line. A path line adds the folder to ``sys.path`` without running the
``.pth`` files inside it, so this checkout's editable finder is not active there: every ``ehr_agent`` import
must come from the wheel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALICE = "4a3b1eaa-e40e-5bdd-9d4c-47cfdcced897"
# a PYTHONPATH (a worktree shim, a developer's own) would put other ehr_agent files before the wheel's
CLEAN_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return next(out.glob("*.whl"))


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv holding the wheel, its dependencies reached through a path line; returns its bin/."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.create(env_dir, with_pip=False)
    bin_dir = env_dir / "bin"
    purelib = Path(subprocess.check_output([str(bin_dir / "python"), "-c",
                                            "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                           text=True).strip())
    (purelib / "deps-from-test-runner.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install",
                           "--no-deps", "--no-index", "-q", str(wheel)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return bin_dir


def test_wheel_holds_only_the_namespace_and_every_prompt(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"ehr_agent"}, top
    assert "ehr_agent/__init__.py" not in names  # a namespace: other distributions may add to it
    want = {f"ehr_agent/prompts/{p.name}" for p in (ROOT / "prompts").glob("*.md")}
    assert want and want <= set(names), sorted(want - set(names))
    assert not any(n.startswith(("ehr_agent/benchmarks", "ehr_agent/tests")) for n in names)


def test_installed_wheel_answers_from_its_own_files(installed, tmp_path):
    where = subprocess.run([str(installed / "python"), "-c",
                            "import ehr_agent.agent, ehr_agent.prompts as p; print(ehr_agent.agent.__file__); "
                            "print(len(p.names()))"], capture_output=True, text=True, cwd=tmp_path, timeout=120, env=CLEAN_ENV)
    assert where.returncode == 0, where.stderr[-2000:]
    path, count = where.stdout.split()
    assert str(ROOT) not in path and "site-packages" in path
    assert int(count) == len(list((ROOT / "prompts").glob("*.md")))

    store = tmp_path / "store"
    load = subprocess.run([str(installed / "ehr-agent"), "load", "--store", str(store), "-q", str(ROOT / "fhir_fixtures")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300, env=CLEAN_ENV)
    assert load.returncode == 0, load.stderr[-2000:]
    turns = ["```tool_call\n" + json.dumps({"tool": "lookup", "arguments": {"op": "latest", "what": "HbA1c"}})
             + "\n```", "Her last HbA1c was 6.5 % on 2023-10-03 [Observation/d893c882-91af-5d97-9d17-396be4423115]."]
    ask = subprocess.run([str(installed / "ehr-agent"), "ask", "--store", str(store), "--patient", ALICE, "--json",
                          "--model", "scripted:" + json.dumps(turns), "What was her last HbA1c?"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300, env=CLEAN_ENV)
    assert ask.returncode == 0, ask.stderr[-3000:]
    out = json.loads(ask.stdout)
    # the prompts the graph renders and the citation/claim checks all ran from the installed files
    assert out["verified"] is True and out["citations"] == ["Observation/d893c882-91af-5d97-9d17-396be4423115"], out


@pytest.mark.parametrize("name", ["tools", "agent", "prompts", "benchmarks"])
def test_installed_wheel_claims_no_generic_top_level_name(installed, tmp_path, name):
    proc = subprocess.run([str(installed / "python"), "-c", f"import {name}"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60, env=CLEAN_ENV)
    assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr, proc.stdout + proc.stderr
