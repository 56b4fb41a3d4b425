"""FHIR date/dateTime/instant values as half-open ranges of epoch milliseconds (UTC).

FHIR treats every date as a range set by its precision: ``2010`` is the whole year, ``2010-05-03``
the whole day, ``2010-05-03T10:00:00+02:00`` one second.  Both indexed values and search values use
the same representation ``(lo, hi)`` with ``hi`` exclusive, so every prefix comparison of the R4
search spec becomes plain integer arithmetic in SQL.

Values without a time zone (dates, partial dates, and search values without an offset) are read
as UTC: the store has no better local zone to apply and the result is deterministic.
"""

from __future__ import annotations

import re

MIN_MS = -(2**62)  # "since forever": an open Period start
MAX_MS = 2**62  # "until forever": an open Period end

_DATE_RE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)

_MS_DAY = 86_400_000


def _days_from_civil(y: int, m: int, d: int) -> int:
    # Howard Hinnant's algorithm: days since 1970-01-01 in the proleptic Gregorian calendar.
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _month_len(y: int, m: int) -> int:
    if m == 2:
        return 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    return 30 if m in (4, 6, 9, 11) else 31


def parse_range(text: str) -> tuple[int, int] | None:
    """``(lo, hi)`` epoch-ms range (hi exclusive) of a FHIR date/dateTime/instant, or None if malformed."""
    m = _DATE_RE.match(text)
    if m is None:
        return None
    ys, mos, ds, hs, mis, ss, frac, tz = m.groups()
    y = int(ys)
    if mos is None:
        return _days_from_civil(y, 1, 1) * _MS_DAY, _days_from_civil(y + 1, 1, 1) * _MS_DAY
    mo = int(mos)
    if not 1 <= mo <= 12:
        return None
    if ds is None:
        ny, nm = (y + 1, 1) if mo == 12 else (y, mo + 1)
        return _days_from_civil(y, mo, 1) * _MS_DAY, _days_from_civil(ny, nm, 1) * _MS_DAY
    d = int(ds)
    if not 1 <= d <= _month_len(y, mo):
        return None
    day = _days_from_civil(y, mo, d) * _MS_DAY
    if hs is None:
        return day, day + _MS_DAY
    h, mi = int(hs), int(mis)
    if h > 24 or mi > 59:
        return None
    base = day + (h * 60 + mi) * 60_000
    if ss is None:
        width = 60_000
    else:
        s = int(ss)
        if s > 60:
            return None
        base += s * 1000
        if frac:
            base += int((frac + "00")[:3])
            width = 1
        else:
            width = 1000
    if tz and tz != "Z":
        off = (int(tz[1:3]) * 60 + int(tz[4:6])) * 60_000
        base = base - off if tz[0] == "+" else base + off
    return base, base + width


def ms_to_instant(ms: int) -> str:
    """Epoch ms as the store's ``last_updated`` text form (``2024-01-02T03:04:05.000Z``)."""
    if ms <= MIN_MS:
        return "0000-01-01T00:00:00.000Z"
    if ms >= _YEAR_10000:
        # Past the last instant a 4-digit year can write: a bound that sorts after every stored
        # last_updated. (Formatting year 10000 as text would sort *before* "2026-...".)
        return "9999-99"
    days, rem = divmod(ms, _MS_DAY)
    # inverse of _days_from_civil
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    mo = mp + 3 if mp < 10 else mp - 9
    y += mo <= 2
    h, rem = divmod(rem, 3_600_000)
    mi, rem = divmod(rem, 60_000)
    s, ms_ = divmod(rem, 1000)
    return f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}.{ms_:03d}Z"


def value_ranges(value: object, kind: str | None) -> list[tuple[int, int]]:
    """Ranges of one FHIR element used by a date parameter.

    ``kind`` is the choice-type suffix when known (``Period``, ``DateTime``, ``Timing``...); otherwise
    the shape decides: a string is a date/dateTime/instant, a dict with start/end a Period, a dict
    with event/repeat a Timing.  Elements of other types (Age, Range, string) carry no date.
    """
    if isinstance(value, str):
        r = parse_range(value)
        return [r] if r else []
    if not isinstance(value, dict):
        return []
    if kind in (None, "Period") and ("start" in value or "end" in value):
        s = parse_range(value["start"]) if isinstance(value.get("start"), str) else None
        e = parse_range(value["end"]) if isinstance(value.get("end"), str) else None
        if s is None and e is None:
            return []
        return [(s[0] if s else MIN_MS, e[1] if e else MAX_MS)]
    if kind in (None, "Timing") and ("event" in value or "repeat" in value):
        out = [r for ev in value.get("event", []) if isinstance(ev, str) and (r := parse_range(ev))]
        bounds = (value.get("repeat") or {}).get("boundsPeriod")
        if isinstance(bounds, dict):
            out.extend(value_ranges(bounds, "Period"))
        return out
    return []


_YEAR_10000 = _days_from_civil(10000, 1, 1) * _MS_DAY
