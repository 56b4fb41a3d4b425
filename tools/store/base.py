"""The one interface every FHIR store implements, and the errors it raises.

Two implementations share it: :class:`tools.store.sqlite_store.SQLiteStore` (embedded, the default)
and :class:`tools.store.rest.RESTStore` (any FHIR R4 server).  Retrieval, the agent's tools and the
evaluation generator read through this interface only, so they run unchanged on either.

Search results are plain FHIR JSON (``dict``) searchset Bundles, exactly what a FHIR server returns,
so that nothing above this layer needs to know which store it talks to.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Union
from urllib.parse import parse_qsl, quote, urlsplit

Params = list[tuple[str, str]]
"""Search parameters as ordered (name, value) pairs; a name may repeat (``date=ge2010&date=lt2011``)."""

ParamsLike = Union[str, Mapping[str, Any], Sequence[tuple[str, str]], None]


class StoreError(Exception):
    """Base class of every error a store raises on purpose (never a bare traceback for the user)."""

    status: int = 500

    def __init__(self, message: str, *, code: str = "processing", status: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        if status is not None:
            self.status = status

    def operation_outcome(self) -> dict:
        """The error as a FHIR OperationOutcome resource."""
        return operation_outcome(self.message, code=self.code)


class SearchError(StoreError):
    """A search the store cannot honour: unknown parameter, malformed value (HTTP 400)."""

    status = 400

    def __init__(self, message: str, *, code: str = "invalid", status: int | None = None):
        super().__init__(message, code=code, status=status)


class NotFound(StoreError):
    """A resource or patient that does not exist (HTTP 404)."""

    status = 404

    def __init__(self, message: str):
        super().__init__(message, code="not-found")


class StoreUnavailable(StoreError):
    """The backing server cannot be reached, or keeps failing after retries."""

    status = 503

    def __init__(self, message: str):
        super().__init__(message, code="transient")


def operation_outcome(message: str, *, code: str = "processing", severity: str = "error") -> dict:
    """A one-issue OperationOutcome, the FHIR way of saying what went wrong."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": message}],
    }


def normalize_params(params: ParamsLike) -> Params:
    """Turn a query string, a mapping or a pair list into ordered (name, value) pairs.

    A mapping value that is a list or tuple becomes one pair per item (an AND of the items);
    a value containing commas stays one pair (an OR list, as FHIR defines it).
    """
    if params is None:
        return []
    if isinstance(params, str):
        q = params[1:] if params.startswith("?") else params
        return [(k, v) for k, v in parse_qsl(q, keep_blank_values=True)]
    if isinstance(params, Mapping):
        out: Params = []
        for k, v in params.items():
            if isinstance(v, (list, tuple)):
                out.extend((k, str(x)) for x in v)
            else:
                out.append((k, str(v)))
        return out
    return [(str(k), str(v)) for k, v in params]


def encode_params(params: Iterable[tuple[str, str]]) -> str:
    """The inverse of :func:`normalize_params` for a query string (keeps ``|``, ``,`` and ``:`` readable)."""
    return "&".join(f"{quote(k, safe=':._-')}={quote(v, safe='|,:._-/')}" for k, v in params)


class SearchRequest:
    """A parsed search path: ``Observation?...``, ``Patient/ID/Observation?...`` or ``Patient/ID/$everything?...``."""

    __slots__ = ("resource_type", "params", "compartment", "operation", "resource_id")

    def __init__(
        self,
        resource_type: str | None,
        params: Params,
        compartment: tuple[str, str] | None = None,
        operation: str | None = None,
        resource_id: str | None = None,
    ):
        self.resource_type = resource_type
        self.params = params
        self.compartment = compartment
        self.operation = operation
        self.resource_id = resource_id

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return (
            f"SearchRequest({self.resource_type!r}, {self.params!r}, compartment={self.compartment!r}, "
            f"operation={self.operation!r}, resource_id={self.resource_id!r})"
        )


def parse_search_path(path: str) -> SearchRequest:
    """Parse a relative FHIR request path as the CLI and the REST facade receive it.

    Accepts ``Type?q``, ``Type/id`` (a read), ``Patient/ID/Type?q`` (compartment search) and
    ``Patient/ID/$everything?start=..&end=..``. A full URL is accepted too; its base is dropped.
    """
    if "://" in path:
        parts = urlsplit(path)
        path = parts.path + ("?" + parts.query if parts.query else "")
        # Keep only the part from the first resource-type-looking segment on.
        segs = path.split("?")[0].strip("/").split("/")
        for i, s in enumerate(segs):
            if s[:1].isupper() or s.startswith("$"):
                path = "/".join(segs[i:]) + ("?" + path.split("?", 1)[1] if "?" in path else "")
                break
    head, _, query = path.partition("?")
    params = normalize_params(query)
    segs = [s for s in head.strip("/").split("/") if s]
    if not segs:
        raise SearchError(f"empty search path {path!r}")
    if len(segs) == 1:
        return SearchRequest(segs[0], params)
    if len(segs) == 2:
        if segs[1].startswith("$"):
            return SearchRequest(segs[0], params, operation=segs[1])
        return SearchRequest(segs[0], params, resource_id=segs[1])
    if len(segs) == 3:
        ctype, cid, last = segs
        if last.startswith("$"):
            return SearchRequest(ctype, params, operation=last, resource_id=cid)
        if last == "*":
            return SearchRequest(None, params, compartment=(ctype, cid))
        return SearchRequest(last, params, compartment=(ctype, cid))
    raise SearchError(f"cannot parse search path {path!r}")


