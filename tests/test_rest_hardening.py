"""Regression tests of issue 12: no 500, no silently wrong result, every number checked.

Each call of the issue runs through the REST facade (``make_server`` on the project's fixtures) and through
the CLI (``ehr-agent search``, in-process). Each must answer 200 with the right result, or a 4xx
OperationOutcome (CLI: exit 2, one line) that names the parameter. Expected results come from the raw
fixture bundles, not from the store.
"""

from __future__ import annotations

import json
import socket
from urllib.parse import quote

import httpx
import pytest

from ehr_agent.agent.cli import main as cli_main
from conftest import ALICE, FIXTURES

FAMILIES = {"Moreau", "Haines", "Whitfield"}


def ref_id(ref: str) -> str:
    """The id a fixture reference points at (fixtures use ``urn:uuid:<id>``, the loader ``Type/<id>``)."""
    return ref.rsplit("/", 1)[-1].removeprefix("urn:uuid:")


def raw(rtype: str) -> list[dict]:
    out = []
    for f in sorted(FIXTURES.glob("*.json")):
        out += [e["resource"] for e in json.loads(f.read_text())["entry"] if e["resource"]["resourceType"] == rtype]
    return out


@pytest.fixture(scope="module")
def base(fixture_store):
    from ehr_agent.tools.store.server import make_server

    server = make_server(fixture_store, "127.0.0.1", 0, quiet=True)
    server.start_in_thread()
    yield server.base_url
    server.stop()


@pytest.fixture(scope="module")
def client(base):
    with httpx.Client(base_url=base, timeout=30) as c:
        yield c


def store_dir(fixture_store) -> str:
    return str(fixture_store.directory)


def cli_search(fixture_store, query: str, capsys) -> tuple[int, str, str]:
    rc = cli_main(["search", "--store", store_dir(fixture_store), query])
    out = capsys.readouterr()
    return rc, out.out, out.err


def diagnostics(r: httpx.Response) -> str:
    assert r.headers["content-type"].startswith("application/fhir+json"), r.text[:200]
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    return " ".join(i.get("diagnostics", "") for i in body["issue"])


# Calls that must be refused with a 400 naming the parameter (the name as the client wrote it).
FOUR_HOPS = "subject:Patient.organization.partof.partof.name"
THREE_HAS = "_has:Encounter:patient:_has:Observation:encounter:_has:Observation:has-member:code"
REFUSED = [
    ("Observation", [(FOUR_HOPS, "x")], FOUR_HOPS),
    ("Patient", [(THREE_HAS, "x")], THREE_HAS),
    ("Patient", [("name", ",".join(f"n{i}" for i in range(3000)))], "name"),
    ("Patient", [("name", "a")] * 2000, "name"),
    ("Patient", [("family", ",".join(f"f{i}" for i in range(1000)))] * 4, "family"),  # 4,000 values in all
    ("Patient", [("name:contains", "a" * 2000)], "name:contains"),
    ("Patient", [("family:exact", "Moreau\x00zzz")], "family:exact"),
    ("Observation", [("_offset", "99999999999999999999999")], "_offset"),
    ("Observation", [("_offset", "abc")], "_offset"),
    ("Observation", [("_count", "abc")], "_count"),
    ("Observation", [("_count", "1_000")], "_count"),
    ("Observation", [("value-quantity", "gt1e999999")], "value-quantity"),
]


@pytest.mark.parametrize("rtype,params,name", REFUSED, ids=[c[2][:30] + f"-{i}" for i, c in enumerate(REFUSED)])
def test_refused_with_400_naming_the_parameter_over_rest(client, rtype, params, name):
    query = "&".join(f"{quote(k, safe=':._-')}={quote(v, safe=',')}" for k, v in params)
    r = client.get(f"/{rtype}?{query}")
    if len(query) > 8192:  # a URL that long is refused before parsing: 414, still naming the longest parameter
        assert r.status_code == 414
    else:
        assert r.status_code == 400, r.text[:300]
    assert name.split(":")[0] in diagnostics(r)


@pytest.mark.parametrize("rtype,params,name", REFUSED, ids=[c[2][:30] + f"-{i}" for i, c in enumerate(REFUSED)])
def test_refused_with_one_line_naming_the_parameter_in_the_cli(fixture_store, capsys, rtype, params, name):
    query = rtype + "?" + "&".join(f"{quote(k, safe=':._-')}={quote(v, safe=',')}" for k, v in params)
    rc, out, err = cli_search(fixture_store, query, capsys)
    assert rc == 2 and out == ""
    assert name in err and "Traceback" not in err and err.count("\n") == 1


def test_everything_numbers_are_checked(client, fixture_store, capsys):
    for k in ("_count", "_offset"):
        r = client.get(f"/Patient/{ALICE}/$everything", params={k: "abc"})
        assert r.status_code == 400 and k in diagnostics(r)
        rc, _, err = cli_search(fixture_store, f"Patient/{ALICE}/$everything?{k}=abc", capsys)
        assert rc == 2 and k in err
    r = client.get(f"/Patient/{ALICE}/$everything", params={"_offset": "99999999999999999999999"})
    assert r.status_code == 400 and "_offset" in diagnostics(r)


def test_limits_themselves_are_accepted_with_the_right_result(client):
    # three hops (the documented maximum) run; nothing in the fixtures has a partOf chain, so 0 is right
    r = client.get("/Observation", params={"subject:Patient.organization.partof.name": "x"})
    assert r.status_code == 200 and r.json()["total"] == 0
    # two _has levels: patients with an encounter that an observation of a given code points at
    obs = [o for o in raw("Observation") if (o.get("encounter") or {}).get("reference")]
    code = obs[0]["code"]["coding"][0]["code"]
    enc_ids = {ref_id(o["encounter"]["reference"]) for o in obs if o["code"]["coding"][0]["code"] == code}
    expected = {ref_id(e["subject"]["reference"]) for e in raw("Encounter") if e["id"] in enc_ids}
    r = client.get("/Patient", params={"_has:Encounter:patient:_has:Observation:encounter:code": code})
    assert r.status_code == 200
    assert {e["resource"]["id"] for e in r.json().get("entry", [])} == expected and expected
    # an OR list of 1,000 values (the maximum) and 30 filter parameters (the maximum)
    names = ["Moreau"] + [f"z{i}" for i in range(999)]
    r = client.get("/Patient", params={"family": ",".join(names)})
    assert r.status_code == 200 and r.json()["total"] == 1
    r = client.get("/Patient?" + "&".join(["family=Moreau"] * 30))
    assert r.status_code == 200 and r.json()["total"] == 1


def test_last_updated_beyond_year_9999_matches_nothing(client):
    n = len(raw("Patient"))
    for value, expected in (("gt9999", 0), ("ge9999-12-31", 0), ("sa9999", 0), ("lt9999", n), ("gt2000", n)):
        r = client.get("/Patient", params={"_lastUpdated": value})
        assert r.status_code == 200 and r.json()["total"] == expected, value


def test_exact_string_is_compared_whole(client):
    r = client.get("/Patient", params={"family:exact": "Moreau"})
    assert r.status_code == 200 and r.json()["total"] == 1
    r = client.get("/Patient", params={"family:exact": "Moreauzzz"})
    assert r.status_code == 200 and r.json()["total"] == 0


def test_malformed_content_length_gets_an_answer(base):
    """A POST whose Content-Length is not a number is answered (4xx), not dropped."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /Patient HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
        head = s.recv(4096).decode("latin-1")
    assert head.startswith("HTTP/1.1 4"), head[:100]
