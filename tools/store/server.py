"""A read-only FHIR R4 REST facade over the embedded store (``ehr-agent serve-fhir``).

Any FHIR client (or :class:`tools.store.rest.RESTStore`) can then read the embedded store over HTTP:

=====================================================  ==============================================
``GET [base]/metadata``                                CapabilityStatement (types, interactions)
``GET [base]/Type/id``                                 read
``GET [base]/Type?params``                             search (one page; follow the ``next`` link)
``GET [base]/Patient/ID/Type?params``                  compartment search (``*`` for every type)
``GET [base]/Patient/ID/$everything?start=&end=``      the patient's record, clinical dates in range
=====================================================  ==============================================

Paging links and ``fullUrl`` values in returned Bundles point at the configured public base URL (the
store's own ``urn:`` base is rewritten); the client's ``Host`` header is never used for them. Errors come
back as OperationOutcome: 400 for a search the store rejects, 404 for a missing resource, 405 for any
write (the facade is read-only), 414/431 for an over-long URL or header block, 500 for anything
unexpected.

The facade is an ASGI application (:func:`create_app`, Starlette) served by uvicorn (:func:`make_server`,
:func:`serve`), so another ASGI app (an MCP server's HTTP transport, say) can be mounted beside it.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Union
from urllib.parse import unquote, urlsplit

from .base import (
    FHIRStore,
    NotFound,
    SearchError,
    StoreError,
    encode_params,
    normalize_params,
    operation_outcome,
)
from .compartment import PATIENT_COMPARTMENT

FHIR_JSON = "application/fhir+json; charset=utf-8"

StoreSource = Union[FHIRStore, Callable[[], FHIRStore]]
"""Either one store shared by every request thread, or a factory called once per worker thread (for
stores whose connections must not cross threads); see :func:`create_app`."""

# Shared (non-compartment) types Synthea emits; listed in the CapabilityStatement with the compartment types.
_SHARED_TYPES = ("Location", "Medication", "Organization", "Practitioner", "PractitionerRole")

# Parameters that shape the HTTP answer, not the search; FHIR lets a server ignore them.
_FORMAT_PARAMS = ("_format", "_pretty")
_JSON_FORMATS = ("json", "application/json", "application/fhir+json", "application/json+fhir")

MAX_URL_BYTES = 8192  # path + query; longer is 414 (uvicorn's own parser refuses past MAX_REQUEST_HEAD_BYTES)
MAX_HEADER_BYTES = 8192  # all header names and values together; more is 431
MAX_REQUEST_HEAD_BYTES = 65536  # a request head past this gets uvicorn's plain-text 400 and the connection closed
REQUEST_HEAD_TIMEOUT_S = 10.0  # a connection must deliver a whole request head within this (slow or idle clients)
KEEP_ALIVE_TIMEOUT_S = 5  # an idle keep-alive connection is closed after this
_READ_METHODS = ("GET", "HEAD")
_ALLOW = "GET, HEAD, OPTIONS"

try:  # orjson encodes a large Bundle several times faster than the json module
    import orjson

    def _dumps(body: dict) -> bytes:
        return orjson.dumps(body)

except ImportError:  # pragma: no cover - orjson is a dependency; kept importable without it
    import json

    def _dumps(body: dict) -> bytes:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class _Facade:
    """The request logic, independent of the HTTP server: a path, a query and flags in, (status, body) out.

    Runs in worker threads (store calls block). A shared :class:`SQLiteStore` is used concurrently (it
    keeps one read-only connection per thread); any other shared store is called under a lock; a factory
    gives each worker thread its own store, closed by :meth:`close`.
    """

    def __init__(self, source: StoreSource, base_url: str | None):
        if isinstance(source, FHIRStore):
            self._shared: FHIRStore | None = source
            self._factory: Callable[[], FHIRStore] | None = None
        else:
            self._shared = None
            self._factory = source
        self._lock = threading.Lock()
        self._locked = self._shared is not None and not _has_per_thread_connections(self._shared)
        self._local = threading.local()
        self._owned: list[FHIRStore] = []
        self._owned_lock = threading.Lock()
        self.base_url = base_url.rstrip("/") if base_url else None
        self._prefix = urlsplit(self.base_url).path.rstrip("/") if self.base_url else ""

    # --- stores -----------------------------------------------------------------------------------
    def _store(self) -> FHIRStore:
        if self._shared is not None:
            return self._shared
        store = getattr(self._local, "store", None)
        if store is None:
            assert self._factory is not None
            store = self._local.store = self._factory()
            with self._owned_lock:
                self._owned.append(store)
        return store

    def _call(self, fn: Callable[[FHIRStore], dict]) -> dict:
        store = self._store()
        if self._locked:
            with self._lock:
                return fn(store)
        return fn(store)

    def close(self) -> None:
        """Close the stores a factory made (a shared store belongs to the caller)."""
        with self._owned_lock:
            owned, self._owned = self._owned, []
        for s in owned:
            try:
                s.close()
            except Exception:  # pragma: no cover - closing is best effort at shutdown
                traceback.print_exc(file=sys.stderr)

    # --- one request -------------------------------------------------------------------------------
    def handle(self, path: str, query: str, public: str, lenient: bool) -> tuple[int, dict]:
        """Status and body for ``GET path?query``; never raises."""
        try:
            return 200, self._route(path, query, public, lenient)
        except SearchError as e:
            return e.status, e.operation_outcome()
        except NotFound as e:
            return 404, e.operation_outcome()
        except StoreError as e:
            return e.status, e.operation_outcome()
        except Exception as e:  # a server must answer, and say what broke, rather than drop the connection
            traceback.print_exc(file=sys.stderr)
            return 500, operation_outcome(f"internal error: {type(e).__name__}: {e}", code="exception")

    def _route(self, raw_path: str, query: str, public: str, lenient: bool) -> dict:
        if self._prefix and (raw_path == self._prefix or raw_path.startswith(self._prefix + "/")):
            raw_path = raw_path[len(self._prefix):]
        # Some clients percent-encode the '$' of operations (%24everything).
        segs = [unquote(s) for s in raw_path.split("/") if s]
        params = _strip_format(normalize_params(query))

        if segs == ["metadata"]:
            return capability_statement(public)
        if not segs:
            raise SearchError("system-level search is not supported; search a resource type: GET [base]/Type?params")
        for s in segs:
            if not _valid_segment(s):
                raise SearchError(f"invalid path segment {s[:80]!r}")
        ignored: list[str] = []
        if len(segs) == 1:
            rtype = _check_type(segs[0])
            params, ignored = self._lenient(rtype, params, lenient)
            return self._search(rtype, rtype, params, None, public, ignored)
        if len(segs) == 2:
            rtype, rid = _check_type(segs[0]), segs[1]
            if rid.startswith("$") or rid.startswith("_"):
                raise SearchError(f"operation {rid} is not supported on {rtype}")
            return self._call(lambda s: s.read(rtype, rid))
        if len(segs) == 3:
            ctype, cid, last = segs
            if ctype != "Patient":
                raise SearchError(f"only the Patient compartment is supported, not {ctype}")
            if last == "$everything":
                return self._everything(cid, params, public)
            if last.startswith("$"):
                raise SearchError(f"operation {last} is not supported (only Patient/ID/$everything)")
            rtype = None if last == "*" else _check_type(last)
            params, ignored = self._lenient(rtype, params, lenient)
            return self._search(f"Patient/{cid}/{last}", rtype, params, ("Patient", cid), public, ignored)
        raise NotFound(f"no FHIR route for {raw_path}")

    @staticmethod
    def _lenient(rtype: str | None, params: list[tuple[str, str]], lenient: bool):
        if not lenient:
            return params, []
        from .search.bundle import split_unknown

        return split_unknown(rtype, params)

    def _search(self, path, rtype, params, compartment, public, ignored: list[str]) -> dict:
        if any(k == "_offset" for k, _ in params):
            bundle = self._page(path, params)
        else:
            bundle = self._call(lambda s: s.search(rtype, params, compartment=compartment))
        bundle = self._rewrite(bundle, public)
        if ignored:
            from .search.bundle import outcome_entry

            bundle.setdefault("entry", []).append(outcome_entry(
                "Prefer: handling=lenient: ignored unknown or unsupported parameter(s): " + ", ".join(sorted(set(ignored)))
            ))
        return bundle

    def _everything(self, patient_id: str, params: list[tuple[str, str]], public: str) -> dict:
        allowed = {"start", "end", "_count", "_offset"}
        bad = sorted({k for k, _ in params if k not in allowed})
        if bad:
            raise SearchError(f"unsupported $everything parameter(s): {', '.join(bad)} (supported: start, end, _count)")
        p = dict(params)
        if "_offset" in p or "_count" in p:
            # The paging path does not check that the patient exists.
            self._call(lambda s: s.read("Patient", patient_id))
            return self._rewrite(self._page(f"Patient/{patient_id}/$everything", params), public)
        return self._rewrite(self._call(lambda s: s.everything(patient_id, p.get("start"), p.get("end"))), public)

    def _page(self, path: str, params: list[tuple[str, str]]) -> dict:
        """Serve a page the store addressed by a paging link (``_offset``): hand the store its own link back."""

        def run(store: FHIRStore) -> dict:
            link = f"{store.base_url}/{path}?{encode_params(params)}"
            page = store.next_page({"resourceType": "Bundle", "link": [{"relation": "next", "url": link}]})
            if page is None:  # pragma: no cover - a store always answers a link it can parse
                raise SearchError(f"cannot serve page {path}")
            return page

        return self._call(run)

    def _rewrite(self, bundle: dict, public: str) -> dict:
        """Point the store's ``urn:``-based paging links and fullUrls at the public base."""
        own = (self._store().base_url or "").rstrip("/")
        if not own or own == public:
            return bundle
        n = len(own)
        for link in bundle.get("link", []) or []:
            url = link.get("url")
            if isinstance(url, str) and url.startswith(own):
                link["url"] = public + url[n:]
        for entry in bundle.get("entry", []) or []:
            url = entry.get("fullUrl")
            if isinstance(url, str) and url.startswith(own):
                entry["fullUrl"] = public + url[n:]
        return bundle


