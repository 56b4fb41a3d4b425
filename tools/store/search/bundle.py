"""Running a search and building its searchset Bundle (paging, _include/_revinclude, _elements, _summary).

Result parameters are validated like search parameters: an unknown or malformed one raises
:class:`SearchError`; nothing is silently ignored.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict

import orjson
from dataclasses import dataclass, field

from ..base import NotFound, SearchError, encode_params
from ..compartment import PATIENT_COMPARTMENT, SHARED_TYPES
from .dates import MAX_MS, MIN_MS, parse_range
from .params import SearchParam, lookup, params_for
from .parse import MAX_OFFSET, MAX_PARAMS, MAX_TOTAL_VALUES, check_text, parse_int
from .parse import DateValue
from .sql import (
    RANK_COMPARTMENT,
    Compiler,
    Cond,
    Sql,
    _col_range,
    date_condition,
    latest_first_param,
    sort_terms,
    walk_window,
)

DEFAULT_COUNT = 50
MAX_COUNT = 1000
_MAX_ITERATE = 5
MAX_INCLUDE_PARAMS = 10  # _include/_revinclude parameters in one search
MAX_SORT_KEYS = 5
# The base types of the R4 SearchParameter clinical-date (its `date` on each): the types whose resources
# $everything's start/end filter. Resources of every other type belong to the record whatever their dates.
EVERYTHING_DATE_TYPES = frozenset({
    "AllergyIntolerance", "CarePlan", "CareTeam", "ClinicalImpression", "Composition", "Consent",
    "DiagnosticReport", "Encounter", "EpisodeOfCare", "FamilyMemberHistory", "Flag", "Immunization", "List",
    "Observation", "Procedure", "RiskAssessment", "SupplyRequest",
})
MAX_INCLUDED = 1000  # _include/_revinclude resources per page; more are cut with a warning entry


def outcome_entry(message: str, *, code: str = "informational", severity: str = "warning") -> dict:
    """A searchset entry (``search.mode = outcome``) carrying a warning about this page."""
    return {
        "resource": {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": severity, "code": code, "diagnostics": message}],
        },
        "search": {"mode": "outcome"},
    }


def split_unknown(resource_type: str | None, params: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[str]]:
    """``(kept, ignored names)``: for lenient handling (``Prefer: handling=lenient``), the parameters the
    engine does not know (or does not support) are set aside; everything else is kept and checked as usual."""
    kept: list[tuple[str, str]] = []
    ignored: list[str] = []
    for name, value in params:
        base = name.split(":", 1)[0].split(".", 1)[0]
        if base in _UNSUPPORTED:
            ignored.append(name)
        elif base in _RESULT_PARAMS or base == "_has":
            kept.append((name, value))
        elif lookup(resource_type or "", base) is None:
            ignored.append(name)
        else:
            kept.append((name, value))
    return kept, ignored
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
# Internal keyset cursor in the store's own next links: the last row id of the previous page, so the
# next page of an unsorted search starts there instead of counting past _offset rows. _offset stays in
# the link (and alone still works) so totals, self links and clients that build offsets are unchanged.
AFTER_PARAM = "_page_after"
_RESULT_PARAMS = {
    "_count", "_offset", "_sort", "_include", "_revinclude", "_elements", "_summary", "_total", "_type",
    "_format", "_pretty", "_totalMethod", AFTER_PARAM,
}
_UNSUPPORTED = {
    "_contained": "contained resources are not searched",
    "_containedType": "contained resources are not searched",
    "_text": "narrative text search is not supported; use a string parameter or :text on a token",
    "_content": "full-text search is not supported; use a string parameter or :text on a token",
    "_list": "List-based search is not supported",
    "_query": "named queries are not supported",
    "_filter": "_filter is not supported; use ordinary search parameters",
    "_since": "_since is only defined for history and $everything",
}


@dataclass
class _Include:
    source: str | None  # None: any type ("*")
    params: tuple[str, ...]  # index names of the reference parameter; () = every reference parameter
    targets: tuple[str, ...]  # () = any target type
    iterate: bool


@dataclass
class Request:
    """The validated result parameters of one search; the rest are filters."""

    filters: list[tuple[str, str]] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    offset: int = 0
    after: int | None = None
    sort: str | None = None
    includes: list[_Include] = field(default_factory=list)
    revincludes: list[_Include] = field(default_factory=list)
    elements: list[str] | None = None
    summary: str | None = None
    types: list[str] | None = None


def _parse_include(name: str, value: str, reverse: bool) -> _Include:
    iterate = False
    base, _, mod = name.partition(":")
    if mod in ("iterate", "recurse"):
        iterate = True
    elif mod:
        raise SearchError(f"unknown modifier :{mod} on {base} (supported: :iterate)")
    if value == "*":
        if reverse:
            raise SearchError("_revinclude=* is not supported; name the source type and parameter")
        return _Include(None, (), (), iterate)
    parts = value.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise SearchError(f"invalid {base} value {value!r}: expected SourceType:parameter[:TargetType]")
    src, pname = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if params_for(src) is None:
        raise SearchError(f"unknown resource type {src!r} in {base}={value}")
    if pname == "*":
        return _Include(src, (), (target,) if target else (), iterate)
    p = lookup(src, pname)
    if not isinstance(p, SearchParam) or p.type != "reference":
        raise SearchError(f"{base}={value}: {pname!r} is not a reference parameter of {src}")
    if target is not None and params_for(target) is None:
        raise SearchError(f"unknown target type {target!r} in {base}={value}")
    if target is not None and p.targets and target not in p.targets:
        raise SearchError(f"{base}={value}: {src}.{pname} cannot refer to {target}")
    targets = (target,) if target else (p.targets if (p.alias_of and p.restrict) else ())
    return _Include(src, p.index_names, targets, iterate)


def parse_request(resource_type: str | None, params: list[tuple[str, str]], compartment) -> Request:
    """Split ``params`` into filters and validated result parameters."""
    req = Request()
    n_inc = 0
    for name, value in params:
        base = name.split(":", 1)[0]
        if base in _RESULT_PARAMS:
            check_text(name, name, "name")
            check_text(name, value)
        if base in _UNSUPPORTED:
            raise SearchError(f"parameter {name!r} is not supported: {_UNSUPPORTED[base]}")
        if base not in _RESULT_PARAMS:
            req.filters.append((name, value))
            continue
        if base != name and base not in ("_include", "_revinclude"):
            raise SearchError(f"parameter {name!r}: {base} takes no modifier")
        if base == "_count":
            req.count = min(parse_int(name, value), MAX_COUNT)
        elif base == "_offset":
            req.offset = parse_int(name, value, maximum=MAX_OFFSET)
        elif base == AFTER_PARAM:
            req.after = parse_int(name, value, maximum=2**62)
        elif base == "_sort":
            if not value:
                raise SearchError("empty _sort value")
            req.sort = value if req.sort is None else req.sort + "," + value
            if req.sort.count(",") >= MAX_SORT_KEYS:
                raise SearchError(f"parameter '_sort': at most {MAX_SORT_KEYS} sort keys are allowed")
        elif base in ("_include", "_revinclude"):
            n_inc += 1
            if n_inc > MAX_INCLUDE_PARAMS:
                raise SearchError(f"parameter {name!r}: at most {MAX_INCLUDE_PARAMS} _include/_revinclude parameters are allowed")
            (req.includes if base == "_include" else req.revincludes).append(_parse_include(name, value, base == "_revinclude"))
        elif base == "_elements":
            elems = [e.strip() for e in value.split(",") if e.strip()]
            if not elems:
                raise SearchError("empty _elements value")
            req.elements = (req.elements or []) + elems
        elif base == "_summary":
            if value not in ("count", "false", "data", "text", "true"):
                raise SearchError(f"invalid _summary value {value!r}: expected count, data, text, false or true")
            if value == "true":
                raise SearchError(
                    "_summary=true is not supported (the store keeps no element summary flags); "
                    "use _elements to choose elements, or _summary=count/data/text"
                )
            req.summary = value
        elif base == "_total":
            if value not in ("none", "estimate", "accurate"):
                raise SearchError(f"invalid _total value {value!r}: expected none, estimate or accurate")
        elif base == "_totalMethod":  # Aidbox's spelling (fhirpy's .count() sends it); totals are always exact here
            if value not in ("count", "estimate", "none"):
                raise SearchError(f"invalid _totalMethod value {value!r}: expected count, estimate or none")
        elif base == "_type":
            if resource_type is not None:
                raise SearchError("_type is only allowed in a search across types (e.g. Patient/ID/*)")
            types = [t for t in value.split(",") if t]
            for t in types:
                if params_for(t) is None:
                    raise SearchError(f"unknown resource type {t!r} in _type")
            req.types = (req.types or []) + types
        elif base == "_format":
            if value not in ("json", "application/json", "application/fhir+json"):
                raise SearchError(f"unsupported _format {value!r}: this store answers JSON only")
        elif base == "_pretty":
            if value not in ("true", "false"):
                raise SearchError(f"invalid _pretty value {value!r}: expected true or false")
    n_values = 0
    for name, value in req.filters:
        n_values += value.count(",") + 1
        if n_values > MAX_TOTAL_VALUES:
            raise SearchError(
                f"the search has more than {MAX_TOTAL_VALUES} values in all (parameter {name!r} is past the limit); "
                "split the search"
            )
    if len(req.filters) > MAX_PARAMS:
        raise SearchError(
            f"the search has {len(req.filters)} filter parameters; at most {MAX_PARAMS} are allowed "
            f"(parameter {req.filters[MAX_PARAMS][0]!r} is past the limit)"
        )
    return req


def _from_where(
    conn,
    rtype: str | None,
    req: Request,
    compartment: tuple[str, str] | None,
    *,
    for_page: bool = False,
    window: Cond | None = None,
) -> Sql:
    extra: list[Cond] = [window] if window is not None else []
    if rtype is None and req.types:
        extra.append(Cond(Sql(f"r.type IN ({','.join('?' * len(req.types))})", list(req.types)), row=True))
    if compartment is not None:
        ctype, cid = compartment
        if ctype != "Patient":
            raise SearchError(f"compartment {ctype!r} is not supported (only Patient)")
        if rtype is not None:
            driver = Sql("SELECT rid FROM sp_compartment WHERE patient = ? AND type = ?", [cid, rtype])
        else:
            driver = Sql("SELECT rid FROM sp_compartment WHERE patient = ?", [cid])
        extra.append(
            Cond(
                Sql("EXISTS (SELECT 1 FROM sp_compartment WHERE rid = r.rid AND patient = ?)", [cid]),
                driver,
                RANK_COMPARTMENT,
                typed=rtype is not None,
                check_typed=False,
            )
        )
    keys = [k.strip().lstrip("-") for k in req.sort.split(",")] if (for_page and req.sort) else []
    need_row = any(k in ("_id", "_lastUpdated") for k in keys)
    id_order = bool(keys) and keys[0] == "_id"
    patient = compartment[1] if compartment is not None else _patient_hint(rtype, req.filters)
    return Compiler(conn=conn, patient=patient).from_where(
        rtype, req.filters, "r", extra, need_row=need_row, id_order=id_order
    )


def _patient_hint(rtype: str | None, filters: list[tuple[str, str]]) -> str | None:
    """The patient of ``patient=X`` / ``subject=Patient/X`` when that parameter is a compartment link.

    Such a search only matches resources in X's compartment, so patient-keyed index rows may drive it
    (a superset; the reference condition itself is still applied).
    """
    if rtype is None:
        return None
    links = set(PATIENT_COMPARTMENT.get(rtype, ()))
    for name, value in filters:
        base, _, mod = name.partition(":")
        if mod not in ("", "Patient") or "," in value or "." in base:
            continue
        p = lookup(rtype, base)
        if not isinstance(p, SearchParam) or p.type != "reference" or len(p.paths) != 1:
            continue
        if ".".join(step.name for step in p.paths[0]) not in links:
            continue
        ref = value[len("Patient/"):] if value.startswith("Patient/") else value
        if ref and "/" not in ref and (value.startswith("Patient/") or mod == "Patient" or p.targets == ("Patient",)):
            return ref
    return None


def _fetch(conn: sqlite3.Connection, rids: list[int]) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for i in range(0, len(rids), 1000):
        chunk = rids[i : i + 1000]
        for rid, js in conn.execute(f"SELECT rid, json FROM resources WHERE rid IN ({','.join('?' * len(chunk))})", chunk):
            out[rid] = orjson.loads(js)
    return out


def _chunks(xs: list, n: int = 500):
    for i in range(0, len(xs), n):
        yield xs[i : i + n]


def _include_rids(conn, rids: list[int], inc: _Include) -> set[int]:
    out: set[int] = set()
    for chunk in _chunks(rids):
        sql = (
            "SELECT DISTINCT t.rid FROM sp_reference x JOIN resources t ON t.type = x.ttype AND t.id = x.tid "
            f"WHERE x.rid IN ({','.join('?' * len(chunk))})"
        )
        args: list = list(chunk)
        if inc.source:
            sql += " AND x.type = ?"
            args.append(inc.source)
        if inc.params:
            sql += f" AND x.param IN ({','.join('?' * len(inc.params))})"
            args.extend(inc.params)
        if inc.targets:
            sql += f" AND x.ttype IN ({','.join('?' * len(inc.targets))})"
            args.extend(inc.targets)
        out.update(r for (r,) in conn.execute(sql, args))
    return out


def _revinclude_rids(conn, rids: list[int], inc: _Include) -> set[int]:
    out: set[int] = set()
    for chunk in _chunks(rids):
        sql = (
            "SELECT DISTINCT x.rid FROM resources s JOIN sp_reference x ON x.tid = s.id AND x.ttype = s.type "
            f"AND x.type = ? WHERE s.rid IN ({','.join('?' * len(chunk))})"
        )
        args: list = [inc.source, *chunk]
        if inc.params:
            sql += f" AND x.param IN ({','.join('?' * len(inc.params))})"
            args.extend(inc.params)
        if inc.targets:
            sql += f" AND s.type IN ({','.join('?' * len(inc.targets))})"
            args.extend(inc.targets)
        out.update(r for (r,) in conn.execute(sql, args))
    return out


def _included(conn, match_rids: list[int], req: Request) -> tuple[list[int], bool]:
    """Rids of ``_include``/``_revinclude`` resources for one page (``:iterate`` applied to a fixed point),
    at most :data:`MAX_INCLUDED` of them, and whether the cap cut the list."""
    seen = set(match_rids)
    extra: list[int] = []
    frontier = list(match_rids)
    first = True
    for _ in range(_MAX_ITERATE + 1):
        new: set[int] = set()
        for inc in req.includes:
            if first or inc.iterate:
                new |= _include_rids(conn, frontier, inc)
        for inc in req.revincludes:
            if first or inc.iterate:
                new |= _revinclude_rids(conn, frontier, inc)
        new -= seen
        if not new:
            break
        ordered = sorted(new)
        if len(extra) + len(ordered) > MAX_INCLUDED:
            extra.extend(ordered[: MAX_INCLUDED - len(extra)])
            return extra, True
        extra.extend(ordered)
        seen |= new
        frontier = ordered
        first = False
        if not any(i.iterate for i in req.includes + req.revincludes):
            break
    return extra, False


def _apply_elements(resource: dict, elements: list[str]) -> dict:
    keep = {"resourceType", "id", "meta"}
    out = {}
    for k, v in resource.items():
        if k in keep or k in elements or any(k.startswith(e) and len(k) > len(e) and k[len(e)].isupper() for e in elements):
            out[k] = v
    meta = dict(out.get("meta") or {})
    meta["tag"] = list(meta.get("tag") or []) + [SUBSETTED]
    out["meta"] = meta
    return out


def _apply_summary(resource: dict, summary: str | None) -> dict:
    if summary == "data":
        out = {k: v for k, v in resource.items() if k != "text"}
    elif summary == "text":
        out = {k: v for k, v in resource.items() if k in ("resourceType", "id", "meta", "text")}
    else:
        return resource
    meta = dict(out.get("meta") or {})
    meta["tag"] = list(meta.get("tag") or []) + [SUBSETTED]
    out["meta"] = meta
    return out


def _path(resource_type: str | None, compartment: tuple[str, str] | None) -> str:
    tail = resource_type or "*"
    if compartment:
        return f"{compartment[0]}/{compartment[1]}/{tail}"
    return tail


def _links(
    base_url: str, path: str, params: list[tuple[str, str]], offset: int, count: int, total: int,
    after: int | None = None,
) -> list[dict]:
    kept = [(k, v) for k, v in params if k not in ("_offset", AFTER_PARAM)]
    self_q = encode_params(kept + ([("_offset", str(offset))] if offset else []))
    links = [{"relation": "self", "url": f"{base_url}/{path}" + (f"?{self_q}" if self_q else "")}]
    if count > 0 and offset + count < total:
        cursor = [(AFTER_PARAM, str(after))] if after is not None else []
        nq = encode_params(kept + [("_offset", str(offset + count))] + cursor)
        links.append({"relation": "next", "url": f"{base_url}/{path}?{nq}"})
    return links


_COUNT_CACHE: OrderedDict[tuple, int] = OrderedDict()
_COUNT_CACHE_SIZE = 256


def _count(conn: sqlite3.Connection, fw: Sql) -> int:
    """``count(*)`` of a search, remembered while the database is unchanged.

    Paging through a large result asks for the same total on every page; ``PRAGMA data_version``
    changes whenever another connection commits, so a cached total is never stale.
    """
    version = conn.execute("PRAGMA data_version").fetchone()[0]
    key = (id(conn), version, fw.text, tuple(fw.args))
    hit = _COUNT_CACHE.get(key)
    if hit is not None:
        _COUNT_CACHE.move_to_end(key)
        return hit
    total = conn.execute(f"SELECT count(*) {fw.text}", fw.args).fetchone()[0]
    _COUNT_CACHE[key] = total
    if len(_COUNT_CACHE) > _COUNT_CACHE_SIZE:
        _COUNT_CACHE.popitem(last=False)
    return total


def _entry(base_url: str, resource: dict, mode: str) -> dict:
    return {
        "fullUrl": f"{base_url}/{resource.get('resourceType')}/{resource.get('id')}",
        "resource": resource,
        "search": {"mode": mode},
    }


WALK_MIN_TOTAL = 2000  # below this many matches, sorting them all is cheaper than walking a date index
WALK_FACTOR = 50  # rows of the date index walked per needed match before giving up (2 % selectivity)


def _latest_first_page(conn, rtype: str, req: Request, p: SearchParam, order: Sql, tie: str):
    """(total, page rids) for a large ``_sort=-date`` search by walking the newest date rows; (total, None)
    when the search is small or too selective for the walk (the caller then sorts every match)."""
    fw = _from_where(conn, rtype, req, None)
    total = conn.execute(f"SELECT count(*) {fw.text}", fw.args).fetchone()[0]
    need = req.offset + req.count
    if total <= req.offset:
        return total, []
    if total < WALK_MIN_TOTAL or need * WALK_FACTOR * 2 > total:  # the window would not be much smaller
        return total, None
    window = walk_window(rtype, p, need * WALK_FACTOR)
    fw = _from_where(conn, rtype, req, None, for_page=True, window=window)
    got = [
        rid
        for (rid,) in conn.execute(
            f"SELECT r.rid {fw.text} ORDER BY {order.text}, {tie} LIMIT ?", [*fw.args, *order.args, need]
        )
    ]
    if len(got) < need and len(got) < total:
        return total, None
    return total, got[req.offset :]


def execute_search(
    conn: sqlite3.Connection,
    resource_type: str | None,
    params: list[tuple[str, str]],
    *,
    compartment: tuple[str, str] | None = None,
    base_url: str = "urn:ehr-agent",
) -> dict:
    """Run one search and return one page as a searchset Bundle.

    ``params`` are ordered (name, value) pairs (a repeated name is an AND, a comma an OR);
    ``compartment=("Patient", id)`` restricts to that patient's compartment; ``resource_type=None``
    searches every type (common parameters only).  Raises :class:`SearchError` on any unknown or
    malformed parameter.
    """
    if resource_type is not None and params_for(resource_type) is None:
        raise SearchError(f"unknown resource type {resource_type!r}")
    req = parse_request(resource_type, params, compartment)
    path = _path(resource_type, compartment)
    bundle: dict = {"resourceType": "Bundle", "type": "searchset"}
    after: int | None = None
    if req.sort and req.summary != "count" and req.count > 0:
        order = sort_terms(resource_type, req.sort, "r")
        latest = latest_first_param(resource_type, req.sort)
        # ties broken by rid, descending for a latest-first sort (the order of the date index it can walk)
        tie = "r.rid DESC" if latest is not None else "r.rid"
        rids = total = None
        if latest is not None and compartment is None and _patient_hint(resource_type, req.filters) is None:
            total, rids = _latest_first_page(conn, resource_type, req, latest, order, tie)
        if rids is None:
            # a sort has to visit every match anyway: one statement yields the order and the total
            fw = _from_where(conn, resource_type, req, compartment, for_page=True)
            ordered = [
                rid for (rid,) in conn.execute(f"SELECT r.rid {fw.text} ORDER BY {order.text}, {tie}", [*fw.args, *order.args])
            ]
            total = len(ordered)
            rids = ordered[req.offset : req.offset + req.count]
    else:
        fw = _from_where(conn, resource_type, req, compartment)
        total = _count(conn, fw)
        if req.summary == "count" or req.count == 0:
            bundle["total"] = total
            bundle["link"] = _links(base_url, path, params, req.offset, 0, total)
            return bundle
        if req.after is not None:
            # the rows are the outer query's, so the cursor applies to its alias whatever drives it
            sql = f"SELECT * FROM (SELECT r.rid AS rid {fw.text}) WHERE rid > ? ORDER BY rid LIMIT ?"
            rids = [rid for (rid,) in conn.execute(sql, [*fw.args, req.after, req.count])]
        else:
            rids = [
                rid
                for (rid,) in conn.execute(
                    f"SELECT r.rid {fw.text} ORDER BY r.rid LIMIT ? OFFSET ?", [*fw.args, req.count, req.offset]
                )
            ]
        after = rids[-1] if rids else None
    bundle["total"] = total
    extra, cut = _included(conn, rids, req) if (req.includes or req.revincludes) and rids else ([], False)
    resources = _fetch(conn, rids + extra)
    entries = []
    for rid in rids:
        res = resources[rid]
        if req.elements:
            res = _apply_elements(res, req.elements)
        res = _apply_summary(res, req.summary)
        entries.append(_entry(base_url, res, "match"))
    entries.extend(_entry(base_url, resources[rid], "include") for rid in extra)
    if cut:
        entries.append(outcome_entry(
            f"_include/_revinclude: this page's included resources were cut at {MAX_INCLUDED} "
            f"(the cap per page); ask for fewer matches per page (a smaller _count) to get them all",
            code="too-costly",
        ))
    bundle["link"] = _links(base_url, path, params, req.offset, req.count, total, after)
    if entries:
        bundle["entry"] = entries
    return bundle


def execute_everything(
    conn: sqlite3.Connection,
    patient_id: str,
    start: str | None,
    end: str | None,
    *,
    count: int | None,
    offset: int,
    base_url: str = "urn:ehr-agent",
) -> dict:
    """``Patient/ID/$everything``: one page of the patient's record.

    Holds the Patient and every resource of the patient's compartment; with ``start``/``end``, resources of
    the types in :data:`EVERYTHING_DATE_TYPES` only when their ``date`` (R4 clinical-date) matches
    ``date=ge{start}`` and ``date=le{end}``. Then, as
    ``include`` entries, the shared resources (Medication, Practitioner, PractitionerRole,
    Organization, Location) those resources reference.  Ordered: Patient, compartment resources in
    load order, then the shared ones.
    """
    exists = conn.execute("SELECT 1 FROM resources WHERE type = 'Patient' AND id = ?", [patient_id]).fetchone()
    if exists is None:
        raise NotFound(f"Patient/{patient_id} not found")
    for pname, v in (("start", start), ("end", end)):
        if v is not None:
            check_text(pname, v)
    bounds: list[DateValue] = []
    if start:
        r = parse_range(start)
        if r is None:
            raise SearchError(f"invalid date {start!r} for parameter 'start'")
        bounds.append(DateValue("ge", r[0], r[1]))
    if end:
        r = parse_range(end)
        if r is None:
            raise SearchError(f"invalid date {end!r} for parameter 'end'")
        bounds.append(DateValue("le", r[0], r[1]))
    if start and end and bounds[0].lo >= bounds[1].hi:
        raise SearchError(f"parameter 'start' ({start}) is after 'end' ({end})")
    if count is not None and count < 0:
        raise SearchError("parameter '_count' must be >= 0")
    if offset < 0:
        raise SearchError("parameter '_offset' must be >= 0")
    page = min(count if count is not None else DEFAULT_COUNT, MAX_COUNT)
    date_filter = ""
    args: list = [patient_id]
    if bounds:
        # start/end are the R4 clinical-date parameter `date` searched with ge{start} and le{end} (as Blaze
        # does): only types that have that parameter are filtered; see docs/search.md "$everything".
        types = sorted(t for t in EVERYTHING_DATE_TYPES if isinstance(lookup(t, "date"), SearchParam))
        clauses = []
        for b in bounds:
            cond = date_condition(_col_range("lo", "hi"), b)
            clauses.append(f"EXISTS (SELECT 1 FROM sp_date WHERE rid = r.rid AND +param = 'date' AND ({cond.text}))")
            args += cond.args
        date_filter = (
            f" AND (r.type NOT IN ({','.join('?' * len(types))}) OR ({' AND '.join(clauses)}))"
        )
        args = [patient_id, *types, *args[1:]]
    match = [
        rid
        for (rid,) in conn.execute(
            "SELECT r.rid FROM compartment c JOIN resources r ON r.rid = c.rid WHERE c.patient = ?"
            f"{date_filter} ORDER BY r.type != 'Patient', r.rid",
            args,
        )
    ]
    shared: set[int] = set()
    types = sorted(SHARED_TYPES)
    for chunk in _chunks(match):
        shared.update(
            r
            for (r,) in conn.execute(
                "SELECT DISTINCT t.rid FROM sp_reference x JOIN resources t ON t.type = x.ttype AND t.id = x.tid "
                f"WHERE x.rid IN ({','.join('?' * len(chunk))}) AND x.ttype IN ({','.join('?' * len(types))})",
                [*chunk, *types],
            )
        )
    shared -= set(match)
    all_rids = [(r, "match") for r in match] + [(r, "include") for r in sorted(shared)]
    total = len(all_rids)
    window = all_rids[offset : offset + page] if page else []
    resources = _fetch(conn, [r for r, _ in window])
    bundle: dict = {"resourceType": "Bundle", "type": "searchset", "total": total}
    params = [(k, v) for k, v in (("start", start), ("end", end)) if v]
    if count is not None:
        params.append(("_count", str(count)))
    bundle["link"] = _links(base_url, f"Patient/{patient_id}/$everything", params, offset, page, total)
    if window:
        bundle["entry"] = [_entry(base_url, resources[r], mode) for r, mode in window]
    return bundle


__all__ = ["execute_search", "execute_everything", "parse_request", "DEFAULT_COUNT", "MAX_COUNT"]