class FHIRStore(abc.ABC):
    """Read access to a FHIR R4 store.  The agent only ever reads.

    Every method may raise :class:`SearchError` (bad request), :class:`NotFound` or
    :class:`StoreUnavailable`; none of them returns a half result silently.
    """

    #: The base URL used in ``fullUrl`` and paging links.
    base_url: str = "urn:ehr-agent"

    # --- core operations each implementation provides -------------------------------------------
    @abc.abstractmethod
    def read(self, resource_type: str, resource_id: str) -> dict:
        """Return one resource; raise :class:`NotFound` if it does not exist."""

    @abc.abstractmethod
    def search(
        self,
        resource_type: str | None,
        params: ParamsLike = None,
        *,
        compartment: tuple[str, str] | None = None,
    ) -> dict:
        """Run one search and return the first page as a searchset Bundle.

        ``params`` may carry ``_count``, ``_sort``, ``_include``... as any FHIR server accepts them.
        ``compartment=("Patient", id)`` restricts the search to that patient's compartment.
        ``resource_type=None`` with a compartment searches every type in it.
        The Bundle's ``link`` holds ``next`` when more pages exist; pass it to :meth:`next_page`.
        """

    @abc.abstractmethod
    def next_page(self, bundle: dict) -> dict | None:
        """Return the page after ``bundle`` (by its ``next`` link), or ``None`` at the end."""

    @abc.abstractmethod
    def everything(
        self, patient_id: str, start: str | None = None, end: str | None = None, *, count: int | None = None
    ) -> dict:
        """``Patient/ID/$everything``: the first page of the patient's compartment, clinical dates in [start, end].

        ``count`` asks for that many resources per page (``_count``); ``None`` leaves it to the store."""

    # --- derived helpers (shared by all implementations) ----------------------------------------
    def pages(self, bundle: dict) -> Iterator[dict]:
        """Yield ``bundle`` and every page after it."""
        page: dict | None = bundle
        while page is not None:
            yield page
            page = self.next_page(page)

    def search_all(
        self,
        resource_type: str | None,
        params: ParamsLike = None,
        *,
        compartment: tuple[str, str] | None = None,
        include_extra: bool = False,
    ) -> Iterator[dict]:
        """Yield every matching resource across all pages.

        Entries with ``search.mode == "include"`` (from ``_include``/``_revinclude``) are skipped unless
        ``include_extra`` is true.
        """
        for page in self.pages(self.search(resource_type, params, compartment=compartment)):
            for e in page.get("entry", []):
                if not include_extra and e.get("search", {}).get("mode") == "include":
                    continue
                yield e["resource"]

    def search_bundle_all(
        self,
        resource_type: str | None,
        params: ParamsLike = None,
        *,
        compartment: tuple[str, str] | None = None,
    ) -> dict:
        """One searchset Bundle holding the entries of every page, with ``total`` set."""
        first = self.search(resource_type, params, compartment=compartment)
        return self._merge_pages(first)

    def everything_all(self, patient_id: str, start: str | None = None, end: str | None = None) -> Iterator[dict]:
        """Yield every resource of ``Patient/ID/$everything`` across all pages (large pages: a record is read whole)."""
        for page in self.pages(self.everything(patient_id, start, end, count=1000)):
            for e in page.get("entry", []):
                yield e["resource"]

    def run_path(self, path: str) -> dict:
        """Run a request path (``Type?q``, ``Patient/ID/Type?q``, ``Patient/ID/$everything?...``,
        ``Type/id``) and return one Bundle with every page merged (a read returns the resource)."""
        req = parse_search_path(path)
        if req.operation == "$everything":
            if req.resource_type != "Patient" or not req.resource_id:
                raise SearchError("$everything is supported on Patient/ID only")
            allowed = {"start", "end", "_count", "_since", "_type"}
            bad = [k for k, _ in req.params if k not in allowed]
            if bad:
                raise SearchError(f"unknown $everything parameter(s): {', '.join(bad)}")
            p = dict(req.params)
            if "_type" in p or "_since" in p:
                raise SearchError("$everything parameters _type and _since are not supported")
            try:
                count = int(p["_count"]) if "_count" in p else 1000
            except ValueError:
                raise SearchError(f"parameter '_count' must be an integer, not {p['_count']!r}") from None
            return self._merge_pages(self.everything(req.resource_id, p.get("start"), p.get("end"), count=count))
        if req.operation:
            raise SearchError(f"unsupported operation {req.operation}")
        if req.resource_id and not req.compartment:
            return self.read(req.resource_type or "", req.resource_id)
        return self.search_bundle_all(req.resource_type, req.params, compartment=req.compartment)

    def _merge_pages(self, first: dict) -> dict:
        entries: list[dict] = []
        last = first
        for page in self.pages(first):
            entries.extend(page.get("entry", []))
            last = page
        merged = {k: v for k, v in first.items() if k not in ("entry", "link")}
        merged["link"] = [lk for lk in first.get("link", []) if lk.get("relation") == "self"]
        merged["entry"] = entries
        if "total" not in merged:
            merged["total"] = sum(1 for e in entries if e.get("search", {}).get("mode", "match") == "match")
        del last
        return merged

    def patient_ids(self) -> list[str]:
        """Ids of every Patient in the store, sorted."""
        return sorted(r["id"] for r in self.search_all("Patient", {"_elements": "id"}))

    def count(self, resource_type: str, params: ParamsLike = None) -> int:
        """Number of matches, via ``_summary=count``."""
        p = normalize_params(params) + [("_summary", "count")]
        return int(self.search(resource_type, p).get("total", 0))

    def data_version(self) -> str:
        """A token that changes whenever the store's data changes ("" when the store cannot tell)."""
        return ""

    def close(self) -> None:
        """Release connections; the store must not be used afterwards."""

    def __enter__(self) -> "FHIRStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