def create_app(store: StoreSource, base_url: str | None = None, *, quiet: bool = True):
    """The facade as an ASGI application (Starlette) over ``store``.

    ``base_url`` is the public base that paging links and ``fullUrl`` values use (e.g.
    ``https://fhir.example.org/fhir``; a path prefix in it is also accepted on incoming requests). Without
    it, links use the address of the socket the request arrived on (``http://HOST:PORT``), never the
    client's ``Host`` header, which a client can set to anything. ``store`` is a store shared by every
    worker thread, or a zero-argument factory called once per worker thread (those stores are closed at
    shutdown). The app can be mounted inside a larger Starlette app, e.g. beside an MCP transport.
    """
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    facade = _Facade(store, base_url)

    def respond(status: int, body: dict | None, headers: dict[str, str] | None = None) -> Response:
        content = _dumps(body) if body is not None else b""
        return Response(content, status_code=status, media_type=FHIR_JSON, headers=headers)

    async def endpoint(request: Request) -> Response:
        method = request.method
        if method == "OPTIONS":
            return respond(200, None, {"Allow": _ALLOW})
        if method not in _READ_METHODS:
            return respond(
                405,
                operation_outcome(f"{method} is not allowed: this FHIR server is read-only", code="not-supported"),
                {"Allow": _ALLOW},
            )
        scope = request.scope
        raw_path = scope.get("raw_path") or scope["path"].encode()
        root = scope.get("root_path", "").encode()
        if root and raw_path.startswith(root):  # mounted inside another app: route on the rest
            raw_path = raw_path[len(root):]
        query = scope.get("query_string", b"")
        if len(raw_path) + len(query) > MAX_URL_BYTES:
            return respond(414, operation_outcome(_too_long_message(len(raw_path) + len(query), query), code="too-long"))
        if sum(len(k) + len(v) for k, v in scope.get("headers", ())) > MAX_HEADER_BYTES:
            return respond(431, operation_outcome(
                f"the request headers exceed {MAX_HEADER_BYTES} bytes", code="too-long"))
        try:
            path = raw_path.decode("ascii")
            qs = query.decode("ascii")
        except UnicodeDecodeError:
            return respond(400, operation_outcome("the request URL must be ASCII (percent-encode other characters)",
                                                  code="invalid"))
        lenient = "handling=lenient" in request.headers.get("prefer", "").replace(" ", "").lower()
        public = facade.base_url or _socket_base(scope) + scope.get("root_path", "")
        status, body = await run_in_threadpool(facade.handle, path, qs, public, lenient)
        return respond(status, body)

    @asynccontextmanager
    async def lifespan(app):
        yield
        facade.close()

    methods = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"]
    app = Starlette(routes=[Route("/{path:path}", endpoint, methods=methods)], lifespan=lifespan)
    app.state.facade = facade
    return app


