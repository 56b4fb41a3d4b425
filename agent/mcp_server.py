"""``ehr-agent serve-mcp``: the agent's patient-scoped tools and its cited ``ask``, as an MCP server.

Any Model Context Protocol client (a desktop assistant, an IDE, an agent framework) gets:

* ``find_patients``: patients by name, birth date or identifier (bounded, paged with ``offset``);
* every tool of :class:`tools.patient_tools.PatientSession`, each with a required ``patient_id``.
  The list is read from the toolkit's own specs when the server starts, so a tool added there appears
  here with no change to this file; calls go through the same dispatcher (``PatientSession.call``)
  and the same per-patient scope check the agent graph uses;
* ``read_resource`` (the toolkit's, plus ``raw`` for the FHIR JSON, bounded);
* ``ask``: the whole agent graph with the configured model, returning
  ``{answer, citations, verified, unsupported}``;
* the resource template ``ehr://patient/{id}/overview`` (retrieval's manifest).

Read-only by construction: the store is opened read-only and no tool writes. ``--patients`` limits the
server to a list of patients; a call for any other patient is refused and says why. Every call (tool
or resource read) is appended to a JSONL audit log.

Failures the caller can fix (invalid arguments, an unknown or out-of-scope patient, a rejected search,
a store that is down) come back as tool results with ``isError: true`` whose text names the problem, so
a model can read and correct them; a tool name the server does not have is a JSON-RPC error
(``-32602``), as the MCP specification lists it. Neither stops the server.

The MCP layer is the SDK's low-level ``Server``: the tool list is built at run time with explicit JSON
schemas, which the decorator API (``MCPServer``, derived from Python signatures) is not meant for.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

#: MCP tool names this module defines itself; a toolkit tool of the same name is replaced by these.
OWN_TOOLS = ("find_patients", "ask")

#: The one resource template: the record overview of a patient.
OVERVIEW_TEMPLATE = "ehr://patient/{id}/overview"
_OVERVIEW_URI = re.compile(r"^ehr://patient/([^/]+)/overview$")
#: FHIR R4 id grammar; anything else cannot name a patient and is rejected before the store sees it.
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
#: How the toolkit marks a result cut at its character cap.
_TRUNCATED = "(output truncated"

#: Environment variable that overrides the default audit log path.
AUDIT_ENV = "EHR_AGENT_MCP_AUDIT_LOG"

PATIENT_ID_SCHEMA = {"type": "string", "description": "the patient's FHIR id (find_patients gives it)"}

FIND_PATIENTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "part of a given or family name"},
        "birthdate": {"type": "string", "description": "birth date YYYY[-MM[-DD]], FHIR prefixes allowed (ge1970)"},
        "identifier": {"type": "string", "description": "identifier value, or system|value"},
        "offset": {"type": "integer", "minimum": 0, "default": 0},
    },
    "additionalProperties": False,
}

ASK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "patient_id": PATIENT_ID_SCHEMA,
        "question": {"type": "string", "minLength": 1, "description": "the question, in plain language"},
        "as_of": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$",
                  "description": "date that counts as now, YYYY-MM-DD (default: the server's)"},
    },
    "required": ["patient_id", "question"],
    "additionalProperties": False,
}

ASK_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "answer": {"type": "string"},
        "citations": {"type": "array", "items": {"type": "string"}},
        "verified": {"type": "boolean"},
        "unsupported": {"type": "array", "items": {"type": "string"}},
        "error": {"type": ["string", "null"]},
    },
    "required": ["answer", "citations", "verified", "unsupported"],
}

READ_RAW_PROPERTIES: dict[str, Any] = {
    "raw": {"type": "boolean", "default": False, "description": "also return the resource's FHIR JSON"},
    "elements": {"type": "array", "items": {"type": "string"},
                 "description": "with raw: only these top-level elements, e.g. [\"code\",\"valueQuantity\"]"},
}


def default_audit_path() -> Path:
    """Where the audit log goes without ``--audit-log``: ``$EHR_AGENT_MCP_AUDIT_LOG``, else
    ``$XDG_STATE_HOME/ehr-agent/mcp-audit.jsonl`` (``~/.local/state/...`` when XDG_STATE_HOME is unset).

    A state directory, not the working directory: MCP clients start stdio servers from wherever they
    like, and the store directory is the FHIR data, which the agent never writes to.
    """
    env = os.environ.get(AUDIT_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "ehr-agent" / "mcp-audit.jsonl"


class AuditLog:
    """Append-only JSONL audit log; one line per call, flushed at once (a crash loses nothing written)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # Opened once: every call appends to the same handle, serialised by the lock.
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, entry: dict[str, Any]) -> None:
        """Append one entry."""
        line = json.dumps(entry, ensure_ascii=False, default=str)
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if not self._fh.closed:
                self._fh.close()


