"""The ASGI facade's HTTP behaviour: HEAD/OPTIONS, 414/431 as OperationOutcome, timeouts for idle and
partial connections, lenient handling, the cap on included resources, /metadata, ``create_app`` mounted
inside another app, and fhirpy (a FHIR client nobody here wrote) counting and paging against it."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

import ehr_agent.tools.store.server as server_mod
from conftest import ALICE, BOB, FIXTURES
from ehr_agent.tools.store.server import create_app, make_server


def raw(rtype: str) -> list[dict]:
    out = []
    for f in sorted(FIXTURES.glob("*.json")):
        out += [e["resource"] for e in json.loads(f.read_text())["entry"] if e["resource"]["resourceType"] == rtype]
    return out


@pytest.fixture(scope="module")
def server(fixture_store):
    srv = make_server(fixture_store, "127.0.0.1", 0, quiet=True)
    srv.start_in_thread()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.base_url, timeout=30) as c:
        yield c


def outcome(r: httpx.Response) -> str:
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    return " ".join(i.get("diagnostics", "") for i in body["issue"])


def test_head_answers_headers_without_a_body(client):
    get = client.get(f"/Patient/{ALICE}")
    head = client.head(f"/Patient/{ALICE}")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert int(head.headers["content-length"]) == len(get.content)
    assert client.head("/Patient/nobody").status_code == 404


def test_options_lists_the_allowed_methods(client):
    r = client.request("OPTIONS", "/Patient")
    assert r.status_code == 200 and set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "OPTIONS"}
    w = client.post("/Patient", content=b"{}")
    assert w.status_code == 405 and "read-only" in outcome(w) and "GET" in w.headers["allow"]


def test_too_long_url_is_414_and_too_many_headers_431_as_operation_outcome(client):
    r = client.get("/Patient", params={"family": "x" * 9000})
    assert r.status_code == 414 and "family" in outcome(r)
    r = client.get("/Patient", headers={f"x-pad-{i}": "y" * 200 for i in range(50)})
    assert r.status_code == 431 and r.headers["content-type"].startswith("application/fhir+json")
    assert "headers" in outcome(r)


def test_idle_and_partial_connections_are_closed(fixture_store, monkeypatch):
    monkeypatch.setattr(server_mod, "REQUEST_HEAD_TIMEOUT_S", 0.5)
    srv = make_server(fixture_store, "127.0.0.1", 0, quiet=True)
    srv.start_in_thread()
    try:
        host, port = srv.server_address[:2]
        idle = socket.create_connection((host, port), timeout=10)
        partial = socket.create_connection((host, port), timeout=10)
        partial.sendall(b"GET /Patient HTTP/1.1\r\nHost: x\r\n")  # the head never ends
        t0 = time.monotonic()
        assert idle.recv(100) == b"" and partial.recv(100) == b""  # closed by the server
        assert time.monotonic() - t0 < 5
        # a served connection stays usable for its next request, and is then closed when idle
        with httpx.Client(base_url=srv.base_url) as c:
            assert c.get("/metadata").status_code == 200
            assert c.get(f"/Patient/{ALICE}").status_code == 200
    finally:
        srv.stop()


def test_lenient_handling_ignores_unknown_parameters_and_reports_them(client):
    strict = client.get("/Patient", params={"colour": "blue", "family": "Moreau"})
    assert strict.status_code == 400 and "colour" in outcome(strict)
    r = client.get("/Patient", params={"colour": "blue", "family": "Moreau", "_text": "x"},
                   headers={"Prefer": "handling=lenient"})
    assert r.status_code == 200
    body = r.json()
    matches = [e for e in body["entry"] if e["search"]["mode"] == "match"]
    notes = [e["resource"] for e in body["entry"] if e["search"]["mode"] == "outcome"]
    assert body["total"] == 1 and [e["resource"]["name"][0]["family"] for e in matches] == ["Moreau"]
    assert len(notes) == 1 and "colour" in notes[0]["issue"][0]["diagnostics"] and "_text" in notes[0]["issue"][0]["diagnostics"]
    assert notes[0]["issue"][0]["severity"] == "warning"
    assert "colour" not in body["link"][0]["url"]  # the self link shows the search that ran
    # a known parameter with a bad value is still an error, lenient or not
    bad = client.get("/Patient", params={"birthdate": "yesterday"}, headers={"Prefer": "handling=lenient"})
    assert bad.status_code == 400 and "birthdate" in outcome(bad)


def test_included_resources_are_capped_per_page_with_a_warning(client, monkeypatch):
    import ehr_agent.tools.store.search.bundle as bundle_mod

    full = client.get("/Patient", params={"_revinclude": "Observation:subject", "_count": "10"}).json()
    included = [e for e in full["entry"] if e["search"]["mode"] == "include"]
    assert len(included) == len(raw("Observation")) and not any(e["search"]["mode"] == "outcome" for e in full["entry"])
    monkeypatch.setattr(bundle_mod, "MAX_INCLUDED", 5)
    capped = client.get("/Patient", params={"_revinclude": "Observation:subject", "_count": "10"}).json()
    modes = [e["search"]["mode"] for e in capped["entry"]]
    assert modes.count("include") == 5 and modes.count("match") == full["total"]
    warn = [e["resource"] for e in capped["entry"] if e["search"]["mode"] == "outcome"]
    assert len(warn) == 1 and "cut at 5" in warn[0]["issue"][0]["diagnostics"]
    assert {e["resource"]["id"] for e in capped["entry"] if e["search"]["mode"] == "include"} <= {
        e["resource"]["id"] for e in included}


def test_metadata_declares_r4_types_and_includes(client):
    cs = client.get("/metadata").json()
    res = {r["type"]: r for r in cs["rest"][0]["resource"]}
    params = {p["name"]: p["type"] for p in res["Observation"]["searchParam"]}
    assert params["_id"] == "token" and params["_lastUpdated"] == "date"
    assert not any(p["type"] == "special" for r in res.values() for p in r.get("searchParam", []))
    assert "Observation:subject" in res["Observation"]["searchInclude"]
    assert "Observation:subject" in res["Patient"]["searchRevInclude"]
    assert "Observation:subject" not in res["Organization"].get("searchRevInclude", [])


def test_create_app_mounts_beside_another_asgi_app(fixture_store):
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route
    from starlette.testclient import TestClient

    fhir = create_app(fixture_store, base_url="http://testserver/fhir")
    outer = Starlette(routes=[Route("/health", lambda r: PlainTextResponse("ok")), Mount("/fhir", app=fhir)])
    with TestClient(outer) as c:
        assert c.get("/health").text == "ok"
        r = c.get("/fhir/Patient", params={"_count": "1"})
        assert r.status_code == 200 and r.json()["total"] == len(raw("Patient"))
        assert r.json()["link"][1]["url"].startswith("http://testserver/fhir/Patient?")
        assert c.get(f"/fhir/Patient/{BOB}").json()["id"] == BOB
    bare = Starlette(routes=[Mount("/api/fhir", app=create_app(fixture_store))])  # no base_url: the mount point
    with TestClient(bare) as c:
        assert c.get(f"/api/fhir/Patient/{BOB}").json()["id"] == BOB
        assert c.get("/api/fhir/metadata").json()["resourceType"] == "CapabilityStatement"
        page = c.get("/api/fhir/Patient", params={"_count": "1"}).json()
        assert "/api/fhir/Patient?" in page["link"][1]["url"]
        assert c.get(page["link"][1]["url"]).json()["entry"][0]["resource"]["resourceType"] == "Patient"


def test_fhirpy_counts_reads_and_pages(server):
    fhirpy = pytest.importorskip("fhirpy", reason="fhirpy is in the test extra: pip install -e '.[test]'")
    client = fhirpy.SyncFHIRClient(server.base_url)
    n_obs = len(raw("Observation"))
    assert client.resources("Observation").count() == n_obs
    assert client.resources("Patient").search(family="Moreau").count() == 1
    got = client.resources("Observation").limit(7).fetch_all()
    assert len(got) == n_obs and len({o.id for o in got}) == n_obs
    assert client.reference("Patient", ALICE).to_resource()["id"] == ALICE
    lenient = fhirpy.SyncFHIRClient(server.base_url, extra_headers={"Prefer": "handling=lenient"})
    assert lenient.resources("Patient").search(colour="blue").count() == len(raw("Patient"))
    with pytest.raises(fhirpy.base.exceptions.OperationOutcome):
        client.resources("Patient").search(colour="blue").count()


def test_request_head_past_the_cap_is_refused_not_buffered(server):
    """httptools has no limit of its own: a 70 KB request line or header block gets a 400 and a close."""
    host, port = server.server_address[:2]
    for head in (b"GET /Patient?family=" + b"x" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                 b"GET /Patient HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"y" * 1000) for i in range(70)) + b"\r\n"):
        with socket.create_connection((host, port), timeout=10) as s:
            try:
                s.sendall(head)
            except OSError:  # the server may close while we are still sending
                pass
            reply = s.recv(200)
        assert reply.startswith(b"HTTP/1.1 400"), reply