def _too_long_message(n: int, query: bytes) -> str:
    """Why a URL was refused, naming the parameter that takes the most room (as a 400 would)."""
    from urllib.parse import parse_qsl

    msg = f"the request URL is {n} bytes long; this server accepts at most {MAX_URL_BYTES}"
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    if pairs:
        sizes: dict[str, int] = {}
        for k, v in pairs:
            sizes[k] = sizes.get(k, 0) + len(k) + len(v) + 2
        worst = max(sizes, key=sizes.get)
        msg += f": parameter {worst[:100]!r} takes {sizes[worst]} bytes of it ({len(pairs)} parameters in all)"
    return msg


def _socket_base(scope: dict) -> str:
    """``http://host:port`` of the local socket the request came in on (not client-controlled)."""
    server = scope.get("server")
    if not server:
        return "http://127.0.0.1"
    host, port = server[0], server[1]
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in str(host):
        host = f"[{host}]"
    return f"{scope.get('scheme', 'http')}://{host}:{port}" if port else f"http://{host}"


class _HeadGuard:
    """Mixed into a uvicorn HTTP protocol: a deadline for each request head, and (for httptools) a size cap.

    uvicorn closes an idle keep-alive connection, but not one that connects and sends nothing, or sends a
    request head byte by byte: each such connection would stay open for ever. This closes a connection
    that has not delivered a complete request head within :data:`REQUEST_HEAD_TIMEOUT_S` of connecting or
    of its previous response.
    """

    _head_timer = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(REQUEST_HEAD_TIMEOUT_S, self._head_timeout)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        idle = self.cycle is None or self.cycle.response_complete
        if idle and not self.transport.is_closing():
            self.transport.close()