@dataclass
class Outcome:
    """What one call produced, before it is put on the wire and in the audit log."""

    text: str
    patient: str | None = None
    rows: int = 0
    refused: str | None = None
    error: str | None = None
    structured: dict[str, Any] | None = None

    @property
    def is_error(self) -> bool:
        return bool(self.refused or self.error)


class UnknownTool(Exception):
    """A tool name this server does not have (a protocol error, not a tool result)."""


@dataclass
class ToolDef:
    """One MCP tool: name, description, input schema, and how it is run."""

    name: str
    description: str
    input_schema: dict[str, Any]
    run: Callable[[dict[str, Any]], Outcome]
    output_schema: dict[str, Any] | None = None
    validator: Any = field(default=None, repr=False)


class EHRTools:
    """The server's tools, independent of any transport: synchronous, thread-safe, audited.

    ``store`` is a :class:`tools.store.base.FHIRStore`; ``patients`` (None: all) is the set of patient
    ids this server may serve; ``model_factory`` makes the chat model ``ask`` uses (None: ``ask`` is
    not offered); ``as_of`` is "now" for the tools and the default for ``ask``; ``index`` is an optional
    :class:`tools.retrieval.HybridIndex` for ``search_record`` (without it: keyword search).
    """

    def __init__(self, store: Any, *, patients: frozenset[str] | None = None,
                 model_factory: Callable[[], tuple[Any, bool]] | None = None, settings: Any = None,
                 as_of: str | None = None, index: Any = None,
                 audit: AuditLog | None = None, max_chars: int | None = None, max_raw_chars: int = 12000,
                 find_limit: int | None = None):
        from ehr_agent.agent.configuration import AgentSettings

        self.store = store
        self.patients = patients
        self.settings = settings or AgentSettings()
        self.as_of = as_of
        self.index = index
        self.audit = audit
        # Rows per page are the agent's (max_rows); the character cap is raised so that a full page of
        # rows, and the "N more; page with offset=K" line after it, fit (the agent's 2,400 cut it off).
        self.max_chars = max_chars or max(self.settings.max_tool_chars, 400 * self.settings.max_rows)
        self.max_raw_chars = max_raw_chars
        self.find_limit = find_limit or self.settings.max_rows
        self._model_factory = model_factory
        self._sessions: OrderedDict[tuple[str, str], Any] = OrderedDict()
        # The agent's own tool sessions for `ask` (its settings bound rows differently from the tools above).
        from ehr_agent.agent.context import SessionCache

        self._agent_sessions = SessionCache()
        self._lock = threading.Lock()
        self._tools = self._build_tools()

    # ---- the tool list --------------------------------------------------------------------------
    def _session(self, patient_id: str, as_of: str | None = None) -> Any:
        """The toolkit's session for a patient (kept for a few patients: its caches make paging cheap)."""
        from ehr_agent.tools.patient_tools import PatientSession

        key = (patient_id, as_of or self.as_of or date.today().isoformat())
        with self._lock:
            s = self._sessions.get(key)
            if s is None:
                s = self._sessions[key] = PatientSession(
                    self.store, patient_id, key[1], self.index, max_rows=self.settings.max_rows,
                    max_chars=self.max_chars, manifest_top=self.settings.manifest_top)
                while len(self._sessions) > 16:
                    self._sessions.popitem(last=False)
            else:
                self._sessions.move_to_end(key)
            return s

    def _build_tools(self) -> dict[str, ToolDef]:
        from jsonschema import Draft202012Validator

        from ehr_agent.tools.patient_tools import PatientSession

        # A session without a store: only its specs are read, which need no data.
        specs = PatientSession(None, "", max_rows=self.settings.max_rows).tool_specs()
        tools: dict[str, ToolDef] = {
            "find_patients": ToolDef(
                "find_patients",
                "Find patients by name, birth date or identifier; gives the patient_id every other tool takes. "
                f"Up to {self.find_limit} rows a call; page with offset.",
                FIND_PATIENTS_SCHEMA, self._find_patients),
        }
        for spec in specs:
            if spec.name in OWN_TOOLS:
                continue
            schema = _with_patient_id(spec.parameters)
            description = spec.description
            if spec.name == "read_resource":
                schema["properties"].update(copy.deepcopy(READ_RAW_PROPERTIES))
                description += " raw=true adds its FHIR JSON."
            tools[spec.name] = ToolDef(spec.name, description, schema, self._patient_tool(spec.name))
        if self._model_factory is not None:
            tools["ask"] = ToolDef(
                "ask",
                "Answer a question about one patient with the ehr-agent (its own tool loop and model); every "
                "claim cited [Type/id] and checked by code. Returns answer, citations, verified, unsupported.",
                ASK_SCHEMA, self._ask, output_schema=ASK_OUTPUT_SCHEMA)
        for t in tools.values():
            t.validator = Draft202012Validator(t.input_schema)
        return tools

    def tool_list(self) -> list[ToolDef]:
        """Every tool, in a stable order."""
        return list(self._tools.values())

    # ---- calling --------------------------------------------------------------------------------
    def call(self, name: str, arguments: dict[str, Any] | None) -> Outcome:
        """Run one tool and audit it. Raises :class:`UnknownTool` for a name the server lacks (audited too)."""
        t0 = time.perf_counter()
        args: Any = arguments or {}
        pid = args.get("patient_id") if isinstance(args, dict) and isinstance(args.get("patient_id"), str) else None
        tool = self._tools.get(name)
        if tool is None:
            self._audit(name, args, Outcome("", patient=pid, error="unknown tool"), t0)
            raise UnknownTool(f"unknown tool '{name}'; this server has: {', '.join(self._tools)}")
        try:
            out = self._validated(tool, args) or tool.run(dict(args))
        except Exception as e:  # noqa: BLE001 - one failing call must never take the server down
            from ehr_agent.tools.store.base import StoreError

            if isinstance(e, StoreError):
                out = Outcome(f"error: the record store failed: {e.message}", error="store failed")
            else:
                out = Outcome(f"error: {name} failed ({type(e).__name__}: {e})", error=type(e).__name__)
        if out.patient is None:
            out.patient = pid
        self._audit(name, args, out, t0)
        return out

    def read_overview(self, uri: str) -> Outcome:
        """The ``ehr://patient/{id}/overview`` resource (audited as ``resources/read``)."""
        t0 = time.perf_counter()
        m = _OVERVIEW_URI.match(uri)
        if not m:
            out = Outcome(f"error: unknown resource '{uri}'; the server has {OVERVIEW_TEMPLATE}", error="bad uri")
        else:
            pid = m.group(1)
            try:
                out = self._scope(pid) or Outcome(self._session(pid).manifest(), patient=pid, rows=1)
            except Exception as e:  # noqa: BLE001 - reported to the caller, server keeps serving
                msg = getattr(e, "message", None) or f"{type(e).__name__}: {e}"
                out = Outcome(f"error: the record store failed: {msg}", patient=pid, error="store failed")
        self._audit("resources/read", {"uri": uri}, out, t0)
        return out

    def _validated(self, tool: ToolDef, args: Any) -> Outcome | None:
        """An error outcome when ``args`` break the tool's advertised schema (all problems, named), else None."""
        if not isinstance(args, dict):
            return Outcome(f"error: arguments for {tool.name} must be a JSON object", error="invalid arguments")
        problems = sorted(tool.validator.iter_errors(args), key=lambda e: list(e.absolute_path))
        if not problems:
            return None
        lines = []
        for p in problems[:5]:
            where = ".".join(str(x) for x in p.absolute_path) or "arguments"
            lines.append(f"{where}: {p.message}")
        allowed = ", ".join(tool.input_schema.get("properties", {}))
        return Outcome(f"error: invalid arguments for {tool.name}: {'; '.join(lines)}. Parameters: {allowed}.",
                       error="invalid arguments")

    def _scope(self, patient_id: str) -> Outcome | None:
        """None when the patient may be served; else the refusal or error, saying why."""
        if not _FHIR_ID.match(patient_id):
            return Outcome(f"error: '{patient_id}' is not a FHIR id (letters, digits, '-' and '.', up to 64)",
                           patient=patient_id, error="invalid patient id")
        if self.patients is not None and patient_id not in self.patients:
            return Outcome(f"refused: patient {patient_id} is outside this server's scope: it serves only the "
                           f"{len(self.patients)} patient(s) given with --patients.",
                           patient=patient_id, refused="patient not in --patients")
        if not self._session(patient_id).exists():
            return Outcome(f"error: unknown patient '{patient_id}': the store has no Patient/{patient_id}; "
                           f"find_patients lists the ones it has.", patient=patient_id, error="unknown patient")
        return None

    def _patient_tool(self, name: str) -> Callable[[dict[str, Any]], Outcome]:
        def run(args: dict[str, Any]) -> Outcome:
            pid = args.pop("patient_id")
            bad = self._scope(pid)
            if bad is not None:
                return bad
            raw = bool(args.pop("raw", False)) if name == "read_resource" else False
            elements = args.pop("elements", None) if name == "read_resource" else None
            session = self._session(pid)
            out = session.call(name, args)
            text = out.text
            # Rows the caller actually sees (a cut text shows fewer than the page's evidence holds).
            shown = [ref for ref in out.evidence if f"[{ref}]" in text]
            if _TRUNCATED in text and "offset" in self._tools[name].input_schema["properties"]:
                # The character cap cut the page before its paging line: say where the rest starts.
                nxt = int(args.get("offset") or 0) + len(shown)
                text += f"\n{len(shown)} rows shown; the rest from offset={nxt}"
            result = Outcome(text, patient=pid, rows=len(shown),
                             refused=_first_line(out.text) if out.refused else None,
                             error=_first_line(out.text) if out.error else None)
            if raw and not result.is_error:
                result.text += "\n" + self._raw_json(session, args.get("reference", ""), elements)
            return result
        return run

    def _raw_json(self, session: Any, reference: str, elements: list[str] | None) -> str:
        """The FHIR JSON of a resource the toolkit has just allowed, re-checked for scope, bounded."""
        rtype, _, rid = reference.strip().strip("[]").split("#")[0].partition("/")
        resource = self.store.read(rtype, rid)
        if not session.allowed(resource):  # defence in depth: the row was allowed, so this should never fire
            return f"refused: {rtype}/{rid} is not part of patient {session.patient_id}'s record."
        if elements:
            keep = {"resourceType", "id", *elements}
            resource = {k: v for k, v in resource.items() if k in keep}
        text = json.dumps(resource, ensure_ascii=False, separators=(",", ":"))
        if len(text) > self.max_raw_chars:
            keys = ", ".join(k for k in resource if k not in ("resourceType", "id"))
            return (f"raw JSON not shown: {len(text)} characters, over this server's limit of {self.max_raw_chars}. "
                    f"Ask again with elements=[...] naming a few of: {keys}.")
        return "FHIR JSON:\n" + text

    def _find_patients(self, args: dict[str, Any]) -> Outcome:
        from ehr_agent.tools.retrieval.projections import project_row
        from ehr_agent.tools.store.base import SearchError

        offset = int(args.get("offset") or 0)
        params: list[tuple[str, str]] = [(k, str(args[k])) for k in ("name", "birthdate", "identifier")
                                         if args.get(k)]
        if self.patients is not None:
            # The restriction is part of the query, so counts and paging never reveal other patients.
            params.append(("_id", ",".join(sorted(self.patients))))
        params += [("_sort", "family"), ("_count", "100")]
        want = offset + self.find_limit
        found: list[dict] = []
        try:
            first = self.store.search("Patient", params)
            for page in self.store.pages(first):
                found.extend(e["resource"] for e in page.get("entry", [])
                             if e.get("search", {}).get("mode", "match") == "match")
                if len(found) > want:
                    break
        except SearchError as e:
            return Outcome(f"error: search rejected: {e.message}", error="search rejected")
        total = first.get("total")
        page = found[offset:want]
        what = ", ".join(f"{k}={v}" for k, v in params if not k.startswith("_")) or "all"
        n = total if isinstance(total, int) else (len(found) if len(found) <= want else None)
        head = f"patients ({what}): " + (f"{n} found" if n is not None else "more than " + str(want) + " found")
        lines = [head if found else f"patients ({what}): none found"]
        lines += [project_row(r).text for r in page]
        more = (n - want) if n is not None else None
        if (more is not None and more > 0) or (more is None and len(found) > want):
            lines.append(f"{more if more is not None else 'more'} more; page with offset={want}")
        return Outcome("\n".join(lines), rows=len(page))

    def _ask(self, args: dict[str, Any]) -> Outcome:
        from ehr_agent.agent.runner import answer

        pid = args["patient_id"]
        bad = self._scope(pid)
        if bad is not None:
            return bad
        model, owned = self._model_factory()  # type: ignore[misc]
        try:
            result = answer(self.store, pid, args["question"], model=model, settings=self.settings,
                            as_of=args.get("as_of") or self.as_of, index=self.index, sessions=self._agent_sessions)
        finally:
            if owned:
                model.close()
        payload = {"answer": result.answer, "citations": result.citations, "verified": result.verified,
                   "unsupported": result.unsupported, "error": result.error}
        return Outcome(json.dumps(payload, ensure_ascii=False), patient=pid, rows=len(result.citations),
                       error=result.error, structured=payload)

    def _audit(self, tool: str, args: dict[str, Any], out: Outcome, t0: float) -> None:
        if self.audit is None:
            return
        self.audit.write({
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "tool": tool,
            "arguments": args,
            "patient": out.patient,
            "rows": out.rows,
            "refused": out.refused,
            "error": out.error,
            "duration_ms": round((time.perf_counter() - t0) * 1000, 2),
        })


