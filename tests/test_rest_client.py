"""RESTStore against small scripted HTTP servers: headers, URLs, retries, timeouts and error mapping.

Each test starts a stdlib HTTP server on 127.0.0.1 that answers from a script and records what it was
asked, so the client's behaviour on the wire (not its internals) is what is checked.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ehr_agent.tools.store.base import NotFound, SearchError, StoreError, StoreUnavailable
from ehr_agent.tools.store.rest import RESTStore, _retry_after_seconds

BUNDLE = {"resourceType": "Bundle", "type": "searchset", "total": 0, "entry": []}


def outcome(text: str) -> dict:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid", "diagnostics": text}]}


class Scripted:
    """A test FHIR server: answers each request with the next scripted reply and records the requests."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.requests: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                owner.requests.append({"method": "GET", "path": self.path, "headers": dict(self.headers)})
                status, headers, body, delay = owner.next_reply()
                if delay:
                    time.sleep(delay)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", headers.pop("Content-Type", "application/fhir+json"))
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

            do_POST = do_PUT = do_DELETE = do_GET

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir"

    def next_reply(self):
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        status, body, *rest = reply
        headers = dict(rest[0]) if rest else {}
        delay = rest[1] if len(rest) > 1 else 0
        return status, headers, body, delay

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted():
    servers: list[Scripted] = []

    def make(*replies):
        s = Scripted(replies)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def quiet_store(url: str, **kw) -> tuple[RESTStore, list[float]]:
    """A store whose backoff waits are recorded instead of slept, so retry tests stay fast."""
    store = RESTStore(url, **kw)
    waits: list[float] = []
    store._sleep = waits.append
    return store, waits


def test_sends_bearer_token_and_fhir_accept_header(scripted):
    srv = scripted((200, BUNDLE))
    with RESTStore(srv.url, token="s3cret") as store:
        store.search("Observation", {"code": "http://loinc.org|4548-4"})
    h = {k.lower(): v for k, v in srv.requests[0]["headers"].items()}
    assert h["authorization"] == "Bearer s3cret"
    assert h["accept"] == "application/fhir+json"


def test_token_callable_is_called_per_request(scripted):
    srv = scripted((200, BUNDLE))
    tokens = iter(["t1", "t2"])
    with RESTStore(srv.url, token=lambda: next(tokens)) as store:
        store.search("Patient")
        store.search("Patient")
    assert [r["headers"].get("Authorization") for r in srv.requests] == ["Bearer t1", "Bearer t2"]


def test_token_from_environment(scripted, monkeypatch):
    srv = scripted((200, BUNDLE))
    monkeypatch.setenv("EHR_AGENT_FHIR_TOKEN", "from-env")
    with RESTStore(srv.url) as store:
        store.search("Patient")
    assert srv.requests[0]["headers"].get("Authorization") == "Bearer from-env"


def test_token_command_runs_once_and_is_cached(scripted, monkeypatch, tmp_path):
    counter = tmp_path / "calls"
    script = tmp_path / "tok.py"
    script.write_text(
        "import pathlib, sys\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\n"
        "print('cmd-token-' + str(n))\n"
    )
    srv = scripted((200, BUNDLE))
    monkeypatch.delenv("EHR_AGENT_FHIR_TOKEN", raising=False)
    monkeypatch.setenv("EHR_AGENT_FHIR_TOKEN_COMMAND", f"{sys.executable} {script}")
    with RESTStore(srv.url) as store:
        store.search("Patient")
        store.search("Patient")
    assert [r["headers"].get("Authorization") for r in srv.requests] == ["Bearer cmd-token-1"] * 2


def test_failing_token_command_is_a_clear_error(scripted, monkeypatch):
    srv = scripted((200, BUNDLE))
    monkeypatch.delenv("EHR_AGENT_FHIR_TOKEN", raising=False)
    monkeypatch.setenv("EHR_AGENT_FHIR_TOKEN_COMMAND", f"{sys.executable} -c 'import sys; sys.exit(3)'")
    with RESTStore(srv.url) as store, pytest.raises(StoreError, match="token command .* failed"):
        store.search("Patient")
    assert srv.requests == []


