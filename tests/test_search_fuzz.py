"""Property-based fuzzing of the search parser and engine (hypothesis), through the store and the facade.

Searches are generated from the engine's own registry (real types, parameter names, modifiers, chains,
``_has``, result parameters) mixed with junk: every prefix, dates and numbers of every shape, huge
numbers, NUL and other control characters, escapes, long OR lists, deep chains. Whatever comes out, the
answer must be a searchset Bundle or a :class:`SearchError` (HTTP: 200, or 4xx with an OperationOutcome),
never another exception, never a 500, and the store must be unchanged. The number of examples is bounded
(``FUZZ_EXAMPLES``, 200 by default) so CI time stays fixed; the seed is derandomized for reproducibility.
"""

from __future__ import annotations

import os
from urllib.parse import quote

import httpx
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is in the test extra: pip install -e '.[test]'")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ehr_agent.tools.store.base import SearchError  # noqa: E402
from ehr_agent.tools.store.search.params import COMPOSITES, SEARCH_PARAMS  # noqa: E402

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

TYPES = sorted(SEARCH_PARAMS)
MODIFIERS = ["", ":exact", ":contains", ":missing", ":not", ":text", ":below", ":above", ":identifier", ":Patient",
             ":Organization", ":iterate", ":zzz", ":", "::"]
PREFIXES = ["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap", "xx"]
RESULT = ["_count", "_offset", "_sort", "_include", "_revinclude", "_elements", "_summary", "_total", "_type",
          "_format", "_pretty", "_id", "_lastUpdated", "_profile", "_tag", "_totalMethod", "_text", "_filter"]


def names_of(rtype: str) -> list[str]:
    return sorted(SEARCH_PARAMS[rtype]) + sorted(COMPOSITES.get(rtype, {}))


ALL_NAMES = sorted({n for t in TYPES for n in names_of(t)})

dates = st.one_of(
    st.dates().map(str),
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(["9999", "9999-12-31", "0000", "10000-01-01", "2014-13", "2014-02-30", "2013-12-31T23:59:60Z",
                     "2014-01-01T24:00", "2014-01-01T00:00:00+14:00", "2014-01-01T00:00:00.123456789-12:00"]),
)
numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["1e999999", "-1e-999999", "99999999999999999999999", "0.0000000000000000000001", "1e308",
                     "1.", ".5", "1e", "--1", "NaN", "inf", "5.4|http://unitsofmeasure.org|mg", "5||mg", "1|2"]),
)
text = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
junk = st.sampled_from(["\x00", "a\x00b", "\\", "\\,", "a,b", ",", "|", "a|", "|a", "$", "a$b", "Patient/x", "http://x|y",
                        "%", "_", "' OR 1=1 --", "\u202e", "\ud7ff", "x" * 1100, ",".join(["v"] * 150)])


@st.composite
def values(draw) -> str:
    base = draw(st.one_of(dates, numbers, text, junk))
    prefix = draw(st.sampled_from(PREFIXES))
    n = draw(st.integers(min_value=1, max_value=4))
    return ",".join([prefix + base] * n) if draw(st.booleans()) else prefix + base


@st.composite
def names(draw, rtype: str) -> str:
    kind = draw(st.integers(min_value=0, max_value=9))
    if kind <= 4:
        name = draw(st.sampled_from(names_of(rtype)))
        return name + draw(st.sampled_from(MODIFIERS))
    if kind == 5:  # a chain of 1-5 hops over any parameter names
        hops = draw(st.lists(st.sampled_from(ALL_NAMES), min_size=2, max_size=6))
        return draw(st.sampled_from(["", ":Patient", ":Organization"])).join([hops[0], ""]) + "." + ".".join(hops[1:])
    if kind == 6:  # _has, possibly nested
        depth = draw(st.integers(min_value=1, max_value=4))
        parts = []
        for _ in range(depth):
            parts.append(f"_has:{draw(st.sampled_from(TYPES))}:{draw(st.sampled_from(ALL_NAMES))}:")
        return "".join(parts) + draw(st.sampled_from(ALL_NAMES))
    if kind == 7:
        return draw(st.sampled_from(RESULT)) + draw(st.sampled_from(["", "", ":iterate", ":exact"]))
    return draw(text)


@st.composite
def searches(draw) -> tuple[str, list[tuple[str, str]]]:
    rtype = draw(st.sampled_from(TYPES))
    n = draw(st.integers(min_value=0, max_value=6))
    params = [(draw(names(rtype)), draw(values())) for _ in range(n)]
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        params = params * draw(st.integers(min_value=2, max_value=40))
    return rtype, params


def fingerprint(store) -> tuple:
    conn = store._conn()
    row = conn.execute("SELECT count(*), total(length(json)), max(last_updated), total(version) FROM resources").fetchone()
    idx = conn.execute("SELECT count(*) FROM sp_reference").fetchone()
    return (*row, *idx)


@pytest.fixture(scope="module")
def base(fixture_store):
    from ehr_agent.tools.store.server import make_server

    server = make_server(fixture_store, "127.0.0.1", 0, quiet=True)
    server.start_in_thread()
    yield server.base_url
    server.stop()


def test_engine_answers_a_bundle_or_a_search_error(fixture_store):
    before = fingerprint(fixture_store)

    @FUZZ
    @given(searches())
    def run(case):
        rtype, params = case
        try:
            bundle = fixture_store.search(rtype, params)
        except SearchError as e:
            assert e.status == 400 and e.message
            return
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
        assert isinstance(bundle["total"], int) and bundle["total"] >= 0
        if "_summary" not in {k for k, _ in params} and bundle["total"] == 0:
            assert not [e for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]

    run()
    assert fingerprint(fixture_store) == before


def test_facade_never_answers_500(fixture_store, base):
    before = fingerprint(fixture_store)
    with httpx.Client(base_url=base, timeout=30) as client:

        @FUZZ
        @given(searches(), st.booleans())
        def run(case, lenient):
            rtype, params = case
            query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)
            headers = {"Prefer": "handling=lenient"} if lenient else {}
            r = client.get(f"/{rtype}?{query}", headers=headers)
            assert r.status_code < 500, (r.status_code, r.text[:500])
            assert r.headers["content-type"].startswith("application/fhir+json")
            body = r.json()
            if r.status_code == 200:
                assert body["resourceType"] == "Bundle"
            else:
                assert 400 <= r.status_code < 500
                assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["diagnostics"]
                assert "Traceback" not in r.text

        run()
    assert fingerprint(fixture_store) == before


def test_everything_parameters(fixture_store, base):
    from conftest import ALICE

    with httpx.Client(base_url=base, timeout=30) as client:

        @FUZZ
        @given(st.dictionaries(st.sampled_from(["start", "end", "_count", "_offset", "_since", "x"]),
                               st.one_of(dates, numbers, text, junk), max_size=4))
        def run(params):
            r = client.get(f"/Patient/{ALICE}/$everything", params=params)
            assert r.status_code in (200, 400, 404), (r.status_code, r.text[:300])
            assert r.json()["resourceType"] in ("Bundle", "OperationOutcome")

        run()