def _with_patient_id(parameters: dict[str, Any]) -> dict[str, Any]:
    """A toolkit schema with ``patient_id`` first and required, and no undeclared arguments."""
    schema = copy.deepcopy(parameters) if parameters else {"type": "object", "properties": {}}
    schema["type"] = "object"
    schema["properties"] = {"patient_id": dict(PATIENT_ID_SCHEMA), **(schema.get("properties") or {})}
    schema["required"] = ["patient_id", *[r for r in schema.get("required", []) if r != "patient_id"]]
    # The toolkit's pydantic models ignore unknown keys; over MCP a misspelt argument is reported instead.
    schema.setdefault("additionalProperties", False)
    return schema


def _first_line(text: str) -> str:
    return text.split("\n", 1)[0][:300]


# --------------------------------------------------------------------------------------------------
# Models for `ask`


class ModelProvider:
    """Makes the chat model ``ask`` uses, from a model spec.

    A ``scripted:`` model plays its script from the first turn on every ``ask`` (a fresh one per call,
    closed after it); any other model is built on first use and kept for every later ``ask``
    (``ChatModel`` implementations are safe to call from several threads at once).
    """

    def __init__(self, spec: str | None):
        from ehr_agent.agent.models.factory import resolve_spec
        from ehr_agent.agent.models.spec import ModelSpec

        self.spec = resolve_spec(spec)
        self.kind = ModelSpec.parse(self.spec).kind  # ValueError for a malformed spec, at start-up
        self._model: Any = None
        self._lock = threading.Lock()

    def __call__(self) -> tuple[Any, bool]:
        """``(model, owned)``: an owned model is the caller's to close."""
        from ehr_agent.agent.models.factory import make_model

        if self.kind == "scripted":
            return make_model(self.spec), True
        with self._lock:
            if self._model is None:
                self._model = make_model(self.spec)
        return self._model, False

    def close(self) -> None:
        """Release the kept model."""
        if self._model is not None:
            self._model.close()
            self._model = None