class _HeadTooLarge(Exception):
    """Raised from a parser callback: httptools turns it into a parse error, which uvicorn answers 400."""


def _request_head_protocol():
    """The uvicorn HTTP protocol class the facade runs: httptools (C parser; 1.5x the requests/s of h11 in
    ``benchmarks.rest``) with :class:`_HeadGuard` and a cap of :data:`MAX_REQUEST_HEAD_BYTES` on the request
    line and headers (httptools itself has none), or h11 with the guard where httptools is missing."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools is an optional uvicorn dependency
        from uvicorn.protocols.http.h11_impl import H11Protocol

        class TimedH11Protocol(_HeadGuard, H11Protocol):
            def handle_events(self) -> None:
                super().handle_events()
                if self.cycle is not None and not self.cycle.response_complete:
                    self._disarm()  # a request is being served: its head arrived

            def on_response_complete(self) -> None:
                self._arm()  # before super(): it may start a pipelined request, which disarms again
                super().on_response_complete()

        return TimedH11Protocol

    class GuardedHttpToolsProtocol(_HeadGuard, HttpToolsProtocol):
        _head_bytes = 0

        def on_message_begin(self) -> None:
            self._head_bytes = 0
            super().on_message_begin()

        def _count(self, n: int) -> None:
            self._head_bytes += n
            if self._head_bytes > MAX_REQUEST_HEAD_BYTES:
                raise _HeadTooLarge(f"request head over {MAX_REQUEST_HEAD_BYTES} bytes")

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
                self._arm()

    return GuardedHttpToolsProtocol


class FHIRServer:
    """The facade bound to a socket, served by uvicorn (in this thread or a background one)."""

    def __init__(self, source: StoreSource, host: str, port: int, *, quiet: bool = False, base_url: str | None = None):
        import uvicorn

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(1024)
        except OSError:
            sock.close()
            raise
        self.socket = sock
        self.server_address = sock.getsockname()
        self.app = create_app(source, base_url, quiet=quiet)
        self.public_base = base_url.rstrip("/") if base_url else None
        config = uvicorn.Config(
            self.app,
            http=_request_head_protocol(),
            lifespan="on",
            log_level="warning",
            access_log=not quiet,
            timeout_keep_alive=KEEP_ALIVE_TIMEOUT_S,
            h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
            server_header=False,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The configured public base, or ``http://host:port`` as bound (the port resolved when 0 was asked for)."""
        if self.public_base:
            return self.public_base
        host, port = self.server_address[:2]
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in str(host):
            host = f"[{host}]"
        return f"http://{host}:{port}"

    def serve_forever(self) -> None:
        """Serve until interrupted (Ctrl-C) or :meth:`stop`."""
        self._server.run(sockets=[self.socket])

    def start_in_thread(self) -> threading.Thread:
        """Serve from a daemon thread (tests, notebooks); returns once the server accepts requests."""
        t = threading.Thread(target=self.serve_forever, name=f"fhir-facade-{self.server_address[1]}", daemon=True)
        t.start()
        self._thread = t
        while not self._server.started and t.is_alive():
            threading.Event().wait(0.01)
        return t

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.server_close()

    def server_close(self) -> None:
        try:
            self.socket.close()
        except OSError:  # pragma: no cover
            pass


