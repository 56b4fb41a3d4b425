"""The store's CLI contract, run as a user would run it (subprocesses): load, search (every page, total set,
compartments, $everything with dates), and errors as one line naming the parameter."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ALICE, FIXTURES


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "ehr_agent.agent.cli", *args], capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli-store")
    proc = cli("load", "--store", str(d), "-q", str(FIXTURES))
    assert "4 of 4 files loaded, 71 resources" in proc.stdout
    assert "1 unresolved reference" in proc.stdout and "9999999977" in proc.stdout
    return d


def raw_alice() -> list[dict]:
    return [e["resource"] for e in json.loads((FIXTURES / "alice-moreau.json").read_text())["entry"]]


def test_search_follows_every_page_and_sets_total(store_dir):
    q = f"Observation?patient={ALICE}&code=http://loinc.org|4548-4&_sort=-date&_count=2"
    bundle = json.loads(cli("search", "--store", str(store_dir), q).stdout)
    expected = sorted(
        (r["effectiveDateTime"] for r in raw_alice()
         if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "4548-4"),
        reverse=True,
    )
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert bundle["total"] == len(expected) == len(bundle["entry"])
    assert [e["resource"]["effectiveDateTime"] for e in bundle["entry"]] == expected


def test_compartment_and_everything(store_dir):
    conds = json.loads(cli("search", "--store", str(store_dir), f"Patient/{ALICE}/Condition").stdout)
    assert {e["resource"]["id"] for e in conds["entry"]} == {r["id"] for r in raw_alice() if r["resourceType"] == "Condition"}
    ev = json.loads(cli("search", "--store", str(store_dir), f"Patient/{ALICE}/$everything?start=2016-01-01&end=2016-12-31").stdout)
    ids = {e["resource"]["id"] for e in ev["entry"]}
    assert ALICE in ids
    # everything of 2016 (the pneumonia stay) is in; the 2014 HbA1c is out
    stay = [r["id"] for r in raw_alice() if r["resourceType"] == "Encounter" and r["period"]["start"].startswith("2016")]
    assert stay and set(stay) <= ids
    early = [r["id"] for r in raw_alice() if r.get("effectiveDateTime", "").startswith("2014")]
    assert early and not set(early) & ids


def test_errors_are_one_line_naming_the_parameter(store_dir):
    proc = cli("search", "--store", str(store_dir), "Observation?colour=blue", check=False)
    assert proc.returncode == 2
    assert "colour" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("search", "--store", str(store_dir), "Observation?date=gt2015-13-45", check=False)
    assert proc.returncode == 2 and "date" in proc.stderr
    proc = cli("search", "--store", str(store_dir), "Patient/nobody/$everything", check=False)
    assert proc.returncode == 2 and "nobody" in proc.stderr