# --------------------------------------------------------------------------------------------------
# The MCP layer (the SDK's low-level Server)


def build_mcp_server(tools: EHRTools, *, name: str = "ehr-agent") -> Any:
    """An ``mcp.server.lowlevel.Server`` serving ``tools``: tools, the overview template, resources."""
    import anyio
    import mcp.types as types
    from mcp.server.lowlevel import Server
    from mcp.shared.exceptions import MCPError

    read_only = types.ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                                      open_world_hint=False)
    listed = [types.Tool(name=t.name, description=t.description, input_schema=t.input_schema,
                         output_schema=t.output_schema, annotations=read_only) for t in tools.tool_list()]
    # Store reads and model calls block: they run in worker threads so the event loop keeps serving others.
    limiter = anyio.CapacityLimiter(8)

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=listed)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        try:
            out = await anyio.to_thread.run_sync(tools.call, params.name, params.arguments, limiter=limiter)
        except UnknownTool as e:
            raise MCPError(code=types.INVALID_PARAMS, message=str(e)) from None
        return types.CallToolResult(content=[types.TextContent(text=out.text)],
                                    structured_content=None if out.is_error else out.structured,
                                    is_error=out.is_error)

    async def list_templates(ctx: Any, params: Any) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=[types.ResourceTemplate(
            name="patient-overview", uri_template=OVERVIEW_TEMPLATE, mime_type="text/plain",
            description="What one patient's record holds: counts per type, date span, frequent codes.")])

    async def list_resources(ctx: Any, params: Any) -> types.ListResourcesResult:
        # Only a server limited with --patients lists overviews: a whole store could hold millions.
        ids = sorted(tools.patients or ())[:100]
        return types.ListResourcesResult(resources=[types.Resource(
            name=f"overview {pid}", uri=OVERVIEW_TEMPLATE.format(id=pid), mime_type="text/plain") for pid in ids])

    async def read_resource(ctx: Any, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        uri = str(params.uri)
        out = await anyio.to_thread.run_sync(tools.read_overview, uri, limiter=limiter)
        if out.is_error:
            raise MCPError(code=types.INVALID_PARAMS, message=out.text)
        return types.ReadResourceResult(contents=[types.TextResourceContents(uri=uri, mime_type="text/plain",
                                                                             text=out.text)])

    return Server(name, version=_version(), instructions=INSTRUCTIONS, on_list_tools=list_tools,
                  on_call_tool=call_tool, on_list_resource_templates=list_templates,
                  on_list_resources=list_resources, on_read_resource=read_resource)


INSTRUCTIONS = ("Read-only access to FHIR R4 patient records. Find a patient with find_patients, then call the "
                "patient tools with its patient_id; rows end with their citation [Type/id]. Results are bounded: "
                "'N more; page with offset=K' says how to get the rest. ask answers a question with verified "
                "citations.")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("ehr-agent")
    except Exception:  # noqa: BLE001 - an uninstalled checkout simply reports no version
        return ""


async def serve_stdio(server: Any) -> None:
    """Serve one client over this process's stdin/stdout (what desktop MCP hosts launch)."""
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


async def serve_http(server: Any, host: str, port: int, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve streamable HTTP at ``http://host:port/mcp`` until cancelled (port 0: a free port)."""
    import socket

    import uvicorn

    app = server.streamable_http_app(host=host)
    # Bind first, so port 0 works and the real address can be announced before serving.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound}/mcp"
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    userver = _stoppable_server_class()(config)
    if on_ready is not None:
        on_ready(url)
    await userver.serve(sockets=[sock])


def _stoppable_server_class() -> type:
    """uvicorn.Server with plain stop-on-signal (built on demand: uvicorn is imported only for HTTP)."""
    import signal
    from contextlib import contextmanager

    import uvicorn

    class StoppableServer(uvicorn.Server):
        """uvicorn's server, minus one habit: after its graceful shutdown uvicorn raises SIGTERM/SIGINT again,
        which kills the process before ``run`` closes the audit log and the store. This one just stops."""

        @contextmanager
        def capture_signals(self):  # type: ignore[override]
            if threading.current_thread() is not threading.main_thread():
                yield
                return

            def stop(sig: int, frame: Any) -> None:
                if self.should_exit and sig == signal.SIGINT:
                    self.force_exit = True  # a second Ctrl-C: do not wait for open connections
                self.should_exit = True

            previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return StoppableServer


# --------------------------------------------------------------------------------------------------
# The command line


def register(subparsers: Any) -> None:
    """Add the ``serve-mcp`` subcommand."""
    p = subparsers.add_parser(
        "serve-mcp", help="serve the patient-scoped tools and cited ask over MCP (stdio or HTTP)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", required=True, help="store directory or FHIR server base URL (http[s]://...)")
    p.add_argument("--transport", choices=("stdio", "http"), default="stdio",
                   help="stdio (default; the client launches the server) or streamable HTTP")
    p.add_argument("--host", default="127.0.0.1", help="HTTP address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765; 0 picks a free one)")
    p.add_argument("--patients", default=None,
                   help="comma-separated patient ids: serve only these (default: every patient in the store)")
    p.add_argument("--model", default=None,
                   help="model spec for ask (default $EHR_AGENT_MODEL or the embedded model; loaded on first ask)")
    p.add_argument("--no-ask", action="store_true", help="do not offer ask (no model is ever loaded)")
    p.add_argument("--as-of", default=None, help="date that counts as now, YYYY-MM-DD (default: today)")
    p.add_argument("--index", default=None, help="hybrid index directory for search_record (optional)")
    p.add_argument("--audit-log", default=None,
                   help=f"JSONL audit log (default ${AUDIT_ENV}, else $XDG_STATE_HOME/ehr-agent/mcp-audit.jsonl, "
                        "~/.local/state/ehr-agent/mcp-audit.jsonl when XDG_STATE_HOME is unset)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``serve-mcp`` until the client disconnects (stdio) or the process is stopped (HTTP)."""
    import anyio

    from ehr_agent.tools.store import open_store

    if args.as_of is not None:
        try:
            args.as_of = date.fromisoformat(args.as_of).isoformat()
        except ValueError:
            print(f"error: --as-of must be a date YYYY-MM-DD, not {args.as_of!r}", file=sys.stderr)
            return 2
    patients = None
    if args.patients is not None:
        ids = [x.strip() for x in args.patients.split(",") if x.strip()]
        bad = [x for x in ids if not _FHIR_ID.match(x)]
        if not ids or bad:
            print(f"error: --patients needs comma-separated FHIR ids; not ids: {', '.join(bad) or '(none given)'}",
                  file=sys.stderr)
            return 2
        patients = frozenset(ids)
    if not 0 <= args.port <= 65535:
        print(f"error: --port must be 0..65535, not {args.port}", file=sys.stderr)
        return 2
    provider = None
    if not args.no_ask:
        try:
            provider = ModelProvider(args.model)
        except ValueError as e:
            print(f"error: --model: {e}", file=sys.stderr)
            return 2
    store = open_store(args.store)  # StoreError -> the dispatcher prints it (exit 2)
    audit_path = Path(args.audit_log).expanduser() if args.audit_log else default_audit_path()
    try:
        audit = AuditLog(audit_path)
    except OSError as e:
        print(f"error: cannot open the audit log {audit_path}: {e}", file=sys.stderr)
        store.close()
        return 2
    index = None
    if args.index:
        try:
            from ehr_agent.tools.retrieval import HybridIndex

            index = HybridIndex(store, args.index)
        except Exception as e:  # noqa: BLE001 - the tools still work without semantic search
            print(f"warning: hybrid index unavailable ({e}); search_record uses keyword search", file=sys.stderr)
    tools = EHRTools(store, patients=patients, model_factory=provider, as_of=args.as_of, index=index, audit=audit)
    server = build_mcp_server(tools)
    scope = f"{len(patients)} patient(s)" if patients else "all patients"
    try:
        if args.transport == "stdio":
            print(f"ehr-agent MCP server on stdio ({scope}; audit log {audit_path})", file=sys.stderr)
            anyio.run(serve_stdio, server)
        else:
            def ready(url: str) -> None:
                print(f"ehr-agent MCP server at {url} ({scope}; audit log {audit_path})", file=sys.stderr,
                      flush=True)

            anyio.run(lambda: serve_http(server, args.host, args.port, on_ready=ready))
            print("ehr-agent MCP server stopped", file=sys.stderr)
    except OSError as e:
        print(f"error: cannot serve on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 2
    finally:
        if provider is not None:
            provider.close()
        audit.close()
        store.close()
    return 0