def _has_per_thread_connections(store: FHIRStore | None) -> bool:
    try:
        from .sqlite_store import SQLiteStore
    except ImportError:  # pragma: no cover - the embedded store is part of the package
        return False
    return isinstance(store, SQLiteStore)


def _strip_format(params: list[tuple[str, str]]) -> list[tuple[str, str]]:
    out = []
    for k, v in params:
        if k in _FORMAT_PARAMS:
            if k == "_format" and v.lower() not in _JSON_FORMATS:
                raise StoreError(f"_format={v[:80]} is not supported: this server speaks FHIR JSON only", status=406)
            continue
        out.append((k, v))
    return out


def _valid_segment(s: str) -> bool:
    return 0 < len(s) <= 64 and all(c.isascii() and (c.isalnum() or c in "-._$*") for c in s)


def _check_type(t: str) -> str:
    if not (t[:1].isupper() and t.isascii() and t.isalpha()):
        raise SearchError(f"{t!r} is not a FHIR resource type")
    return t


def capability_statement(base_url: str) -> dict:
    """The facade's CapabilityStatement: read + search on each type, ``$everything`` on Patient."""
    registry = _search_registry()
    includes = _include_params()
    types = sorted(set(registry) | set(PATIENT_COMPARTMENT) | set(_SHARED_TYPES))
    resources = []
    for t in types:
        res: dict = {"type": t, "interaction": [{"code": "read"}, {"code": "search-type"}]}
        params = registry.get(t) or {}
        if params:
            res["searchParam"] = [{"name": name, "type": ptype} for name, ptype in sorted(params.items())]
        if includes.get(t):
            res["searchInclude"] = [f"{t}:{p}" for p in includes[t]]
        revs = sorted(f"{src}:{p}" for src, ps in includes.items() for p in ps if _may_target(src, p, t))
        if revs:
            res["searchRevInclude"] = revs
        if t == "Patient":
            res["operation"] = [
                {"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}
            ]
        resources.append(res)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "publisher": "ehr-agent",
        "kind": "instance",
        "software": {"name": "ehr-agent serve-fhir"},
        "implementation": {"description": "Read-only FHIR R4 facade over the ehr-agent embedded store", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Read-only: create, update, patch and delete answer 405. Unknown search parameters are a 400 "
                    "unless the request says 'Prefer: handling=lenient'."
                ),
                "resource": resources,
                "compartment": ["http://hl7.org/fhir/CompartmentDefinition/patient"],
            }
        ],
    }


