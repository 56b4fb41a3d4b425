"""The facade's own behaviour over stub stores: error mapping, locking, per-connection stores, links."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from ehr_agent.tools.store.base import FHIRStore, SearchError, StoreError
from ehr_agent.tools.store.server import make_server


class StubStore(FHIRStore):
    """A store answering every search with one page whose ``next`` link uses the store's urn base."""

    base_url = "urn:stub"

    def __init__(self, delay: float = 0.0, fail: Exception | None = None):
        self.delay = delay
        self.fail = fail
        self.active = 0
        self.max_active = 0
        self.closed = 0
        self._mutex = threading.Lock()

    def _enter(self) -> None:
        with self._mutex:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        time.sleep(self.delay)
        with self._mutex:
            self.active -= 1
        if self.fail is not None:
            raise self.fail

    def read(self, resource_type, resource_id):
        self._enter()
        return {"resourceType": resource_type, "id": resource_id}

    def search(self, resource_type, params=None, *, compartment=None):
        self._enter()
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "link": [{"relation": "next", "url": f"{self.base_url}/{resource_type}?_offset=1"}],
            "entry": [{"fullUrl": f"{self.base_url}/{resource_type}/a", "resource": {"resourceType": resource_type, "id": "a"}}],
        }

    def next_page(self, bundle):
        return None

    def everything(self, patient_id, start=None, end=None, *, count=None):
        self._enter()
        return {"resourceType": "Bundle", "type": "searchset", "entry": []}

    def close(self):
        self.closed += 1


@pytest.fixture
def serve():
    servers = []

    def start(store):
        server = make_server(store, "127.0.0.1", 0, quiet=True)
        server.start_in_thread()
        servers.append(server)
        return server.base_url

    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def serve_with():
    """Like ``serve`` but returns the server (for its settings and :meth:`stop`)."""
    servers = []

    def start(store, **kwargs):
        server = make_server(store, "127.0.0.1", 0, quiet=True, **kwargs)
        server.start_in_thread()
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


def test_unexpected_error_is_500_operation_outcome_and_server_survives(serve):
    store = StubStore(fail=RuntimeError("disk on fire"))
    url = serve(store)
    r = httpx.get(f"{url}/Observation")
    assert r.status_code == 500 and r.headers["content-type"].startswith("application/fhir+json")
    assert "disk on fire" in r.json()["issue"][0]["diagnostics"]
    store.fail = None
    assert httpx.get(f"{url}/Observation").status_code == 200


def test_store_errors_keep_their_status(serve):
    url = serve(StubStore(fail=SearchError("unknown parameter 'zzz'")))
    r = httpx.get(f"{url}/Observation", params={"zzz": "1"})
    assert r.status_code == 400 and "zzz" in r.json()["issue"][0]["diagnostics"]


def test_links_ignore_the_host_header_and_follow_the_bound_address(serve):
    url = serve(StubStore())
    body = httpx.get(f"{url}/Observation", headers={"Host": "evil.example.test:1"}).json()
    assert body["link"][0]["url"] == f"{url}/Observation?_offset=1"
    assert body["entry"][0]["fullUrl"] == f"{url}/Observation/a"


def test_links_follow_the_configured_base_url_and_its_path_is_served(serve_with):
    server = serve_with(StubStore(), base_url="https://fhir.example.test/r4/")
    local = f"http://127.0.0.1:{server.server_address[1]}"
    for path in ("/Observation", "/r4/Observation"):  # behind a proxy that keeps or strips the prefix
        body = httpx.get(local + path, headers={"Host": "evil.example.test"}).json()
        assert body["link"][0]["url"] == "https://fhir.example.test/r4/Observation?_offset=1"
        assert body["entry"][0]["fullUrl"] == "https://fhir.example.test/r4/Observation/a"
    assert server.base_url == "https://fhir.example.test/r4"


def test_a_generic_shared_store_is_called_one_request_at_a_time(serve):
    store = StubStore(delay=0.05)
    url = serve(store)
    threads = [threading.Thread(target=httpx.get, args=(f"{url}/Patient/p{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert store.max_active == 1


def test_factory_gives_each_worker_thread_its_own_store_and_closes_them_at_stop(serve_with):
    made: list[StubStore] = []
    lock = threading.Lock()

    def factory():
        with lock:
            made.append(StubStore(delay=0.02))
            return made[-1]

    server = serve_with(factory)
    url = server.base_url
    threads = [threading.Thread(target=httpx.get, args=(f"{url}/Patient/p{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert made and all(s.max_active == 1 for s in made)  # a store is never used by two threads at once
    assert not any(s.closed for s in made)
    server.stop()
    assert all(s.closed == 1 for s in made)


@pytest.mark.parametrize(
    "path,status,text",
    [
        ("/", 400, "system-level search"),
        ("/Observation?_format=xml", 406, "FHIR JSON only"),
        ("/observation", 400, "not a FHIR resource type"),
        ("/Group/g1/Observation", 400, "only the Patient compartment"),
        ("/Patient/p1/$validate", 400, "not supported"),
        ("/Patient/p1/$everything?_type=Observation", 400, "_type"),
    ],
)
def test_bad_requests_are_explained(serve, path, status, text):
    url = serve(StubStore())
    r = httpx.get(url + path)
    assert r.status_code == status and text in r.json()["issue"][0]["diagnostics"]


def test_format_json_and_pretty_are_accepted(serve):
    url = serve(StubStore())
    assert httpx.get(f"{url}/Observation?_format=json&_pretty=true").status_code == 200


def test_port_in_use_is_a_clear_error(serve):
    url = serve(StubStore())
    port = int(url.rsplit(":", 1)[1])
    with pytest.raises(StoreError, match=f"cannot listen on 127.0.0.1:{port}"):
        make_server(StubStore(), "127.0.0.1", port)
