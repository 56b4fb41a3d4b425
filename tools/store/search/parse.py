"""Parsing and validation of search values: prefixes, dates, numbers, quantities, tokens, OR lists.

Every malformed value raises :class:`tools.store.base.SearchError` naming the parameter, so a
client (or the agent) learns what to fix instead of silently getting a different search.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from ..base import SearchError
from .dates import parse_range

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_NUM_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_INT_RE = re.compile(r"^[0-9]+$")

# Documented limits (docs/search.md, "Limits"). They keep every accepted search inside what SQLite can
# compile (its parser stack, expression depth and LIKE pattern length), so a search past them is a 400
# naming the parameter instead of an engine error.
MAX_CHAIN_DEPTH = 3  # reference hops in one chained parameter (a.b.c.name has three)
MAX_HAS_DEPTH = 2  # nested _has levels (_has:A:x:_has:B:y:param has two)
MAX_OR_VALUES = 1000  # comma-separated values of one parameter (Blaze's own CI sends 178 codes)
MAX_TOTAL_VALUES = 3000  # values of all filter parameters of one search together (SQLite's 32,766 arguments)
MAX_PARAMS = 30  # filter parameters (repeats counted) in one search
MAX_VALUE_LENGTH = 1024  # characters of one value of an OR list
MAX_NAME_LENGTH = 256  # characters of a parameter name, chain and modifiers included
MAX_OFFSET = 10_000_000  # _offset; larger pages could only be empty
MAX_NUMBER_DIGITS = 40  # digits and exponent of a number or quantity value, so float() stays finite and exact enough
# C0 control characters (NUL included) cannot occur in FHIR string, token or date values.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def check_text(param: str, text: str, what: str = "value") -> None:
    """Refuse a control character (NUL would otherwise cut or change the value) in a name or value."""
    m = _CONTROL_RE.search(text)
    if m is not None:
        raise SearchError(
            f"invalid {what} for parameter {param!r}: control character U+{ord(m.group()):04X} at position {m.start()}"
        )


def check_values(param: str, values: list[str]) -> list[str]:
    """Apply the OR-list and value-length limits to the values of one parameter."""
    if len(values) > MAX_OR_VALUES:
        raise SearchError(
            f"parameter {param!r} has {len(values)} comma-separated values; at most {MAX_OR_VALUES} are allowed "
            "(split the search)"
        )
    for v in values:
        if len(v) > MAX_VALUE_LENGTH:
            raise SearchError(
                f"a value of parameter {param!r} is {len(v)} characters long; at most {MAX_VALUE_LENGTH} are allowed"
            )
    return values


def split_or(value: str) -> list[str]:
    """Split an OR list on unescaped commas and unescape ``\\,`` ``\\|`` ``\\$`` ``\\\\``."""
    if "\\" not in value:
        return value.split(",")
    out, cur, i = [], [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            cur.append("\\" + value[i + 1])  # keep escapes for split_escaped below
            i += 2
            continue
        if ch == ",":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


def split_escaped(value: str, sep: str, maxsplit: int = -1) -> list[str]:
    """Split on unescaped ``sep`` and remove escapes from the parts."""
    parts, cur, i, n = [], [], 0, 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            cur.append(value[i + 1])
            i += 2
            continue
        if ch == sep and (maxsplit < 0 or n < maxsplit):
            parts.append("".join(cur))
            cur = []
            n += 1
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def unescape(value: str) -> str:
    """Remove FHIR escapes (``\\,`` ``\\|`` ``\\$`` ``\\\\``) without splitting anything."""
    if "\\" not in value:
        return value
    out, i = [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            out.append(value[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def split_prefix(value: str) -> tuple[str, str]:
    """``("ge", "2010")`` from ``"ge2010"``; the default prefix is ``eq``."""
    if len(value) > 2 and value[:2] in PREFIXES and not value[0].isdigit():
        return value[:2], value[2:]
    return "eq", value


@dataclass(frozen=True)
class DateValue:
    prefix: str
    lo: int
    hi: int


def parse_date(param: str, value: str) -> DateValue:
    """A date search value (``ge2010-05``, ``2010-05-03T10:00:00+02:00``) as a prefixed range."""
    prefix, rest = split_prefix(value)
    # A '+' in a time-zone offset arrives as a space when the query string was not URL-encoded.
    rest = rest.replace(" ", "+")
    rng = parse_range(rest)
    if rng is None:
        raise SearchError(
            f"invalid date {value!r} for parameter {param!r}: expected [prefix]YYYY[-MM[-DD[Thh:mm[:ss][zone]]]] "
            f"with prefix one of {', '.join(PREFIXES)}"
        )
    return DateValue(prefix, rng[0], rng[1])


@dataclass(frozen=True)
class NumberValue:
    prefix: str
    value: float
    lo: float  # the implicit precision range of the value as written (eq 100 covers [99.5, 100.5))
    hi: float


def parse_number(param: str, value: str) -> NumberValue:
    """A number search value with its prefix and its implicit precision range."""
    prefix, rest = split_prefix(value)
    if not _NUM_RE.match(rest):
        raise SearchError(f"invalid number {value!r} for parameter {param!r}: expected [prefix]number, e.g. gt5.4")
    if len(rest) > MAX_NUMBER_DIGITS:
        raise SearchError(f"number {value!r} for parameter {param!r} is longer than {MAX_NUMBER_DIGITS} characters")
    try:
        d = Decimal(rest)
        exp = d.as_tuple().exponent
        half = Decimal(5).scaleb(int(exp) - 1) if isinstance(exp, int) else Decimal(0)
        value_f, lo, hi = float(d), float(d - half), float(d + half)
    except (InvalidOperation, ArithmeticError) as exc:
        raise SearchError(f"invalid number {value!r} for parameter {param!r}") from exc
    if not all(math.isfinite(x) for x in (value_f, lo, hi)):
        raise SearchError(f"number {value!r} for parameter {param!r} is out of range")
    return NumberValue(prefix, value_f, lo, hi)


@dataclass(frozen=True)
class QuantityValue:
    number: NumberValue
    system: str | None  # None: any system
    code: str | None  # None: any unit


def parse_quantity(param: str, value: str) -> QuantityValue:
    """``[prefix]number|system|code`` or ``[prefix]number||unit`` or ``[prefix]number``."""
    parts = split_escaped(value, "|")
    if len(parts) not in (1, 3):
        raise SearchError(
            f"invalid quantity {value!r} for parameter {param!r}: expected [prefix]number[|system|code]"
        )
    num = parse_number(param, parts[0])
    if len(parts) == 1:
        return QuantityValue(num, None, None)
    system = parts[1] or None
    code = parts[2] or None
    return QuantityValue(num, system, code)


@dataclass(frozen=True)
class TokenValue:
    system: str | None  # None: any system; "": no system (``|code``)
    code: str | None  # None: any code (``system|``)


def parse_token(param: str, value: str) -> TokenValue:
    """``system|code``, ``code``, ``|code`` or ``system|``."""
    parts = split_escaped(value, "|", 1)
    if len(parts) == 1:
        if not parts[0]:
            raise SearchError(f"empty token value for parameter {param!r}")
        return TokenValue(None, parts[0])
    system, code = parts
    if not system and not code:
        raise SearchError(f"invalid token {value!r} for parameter {param!r}: expected system|code, code, |code or system|")
    return TokenValue(system, code or None)


def parse_int(param: str, value: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    """A non-negative decimal integer written with ASCII digits only (Python's ``int()`` would also take
    ``1_000``, spaces and other scripts' digits), within ``[minimum, maximum]``."""
    if not isinstance(value, str) or not _INT_RE.match(value) or len(value) > 30:
        raise SearchError(f"invalid integer {value!r} for parameter {param!r}: expected digits 0-9")
    n = int(value)
    if n < minimum:
        raise SearchError(f"parameter {param!r} must be >= {minimum}, got {n}")
    if maximum is not None and n > maximum:
        raise SearchError(f"parameter {param!r} must be <= {maximum}, got {n}")
    return n


def parse_bool(param: str, value: str) -> bool:
    if value == "true":
        return True
    if value == "false":
        return False
    raise SearchError(f"invalid value {value!r} for parameter {param!r}: expected true or false")


@dataclass
class ParamName:
    """A parsed parameter name: ``subject:Patient.name:exact`` -> base ``subject``, modifier ``Patient``, chain."""

    raw: str
    base: str
    modifier: str | None
    chain: str | None  # the rest after the first '.', itself a parameter name on the target type


def parse_name(raw: str) -> ParamName:
    head, _, chain = raw.partition(".")
    base, _, modifier = head.partition(":")
    if not base:
        raise SearchError(f"invalid parameter name {raw!r}")
    return ParamName(raw, base, modifier or None, chain or None)
