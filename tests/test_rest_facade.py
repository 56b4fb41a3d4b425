"""The same search tests through the embedded store and through RESTStore on the ``serve-fhir`` facade.

The ``store`` fixture yields either the :class:`SQLiteStore` itself or a :class:`RESTStore` talking to the
facade (a thread on 127.0.0.1) over that same store, so every test below runs twice.  Expected results are
computed in Python from the raw Synthea bundles, not from either store, so agreement means both are right.
One more test runs the facade the way a user does, as ``ehr-agent serve-fhir`` in a subprocess.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ehr_agent.tools.store.base import NotFound, SearchError
from ehr_agent.tools.settings import TestSettings
from ehr_agent.tools.store.rest import RESTStore

ROOT = Path(__file__).resolve().parents[1]
# Same location rule as conftest.py: ../shared/data beside the repo, or $EHR_AGENT_SHARED_DATA.
SMART = Path(TestSettings().shared_data or ROOT.parent / "shared" / "data") / "synthea-smart-75"
# Three of the smallest smart-75 patients (264 resources): small enough to load in a second or two.
PATIENT_FILES = (
    "Ned_Hintz_e4b9259d-0f54-48d1-a35d-b526729a4dfe.json",
    "Michael_Kihn_376f9fc0-ecd8-468a-ad93-3534a14561a3.json",
    "Malcolm_Dach_281f4a03-57e9-4b22-a322-68890ff22172.json",
)


# --------------------------------------------------------------------------- ground truth from raw data
def raw_resources(files: list[Path]) -> dict[str, dict]:
    """'Type/id' -> resource with ``urn:uuid`` references rewritten to 'Type/id', as the loader does."""
    resources: dict[str, dict] = {}
    urn: dict[str, str] = {}
    for f in files:
        bundle = json.loads(f.read_text())
        for e in bundle["entry"]:
            r = e["resource"]
            key = f"{r['resourceType']}/{r['id']}"
            resources[key] = r
            if e.get("fullUrl", "").startswith("urn:uuid:"):
                urn[e["fullUrl"]] = key

    def fix(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "reference" and isinstance(v, str) and v in urn:
                    node[k] = urn[v]
                else:
                    fix(v)
        elif isinstance(node, list):
            for v in node:
                fix(v)

    for r in resources.values():
        fix(r)
    return resources


class Truth:
    """Answers computed straight from the bundles."""

    def __init__(self, resources: dict[str, dict]):
        self.res = resources

    def of_type(self, rtype: str) -> list[dict]:
        return [r for k, r in self.res.items() if k.startswith(rtype + "/")]

    def patients(self) -> list[dict]:
        return self.of_type("Patient")

    def subject_is(self, r: dict, pid: str) -> bool:
        ref = (r.get("subject") or r.get("patient") or {}).get("reference")
        return ref == f"Patient/{pid}"

    def codes(self, r: dict, field: str = "code") -> set[tuple[str, str]]:
        cc = r.get(field)
        ccs = cc if isinstance(cc, list) else [cc] if cc else []
        return {(c.get("system"), c.get("code")) for x in ccs for c in x.get("coding", [])}


@pytest.fixture(scope="module")
def data_files() -> list[Path]:
    files = [SMART / f for f in PATIENT_FILES]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        pytest.skip(f"real data not found ({missing[0]}); set EHR_AGENT_SHARED_DATA or place ../shared/data beside the repo")
    return files


@pytest.fixture(scope="module")
def truth(data_files) -> Truth:
    return Truth(raw_resources(data_files))


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory, data_files) -> Path:
    from ehr_agent.tools.store.sqlite_store import SQLiteStore

    d = tmp_path_factory.mktemp("facade-store")
    s = SQLiteStore(d, create=True)
    summary = s.load([str(f) for f in data_files])
    s.close()
    assert not summary.refused, summary.refused
    return d


@pytest.fixture(scope="module")
def embedded(store_dir):
    from ehr_agent.tools.store.sqlite_store import SQLiteStore

    s = SQLiteStore(store_dir)
    yield s
    s.close()


@pytest.fixture(scope="module")
def facade(store_dir) -> Iterator[str]:
    """The facade in a thread over its own SQLiteStore on the same directory; yields its base URL."""
    from ehr_agent.tools.store.server import make_server
    from ehr_agent.tools.store.sqlite_store import SQLiteStore

    backing = SQLiteStore(store_dir)
    server = make_server(backing, "127.0.0.1", 0, quiet=True)
    server.start_in_thread()
    yield server.base_url
    server.stop()
    backing.close()


@pytest.fixture(scope="module")
def rest(facade) -> Iterator[RESTStore]:
    s = RESTStore(facade, timeout=20, retries=0)
    yield s
    s.close()


@pytest.fixture(params=["embedded", "rest"])
def store(request, embedded, rest):
    """The embedded store, or RESTStore on serve-fhir over the same data: every test runs on both."""
    return embedded if request.param == "embedded" else rest


def ids(resources) -> list[str]:
    return [r["id"] for r in resources]


# ------------------------------------------------------------------------------------------- reads
def test_read_and_not_found(store, truth):
    p = truth.patients()[0]
    got = store.read("Patient", p["id"])
    assert got["id"] == p["id"] and got["name"] == p["name"] and got["birthDate"] == p["birthDate"]
    with pytest.raises(NotFound):
        store.read("Patient", "no-such-patient")


def test_patient_ids(store, truth):
    assert store.patient_ids() == sorted(p["id"] for p in truth.patients())


# ------------------------------------------------------------------------------------------ search
def test_token_search_with_system(store, truth):
    pid = truth.patients()[0]["id"]
    want = {
        o["id"]
        for o in truth.of_type("Observation")
        if truth.subject_is(o, pid) and ("http://loinc.org", "8302-2") in truth.codes(o)
    }
    got = ids(store.search_all("Observation", {"patient": pid, "code": "http://loinc.org|8302-2"}))
    assert want and sorted(got) == sorted(want)


def test_date_prefixes(store, truth):
    pid = truth.patients()[1]["id"]
    obs = [o for o in truth.of_type("Observation") if truth.subject_is(o, pid)]
    want = {o["id"] for o in obs if "2013-01-01" <= o["effectiveDateTime"][:10] < "2016-01-01"}
    got = ids(store.search_all("Observation", [("patient", pid), ("date", "ge2013-01-01"), ("date", "lt2016")]))
    assert 0 < len(want) < len(obs) and sorted(got) == sorted(want)


def test_paging_small_count_follows_next(store, truth, facade):
    pid = truth.patients()[2]["id"]
    want = sorted(o["id"] for o in truth.of_type("Observation") if truth.subject_is(o, pid))
    first = store.search("Observation", {"patient": pid, "_count": "7"})
    seen, pages = [], 0
    for page in store.pages(first):
        pages += 1
        entries = page.get("entry", [])
        assert len(entries) <= 7
        seen.extend(e["resource"]["id"] for e in entries)
        nxt = [lk["url"] for lk in page.get("link", []) if lk["relation"] == "next"]
        if nxt and store is not None and isinstance(store, RESTStore):
            # Paging links must lead back to the facade, not to the embedded store's urn: base.
            assert nxt[0].startswith(facade + "/")
    assert pages == -(-len(want) // 7)
    assert sorted(seen) == want and len(seen) == len(set(seen))


@pytest.mark.parametrize("sort", ["date", "-date"])
def test_sort_by_date(store, truth, sort):
    pid = truth.patients()[0]["id"]
    got = list(store.search_all("Observation", {"patient": pid, "_sort": sort, "_count": "10"}))
    dates = [o["effectiveDateTime"] for o in got]
    assert len(got) == sum(truth.subject_is(o, pid) for o in truth.of_type("Observation"))
    assert dates == sorted(dates, reverse=sort.startswith("-"))
    assert len(set(dates)) > 1


def test_compartment_search(store, truth):
    pid = truth.patients()[1]["id"]
    want = sorted(c["id"] for c in truth.of_type("Condition") if truth.subject_is(c, pid))
    got = sorted(ids(store.search_all("Condition", None, compartment=("Patient", pid))))
    assert want and got == want


def test_compartment_search_every_type(store, truth):
    pid, other = truth.patients()[0]["id"], truth.patients()[1]["id"]
    got = {f"{r['resourceType']}/{r['id']}" for r in store.search_all(None, {"_count": "20"}, compartment=("Patient", pid))}
    own = {f"{t}/{r['id']}" for t in ("Observation", "Condition", "Encounter") for r in truth.of_type(t) if truth.subject_is(r, pid)}
    others = {f"Observation/{r['id']}" for r in truth.of_type("Observation") if truth.subject_is(r, other)}
    assert own <= got and not (others & got)


def test_chain(store, truth):
    family = truth.patients()[2]["name"][0]["family"]
    pid = truth.patients()[2]["id"]
    want = sorted(e["id"] for e in truth.of_type("Encounter") if truth.subject_is(e, pid))
    got = sorted(ids(store.search_all("Encounter", {"subject:Patient.family": family})))
    assert want and got == want


def test_has(store, truth):
    # Patients having at least one Immunization with this CVX code.
    code = sorted({c for i in truth.of_type("Immunization") for c in truth.codes(i, "vaccineCode")})[0]
    want = sorted(
        p["id"]
        for p in truth.patients()
        if any(truth.subject_is(i, p["id"]) and code in truth.codes(i, "vaccineCode") for i in truth.of_type("Immunization"))
    )
    got = sorted(ids(store.search_all("Patient", {"_has:Immunization:patient:vaccine-code": f"{code[0]}|{code[1]}"})))
    assert want and got == want


def test_summary_count(store, truth):
    assert store.count("Observation") == len(truth.of_type("Observation"))


def test_everything_with_dates(store, truth):
    pid = truth.patients()[0]["id"]
    everything = {f"{r['resourceType']}/{r['id']}" for r in store.everything_all(pid)}
    assert f"Patient/{pid}" in everything
    own_obs = {f"Observation/{o['id']}" for o in truth.of_type("Observation") if truth.subject_is(o, pid)}
    assert own_obs <= everything
    other = truth.patients()[1]["id"]
    assert f"Patient/{other}" not in everything

    # A window around the patient's middle observation year, so that it cuts the record in two.
    years = sorted(truth.res[k]["effectiveDateTime"][:4] for k in own_obs)
    start, end = f"{years[len(years) // 2]}-01-01", f"{years[len(years) // 2]}-12-31"
    window = {f"{r['resourceType']}/{r['id']}": r for r in store.everything_all(pid, start, end)}
    assert f"Patient/{pid}" in window  # the patient is always part of its record
    obs_in = {k for k in own_obs if start <= truth.res[k]["effectiveDateTime"][:10] <= end}
    window_obs = {k for k in window if k.startswith("Observation/")}
    assert 0 < len(obs_in) < len(own_obs) and window_obs == obs_in


def test_everything_unknown_patient(store):
    with pytest.raises(NotFound):
        list(store.everything_all("no-such-patient"))


# ------------------------------------------------------------------------------------------ errors
def test_unknown_parameter_is_named(store):
    with pytest.raises(SearchError, match="bogus-param"):
        store.search("Observation", {"bogus-param": "1"})


def test_malformed_date_is_rejected(store):
    with pytest.raises(SearchError, match="date"):
        store.search("Observation", {"date": "ge20xx-13"})


# ---------------------------------------------------------------------------- facade-specific checks
def test_embedded_and_rest_agree_on_many_queries(embedded, rest, truth):
    pids = [p["id"] for p in truth.patients()]
    queries = [
        ("Observation", {"patient": pids[0], "category": "vital-signs", "_sort": "-date"}),
        ("Observation", {"code": "http://loinc.org|8302-2,http://loinc.org|29463-7", "_sort": "date"}),
        ("Condition", {"patient": pids[2], "_sort": "onset-date"}),
        ("Encounter", {"date": "ge2015", "_count": "3"}),
        ("Immunization", {"date": "lt2014-06", "patient": f"Patient/{pids[1]}"}),
        ("Patient", {"gender": "male", "birthdate": "ge1980"}),
        ("Claim", {"patient": pids[1], "_count": "2"}),
        ("Observation", {"patient": pids[2], "date": "2012", "_count": "4"}),
    ]
    for rtype, params in queries:
        a = ids(embedded.search_all(rtype, params))
        b = ids(rest.search_all(rtype, params))
        assert a == b, (rtype, params)


def test_everything_paged_through_the_facade(embedded, facade, truth):
    pid = truth.patients()[1]["id"]
    whole = sorted(f"{r['resourceType']}/{r['id']}" for r in embedded.everything_all(pid))
    with RESTStore(facade, page_size=10, retries=0) as paged:
        first = paged.everything(pid)
        pages = list(paged.pages(first))
        got = sorted(f"{e['resource']['resourceType']}/{e['resource']['id']}" for p in pages for e in p.get("entry", []))
    assert len(pages) > 1 and all(len(p.get("entry", [])) <= 10 for p in pages)
    assert got == whole


def test_everything_unknown_patient_paged(facade):
    with RESTStore(facade, page_size=10, retries=0) as paged, pytest.raises(NotFound):
        paged.everything("no-such-patient")


def test_percent_encoded_operation(facade, truth):
    pid = truth.patients()[0]["id"]
    r = httpx.get(f"{facade}/Patient/{pid}/%24everything")
    assert r.status_code == 200 and any(e["resource"]["id"] == pid for e in r.json()["entry"])


def test_metadata_lists_types_and_everything(facade):
    cs = httpx.get(f"{facade}/metadata").json()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
    by_type = {r["type"]: r for r in cs["rest"][0]["resource"]}
    assert {"Patient", "Observation", "Encounter"} <= set(by_type)
    assert by_type["Patient"]["operation"][0]["name"] == "everything"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_writes_are_refused(facade, method):
    r = httpx.request(method, f"{facade}/Patient/x", json={"resourceType": "Patient", "id": "x"})
    assert r.status_code == 405
    assert r.headers["content-type"].startswith("application/fhir+json")
    assert "read-only" in r.json()["issue"][0]["diagnostics"]


def test_http_errors_are_operation_outcomes(facade):
    r = httpx.get(f"{facade}/Observation", params={"nope": "1"})
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/fhir+json")
    assert r.json()["resourceType"] == "OperationOutcome" and "nope" in r.json()["issue"][0]["diagnostics"]
    r = httpx.get(f"{facade}/Patient/missing")
    assert r.status_code == 404 and r.json()["issue"][0]["code"] == "not-found"
    r = httpx.get(f"{facade}/Patient/x/Observation/y/z")
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"


def test_concurrent_requests_from_many_threads(rest, facade, truth):
    """Request threads share one SQLiteStore (one connection per thread); answers must not mix."""
    pids = [p["id"] for p in truth.patients()]
    want = {pid: sorted(o["id"] for o in truth.of_type("Observation") if truth.subject_is(o, pid)) for pid in pids}
    errors: list[str] = []

    def worker(pid: str) -> None:
        with RESTStore(facade, timeout=20, retries=0) as s:
            for _ in range(3):
                got = sorted(ids(s.search_all("Observation", {"patient": pid, "_count": "9"})))
                if got != want[pid]:
                    errors.append(pid)

    threads = [threading.Thread(target=worker, args=(pids[i % 3],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors


def test_project_fixtures_identical_over_rest(fixture_store):
    """Every resource of every fixture patient (notes, unresolved references...) comes back unchanged."""
    from ehr_agent.tools.store.server import make_server

    server = make_server(fixture_store, "127.0.0.1", 0, quiet=True)
    server.start_in_thread()
    try:
        with RESTStore(server.base_url, retries=0, page_size=15) as rest_store:
            pids = fixture_store.patient_ids()
            assert len(pids) >= 3 and rest_store.patient_ids() == pids
            n_notes = 0
            for pid in pids:
                want = sorted(fixture_store.everything_all(pid), key=lambda r: (r["resourceType"], r["id"]))
                got = sorted(rest_store.everything_all(pid), key=lambda r: (r["resourceType"], r["id"]))
                assert got == want
                notes = list(rest_store.search_all("DocumentReference", {"patient": pid}))
                assert notes == list(fixture_store.search_all("DocumentReference", {"patient": pid}))
                n_notes += len(notes)
            assert n_notes > 0
    finally:
        server.stop()


# --------------------------------------------------------------------------------- the real CLI
def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("ehr-agent")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "ehr_agent.agent.cli"]


def test_serve_fhir_cli_subprocess(store_dir, truth):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*_cli(), "serve-fhir", "--store", str(store_dir), "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert m, f"serve-fhir printed no address: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
        with RESTStore(m.group(0), timeout=20, retries=2, backoff=0.2) as s:
            pid = truth.patients()[0]["id"]
            assert s.read("Patient", pid)["id"] == pid
            got = sorted(ids(s.search_all("Observation", {"patient": pid, "_count": "5"})))
            assert got == sorted(o["id"] for o in truth.of_type("Observation") if truth.subject_is(o, pid))
            with pytest.raises(SearchError, match="bogus"):
                s.search("Observation", {"bogus": "x"})
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_serve_fhir_cli_missing_store_is_a_clear_error(tmp_path):
    r = subprocess.run(
        [*_cli(), "serve-fhir", "--store", str(tmp_path / "nowhere"), "--port", "0"],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode != 0
    assert "no FHIR store" in r.stderr and "Traceback" not in r.stderr
