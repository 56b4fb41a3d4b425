"""Search engine units: FHIR date ranges, value parsing, index extraction, error messages, and the
R4 prefix semantics on crafted resources whose expected matches are worked out here by hand."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from ehr_agent.tools.store.base import SearchError
from ehr_agent.tools.store.search import INDEX_TABLES, INSERT_SQL, index_rows
from ehr_agent.tools.store.search.dates import MAX_MS, ms_to_instant, parse_range
from ehr_agent.tools.store.search.params import SEARCH_PARAMS
from ehr_agent.tools.store.search.parse import parse_number, parse_quantity, parse_token, split_or
from ehr_agent.tools.store.sqlite_store import SQLiteStore

UTC = timezone.utc


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


# --- dates ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,start,end",
    [
        ("2010", datetime(2010, 1, 1, tzinfo=UTC), datetime(2011, 1, 1, tzinfo=UTC)),
        ("2012-02", datetime(2012, 2, 1, tzinfo=UTC), datetime(2012, 3, 1, tzinfo=UTC)),
        ("2010-12", datetime(2010, 12, 1, tzinfo=UTC), datetime(2011, 1, 1, tzinfo=UTC)),
        ("2012-02-29", datetime(2012, 2, 29, tzinfo=UTC), datetime(2012, 3, 1, tzinfo=UTC)),
        ("1969-07-20", datetime(1969, 7, 20, tzinfo=UTC), datetime(1969, 7, 21, tzinfo=UTC)),
        (
            "2010-05-03T10:00:00+02:00",
            datetime(2010, 5, 3, 8, 0, 0, tzinfo=UTC),
            datetime(2010, 5, 3, 8, 0, 1, tzinfo=UTC),
        ),
        (
            "2010-05-03T23:30:00-05:00",
            datetime(2010, 5, 4, 4, 30, tzinfo=UTC),
            datetime(2010, 5, 4, 4, 30, 1, tzinfo=UTC),
        ),
        ("2010-05-03T10:00Z", datetime(2010, 5, 3, 10, tzinfo=UTC), datetime(2010, 5, 3, 10, 1, tzinfo=UTC)),
        (
            "2010-05-03T10:00:00.250Z",
            datetime(2010, 5, 3, 10, 0, 0, 250000, tzinfo=UTC),
            datetime(2010, 5, 3, 10, 0, 0, 251000, tzinfo=UTC),
        ),
    ],
)
def test_date_ranges(text, start, end):
    assert parse_range(text) == (ms(start), ms(end))


@pytest.mark.parametrize("text", ["", "20", "2010-13", "2011-02-29", "2010-05-3", "abc", "2010-05-03T25:00", "2010/05"])
def test_malformed_dates_are_rejected(text):
    assert parse_range(text) is None


def test_instant_text_round_trip():
    for dt in (datetime(1970, 1, 1, tzinfo=UTC), datetime(2024, 2, 29, 23, 59, 59, 999000, tzinfo=UTC),
               datetime(1901, 3, 4, 5, 6, 7, tzinfo=UTC)):
        assert ms_to_instant(ms(dt)) == dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


# --- value parsing ------------------------------------------------------------------------------


def test_token_forms():
    assert (parse_token("code", "http://loinc.org|8302-2").system, parse_token("code", "x|y").code) == ("http://loinc.org", "y")
    assert parse_token("code", "8302-2").system is None
    assert parse_token("code", "|8302-2").system == ""
    t = parse_token("code", "http://loinc.org|")
    assert (t.system, t.code) == ("http://loinc.org", None)
    with pytest.raises(SearchError, match="'code'"):
        parse_token("code", "|")


def test_number_precision_and_quantity_forms():
    n = parse_number("value-quantity", "100")
    assert (n.prefix, n.lo, n.hi) == ("eq", 99.5, 100.5)
    n = parse_number("value-quantity", "ge5.40")
    assert n.prefix == "ge" and n.lo == pytest.approx(5.395) and n.hi == pytest.approx(5.405)
    q = parse_quantity("value-quantity", "lt5.4|http://unitsofmeasure.org|mg")
    assert (q.number.prefix, q.system, q.code) == ("lt", "http://unitsofmeasure.org", "mg")
    q = parse_quantity("value-quantity", "5.4||mg")
    assert (q.system, q.code) == (None, "mg")
    with pytest.raises(SearchError, match="'value-quantity'"):
        parse_quantity("value-quantity", "5.4|mg")


def test_or_lists_respect_escapes():
    assert split_or("a,b,c") == ["a", "b", "c"]
    assert len(split_or("a\\,b,c")) == 2


# --- index extraction ----------------------------------------------------------------------------


def test_index_rows_cover_choice_types_components_and_aliases():
    obs = {
        "resourceType": "Observation",
        "id": "bp",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"}]},
        "subject": {"reference": "Patient/p1"},
        "effectivePeriod": {"start": "2020-01-01T10:00:00Z"},
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "valueQuantity": {"value": 141, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
            }
        ],
    }
    rows = index_rows(obs)
    assert set(rows) <= set(INDEX_TABLES) and all(t in INSERT_SQL for t in rows)
    tokens = {(p, s, c) for _, p, s, c, _ in rows["sp_token"]}
    assert {pid for *_, pid in rows["sp_token"]} == {"p1"}  # rows carry the compartment's patient
    assert ("code", "http://loinc.org", "85354-9") in tokens
    assert ("component-code", "http://loinc.org", "8480-6") in tokens
    assert not any(p.startswith("combo-") for p, _, _ in tokens)  # combo-* is answered from code + component-code
    dates = {(p, lo, hi) for _, p, lo, hi, _ in rows["sp_date"]}
    assert ("date", ms(datetime(2020, 1, 1, 10, tzinfo=UTC)), MAX_MS) in dates  # open period ends never
    refs = {(p, t, i) for _, p, t, i in rows["sp_reference"]}
    assert refs == {("subject", "Patient", "p1")}  # "patient" is answered from subject rows
    comp = {(p, cc, v) for _, p, _, cc, _, _, v, _ in rows["sp_composite"]}
    assert ("component-code-value-quantity", "8480-6", 141.0) in comp
    texts = {(p, n) for _, p, n, _ in rows["sp_string"]}
    assert ("code:text", "blood pressure panel") in texts


def test_patient_deceased_and_names():
    p = {"resourceType": "Patient", "id": "x", "deceasedDateTime": "2020-01-01",
         "name": [{"family": "Müller", "given": ["Ána"]}]}
    rows = index_rows(p)
    assert ("Patient", "deceased", "", "true", "x") in rows["sp_token"]
    strings = {(prm, n) for _, prm, n, _ in rows["sp_string"]}
    assert ("family", "muller") in strings and ("given", "ana") in strings and ("name", "muller") in strings
    alive = index_rows({"resourceType": "Patient", "id": "y"})
    assert ("Patient", "deceased", "", "false", "y") in alive["sp_token"]
    org = index_rows({"resourceType": "Organization", "id": "o", "name": "Acme", "active": True})
    assert ("Organization", "active", "", "true", "") in org["sp_token"]  # shared: no patient


def test_registry_covers_every_synthea_type():
    synthea = {
        "Patient", "Encounter", "Condition", "Observation", "MedicationRequest", "Medication",
        "MedicationAdministration", "Procedure", "Immunization", "AllergyIntolerance", "CarePlan", "CareTeam",
        "Goal", "DiagnosticReport", "DocumentReference", "Claim", "ExplanationOfBenefit", "ImagingStudy", "Device",
        "SupplyDelivery", "Provenance", "Organization", "Practitioner", "PractitionerRole", "Location", "Coverage",
    }
    assert synthea <= set(SEARCH_PARAMS)
    for t in synthea:
        assert {"_id", "_lastUpdated", "_profile"} <= set(SEARCH_PARAMS[t])


# --- crafted store: prefix semantics, modifiers, errors --------------------------------------------

# Encounter periods chosen around the 2020 boundary; expected matches computed below from the R4 rules.
PERIODS = {
    "in-2020": ("2020-03-01T10:00:00Z", "2020-03-01T11:00:00Z"),
    "spans-new-year": ("2019-12-31T20:00:00Z", "2020-01-01T02:00:00Z"),
    "in-2019": ("2019-06-01T10:00:00Z", "2019-06-01T11:00:00Z"),
    "in-2021": ("2021-06-01T10:00:00Z", "2021-06-01T11:00:00Z"),
    "open-from-2020": ("2020-11-01T00:00:00Z", None),
    "tz-edge": ("2020-12-31T23:30:00-02:00", "2020-12-31T23:45:00-02:00"),  # 2021-01-01 in UTC
}


def _iso(s: str | None, default: datetime) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00")) if s else default


def expected_ids(prefix: str, lo: datetime, hi: datetime) -> set[str]:
    """R4 search spec, 3.1.1.4.2: compare the resource's range [s, e) with the parameter's [lo, hi)."""
    out = set()
    for rid, (s, e) in PERIODS.items():
        s_ = _iso(s, datetime.min.replace(tzinfo=UTC))
        e_ = _iso(e, datetime.max.replace(tzinfo=UTC)) + timedelta(seconds=1) if e else datetime.max.replace(tzinfo=UTC)
        contained = s_ >= lo and e_ <= hi
        ok = {
            "eq": contained,
            "ne": not contained,
            "gt": e_ > hi,
            "lt": s_ < lo,
            "ge": e_ > hi or contained,
            "le": s_ < lo or contained,
            "sa": s_ >= hi,
            "eb": e_ <= lo,
        }[prefix]
        if ok:
            out.add(rid)
    return out


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    d = tmp_path_factory.mktemp("crafted")
    lines = [{"resourceType": "Organization", "id": "org1", "name": "Acme Clinic", "active": True},
             {"resourceType": "Patient", "id": "p1", "gender": "female", "managingOrganization": {"reference": "Organization/org1"},
              "meta": {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"],
                       "tag": [{"system": "urn:test", "code": "crafted"}]},
              "name": [{"family": "O'Brien-Smith", "given": ["Zoë"]}],
              "identifier": [{"system": "urn:mrn", "value": "A-1"}]}]
    for rid, (s, e) in PERIODS.items():
        period = {"start": s} | ({"end": e} if e else {})
        enc = {"resourceType": "Encounter", "id": rid, "status": "finished",
               "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
               "subject": {"reference": "Patient/p1"}, "period": period}
        if rid == "in-2019":  # a logical reference: identifier only
            enc["serviceProvider"] = {"identifier": {"system": "urn:npi", "value": "123"}}
        lines.append(enc)
    for i, (v, unit) in enumerate([(99.4, "mg"), (99.6, "mg"), (100.4, "mg"), (100.6, "mg"), (100, "g")]):
        lines.append({"resourceType": "Observation", "id": f"q{i}", "status": "final",
                      "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}], "text": "Glucose"},
                      "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2020-01-01",
                      "valueQuantity": {"value": v, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}})
    src = d / "crafted.ndjson"
    src.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    store = SQLiteStore(d / "store", create=True)
    summary = store.load([src])
    assert not summary.refused, [(f.path, f.reason) for f in summary.refused]
    yield store
    store.close()


def _ids(store, rtype, q, **kw) -> set[str]:
    return {r["id"] for r in store.search_all(rtype, q, **kw)}


@pytest.mark.parametrize("prefix", ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"])
@pytest.mark.parametrize(
    "value,lo,hi",
    [
        ("2020", datetime(2020, 1, 1, tzinfo=UTC), datetime(2021, 1, 1, tzinfo=UTC)),
        ("2020-03", datetime(2020, 3, 1, tzinfo=UTC), datetime(2020, 4, 1, tzinfo=UTC)),
        ("2020-01-01", datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 1, 2, tzinfo=UTC)),
        ("2020-03-01T12:00:00+02:00", datetime(2020, 3, 1, 10, tzinfo=UTC), datetime(2020, 3, 1, 10, 0, 1, tzinfo=UTC)),
    ],
)
def test_date_prefixes_follow_the_r4_range_rules(crafted, prefix, value, lo, hi):
    assert _ids(crafted, "Encounter", {"date": f"{prefix}{value}"}) == expected_ids(prefix, lo, hi)


def test_date_and_or(crafted):
    assert _ids(crafted, "Encounter", [("date", "ge2020"), ("date", "lt2021")]) == (
        expected_ids("ge", datetime(2020, 1, 1, tzinfo=UTC), datetime(2021, 1, 1, tzinfo=UTC))
        & expected_ids("lt", datetime(2021, 1, 1, tzinfo=UTC), datetime(2022, 1, 1, tzinfo=UTC))
    )
    assert _ids(crafted, "Encounter", {"date": "2019,2021"}) == {"in-2019", "in-2021", "tz-edge"}


def test_quantity_precision_units_and_prefixes(crafted):
    assert _ids(crafted, "Observation", {"value-quantity": "100||mg"}) == {"q1", "q2"}  # [99.5, 100.5)
    assert _ids(crafted, "Observation", {"value-quantity": "100"}) == {"q1", "q2", "q4"}
    assert _ids(crafted, "Observation", {"value-quantity": "100|http://unitsofmeasure.org|g"}) == {"q4"}
    assert _ids(crafted, "Observation", {"value-quantity": "gt100||mg"}) == {"q2", "q3"}
    assert _ids(crafted, "Observation", {"value-quantity": "le99.6||mg"}) == {"q0", "q1"}
    assert _ids(crafted, "Observation", {"value-quantity": "ne100||mg"}) == {"q0", "q3"}
    assert _ids(crafted, "Observation", {"value-quantity": "ap100||mg"}) == {"q0", "q1", "q2", "q3"}


def test_string_and_token_modifiers(crafted):
    assert _ids(crafted, "Patient", {"family": "o'br"}) == {"p1"}
    assert _ids(crafted, "Patient", {"family": "brien"}) == set()  # default is starts-with
    assert _ids(crafted, "Patient", {"family:contains": "BRIEN"}) == {"p1"}
    assert _ids(crafted, "Patient", {"family:exact": "O'Brien-Smith"}) == {"p1"}
    assert _ids(crafted, "Patient", {"family:exact": "o'brien-smith"}) == set()
    assert _ids(crafted, "Patient", {"given": "zoe"}) == {"p1"}  # accents ignored
    assert _ids(crafted, "Patient", {"identifier": "urn:mrn|A-1"}) == {"p1"}
    assert _ids(crafted, "Patient", {"identifier": "urn:other|A-1"}) == set()
    assert _ids(crafted, "Observation", {"code:text": "gluc"}) == {f"q{i}" for i in range(5)}
    assert _ids(crafted, "Observation", {"code:not": "2345-7"}) == set()
    assert _ids(crafted, "Patient", {"gender:not": "male"}) == {"p1"}
    assert _ids(crafted, "Encounter", {"date:missing": "false"}) == set(PERIODS)
    assert _ids(crafted, "Encounter", {"service-provider:identifier": "urn:npi|123"}) == {"in-2019"}
    assert _ids(crafted, "Encounter", {"service-provider:identifier": "urn:other|123"}) == set()
    assert _ids(crafted, "Organization", {"active": "true"}) == {"org1"}
    assert _ids(crafted, "Organization", {"active": "false"}) == set()
    assert _ids(crafted, "Observation", {"value-string:missing": "true"}) == {f"q{i}" for i in range(5)}


@pytest.mark.parametrize(
    "rtype,query,names",
    [
        ("Observation", "foo=1", "'foo'"),
        ("Observation", "date=2010-13-01", "'date'"),
        ("Observation", "date=xx2010", "'date'"),
        ("Observation", "value-quantity=big", "'value-quantity'"),
        ("Foo", "a=b", "'Foo'"),
        ("Observation", "code:below=x", "'code:below'"),
        ("Observation", "_sort=nope", "'nope'"),
        ("Observation", "_count=-1", "'_count'"),
        ("Observation", "_count=ten", "'_count'"),
        ("Observation", "_include=Observation:code", "'code'"),
        ("Observation", "_include=Nope:subject", "'Nope'"),
        ("Patient", "_has:Observation:nope:code=1", "'nope'"),
        ("Observation", "code.name=x", "code"),
        ("Observation", "subject.nope=x", "'nope'"),
        ("Observation", "subject:Nope=x", "'Nope'"),
        ("Observation", "_summary=true", "_summary"),
        ("Observation", "_text=x", "'_text'"),
        ("Observation", "patient:missing=maybe", "'patient:missing'"),
    ],
)
def test_errors_name_the_parameter(crafted, rtype, query, names):
    with pytest.raises(SearchError) as err:
        crafted.search(rtype, query)
    assert names in err.value.message
    assert err.value.status == 400
    assert err.value.operation_outcome()["issue"][0]["diagnostics"] == err.value.message


def test_include_star_and_iterate(crafted):
    b = crafted.search("Observation", {"_id": "q0", "_include": "Observation:patient"})
    assert [(e["resource"]["id"], e["search"]["mode"]) for e in b["entry"]] == [("q0", "match"), ("p1", "include")]
    b = crafted.search("Observation", [("_id", "q0"), ("_include", "Observation:patient"), ("_include", "Patient:organization")])
    assert {e["resource"]["id"] for e in b["entry"]} == {"q0", "p1"}  # Patient:organization needs :iterate
    b = crafted.search("Observation", [("_id", "q0"), ("_include", "Observation:patient"), ("_include:iterate", "Patient:organization")])
    assert {e["resource"]["id"] for e in b["entry"]} == {"q0", "p1", "org1"}
    b = crafted.search("Encounter", {"_id": "in-2019", "_include": "*"})
    assert {e["resource"]["id"] for e in b["entry"] if e["search"]["mode"] == "include"} == {"p1"}
    b = crafted.search("Patient", {"_id": "p1", "_revinclude": "Encounter:subject", "_count": "1"})
    assert b["total"] == 1
    assert {e["resource"]["id"] for e in b["entry"] if e["search"]["mode"] == "include"} == set(PERIODS)


def test_everything_dates_and_shared_resources(crafted):
    entries = list(crafted.everything_all("p1", "2021", None))
    ids_ = [r["id"] for r in entries]
    assert ids_[0] == "p1"  # the patient comes first
    lo = datetime(2021, 1, 1, tzinfo=UTC)
    want = expected_ids("gt", lo, lo)  # encounters whose period ends after 2021-01-01: they overlap [2021, ...)
    assert want == {"in-2021", "open-from-2020", "tz-edge"}
    assert set(ids_) == {"p1", "org1"} | want  # observations are all dated 2020-01-01
    everything = {r["id"] for r in crafted.everything_all("p1")}
    assert everything == {"p1", "org1"} | set(PERIODS) | {f"q{i}" for i in range(5)}
    page = crafted.everything("p1")
    assert page["type"] == "searchset" and page["total"] == len(everything)


def test_compartment_and_paging_links(crafted):
    b = crafted.search("Encounter", {"_count": "2", "_sort": "-date"}, compartment=("Patient", "p1"))
    assert b["total"] == len(PERIODS) and len(b["entry"]) == 2
    nxt = next(lk["url"] for lk in b["link"] if lk["relation"] == "next")
    assert "_offset=2" in nxt and "Patient/p1/Encounter" in nxt
    seen = [e["resource"]["id"] for page in crafted.pages(b) for e in page.get("entry", [])]
    starts = [PERIODS[i][0] for i in seen]
    assert len(seen) == len(PERIODS) == len(set(seen))
    ends = [_iso(PERIODS[i][1], datetime.max.replace(tzinfo=UTC)) for i in seen]
    assert ends == sorted(ends, reverse=True) and starts
    everything = crafted.search(None, {"_count": "100"}, compartment=("Patient", "p1"))
    assert {e["resource"]["id"] for e in everything["entry"]} == {"p1"} | set(PERIODS) | {f"q{i}" for i in range(5)}
    only = crafted.search(None, {"_type": "Observation", "_summary": "count"}, compartment=("Patient", "p1"))
    assert only["total"] == 5


def test_common_parameters(crafted):
    everyone = {"p1", "org1"} | set(PERIODS) | {f"q{i}" for i in range(5)}
    assert _ids(crafted, "Patient", {"_profile": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"}) == {"p1"}
    assert _ids(crafted, "Patient", {"_profile:below": "http://hl7.org/fhir/us/core"}) == {"p1"}
    assert _ids(crafted, "Patient", {"_profile": "http://hl7.org/fhir/us/core"}) == set()
    assert _ids(crafted, "Patient", {"_tag": "urn:test|crafted"}) == {"p1"}
    recently = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%d")
    assert _ids(crafted, "Encounter", {"_lastUpdated": f"gt{recently}"}) == set(PERIODS)
    assert _ids(crafted, "Encounter", {"_lastUpdated": "lt2020"}) == set()
    assert _ids(crafted, "Encounter", {"_id": "in-2019,in-2021"}) == {"in-2019", "in-2021"}
    assert _ids(crafted, "Encounter", {"_id:not": "in-2019"}) == set(PERIODS) - {"in-2019"}
    got = [r["id"] for r in crafted.search_all("Encounter", {"_sort": "-_id"})]
    assert got == sorted(PERIODS, reverse=True)
    assert {r["id"] for r in crafted.search_all(None, {"_count": "100"}, compartment=("Patient", "p1"))} == everyone - {"org1"}


_SAMPLE = {"token": "http://x|y", "string": "ab", "date": "ge2020-01", "reference": "Patient/p1", "quantity": "gt5||mg",
           "number": "5", "uri": "http://x"}
_COMPOSITE_SAMPLE = {"quantity": "http://loinc.org|1-8$lt5", "token": "1-8$http://x|y", "date": "1-8$ge2020", "string": "1-8$ab"}


def test_every_registered_parameter_runs(crafted):
    """Each parameter of the registry compiles and runs (and with :missing), on every Synthea type."""
    from ehr_agent.tools.store.search.params import COMPOSITES

    n = 0
    for rtype, params in SEARCH_PARAMS.items():
        for name, p in params.items():
            value = "x" if name == "_id" else _SAMPLE.get(p.type, "x")
            if p.special == "_lastUpdated":
                value = "ge2020"
            assert crafted.search(rtype, {name: value, "_count": "1"})["type"] == "searchset"
            assert "total" in crafted.search(rtype, {f"{name}:missing": "true", "_summary": "count"})
            n += 1
        for name, c in COMPOSITES.get(rtype, {}).items():
            assert crafted.search(rtype, {name: _COMPOSITE_SAMPLE[c.value_type]})["type"] == "searchset"
            n += 1
    assert n > 450


@pytest.mark.parametrize("factor", [1, 2, 50])
def test_latest_first_walk_matches_a_full_sort(crafted, monkeypatch, factor):
    """The bounded walk of the date index (large latest-first searches) returns exactly the full sort's pages."""
    import ehr_agent.tools.store.search.bundle as engine

    queries = [("Encounter", "_sort=-date"), ("Encounter", "date=ge2020&_sort=-date"), ("Observation", "code=2345-7&_sort=-date")]
    for rtype, q in queries:
        for offset, count in [(0, 1), (0, 3), (2, 2), (5, 10), (9, 1)]:
            query = f"{q}&_count={count}&_offset={offset}"
            monkeypatch.setattr(engine, "WALK_MIN_TOTAL", 10**9)
            full = crafted.search(rtype, query)
            monkeypatch.setattr(engine, "WALK_MIN_TOTAL", 1)
            monkeypatch.setattr(engine, "WALK_FACTOR", factor)
            walked = crafted.search(rtype, query)
            assert walked["total"] == full["total"]
            assert [e["resource"]["id"] for e in walked.get("entry", [])] == [e["resource"]["id"] for e in full.get("entry", [])]
