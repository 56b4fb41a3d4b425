"""Index tables and the extraction of index values from a resource.

One table per search-parameter type, every row keyed by the resource's ``rid`` and carrying the
resource type and parameter name, so a search filters on an index table alone (no join with
``resources`` for the type).  Tables are ``WITHOUT ROWID`` with ``rid`` leading the primary key:
deleting a resource's rows, ``:missing`` and ``_sort`` look-ups are primary-key range scans, and a
second index per table serves the value look-ups.

Path extractors are compiled once per resource type at import (see :mod:`.params`); ``index_rows``
only walks the resource.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from ..compartment import patient_compartments
from .dates import value_ranges
from .params import COMMON_PARAMS, COMPOSITES, SEARCH_PARAMS, Composite, SearchParam, Step

# Bump when index_rows changes what it extracts: stores written before are then refused, not misread.
INDEX_VERSION = "search-4"

INDEX_DDL = """
CREATE TABLE IF NOT EXISTS sp_token(rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
  system TEXT NOT NULL, code TEXT NOT NULL, patient TEXT NOT NULL,
  PRIMARY KEY(rid, param, system, code, patient)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sp_token_code ON sp_token(param, code, type, system);
CREATE INDEX IF NOT EXISTS sp_token_patient ON sp_token(patient, type, param, code, system);
CREATE TABLE IF NOT EXISTS sp_string(rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
  norm TEXT NOT NULL, exact TEXT NOT NULL, PRIMARY KEY(rid, param, norm, exact)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sp_string_norm ON sp_string(param, type, norm);
CREATE TABLE IF NOT EXISTS sp_date(rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
  lo INTEGER NOT NULL, hi INTEGER NOT NULL, patient TEXT NOT NULL,
  PRIMARY KEY(rid, param, lo, hi, patient)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sp_date_lo ON sp_date(param, type, lo, hi);
CREATE INDEX IF NOT EXISTS sp_date_hi ON sp_date(param, type, hi);
CREATE INDEX IF NOT EXISTS sp_date_patient ON sp_date(patient, type, param, hi, lo);
CREATE TABLE IF NOT EXISTS sp_number(rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
  value REAL NOT NULL, PRIMARY KEY(rid, param, value)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sp_number_value ON sp_number(param, type, value);
CREATE TABLE IF NOT EXISTS sp_quantity(rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
  system TEXT NOT NULL, code TEXT NOT NULL, value REAL NOT NULL,
  PRIMARY KEY(rid, param, system, code, value)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sp_quantity_value ON sp_quantity(param, type, code, value);
CREATE TABLE IF NOT EXISTS sp_reference(rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
  ttype TEXT NOT NULL, tid TEXT NOT NULL, PRIMARY KEY(rid, param, ttype, tid)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sp_reference_target ON sp_reference(tid, ttype, param, type);
CREATE TABLE IF NOT EXISTS sp_uri(rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
  value TEXT NOT NULL, PRIMARY KEY(rid, param, value)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sp_uri_value ON sp_uri(param, type, value);
CREATE TABLE IF NOT EXISTS sp_composite(rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
  csystem TEXT NOT NULL, ccode TEXT NOT NULL, vsystem TEXT NOT NULL, vcode TEXT NOT NULL,
  vlo REAL NOT NULL, vhi REAL NOT NULL,
  PRIMARY KEY(rid, param, csystem, ccode, vsystem, vcode, vlo, vhi)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sp_composite_code ON sp_composite(param, ccode, type);
CREATE TABLE IF NOT EXISTS sp_compartment(rid INTEGER NOT NULL, type TEXT NOT NULL, patient TEXT NOT NULL,
  PRIMARY KEY(rid, patient)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sp_compartment_patient ON sp_compartment(patient, type);
"""

_COLUMNS: dict[str, tuple[str, ...]] = {
    # token and date rows also carry the patient whose compartment holds the resource ('' if none; one
    # row per patient if several), indexed by (patient, type, param, ...): a search inside a patient's
    # compartment reads exactly that patient's rows, like Blaze's compartment indexes
    "sp_token": ("rid", "type", "param", "system", "code", "patient"),
    "sp_string": ("rid", "type", "param", "norm", "exact"),
    "sp_date": ("rid", "type", "param", "lo", "hi", "patient"),
    "sp_number": ("rid", "type", "param", "value"),
    "sp_quantity": ("rid", "type", "param", "system", "code", "value"),
    "sp_reference": ("rid", "type", "param", "ttype", "tid"),
    "sp_uri": ("rid", "type", "param", "value"),
    "sp_composite": ("rid", "type", "param", "csystem", "ccode", "vsystem", "vcode", "vlo", "vhi"),
    # the patient compartment again, with the resource type: "Patient/X/Observation" is then one index
    # range (patient, type) instead of the whole compartment filtered row by row
    "sp_compartment": ("rid", "type", "patient"),
}
INDEX_TABLES: tuple[str, ...] = tuple(_COLUMNS)
# OR IGNORE: a re-indexed resource may yield a row twice only if the caller skipped the delete; never fail a load on it
INSERT_SQL: dict[str, str] = {
    t: f"INSERT OR IGNORE INTO {t} VALUES ({', '.join('?' * len(cols))})" for t, cols in _COLUMNS.items()
}

PATIENT_TABLES = ("sp_token", "sp_date")  # tables whose rows carry the compartment's patient

TABLE_OF_TYPE = {
    "token": "sp_token",
    "string": "sp_string",
    "date": "sp_date",
    "number": "sp_number",
    "quantity": "sp_quantity",
    "reference": "sp_reference",
    "uri": "sp_uri",
    "composite": "sp_composite",
}

_CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})
_NAME_PARTS = ("text", "family", "given", "prefix", "suffix")
_ADDRESS_PARTS = ("text", "line", "city", "district", "state", "postalCode", "country")


def normalize(text: str) -> str:
    """Case- and accent-insensitive form used by string search (FHIR: "ignore case and accents")."""
    if text.isascii():
        return text.lower()
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).lower()


def walk(resource: dict, steps: tuple[Step, ...]) -> Iterable[tuple[object, str | None]]:
    """Values found at ``steps`` with the choice-type suffix of the last choice step (lists flattened)."""
    first = steps[0]
    if first.choice is None:
        if first.name not in resource:  # the common case: element absent
            return ()
        if first.where is None:
            v = resource[first.name]
            if len(steps) == 1:
                return [(x, None) for x in v] if isinstance(v, list) else [(v, None)]
            second = steps[1]
            if len(steps) == 2 and second.choice is None and second.where is None:
                # two plain steps (meta.profile, code.coding, ...): most paths, without the general loop
                name = second.name
                out: list[tuple[object, str | None]] = []
                for node in v if isinstance(v, list) else (v,):
                    if isinstance(node, dict) and name in node:
                        w = node[name]
                        if isinstance(w, list):
                            out.extend([(x, None) for x in w])
                        else:
                            out.append((w, None))
                return out
    items: list[tuple[object, str | None]] = [(resource, None)]
    for step in steps:
        nxt: list[tuple[object, str | None]] = []
        name = step.name
        for node, kind in items:
            if not isinstance(node, dict):
                continue
            if step.choice is None:
                if name in node:
                    nxt.append((node[name], kind))
            elif step.choice == "x":
                n = len(name)
                for k, v in node.items():
                    if len(k) > n and k.startswith(name) and k[n].isupper():
                        nxt.append((v, k[n:]))
            else:
                key = name + step.choice
                if key in node:
                    nxt.append((node[key], step.choice))
        flat: list[tuple[object, str | None]] = []
        for v, kind in nxt:
            if isinstance(v, list):
                flat.extend((x, kind) for x in v)
            else:
                flat.append((v, kind))
        if step.where is not None:
            k, want = step.where
            flat = [(v, kind) for v, kind in flat if isinstance(v, dict) and v.get(k) == want]
        items = flat
    return items


# --- per-type value conversion ------------------------------------------------------------------


def token_values(value: object) -> tuple[list[tuple[str, str]], list[str]]:
    """``(system, code)`` pairs and display texts of a CodeableConcept/Coding/Identifier/code/boolean."""
    if isinstance(value, bool):
        return [("", "true" if value else "false")], []
    if isinstance(value, str):
        return [("", value)], []
    if isinstance(value, (int, float)):
        return [("", str(value))], []
    if not isinstance(value, dict):
        return [], []
    codes: list[tuple[str, str]] = []
    texts: list[str] = []
    if "coding" in value or ("text" in value and "code" not in value and "value" not in value):
        for c in value.get("coding") or ():
            if isinstance(c, dict) and isinstance(c.get("code"), str):
                codes.append((c.get("system") or "", c["code"]))
            if isinstance(c, dict) and isinstance(c.get("display"), str):
                texts.append(c["display"])
        if isinstance(value.get("text"), str):
            texts.append(value["text"])
        return codes, texts
    if "code" in value:  # Coding
        if isinstance(value["code"], str):
            codes.append((value.get("system") or "", value["code"]))
        if isinstance(value.get("display"), str):
            texts.append(value["display"])
        return codes, texts
    if isinstance(value.get("value"), str):
        sys_ = value.get("system") or ""
        if sys_ in _CONTACT_SYSTEMS:  # ContactPoint: its system is a kind (phone, email), not a namespace
            codes.append(("", value["value"]))
        else:  # Identifier
            codes.append((sys_, value["value"]))
            t = value.get("type")
            if isinstance(t, dict) and isinstance(t.get("text"), str):
                texts.append(t["text"])
    return codes, texts


def string_values(value: object) -> list[str]:
    """Strings of a string, HumanName or Address element."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, dict):
        return []
    out: list[str] = []
    parts = _NAME_PARTS if ("family" in value or "given" in value) else _ADDRESS_PARTS
    for p in parts:
        v = value.get(p)
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, list):
            out.extend(x for x in v if isinstance(x, str))
    if not out and isinstance(value.get("text"), str):
        out.append(value["text"])
    return out


def split_reference(ref: str) -> tuple[str, str]:
    """``(type, id)`` of a literal reference (base URL and ``_history`` dropped); ``("", ref)`` otherwise."""
    if "?" in ref or ref.startswith(("urn:", "#")):
        return "", ref
    ref = ref.split("/_history/", 1)[0]
    parts = ref.rsplit("/", 2)
    if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-1]:
        return parts[-2], parts[-1]
    return "", ref


def reference_values(value: object) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        r = value.get("reference")
        return [split_reference(r)] if isinstance(r, str) else []
    if isinstance(value, str):  # canonical
        return [("", value)]
    return []


def quantity_values(value: object) -> list[tuple[str, str, float]]:
    """``(system, code, value)`` of a Quantity/Age/Duration/Money; the unit is indexed as a code too."""
    if not isinstance(value, dict):
        return []
    v = value.get("value")
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return []
    out = []
    system = value.get("system") or ""
    code = value.get("code")
    unit = value.get("unit")
    if isinstance(code, str):
        out.append((system, code, float(v)))
    if isinstance(unit, str) and unit != code:
        out.append(("", unit, float(v)))
    if isinstance(value.get("currency"), str):
        out.append(("urn:iso:std:iso:4217", value["currency"], float(v)))
    if not out:
        out.append(("", "", float(v)))
    return out


# --- compiled extractors ----------------------------------------------------------------------


def _extract_param(resource: dict, rtype: str, p: SearchParam, rows: dict[str, set]) -> None:
    name = p.name
    if p.special == "deceased":
        vals = [v for path in p.paths for v, _ in walk(resource, path)]
        alive = not vals or all(v is False for v in vals)
        rows["sp_token"].add((rtype, name, "", "false" if alive else "true"))
        return
    t = p.type
    for path in p.paths:
        for value, kind in walk(resource, path):
            if t == "token":
                codes, texts = token_values(value)
                for s, c in codes:
                    rows["sp_token"].add((rtype, name, s, c))
                for tx in texts:
                    rows["sp_string"].add((rtype, name + ":text", normalize(tx), tx))
            elif t == "reference":
                for tt, tid in reference_values(value):
                    if p.restrict and tt not in p.targets:
                        continue
                    rows["sp_reference"].add((rtype, name, tt, tid))
                ident = value.get("identifier") if isinstance(value, dict) else None
                if isinstance(ident, dict) and isinstance(ident.get("value"), str):  # logical reference (:identifier)
                    rows["sp_token"].add((rtype, name + ":identifier", ident.get("system") or "", ident["value"]))
            elif t == "date":
                for lo, hi in value_ranges(value, kind):
                    rows["sp_date"].add((rtype, name, lo, hi))
            elif t == "string":
                for s in string_values(value):
                    rows["sp_string"].add((rtype, name, normalize(s), s))
            elif t == "quantity":
                for s, c, v in quantity_values(value):
                    rows["sp_quantity"].add((rtype, name, s, c, v))
            elif t == "uri":
                if isinstance(value, str):
                    rows["sp_uri"].add((rtype, name, value))
            elif t == "number":
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    rows["sp_number"].add((rtype, name, float(value)))


def _extract_composite(resource: dict, rtype: str, c: Composite, rows: dict[str, set]) -> None:
    for ctx_path in c.contexts:
        contexts = [resource] if not ctx_path else [v for v, _ in walk(resource, ctx_path)]
        for ctx in contexts:
            if not isinstance(ctx, dict):
                continue
            codes = [sc for v, _ in walk(ctx, c.code) for sc in token_values(v)[0]]
            if not codes:
                continue
            values: list[tuple[str, str, float, float]] = []
            for v, kind in walk(ctx, c.value):
                if c.value_type == "quantity":
                    values.extend((s, u, x, x) for s, u, x in quantity_values(v))
                elif c.value_type == "token":
                    values.extend((s, cd, 0.0, 0.0) for s, cd in token_values(v)[0])
                elif c.value_type == "date":
                    if kind in ("DateTime", "Period"):
                        values.extend(("", "", float(lo), float(hi)) for lo, hi in value_ranges(v, kind))
                elif c.value_type == "string" and isinstance(v, str):
                    values.append(("", normalize(v), 0.0, 0.0))
            for cs, cc in codes:
                for vs, vc, lo, hi in values:
                    rows["sp_composite"].add((rtype, c.name, cs, cc, vs, vc, lo, hi))


_INDEXED: dict[str, tuple[SearchParam, ...]] = {
    t: tuple(p for p in params.values() if p.special not in ("_id", "_lastUpdated") and not p.alias_of)
    for t, params in SEARCH_PARAMS.items()
}
_COMPOSITES = {t: tuple(c for c in cs.values() if not c.alias_of) for t, cs in COMPOSITES.items()}


def _heads(p: SearchParam) -> frozenset[str] | None:
    """Top-level element names a parameter can read, or None when a choice element ([x]) or a special
    extractor makes that open (those are always extracted)."""
    if p.special == "deceased" or any(path[0].choice == "x" for path in p.paths):
        return None
    return frozenset(path[0].name + (path[0].choice or "") for path in p.paths)


_COMMON_INDEXED = tuple(p for p in COMMON_PARAMS.values() if p.special not in ("_id", "_lastUpdated"))
_HEADS = {t: tuple((p, _heads(p)) for p in ps) for t, ps in _INDEXED.items()}
_COMMON_HEADS = tuple((p, _heads(p)) for p in _COMMON_INDEXED)


def index_rows(resource: dict, pids: set[str] | None = None) -> dict[str, list[tuple]]:
    """Index rows of one resource, per table, without the leading ``rid`` (insert with ``INSERT_SQL``).

    References must already be in ``Type/id`` form (the loader rewrites ``urn:uuid`` ones first).
    ``pids``: the resource's :func:`patient_compartments`, when the caller has them already.
    """
    rtype = resource.get("resourceType") or ""
    rows: dict[str, set] = {t: set() for t in INDEX_TABLES}
    keys = resource.keys()
    for p, heads in _HEADS.get(rtype, _COMMON_HEADS):
        # most parameters of a type are absent from a given resource: skip those without a call
        if heads is not None and heads.isdisjoint(keys):
            continue
        _extract_param(resource, rtype, p, rows)
    for c in _COMPOSITES.get(rtype, ()):
        _extract_composite(resource, rtype, c, rows)
    # (No "$clinical" rows any more: $everything's window reads each type's R4 `date` rows, docs/search.md.
    # Stores written before keep theirs; nothing reads them.)
    if pids is None:
        pids = patient_compartments(resource)
    for pid in pids:
        rows["sp_compartment"].add((rtype, pid))
    owners = tuple(pids) or ("",)
    out = {t: list(v) for t, v in rows.items() if v}
    for t in PATIENT_TABLES:
        if t in out:
            out[t] = [(*row, pid) for row in out[t] for pid in owners]
    return out


def derived_rows(resource: dict) -> tuple[set[str], list[tuple], dict[str, list[tuple]]]:
    """Everything the store writes about one resource besides its JSON, without the ``rid``: the patients
    whose compartment holds it, its ``identifiers`` rows ``(type, system, value)`` and its index rows.

    A plain function of the resource, so the loader's validation workers can compute it ahead of the
    writer."""
    pids = patient_compartments(resource)
    rtype = resource["resourceType"]
    idents = [
        (rtype, ident.get("system"), str(ident["value"]))
        for ident in resource.get("identifier") or []
        if isinstance(ident, dict) and ident.get("value") is not None
    ]
    return pids, idents, index_rows(resource, pids)