def test_no_authorization_header_without_token(scripted, monkeypatch):
    monkeypatch.delenv("EHR_AGENT_FHIR_TOKEN", raising=False)
    monkeypatch.delenv("EHR_AGENT_FHIR_TOKEN_COMMAND", raising=False)
    srv = scripted((200, BUNDLE))
    with RESTStore(srv.url) as store:
        store.search("Patient")
    assert "authorization" not in {k.lower() for k in srv.requests[0]["headers"]}


def test_urls_for_read_search_compartment_everything(scripted):
    srv = scripted((200, {"resourceType": "Patient", "id": "p1"}), (200, BUNDLE))
    with RESTStore(srv.url + "/", page_size=7) as store:
        assert store.read("Patient", "p1")["id"] == "p1"
        store.search("Observation", [("date", "ge2010"), ("date", "lt2011"), ("code", "a|b,c|d")])
        store.search("Condition", {"clinical-status": "active"}, compartment=("Patient", "p1"))
        store.search(None, {"_count": "3"}, compartment=("Patient", "p1"))
        store.everything("p1", "2010-01-01", "2011-12-31")
    paths = [r["path"] for r in srv.requests]
    assert paths[0] == "/fhir/Patient/p1"
    assert paths[1] == "/fhir/Observation?date=ge2010&date=lt2011&code=a|b,c|d&_count=7"
    assert paths[2] == "/fhir/Patient/p1/Condition?clinical-status=active&_count=7"
    assert paths[3] == "/fhir/Patient/p1/*?_count=3"  # an explicit _count wins over page_size
    assert paths[4] == "/fhir/Patient/p1/$everything?start=2010-01-01&end=2011-12-31&_count=7"
    assert {r["method"] for r in srv.requests} == {"GET"}


def test_bare_patient_id_is_sent_typed(scripted):
    srv = scripted((200, BUNDLE))
    with RESTStore(srv.url) as store:
        store.search("Observation", [("patient", "p1,Patient/p2"), ("subject", "p3"), ("patient.family", "X")])
    assert srv.requests[0]["path"] == "/fhir/Observation?patient=Patient/p1,Patient/p2&subject=p3&patient.family=X"


def test_next_page_follows_link_as_is_even_to_another_path(scripted):
    other = scripted((200, {**BUNDLE, "entry": [{"resource": {"resourceType": "Patient", "id": "p2"}}]}))
    first = {**BUNDLE, "link": [{"relation": "self", "url": "x"}, {"relation": "next", "url": other.url + "/page/abc?_getpages=tok&_offset=2"}]}
    srv = scripted((200, first))
    with RESTStore(srv.url, token="tok") as store:
        page1 = store.search("Patient")
        page2 = store.next_page(page1)
        assert store.next_page(page2) is None
    assert page2["entry"][0]["resource"]["id"] == "p2"
    assert other.requests[0]["path"] == "/fhir/page/abc?_getpages=tok&_offset=2"
    # The other origin (another port) is followed but never sent the token.
    assert srv.requests[0]["headers"].get("Authorization") == "Bearer tok"
    assert "authorization" not in {k.lower() for k in other.requests[0]["headers"]}


def test_search_all_walks_every_page(scripted):
    srv = scripted((200, BUNDLE))
    srv.replies = [
        (200, {**BUNDLE, "entry": [{"resource": {"resourceType": "Patient", "id": "a"}}], "link": [{"relation": "next", "url": srv.url + "/Patient?_offset=1"}]}),
        (200, {**BUNDLE, "entry": [{"resource": {"resourceType": "Patient", "id": "b"}}]}),
    ]
    with RESTStore(srv.url) as store:
        assert [r["id"] for r in store.search_all("Patient")] == ["a", "b"]


def test_retries_429_honouring_retry_after_then_succeeds(scripted):
    srv = scripted((429, outcome("slow down"), {"Retry-After": "2"}), (503, outcome("busy")), (200, BUNDLE))
    store, waits = quiet_store(srv.url, retries=4, backoff=0.25)
    with store:
        assert store.search("Patient")["resourceType"] == "Bundle"
    assert len(srv.requests) == 3
    # First wait is the server's Retry-After, the second exponential backoff (0.25 * 2**1).
    assert waits == [2.0, 0.5]


