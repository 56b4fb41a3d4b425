"""A read-only :class:`~ehr_agent.tools.store.base.FHIRStore` over any FHIR R4 REST server.

Works with HAPI FHIR, Blaze, Google Cloud Healthcare API, Azure Health Data Services, Medplum and the
project's own facade (``ehr-agent serve-fhir``).  Only ``GET`` requests are ever sent: the agent reads.

Transient failures (HTTP 429, 5xx, connection errors, timeouts) are retried with exponential backoff,
honouring ``Retry-After``; when the retries run out the store raises :class:`StoreUnavailable` naming the
host, the last status and the number of attempts.  A rejected search (400/422) becomes
:class:`SearchError` carrying the server's OperationOutcome diagnostics; 404/410 become :class:`NotFound`.
"""

from __future__ import annotations

import email.utils
import re
import shlex
import subprocess
import time
from collections.abc import Callable
from typing import Union
from urllib.parse import quote, urljoin, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .base import (
    FHIRStore,
    NotFound,
    ParamsLike,
    SearchError,
    StoreError,
    StoreUnavailable,
    encode_params,
    normalize_params,
)

TokenLike = Union[str, Callable[[], str], None]
"""A bearer token, or a function returning a fresh one before each request (cloud tokens expire)."""

TOKEN_ENV = "EHR_AGENT_FHIR_TOKEN"
"""Environment variable holding a bearer token, used when no ``token`` is given."""
TOKEN_COMMAND_ENV = "EHR_AGENT_FHIR_TOKEN_COMMAND"
"""Environment variable holding a command that prints a bearer token (``gcloud auth print-access-token``)."""
TOKEN_COMMAND_TTL_S = 300.0

# FHIR R4 grammar for resource types and ids; checking them keeps a caller's value from turning into
# another path on the server (``../``) and gives a clear error instead of a confusing 404.
_TYPE_RE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

# Statuses worth another try: the server is overloaded or briefly broken, not refusing the request.
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

# A server asking for a very long pause would freeze an interactive agent; past this we give up waiting.
MAX_RETRY_AFTER_S = 60.0