# R4 types of the parameters the registry marks "special" (Resource._id is a token, _lastUpdated a date).
_SPECIAL_TYPES = {"_id": "token", "_lastUpdated": "date"}


def _search_registry() -> dict[str, dict[str, str]]:
    """type -> {parameter: FHIR search type} from the search engine's registry (empty if it has none)."""
    try:
        from .search import params as registry
    except ImportError:  # pragma: no cover - the engine is part of the package
        return {}
    out: dict[str, dict[str, str]] = {}
    for rtype, params in getattr(registry, "SEARCH_PARAMS", {}).items():
        out[rtype] = {
            name: _SPECIAL_TYPES.get(name, p.type) for name, p in params.items() if getattr(p, "type", None)
        }
    for rtype, comps in getattr(registry, "COMPOSITES", {}).items():
        out.setdefault(rtype, {}).update({name: "composite" for name in comps})
    return out


def _include_params() -> dict[str, list[str]]:
    """type -> its reference parameters (what ``_include=Type:param`` accepts)."""
    from .search import params as registry

    return {
        rtype: sorted(name for name, p in params.items() if getattr(p, "type", None) == "reference")
        for rtype, params in registry.SEARCH_PARAMS.items()
    }


def _may_target(src: str, pname: str, target: str) -> bool:
    from .search.params import lookup

    p = lookup(src, pname)
    return p is not None and (not p.targets or target in p.targets)


def make_server(
    store: StoreSource, host: str = "127.0.0.1", port: int = 8080, *, quiet: bool = False, base_url: str | None = None
) -> FHIRServer:
    """Build (not start) the facade over ``store`` bound to ``host:port`` (``port=0`` picks a free one).

    ``store`` and ``base_url`` are as for :func:`create_app`. Run it with ``server.serve_forever()`` or
    ``server.start_in_thread()``; ``server.base_url`` is the address clients use; ``server.stop()`` ends it.
    """
    try:
        return FHIRServer(store, host, port, quiet=quiet, base_url=base_url)
    except OSError as e:
        raise StoreError(f"cannot listen on {host}:{port}: {e.strerror or e}", status=500) from None


def serve(
    store_dir: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    ready_callback=None,
    quiet: bool = False,
    base_url: str | None = None,
) -> None:
    """Serve the embedded store in ``store_dir`` as a read-only FHIR R4 server until interrupted.

    ``ready_callback(base_url)`` is called once the port is bound (default: print the address), so that a
    caller that asked for ``port=0`` learns the port.  One store is shared by the worker threads; each
    thread reads through its own read-only SQLite connection.
    """
    from .sqlite_store import SQLiteStore

    if base_url is not None and not base_url.startswith(("http://", "https://")):
        raise StoreError(f"--base-url must be an http(s) URL, not {base_url!r}", status=400)
    # Opened up front so that a missing or broken store fails here with a clear error, not per request.
    store = SQLiteStore(store_dir)
    server = make_server(store, host, port, quiet=quiet, base_url=base_url)
    if ready_callback is None:
        print(f"FHIR R4 facade serving {store_dir} at {server.base_url} (read-only; Ctrl-C to stop)", flush=True)
    else:
        ready_callback(server.base_url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        store.close()