def test_retries_exhausted_raises_store_unavailable_with_host_status_attempts(scripted):
    srv = scripted((503, outcome("database is down")))
    store, waits = quiet_store(srv.url, retries=2, backoff=0.1)
    with store, pytest.raises(StoreUnavailable) as ei:
        store.search("Observation", {"code": "x"})
    msg = ei.value.message
    host = srv.url.split("/")[2]
    assert host in msg and "HTTP 503" in msg and "3 attempts" in msg and "database is down" in msg
    assert len(srv.requests) == 3
    assert waits == [0.1, 0.2]


def test_overlong_retry_after_gives_up_instead_of_hanging(scripted):
    srv = scripted((429, outcome("quota"), {"Retry-After": "3600"}))
    store, waits = quiet_store(srv.url, retries=3)
    with store, pytest.raises(StoreUnavailable, match="3600"):
        store.search("Patient")
    assert waits == [] and len(srv.requests) == 1


def test_timeout_is_honoured(scripted):
    srv = scripted((200, BUNDLE, {}, 3.0))
    store = RESTStore(srv.url, timeout=0.3, retries=1, backoff=0.0)
    t0 = time.monotonic()
    with store, pytest.raises(StoreUnavailable) as ei:
        store.search("Patient")
    elapsed = time.monotonic() - t0
    assert "no answer within 0.3 s" in ei.value.message and "2 attempts" in ei.value.message
    assert elapsed < 2.5  # two 0.3 s attempts, far below the server's 3 s sleep


def test_connection_refused_is_store_unavailable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens on the port now.
    store, waits = quiet_store(f"http://127.0.0.1:{port}", retries=1, backoff=0.01)
    with store, pytest.raises(StoreUnavailable, match="connection failed") as ei:
        store.read("Patient", "p1")
    assert f"127.0.0.1:{port}" in ei.value.message and waits == [0.01]


@pytest.mark.parametrize("status", [400, 422])
def test_bad_request_is_search_error_with_server_diagnostics(scripted, status):
    srv = scripted((status, outcome("Unknown search parameter 'foo' for resource type 'Observation'")))
    with RESTStore(srv.url) as store, pytest.raises(SearchError) as ei:
        store.search("Observation", {"foo": "1"})
    assert "Unknown search parameter 'foo'" in ei.value.message
    assert ei.value.status == status
    assert len(srv.requests) == 1  # a rejected request is never retried


def test_404_is_not_found(scripted):
    srv = scripted((404, outcome("Resource Patient/nope is not known")))
    with RESTStore(srv.url) as store, pytest.raises(NotFound, match="Patient/nope"):
        store.read("Patient", "nope")


def test_401_names_the_token(scripted):
    srv = scripted((401, outcome("token expired")))
    with RESTStore(srv.url, token="old") as store, pytest.raises(StoreError) as ei:
        store.search("Patient")
    assert ei.value.status == 401 and "token expired" in ei.value.message and "token" in ei.value.message


def test_non_json_answer_is_a_clear_error(scripted):
    srv = scripted((200, b"<html>login page</html>", {"Content-Type": "text/html"}))
    with RESTStore(srv.url) as store, pytest.raises(StoreError, match="non-JSON content"):
        store.search("Patient")


@pytest.mark.parametrize("url", ["ftp://x/fhir", "localhost:8080", "http://host/fhir?x=1"])
def test_invalid_base_url_is_rejected(url):
    with pytest.raises(StoreError, match="base URL"):
        RESTStore(url)


def test_invalid_settings_are_rejected():
    with pytest.raises(StoreError, match="timeout"):
        RESTStore("http://h/fhir", timeout=0)


@pytest.mark.parametrize("rid", ["../Observation", "a b", "", "x" * 65])
def test_invalid_ids_never_reach_the_server(scripted, rid):
    srv = scripted((200, BUNDLE))
    with RESTStore(srv.url) as store, pytest.raises(SearchError, match="invalid resource id"):
        store.read("Patient", rid)
    assert srv.requests == []


def test_retry_after_parsing():
    assert _retry_after_seconds("5") == 5.0
    assert _retry_after_seconds(None) is None
    assert _retry_after_seconds("soon") is None
    in_ten = _retry_after_seconds(formatdate(time.time() + 10, usegmt=True))
    assert in_ten is not None and 8 <= in_ten <= 11
    assert _retry_after_seconds(formatdate(time.time() - 100, usegmt=True)) == 0.0