class RESTSettings(BaseModel):
    """Validated connection settings of a :class:`RESTStore`."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    base_url: str
    timeout: float = Field(30.0, gt=0)
    retries: int = Field(4, ge=0, le=20)
    backoff: float = Field(0.5, ge=0)
    page_size: int | None = Field(None, ge=1)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"a FHIR base URL must look like http(s)://host[:port]/path, got {v!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"a FHIR base URL cannot carry a query or fragment, got {v!r}")
        return v.rstrip("/")


class RESTStore(FHIRStore):
    """Read access to a FHIR R4 server at ``base_url``.

    ``token`` is sent as ``Authorization: Bearer`` (a string, or a function called before each request so
    that expiring cloud tokens can be refreshed).  Without one, ``$EHR_AGENT_FHIR_TOKEN`` is used, or the
    output of the command in ``$EHR_AGENT_FHIR_TOKEN_COMMAND`` (re-run every 5 minutes), so every tool
    that opens a store from a URL can reach a protected server.  ``timeout`` bounds each request in seconds;
    ``retries`` is how many times a transient failure is retried, waiting ``backoff * 2**attempt`` seconds
    (or the server's ``Retry-After``).  ``page_size`` adds ``_count`` to searches that do not set one.
    ``client`` lets a caller supply a configured :class:`httpx.Client` (proxies, TLS, test transports);
    it is not closed by :meth:`close`.

    >>> store = RESTStore("https://hapi.fhir.org/baseR4", page_size=100)      # doctest: +SKIP
    >>> store.search("Observation", {"patient": "Patient/123", "code": "http://loinc.org|4548-4"})  # doctest: +SKIP
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: TokenLike = None,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.5,
        page_size: int | None = None,
        client: httpx.Client | None = None,
    ):
        try:
            settings = RESTSettings(
                base_url=base_url, timeout=timeout, retries=retries, backoff=backoff, page_size=page_size
            )
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
            raise StoreError(f"invalid FHIR server settings: {problems}", code="invalid", status=400) from None
        self.settings = settings
        self.base_url = settings.base_url
        self.host = urlsplit(settings.base_url).netloc
        self._token = token if token is not None else _token_from_environment()
        self._own_client = client is None
        self._client = client or httpx.Client(timeout=httpx.Timeout(settings.timeout), follow_redirects=True)
        # Tests replace this to avoid real waiting; everything else should leave it alone.
        self._sleep: Callable[[float], None] = time.sleep

    # --- FHIRStore -------------------------------------------------------------------------------
    def read(self, resource_type: str, resource_id: str) -> dict:
        """``GET [base]/Type/id``; raises :class:`NotFound` when the server has no such resource."""
        url = f"{self.base_url}/{_check_type(resource_type)}/{_check_id(resource_id)}"
        return self._get(url, what=f"{resource_type}/{resource_id}")

    def search(
        self,
        resource_type: str | None,
        params: ParamsLike = None,
        *,
        compartment: tuple[str, str] | None = None,
    ) -> dict:
        """One page of ``GET [base]/Type?params`` (or ``[base]/Patient/ID/Type?params`` in a compartment).

        ``resource_type=None`` searches every type: in a compartment that is ``Patient/ID/*``, otherwise a
        system-level search ``[base]?params``.
        """
        pairs = self._with_page_size(_typed_patient_refs(normalize_params(params)))
        if compartment is not None:
            ctype, cid = compartment
            path = f"{_check_type(ctype)}/{_check_id(cid)}/{_check_type(resource_type) if resource_type else '*'}"
        elif resource_type:
            path = _check_type(resource_type)
        else:
            path = ""
        url = f"{self.base_url}/{path}" if path else self.base_url
        if pairs:
            url += "?" + encode_params(pairs)
        return self._get(url, what=f"search {path or '[system]'}")

    def next_page(self, bundle: dict) -> dict | None:
        """Follow the Bundle's ``next`` link exactly as the server wrote it (it may point to another path)."""
        for link in bundle.get("link", []) or []:
            if link.get("relation") == "next" and link.get("url"):
                # A relative link is resolved against the base, as a browser would.
                url = urljoin(self.base_url + "/", link["url"])
                return self._get(url, what="next page")
        return None

    def everything(
        self, patient_id: str, start: str | None = None, end: str | None = None, *, count: int | None = None
    ) -> dict:
        """First page of ``GET [base]/Patient/ID/$everything?start=..&end=..[&_count=N]``."""
        pairs: list[tuple[str, str]] = []
        if count is not None:
            pairs.append(("_count", str(count)))
        if start:
            pairs.append(("start", start))
        if end:
            pairs.append(("end", end))
        pairs = self._with_page_size(pairs)
        url = f"{self.base_url}/Patient/{_check_id(patient_id)}/$everything"
        if pairs:
            url += "?" + encode_params(pairs)
        return self._get(url, what=f"Patient/{patient_id}/$everything")

    def data_version(self) -> str:
        """Always ``""`` ("cannot tell"): FHIR R4 gives no cheap, store-wide change token. A server's
        ``_history`` or ``_lastUpdated`` search would cost a round trip per cached read and is not offered by
        every server, so none is invented here; whoever loads data into the server drops the caches built
        over it (e.g. with a new tool session or record cache)."""
        return ""

    def close(self) -> None:
        """Close the HTTP connection pool (unless the caller supplied the client)."""
        if self._own_client:
            self._client.close()

    # --- HTTP ------------------------------------------------------------------------------------
    def _with_page_size(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        if self.settings.page_size and not any(k == "_count" for k, _ in pairs):
            return [*pairs, ("_count", str(self.settings.page_size))]
        return pairs

    def _headers(self, url: str) -> dict[str, str]:
        headers = {"Accept": "application/fhir+json", "User-Agent": "ehr-agent"}
        # The token goes only to the configured origin: a paging link elsewhere must not collect it.
        if _origin(url) != _origin(self.base_url):
            return headers
        token = self._token() if callable(self._token) else self._token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _get(self, url: str, *, what: str) -> dict:
        """GET ``url`` with retries; return the JSON body or raise a :class:`StoreError` subclass."""
        attempts = self.settings.retries + 1
        last_problem = ""
        for attempt in range(attempts):
            retry_after: float | None = None
            try:
                response = self._client.get(url, headers=self._headers(url), timeout=self.settings.timeout)
            except httpx.TimeoutException:
                last_problem = f"no answer within {self.settings.timeout:g} s"
            except httpx.TransportError as e:
                last_problem = f"connection failed ({type(e).__name__}: {e})"
            else:
                if response.status_code < 300:
                    return self._json(response, what)
                if response.status_code not in _RETRY_STATUSES:
                    raise self._client_error(response, what)
                last_problem = f"HTTP {response.status_code}"
                detail = _diagnostics(response)
                if detail:
                    last_problem += f": {detail}"
                retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
            if attempt + 1 < attempts:
                delay = retry_after if retry_after is not None else self.settings.backoff * (2**attempt)
                if delay > MAX_RETRY_AFTER_S:
                    last_problem += f" (server asked to wait {delay:g} s, more than the {MAX_RETRY_AFTER_S:g} s allowed)"
                    break
                self._sleep(delay)
        raise StoreUnavailable(
            f"FHIR server {self.host} unavailable for {what}: {last_problem} after {attempt + 1} "
            f"attempt{'s' if attempt else ''} (GET {_short(url)})"
        )

    def _json(self, response: httpx.Response, what: str) -> dict:
        try:
            body = response.json()
        except ValueError:
            ctype = response.headers.get("content-type", "?")
            raise StoreError(
                f"FHIR server {self.host} answered {what} with non-JSON content ({ctype}); "
                f"is {self.base_url} really a FHIR base URL?",
                status=502,
            ) from None
        if not isinstance(body, dict) or "resourceType" not in body:
            raise StoreError(f"FHIR server {self.host} answered {what} with JSON that is not a FHIR resource", status=502)
        return body

    def _client_error(self, response: httpx.Response, what: str) -> StoreError:
        status = response.status_code
        detail = _diagnostics(response) or response.reason_phrase or "no details"
        if status in (400, 422):
            return SearchError(f"{detail} (HTTP {status} from {self.host} for {what})", status=status)
        if status in (404, 410):
            return NotFound(f"{what} not found on {self.host}: {detail} (HTTP {status})")
        if status in (401, 403):
            return StoreError(
                f"FHIR server {self.host} refused access to {what} (HTTP {status}): {detail}; "
                "check the bearer token (--token / EHR_AGENT_FHIR_TOKEN)",
                code="security",
                status=status,
            )
        return StoreError(f"FHIR server {self.host} rejected {what} (HTTP {status}): {detail}", status=status)


def _typed_patient_refs(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``patient=ID`` -> ``patient=Patient/ID``.

    Every R4 ``patient`` search parameter targets Patient only, so the two forms mean the same (R4
    search.html#reference); some servers (Medplum) match only the typed form, and all accept it.
    """
    out = []
    for k, v in pairs:
        if k == "patient" and v:
            v = ",".join(x if ("/" in x or not x) else f"Patient/{x}" for x in v.split(","))
        out.append((k, v))
    return out


def _token_from_environment() -> TokenLike:
    """``$EHR_AGENT_FHIR_TOKEN``, else a refresher running ``$EHR_AGENT_FHIR_TOKEN_COMMAND``, else None."""
    # The settings root imports nothing from the project, so the store layer may read it.
    from ehr_agent.tools.settings import RestSettings

    settings = RestSettings()
    if settings.fhir_token:
        return settings.fhir_token
    if settings.fhir_token_command:
        return CommandToken(settings.fhir_token_command)
    return None


class CommandToken:
    """A bearer token printed by a command (``az account get-access-token ...``), cached for a while."""

    def __init__(self, command: str, ttl: float = TOKEN_COMMAND_TTL_S):
        self.command = command
        self.ttl = ttl
        self._value: str | None = None
        self._at = 0.0

    def __call__(self) -> str:
        if self._value is None or time.monotonic() - self._at > self.ttl:
            try:
                done = subprocess.run(shlex.split(self.command), capture_output=True, text=True, timeout=60)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise StoreError(f"token command {self.command!r} failed: {e}", code="security", status=401) from None
            if done.returncode != 0 or not done.stdout.strip():
                why = done.stderr.strip()[:300] or f"exit code {done.returncode}, no output"
                raise StoreError(f"token command {self.command!r} failed: {why}", code="security", status=401)
            self._value = done.stdout.strip().splitlines()[-1]
            self._at = time.monotonic()
        return self._value


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    try:
        port = parts.port or default
    except ValueError:  # a malformed port: treat as its own origin
        port = None
    return parts.scheme, (parts.hostname or "").lower(), port


def _check_type(resource_type: str | None) -> str:
    if not resource_type or not _TYPE_RE.match(resource_type):
        raise SearchError(f"invalid resource type {resource_type!r}")
    return resource_type


def _check_id(resource_id: str) -> str:
    if not isinstance(resource_id, str) or not _ID_RE.match(resource_id):
        raise SearchError(f"invalid resource id {resource_id!r} (FHIR ids are 1-64 of A-Z a-z 0-9 - .)")
    return quote(resource_id, safe="")


def _diagnostics(response: httpx.Response) -> str:
    """The OperationOutcome's diagnostics (or details text), joined; '' when the body is not one."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300]
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return ""
    texts = []
    for issue in body.get("issue", []) or []:
        text = issue.get("diagnostics") or (issue.get("details") or {}).get("text")
        if text:
            texts.append(str(text))
    return "; ".join(texts)


def _retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _short(url: str, limit: int = 200) -> str:
    return url if len(url) <= limit else url[: limit - 3] + "..."
