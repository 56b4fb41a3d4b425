"""Compiling search parameters to SQL over the index tables.

Every parameter becomes one boolean SQL expression over a ``resources`` row alias (``r.rid IN
(SELECT rid FROM sp_token WHERE ...)``); a search is their conjunction, so a whole search (chains
and ``_has`` included) is one statement and SQLite picks the most selective index to drive it.

Date semantics follow the R4 search spec: both the indexed value and the search value are ranges
``[lo, hi)``; ``eq`` means the value's range lies inside the search range, ``gt`` that some of it
lies after the search range, ``ge`` = ``gt`` or ``eq``, ``sa`` that it starts after the search range
ends, ``eb`` that it ends before the search range starts, ``ap`` that it overlaps the search range
widened by 10 % of its distance from now.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..base import SearchError
from .dates import ms_to_instant
from .extract import PATIENT_TABLES, TABLE_OF_TYPE, normalize, split_reference
from .params import SEARCH_PARAMS, Composite, SearchParam, lookup, params_for
from .parse import (
    MAX_CHAIN_DEPTH,
    MAX_HAS_DEPTH,
    MAX_NAME_LENGTH,
    DateValue,
    check_text,
    check_values,
    parse_bool,
    parse_date,
    parse_name,
    parse_number,
    parse_quantity,
    parse_token,
    split_escaped,
    split_or,
    unescape,
)

_HIGH = "\U0010ffff"  # sorts after every character: "starts with x" is x <= v < x + _HIGH
# Nesting of chains and _has together (each level is one nested sub-select); within SQLite's parser stack.
_MAX_CHAIN_DEPTH = MAX_CHAIN_DEPTH + MAX_HAS_DEPTH


@dataclass
class Sql:
    """A SQL boolean expression and its arguments."""

    text: str
    args: list = field(default_factory=list)


@dataclass
class Cond:
    """One parameter's condition in two forms: a correlated ``check`` on the row alias, and (when the
    parameter can drive the search) a ``driver`` subquery selecting matching rids, with a ``rank``
    (lower = usually more selective) used to choose which condition drives."""

    check: Sql
    driver: Sql | None = None
    rank: float = 9.0
    typed: bool = False  # the driver only yields rows of the searched type
    check_typed: bool | None = None  # the check proves the row's type too (default: same as typed)
    row: bool = False  # check reads columns of the resources row (id, type, last_updated)


def _check(sql: Sql, row: bool = False) -> Cond:
    return Cond(sql, row=row)


# Usual selectivity of each kind of condition; the lowest-ranked one drives the query.
RANK_ID = 0.0
RANK_PATIENT_VALUE = 0.5  # a value inside one patient's compartment
RANK_REFERENCE = 1.0
RANK_COMPARTMENT = 1.5
RANK_TOKEN = 2.0
RANK_COMPOSITE = 2.5
RANK_STRING = 3.0
RANK_CHAIN = 3.5
RANK_RANGE = 4.0
RANK_SCAN = 6.0
PROBE_CAP = 20000


def _prefix(text: str, sql: Sql) -> Sql:
    return Sql(text + sql.text, sql.args)


def _tid(sql: Sql, col: str) -> Sql:
    # reference conditions are written with a {tid} placeholder: the driver form lets SQLite use the
    # target index, the probe form ("+tid") keeps it on the primary key
    return Sql(sql.text.replace("{tid}", col), sql.args)


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _in_list(col: str, values: list) -> Sql:
    if len(values) == 1:
        return Sql(f"{col} = ?", list(values))
    return Sql(f"{col} IN ({','.join('?' * len(values))})", list(values))


_FLAT_OR = 64  # up to this many terms, one flat OR; beyond, a shallow tree of ORs


def _or(parts: list[Sql]) -> Sql:
    """OR of the parts. A long OR list is nested as a balanced tree: SQLite parses ``a OR b OR c ...`` into
    an expression as deep as the list is long, and refuses past depth 1000."""
    if len(parts) == 1:
        return parts[0]
    if len(parts) > _FLAT_OR:  # groups of _FLAT_OR: 1,000 terms nest only two levels deep
        size = _FLAT_OR
        while len(parts) > size * _FLAT_OR:
            size *= _FLAT_OR
        parts = [_or(parts[i : i + size]) for i in range(0, len(parts), size)]
    return Sql("(" + " OR ".join(f"({p.text})" for p in parts) + ")", [a for p in parts for a in p.args])


def _and(parts: list[Sql]) -> Sql:
    parts = [p for p in parts if p.text]
    if not parts:
        return Sql("1")
    if len(parts) == 1:
        return parts[0]
    return Sql(" AND ".join(f"({p.text})" for p in parts), [a for p in parts for a in p.args])


# --- date comparisons --------------------------------------------------------------------------


class _RangeCols:
    """How to compare an indexed range with bounds: ``lo``/``hi`` columns, or a point column."""

    def __init__(self, lo_ge, lo_lt, hi_gt, hi_le):
        self.lo_ge, self.lo_lt, self.hi_gt, self.hi_le = lo_ge, lo_lt, hi_gt, hi_le


def _col_range(lo: str, hi: str) -> _RangeCols:
    return _RangeCols(
        lambda a: Sql(f"{lo} >= ?", [a]),
        lambda a: Sql(f"{lo} < ?", [a]),
        lambda b: Sql(f"{hi} > ?", [b]),
        lambda b: Sql(f"{hi} <= ?", [b]),
    )


def _instant_range(col: str) -> _RangeCols:
    # last_updated is a millisecond instant stored as fixed-format UTC text: its range is [t, t + 1 ms)
    return _RangeCols(
        lambda a: Sql(f"{col} >= ?", [ms_to_instant(a)]),
        lambda a: Sql(f"{col} < ?", [ms_to_instant(a)]),
        lambda b: Sql(f"{col} >= ?", [ms_to_instant(b)]),
        lambda b: Sql(f"{col} < ?", [ms_to_instant(b)]),
    )


def date_condition(cols: _RangeCols, v: DateValue) -> Sql:
    a, b, p = v.lo, v.hi, v.prefix
    if p == "eq":
        return _and([cols.lo_ge(a), cols.hi_le(b)])
    if p == "ne":
        e = _and([cols.lo_ge(a), cols.hi_le(b)])
        return Sql(f"NOT ({e.text})", e.args)
    if p == "gt":
        return cols.hi_gt(b)
    if p == "lt":
        return cols.lo_lt(a)
    if p == "ge":
        return _or([cols.lo_ge(a), cols.hi_gt(b)])
    if p == "le":
        return _or([cols.hi_le(b), cols.lo_lt(a)])
    if p == "sa":
        return cols.lo_ge(b)
    if p == "eb":
        return cols.hi_le(a)
    # ap: overlap with the search range widened by 10 % of its distance from now
    now = int(time.time() * 1000)
    wa = a - abs(now - a) // 10
    wb = b + abs(now - b) // 10
    return _and([cols.lo_lt(wb), cols.hi_gt(wa)])


def number_condition(col: str, prefix: str, value: float, lo: float, hi: float, param: str) -> Sql:
    if prefix == "eq":
        return Sql(f"{col} >= ? AND {col} < ?", [lo, hi])
    if prefix == "ne":
        return Sql(f"NOT ({col} >= ? AND {col} < ?)", [lo, hi])
    if prefix in ("gt", "sa"):
        return Sql(f"{col} > ?", [value])
    if prefix in ("lt", "eb"):
        return Sql(f"{col} < ?", [value])
    if prefix == "ge":
        return Sql(f"{col} >= ?", [value])
    if prefix == "le":
        return Sql(f"{col} <= ?", [value])
    if prefix == "ap":
        d = abs(value) * 0.1
        return Sql(f"{col} >= ? AND {col} <= ?", [value - d, value + d])
    raise SearchError(f"unknown prefix {prefix!r} for parameter {param!r}")  # pragma: no cover


def token_condition(param: str, values: list[str], sys_col: str = "system", code_col: str = "code") -> Sql:
    """OR of token values; codes sharing a system are grouped into one IN list (long OR lists stay fast)."""
    by_system: dict[str | None, list[str]] = {}
    system_only: list[str] = []
    for v in values:
        t = parse_token(param, v)
        if t.code is None:
            system_only.append(t.system or "")
        else:
            by_system.setdefault(t.system, []).append(t.code)
    parts: list[Sql] = []
    for system, codes in by_system.items():
        c = _in_list(code_col, codes)
        if system is not None:
            c = _and([c, Sql(f"{sys_col} = ?", [system])])
        parts.append(c)
    if system_only:
        parts.append(_in_list(sys_col, system_only))
    return _or(parts)


def check_limits(name: str, value: str) -> None:
    """The documented limits on one parameter (see :mod:`.parse`): checked before any SQL is built."""
    if len(name) > MAX_NAME_LENGTH:
        raise SearchError(f"parameter name {name[:40]!r}... is longer than {MAX_NAME_LENGTH} characters")
    check_text(name, name, "name")
    check_text(name, value)
    check_values(name, split_or(value))
    has_levels = 0
    rest = name
    while rest.startswith("_has:"):
        has_levels += 1
        parts = rest.split(":", 3)
        rest = parts[3] if len(parts) == 4 else ""
    if has_levels > MAX_HAS_DEPTH:
        raise SearchError(f"parameter {name!r}: _has may be nested at most {MAX_HAS_DEPTH} levels, not {has_levels}")
    hops = rest.count(".")
    if hops > MAX_CHAIN_DEPTH:
        raise SearchError(f"parameter {name!r}: a chain may have at most {MAX_CHAIN_DEPTH} reference hops, not {hops}")
    # A _has level nests deeper SQL than a chain hop (measured against SQLite's parser stack: two _has
    # levels, or three hops, or one _has with one hop fit, with 100 OR values; one _has with two hops not).
    if has_levels and hops and 3 * has_levels + 2 * hops > 2 * MAX_CHAIN_DEPTH:
        raise SearchError(
            f"parameter {name!r}: a chain inside _has may have at most "
            f"{max(0, (2 * MAX_CHAIN_DEPTH - 3 * has_levels) // 2)} reference hop(s) at this _has depth"
        )


# --- the compiler ------------------------------------------------------------------------------


class Compiler:
    """Compiles (name, value) pairs of one resource type into SQL over a ``resources`` alias."""

    def __init__(self, depth: int = 0, conn=None, patient: str | None = None):
        self.depth = depth
        self.conn = conn  # when given, competing drivers are sized by a bounded probe
        self.patient = patient  # a compartment search: drivers on patient-keyed tables read only its rows
        self._alias_n = 0

    def _alias(self) -> str:
        self._alias_n += 1
        return f"r{self.depth}_{self._alias_n}"

    def from_where(
        self,
        rtype: str | None,
        params: list[tuple[str, str]],
        alias: str,
        extra: list[Cond] | None = None,
        need_row: bool = False,
        id_order: bool = False,
    ) -> Sql:
        """``FROM ... WHERE ...`` selecting the rows (alias ``alias``, column ``rid``) matching every pair.

        The most selective condition that can drive becomes the row source; every other condition is a
        correlated primary-key probe on the driven rows.  When nothing needs the ``resources`` row
        (its id, type or last_updated), the driver's distinct rids are the rows themselves and the
        large ``resources`` table is never touched; otherwise the driver feeds ``alias.rid IN (...)``
        and the type test is written ``+alias.type`` so SQLite cannot prefer scanning the whole type.
        ``id_order`` (sorting by ``_id``) keeps the type test indexable instead: walking the (type, id)
        index yields rows already in id order, so a page stops early.
        """
        conds = list(extra or []) + [self.condition(rtype, name, value, alias) for name, value in params]
        drivers = [c for c in conds if c.driver is not None]
        if not drivers:
            parts = ([Sql(f"{alias}.type = ?", [rtype])] if rtype is not None else []) + [c.check for c in conds]
            return _prefix(f"FROM resources {alias} WHERE ", _and(parts))
        best = self._pick_driver(drivers)
        others = [c for c in conds if c is not best]
        typed = rtype is None or best.typed or any(c.typed if c.check_typed is None else c.check_typed for c in others)
        if typed and not need_row and not any(c.row for c in conds):
            where = _and([c.check for c in others])
            return Sql(
                f"FROM (SELECT DISTINCT rid FROM ({best.driver.text})) {alias} WHERE {where.text}",
                [*best.driver.args, *where.args],
            )
        parts = [Sql(f"{alias}.rid IN ({best.driver.text})", list(best.driver.args))]
        if rtype is not None:
            parts.append(Sql(f"{'' if id_order else '+'}{alias}.type = ?", [rtype]))
        parts.extend(c.check for c in others)
        return _prefix(f"FROM resources {alias} WHERE ", _and(parts))

    def _pick_driver(self, drivers: list[Cond]) -> Cond:
        """The driver with the fewest rows: counted up to PROBE_CAP each when several compete, else by rank.

        A driver with a negative rank is imposed by the caller (see :func:`walk_window`)."""
        forced = [c for c in drivers if c.rank < 0]
        if forced:
            return forced[0]
        if len(drivers) == 1 or self.conn is None:
            return min(drivers, key=lambda c: c.rank)
        sized = []
        cap = PROBE_CAP
        for c in sorted(drivers, key=lambda c: c.rank):
            if c.rank >= RANK_SCAN:  # probing a LIKE scan costs as much as running it
                continue
            # a later candidate only matters if it has fewer rows than the best so far: probe up to that
            n = self.conn.execute(
                f"SELECT count(*) FROM (SELECT 1 FROM ({c.driver.text}) LIMIT {cap})", c.driver.args
            ).fetchone()[0]
            sized.append((n, c.rank, c))
            cap = min(cap, n)
            if n == 0:
                break
        if not sized:
            return min(drivers, key=lambda c: c.rank)
        return min(sized, key=lambda x: (x[0], x[1]))[2]

    def sub_select(self, rtype: str, params: list[tuple[str, str]], col: str) -> Sql:
        """``SELECT a.<col> FROM resources a WHERE <type and params>``."""
        a = self._alias()
        fw = self.from_where(rtype, params, a, need_row=col != "rid")
        return _prefix(f"SELECT {a}.{col} ", fw)

    # one parameter ------------------------------------------------------------------------------
    def condition(self, rtype: str | None, name: str, value: str, alias: str) -> Cond:
        if self.depth == 0:
            check_limits(name, value)
        if name.startswith("_has:") or name == "_has":
            return self._has(rtype, name, value, alias)
        pn = parse_name(name)
        if rtype is None:
            p = lookup("", pn.base)
            if p is None:
                raise SearchError(
                    f"unknown search parameter {pn.base!r}: a search across all resource types supports only "
                    f"_id, _lastUpdated, _profile, _tag, _security, _source (and _type)"
                )
        else:
            p = lookup(rtype, pn.base)
            if p is None:
                raise SearchError(f"unknown search parameter {pn.base!r} for resource type {rtype}")
        if pn.chain is not None:
            return self._chain(rtype, p, pn.modifier, pn.chain, value, alias, name)
        mod = pn.modifier
        if mod == "missing":
            return self._missing(rtype, p, parse_bool(name, value), alias)
        if isinstance(p, Composite):
            if mod:
                raise SearchError(f"modifier :{mod} is not supported on composite parameter {pn.base!r}")
            return self._composite(rtype, p, value, alias, name)
        if p.special == "_id":
            return self._id(rtype, mod, value, alias, name)
        if p.special == "_lastUpdated":
            if mod:
                raise SearchError(f"modifier :{mod} is not supported on parameter {name!r}")
            return _check(
                _or([date_condition(_instant_range(f"{alias}.last_updated"), parse_date(name, v)) for v in split_or(value)]),
                row=True,
            )
        handler = getattr(self, f"_{p.type}")
        return handler(rtype, p, mod, value, alias, name)

    # helpers --------------------------------------------------------------------------------------
    def _in_table(
        self,
        alias: str,
        table: str,
        rtype: str | None,
        pnames,
        cond: Sql,
        rank: float,
        negate: bool = False,
        check_cond: Sql | None = None,
    ) -> Cond:
        """The condition ``cond`` on rows of ``table`` for parameter(s) ``pnames``.

        ``check_cond`` is ``cond`` written for the correlated probe: with ``+column`` where an IN list
        would otherwise make SQLite probe the primary key once per list item for every driven row.
        """
        driver_cond = cond
        cond = check_cond or cond
        names = [pnames] if isinstance(pnames, str) else list(pnames)
        param = _in_list("param", names)
        # A correlated probe must walk the primary key (rid, ...): "+param" keeps SQLite off the
        # value indexes, which all lead with param and would scan every row of the parameter.
        pparam = _in_list("+param", names)
        type_sql, type_args = ("AND type = ? ", [rtype]) if rtype else ("", [])
        source, dtype_sql, dtype_args = table, type_sql, type_args
        if self.patient is not None and table in PATIENT_TABLES:
            dtype_sql, dtype_args = "AND patient = ? " + type_sql, [self.patient, *type_args]
            rank = min(rank, RANK_PATIENT_VALUE)
            # forced: with an OR in the value test SQLite may otherwise scan a global value index
            source = f"{table} INDEXED BY {table}_patient"
        if negate:
            return Cond(
                Sql(
                    f"NOT EXISTS (SELECT 1 FROM {table} WHERE rid = {alias}.rid AND {pparam.text} AND ({cond.text}))",
                    [*pparam.args, *cond.args],
                )
            )
        # rows carry the resource's type, so a positive probe also proves the row's type
        check = Sql(
            f"EXISTS (SELECT 1 FROM {table} WHERE rid = {alias}.rid AND {pparam.text} {type_sql}AND ({cond.text}))",
            [*pparam.args, *type_args, *cond.args],
        )
        driver = Sql(
            f"SELECT rid FROM {source} WHERE {param.text} {dtype_sql}AND ({driver_cond.text})",
            [*param.args, *dtype_args, *driver_cond.args],
        )
        return Cond(check, driver, rank, typed=rtype is not None)

    @staticmethod
    def _target_filter(p: SearchParam) -> Sql:
        """For an alias like ``patient`` (= ``subject`` pointing at a Patient): the target-type restriction."""
        if p.alias_of and p.restrict:
            return _in_list("ttype", list(p.targets))
        return Sql("")

    def _missing(self, rtype, p, missing: bool, alias: str) -> Cond:
        if isinstance(p, SearchParam) and p.special in ("_id", "_lastUpdated"):
            return _check(Sql("0" if missing else "1"))
        table = TABLE_OF_TYPE["composite" if isinstance(p, Composite) else p.type]
        op = "NOT EXISTS" if missing else "EXISTS"
        names = _in_list("+param", list(p.index_names))
        extra = self._target_filter(p) if isinstance(p, SearchParam) else Sql("")
        cond = _and([names, extra])
        return _check(Sql(f"{op} (SELECT 1 FROM {table} WHERE rid = {alias}.rid AND {cond.text})", cond.args))

    def _id(self, rtype, mod, value, alias, name) -> Cond:
        ids = [unescape(v) for v in split_or(value)]
        if mod is None:
            check = _in_list(f"{alias}.id", ids)
            if rtype is None:
                return _check(check, row=True)
            ids_sql = _in_list("id", ids)
            driver = Sql(f"SELECT rid FROM resources WHERE type = ? AND {ids_sql.text}", [rtype, *ids_sql.args])
            return Cond(check, driver, RANK_ID, typed=True, row=True)
        if mod == "not":
            c = _in_list(f"{alias}.id", ids)
            return _check(Sql(f"NOT ({c.text})", c.args), row=True)
        raise SearchError(f"modifier :{mod} is not supported on parameter {name!r}")

    def _token(self, rtype, p: SearchParam, mod, value, alias, name) -> Cond:
        values = split_or(value)
        if mod is None or mod == "not":
            return self._in_table(
                alias, "sp_token", rtype, p.index_names, token_condition(name, values), RANK_TOKEN,
                negate=mod == "not", check_cond=token_condition(name, values, "+system", "+code"),
            )
        if mod == "text":
            parts = []
            for v in values:
                x = normalize(unescape(v))
                if not x:
                    raise SearchError(f"empty value for parameter {name!r}")
                parts.append(Sql("(norm >= ? AND norm < ?) OR norm LIKE ? ESCAPE '\\'", [x, x + _HIGH, f"% {_like_escape(x)}%"]))
            return self._in_table(alias, "sp_string", rtype, [n + ":text" for n in p.index_names], _or(parts), RANK_SCAN)
        raise SearchError(
            f"modifier :{mod} is not supported on token parameter {name!r} (supported: :not, :text, :missing)"
        )

    def _string(self, rtype, p: SearchParam, mod, value, alias, name) -> Cond:
        parts = []
        for v in split_or(value):
            raw = unescape(v)
            if mod is None:
                x = normalize(raw)
                parts.append(Sql("norm >= ? AND norm < ?", [x, x + _HIGH]))
            elif mod == "exact":
                parts.append(Sql("exact = ?", [raw]))
            elif mod == "contains":
                parts.append(Sql("norm LIKE ? ESCAPE '\\'", [f"%{_like_escape(normalize(raw))}%"]))
            else:
                raise SearchError(
                    f"modifier :{mod} is not supported on string parameter {name!r} (supported: :exact, :contains, :missing)"
                )
        return self._in_table(
            alias, "sp_string", rtype, p.index_names, _or(parts), RANK_SCAN if mod == "contains" else RANK_STRING
        )

    def _uri(self, rtype, p: SearchParam, mod, value, alias, name) -> Cond:
        parts = []
        for v in split_or(value):
            raw = unescape(v)
            if mod is None:
                parts.append(Sql("value = ?", [raw]))
            elif mod == "below":
                parts.append(Sql("value >= ? AND value < ?", [raw, raw + _HIGH]))
            elif mod == "above":
                parts.append(Sql("? LIKE (replace(replace(value, '%', '\\%'), '_', '\\_') || '%') ESCAPE '\\'", [raw]))
            else:
                raise SearchError(
                    f"modifier :{mod} is not supported on uri parameter {name!r} (supported: :below, :above, :missing)"
                )
        return self._in_table(alias, "sp_uri", rtype, p.index_names, _or(parts), RANK_SCAN if mod == "above" else RANK_STRING)

    def _date(self, rtype, p: SearchParam, mod, value, alias, name) -> Cond:
        if mod:
            raise SearchError(f"modifier :{mod} is not supported on date parameter {name!r} (supported: :missing)")
        cols = _col_range("lo", "hi")
        cond = _or([date_condition(cols, parse_date(name, v)) for v in split_or(value)])
        return self._in_table(alias, "sp_date", rtype, p.index_names, cond, RANK_RANGE)

    def _number(self, rtype, p: SearchParam, mod, value, alias, name) -> Cond:
        if mod:
            raise SearchError(f"modifier :{mod} is not supported on number parameter {name!r} (supported: :missing)")
        parts = []
        for v in split_or(value):
            n = parse_number(name, v)
            parts.append(number_condition("value", n.prefix, n.value, n.lo, n.hi, name))
        return self._in_table(alias, "sp_number", rtype, p.index_names, _or(parts), RANK_RANGE)

    def _quantity(self, rtype, p: SearchParam, mod, value, alias, name) -> Cond:
        if mod:
            raise SearchError(f"modifier :{mod} is not supported on quantity parameter {name!r} (supported: :missing)")
        parts = []
        for v in split_or(value):
            q = parse_quantity(name, v)
            n = q.number
            c = [number_condition("value", n.prefix, n.value, n.lo, n.hi, name)]
            if q.code is not None:
                c.append(Sql("code = ?", [q.code]))
            if q.system is not None:
                c.append(Sql("system = ?", [q.system]))
            parts.append(_and(c))
        return self._in_table(alias, "sp_quantity", rtype, p.index_names, _or(parts), RANK_RANGE)

    def _reference_targets(self, p: SearchParam, mod: str | None, name: str) -> tuple[str, ...]:
        if mod is None:
            return p.targets
        if mod[:1].isupper():
            if mod not in SEARCH_PARAMS and params_for(mod) is None:
                raise SearchError(f"unknown resource type {mod!r} in parameter {name!r}")
            if p.targets and mod not in p.targets:
                raise SearchError(
                    f"parameter {name!r}: {p.name} cannot refer to {mod} (allowed: {', '.join(p.targets)})"
                )
            return (mod,)
        raise SearchError(
            f"modifier :{mod} is not supported on reference parameter {name!r} (supported: :[Type], :identifier, :missing)"
        )

    def _reference(self, rtype, p: SearchParam, mod, value, alias, name) -> Cond:
        if mod == "identifier":  # matches Reference.identifier (logical references), not the target's identifiers
            values = split_or(value)
            return self._in_table(
                alias, "sp_token", rtype, [n + ":identifier" for n in p.index_names], token_condition(name, values),
                RANK_TOKEN, check_cond=token_condition(name, values, "+system", "+code"),
            )
        targets = self._reference_targets(p, mod, name)
        typed: list[Sql] = []
        for v in split_or(value):
            raw = unescape(v)
            if not raw:
                raise SearchError(f"empty reference value for parameter {name!r}")
            ttype, tid = split_reference(raw)
            if ttype:
                if len(targets) == 1 and mod and ttype != targets[0]:
                    raise SearchError(f"parameter {name!r}: reference {raw!r} is not a {targets[0]}")
                typed.append(Sql("{tid} = ? AND ttype = ?", [tid, ttype]))
            elif "/" not in raw and ":" not in raw and "?" not in raw:  # a bare id
                if len(targets) == 1:
                    typed.append(Sql("{tid} = ? AND ttype = ?", [raw, targets[0]]))
                else:
                    typed.append(Sql("{tid} = ?", [raw]))
            else:  # an unresolved/absolute reference kept verbatim
                typed.append(Sql("{tid} = ? AND ttype = ''", [raw]))
        cond = _and([_or(typed), self._target_filter(p)])
        return self._in_table(
            alias, "sp_reference", rtype, p.index_names, _tid(cond, "tid"), RANK_REFERENCE, check_cond=_tid(cond, "+tid")
        )

    def _composite(self, rtype, c: Composite, value: str, alias: str, name: str) -> Cond:
        parts = []
        for v in split_or(value):
            comps = split_escaped(v, "$")
            if len(comps) != 2:
                raise SearchError(f"invalid composite value {v!r} for parameter {name!r}: expected code$value")
            code = token_condition(name, [comps[0].replace("$", "\\$")], "csystem", "ccode")
            val = comps[1]
            if c.value_type == "quantity":
                q = parse_quantity(name, val)
                n = q.number
                vc = [number_condition("vlo", n.prefix, n.value, n.lo, n.hi, name)]
                if q.code is not None:
                    vc.append(Sql("vcode = ?", [q.code]))
                if q.system is not None:
                    vc.append(Sql("vsystem = ?", [q.system]))
                vcond = _and(vc)
            elif c.value_type == "token":
                vcond = token_condition(name, [val], "vsystem", "vcode")
            elif c.value_type == "date":
                vcond = date_condition(_col_range("vlo", "vhi"), parse_date(name, val))
            else:
                x = normalize(val)
                vcond = Sql("vcode >= ? AND vcode < ?", [x, x + _HIGH])
            parts.append(_and([code, vcond]))
        return self._in_table(alias, "sp_composite", rtype, c.index_names, _or(parts), RANK_COMPOSITE)

    # chains and reverse chains ------------------------------------------------------------------
    def _chain(self, rtype, p, mod, chain: str, value: str, alias: str, name: str) -> Cond:
        if not isinstance(p, SearchParam) or p.type != "reference":
            raise SearchError(f"parameter {name!r}: only reference parameters can be chained ({p.name} is not one)")
        if self.depth >= _MAX_CHAIN_DEPTH:
            raise SearchError(f"parameter {name!r}: chains are limited to {_MAX_CHAIN_DEPTH} levels")
        targets = self._reference_targets(p, mod, name)
        chained_base = parse_name(chain).base
        if not targets:
            targets = tuple(t for t in SEARCH_PARAMS if lookup(t, chained_base) is not None)
        candidates = [t for t in targets if lookup(t, chained_base) is not None]
        if not candidates:
            raise SearchError(
                f"parameter {name!r}: none of the target types of {p.name} ({', '.join(targets) or 'any'}) "
                f"has a search parameter {chained_base!r}"
            )
        inner = Compiler(self.depth + 1, self.conn)
        parts = []
        for t in candidates:
            sub = inner.sub_select(t, [(chain, value)], "id")
            parts.append(Sql(f"ttype = ? AND {{tid}} IN ({sub.text})", [t, *sub.args]))
        cond = _and([_or(parts), self._target_filter(p)])
        return self._in_table(
            alias, "sp_reference", rtype, p.index_names, _tid(cond, "tid"), RANK_CHAIN, check_cond=_tid(cond, "+tid")
        )

    def _has(self, rtype, name: str, value: str, alias: str) -> Cond:
        parts = name.split(":", 3)
        if len(parts) != 4 or not all(parts[1:]):
            raise SearchError(f"invalid reverse chain {name!r}: expected _has:Type:reference-parameter:parameter")
        _, src_type, ref_name, rest = parts
        if self.depth >= _MAX_CHAIN_DEPTH:
            raise SearchError(f"parameter {name!r}: reverse chains are limited to {_MAX_CHAIN_DEPTH} levels")
        if rtype is None:
            raise SearchError(f"parameter {name!r}: _has needs a resource type to search")
        if params_for(src_type) is None:
            raise SearchError(f"unknown resource type {src_type!r} in parameter {name!r}")
        ref = lookup(src_type, ref_name)
        if not isinstance(ref, SearchParam) or ref.type != "reference":
            raise SearchError(f"parameter {name!r}: {ref_name!r} is not a reference parameter of {src_type}")
        if ref.targets and rtype not in ref.targets:
            raise SearchError(f"parameter {name!r}: {src_type}.{ref_name} cannot refer to {rtype}")
        inner = Compiler(self.depth + 1, self.conn)
        sub = inner.sub_select(src_type, [(rest, value)], "rid")
        names = _in_list("param", list(ref.index_names))
        targets = Sql(
            f"SELECT tid FROM sp_reference WHERE {names.text} AND type = ? AND ttype = ? AND rid IN ({sub.text})",
            [*names.args, src_type, rtype, *sub.args],
        )
        check = Sql(f"{alias}.id IN ({targets.text})", targets.args)
        driver = Sql(f"SELECT rid FROM resources WHERE type = ? AND id IN ({targets.text})", [rtype, *targets.args])
        return Cond(check, driver, RANK_CHAIN, typed=True, row=True)


# --- sorting -------------------------------------------------------------------------------------

_SORT_COL = {
    "date": ("sp_date", "lo", "hi"),
    "string": ("sp_string", "norm", "norm"),
    "token": ("sp_token", "code", "code"),
    "number": ("sp_number", "value", "value"),
    "quantity": ("sp_quantity", "value", "value"),
    "reference": ("sp_reference", "tid", "tid"),
    "uri": ("sp_uri", "value", "value"),
}


def sort_terms(rtype: str | None, spec: str, alias: str) -> Sql:
    """ORDER BY terms for ``_sort`` (``a,-b``); dates sort by range start ascending, by range end descending."""
    terms: list[str] = []
    args: list = []
    for key in spec.split(","):
        key = key.strip()
        desc = key.startswith("-")
        key = key[1:] if desc else key
        if not key:
            raise SearchError(f"invalid _sort value {spec!r}")
        direction = "DESC" if desc else "ASC"
        if key == "_id":
            terms.append(f"{alias}.id {direction}")
            continue
        if key == "_lastUpdated":
            terms.append(f"{alias}.last_updated {direction}")
            continue
        p = lookup(rtype or "", key)
        if not isinstance(p, SearchParam) or p.type not in _SORT_COL:
            where = f" for resource type {rtype}" if rtype else ""
            raise SearchError(f"unknown or unsortable parameter {key!r} in _sort{where}")
        table, asc_col, desc_col = _SORT_COL[p.type]
        names = _in_list("+param", list(p.index_names))
        expr = (
            f"(SELECT {'max' if desc else 'min'}({desc_col if desc else asc_col}) FROM {table} "
            f"WHERE rid = {alias}.rid AND {names.text})"
        )
        # Resources without a value go last either way: NULL sorts lowest, so it is last in DESC as is,
        # and in ASC a blob (which sorts after every number and text) stands in for it. One evaluation per row.
        terms.append(f"{expr} DESC" if desc else f"coalesce({expr}, x'ff') ASC")
        args.extend(names.args)
    return Sql(", ".join(terms), args)



def latest_first_param(rtype: str | None, spec: str) -> SearchParam | None:
    """The date parameter of a ``_sort=-date``-style sort (one descending key on one date index), else None."""
    key = spec.strip()
    if rtype is None or "," in key or not key.startswith("-"):
        return None
    p = lookup(rtype, key[1:])
    if isinstance(p, SearchParam) and p.type == "date" and len(p.index_names) == 1 and not p.special:
        return p
    return None


def walk_window(rtype: str, p: SearchParam, rows: int) -> Cond:
    """The ``rows`` newest date rows of ``p`` (by range end, then rid, descending) as a forced driver.

    For a latest-first page of a large population-wide result: the first matches in this window are
    the first matches of the whole sort, so a page never sorts every match.
    """
    driver = Sql(
        "SELECT rid FROM (SELECT rid FROM sp_date INDEXED BY sp_date_hi WHERE param = ? AND type = ? "
        "ORDER BY hi DESC, rid DESC LIMIT ?)",
        [p.index_names[0], rtype, rows],
    )
    return Cond(Sql("1"), driver, -1.0, typed=True)
