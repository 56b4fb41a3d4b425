"""The calculator against independent computations (numpy, plain date arithmetic) on seeded random inputs."""

from __future__ import annotations

import random
from datetime import date, timedelta

import numpy as np
import pytest

from ehr_agent.tools import calculator as calc

RNG = random.Random(20240611)


def _rand_date(lo: int = 1930, hi: int = 2030) -> date:
    return date(lo, 1, 1) + timedelta(days=RNG.randrange((date(hi, 1, 1) - date(lo, 1, 1)).days))


def _age_independent(born: date, at: date) -> int:
    return at.year - born.year - ((at.month, at.day) < (born.month, born.day))


def test_age_matches_independent_computation():
    for _ in range(300):
        b = _rand_date(1920, 2010)
        a = b + timedelta(days=RNG.randrange(0, 40000))
        r = calc.age(b.isoformat(), a.isoformat())
        assert r.values["years"] == _age_independent(b, a), (b, a)


def test_age_edge_cases():
    assert calc.age("2000-02-29", "2001-02-28").values["years"] == 0
    assert calc.age("2000-02-29", "2001-03-01").values["years"] == 1
    assert calc.age("1960-05-10", "2025-05-09").values["years"] == 64
    assert calc.age("1960-05-10", "2025-05-10").values["years"] == 65
    with pytest.raises(calc.CalcError):
        calc.age("2020-01-01", "2019-01-01")


def test_interval_days_weeks_and_months():
    for _ in range(300):
        a, b = _rand_date(), _rand_date()
        r = calc.interval(a.isoformat(), b.isoformat())
        assert r.values["days"] == (b - a).days
        assert r.values["weeks"] == round((b - a).days / 7, 1)
        lo, hi = min(a, b), max(a, b)
        months = (hi.year - lo.year) * 12 + hi.month - lo.month - (hi.day < lo.day)
        assert abs(r.values["months_total"]) == months
    r = calc.interval("2019-03-04", "2021-09-15T10:00:00Z")
    assert (r.values["years"], r.values["months"], r.values["rem_days"]) == (2, 6, 11)


def test_stats_match_numpy():
    for _ in range(50):
        xs = [round(RNG.uniform(-50, 300), 2) for _ in range(RNG.randrange(1, 30))]
        r = calc.stats(xs).values
        assert r["count"] == len(xs)
        assert r["min"] == pytest.approx(min(xs)) and r["max"] == pytest.approx(max(xs))
        assert r["mean"] == pytest.approx(float(np.mean(xs)), abs=1e-4)
        assert r["median"] == pytest.approx(float(np.median(xs)), abs=1e-4)


def test_trend_matches_numpy_polyfit():
    for _ in range(50):
        n = RNG.randrange(2, 15)
        days = sorted(RNG.sample(range(0, 5000), n))
        t0 = date(2010, 1, 1)
        ds = [(t0 + timedelta(days=d)).isoformat() for d in days]
        ys = [round(RNG.uniform(4, 12), 1) for _ in range(n)]
        slope = np.polyfit(np.array(days) / 365.25, ys, 1)[0]
        shuffled = list(zip(ds, ys))
        RNG.shuffle(shuffled)  # order of input must not matter
        r = calc.trend([y for _, y in shuffled], [d for d, _ in shuffled]).values
        assert r["slope_per_year"] == pytest.approx(slope, abs=1e-3)
        assert r["change"] == pytest.approx(ys[-1] - ys[0], abs=1e-9)


def test_shift_and_bad_input():
    assert calc.shift("2020-02-28", 2).values["date"] == "2020-03-01"
    assert calc.shift("2020-03-01", -1).values["date"] == "2020-02-29"
    with pytest.raises(calc.CalcError):
        calc.trend([1.0, 2.0], ["2020-01-01"])
    with pytest.raises(calc.CalcError):
        calc.trend([1.0, 2.0], ["2020-01-01", "2020-01-01"])
    with pytest.raises(calc.CalcError):
        calc.parse_date("March 2020")
    with pytest.raises(ValueError):
        calc.CalcArgs(op="trend", values=[1.0])


def test_calculate_defaults_end_to_as_of():
    r = calc.calculate(calc.CalcArgs(op="age"), as_of="2025-01-01", birth_date="1960-05-10")
    assert r.values["years"] == 64
    r = calc.calculate(calc.CalcArgs(op="interval", start="2024-12-01"), as_of="2025-01-01")
    assert r.values["days"] == 31
