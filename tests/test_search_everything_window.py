"""Which resources `$everything?start=&end=` keeps: the R4 clinical-date rule, at year boundaries and
across time zones (docs/search.md, "$everything"). Synthetic records make each boundary case explicit."""

from __future__ import annotations

import json

import pytest

from ehr_agent.tools.store.sqlite_store import SQLiteStore

PID = "p-window"


def encounter(eid: str, start: str, end: str) -> dict:
    return {"resourceType": "Encounter", "id": eid, "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": f"Patient/{PID}"}, "period": {"start": start, "end": end}}


# (id, start, end, in the 2013..2014 window?) and why
ENCOUNTERS = [
    ("inside", "2013-06-01T10:00:00Z", "2013-06-01T11:00:00Z", True),
    ("spans-end", "2014-12-31T04:57:50+01:00", "2015-01-01T04:57:50+01:00", False),  # ends after 2014: not le2014
    ("ends-2014-in-utc", "2014-12-31T23:30:00+01:00", "2015-01-01T00:30:00+01:00", True),  # 2014-12-31T23:30Z
    ("ends-2015-in-utc", "2014-12-31T20:00:00-05:00", "2014-12-31T23:30:00-05:00", False),  # 2015-01-01T04:30Z
    ("starts-2013-in-utc", "2012-12-31T23:00:00-05:00", "2013-01-01T01:00:00-05:00", True),  # 2013-01-01T04:00Z
    ("spans-start", "2012-12-31T20:00:00Z", "2013-01-01T02:00:00Z", False),  # starts before 2013, ends in it: not ge2013
    ("covers-all", "2012-06-01T00:00:00Z", "2015-06-01T00:00:00Z", True),  # ends after 2013 and starts before 2014
    ("before", "2012-03-01T00:00:00Z", "2012-03-01T01:00:00Z", False),
    ("after", "2015-03-01T00:00:00Z", "2015-03-01T01:00:00Z", False),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = tmp_path_factory.mktemp("window")
    entries = [{"resource": {"resourceType": "Patient", "id": PID, "birthDate": "1970-01-01"}}]
    entries += [{"resource": encounter(eid, s, e)} for eid, s, e, _ in ENCOUNTERS]
    # a type without the clinical-date parameter: in the record whatever its date
    entries.append({"resource": {
        "resourceType": "Claim", "id": "claim-2019", "status": "active", "use": "claim",
        "type": {"coding": [{"code": "professional"}]}, "patient": {"reference": f"Patient/{PID}"},
        "created": "2019-01-01", "provider": {"display": "x"}, "priority": {"coding": [{"code": "normal"}]},
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "x"}}],
    }})
    (d / "b.json").write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}))
    s = SQLiteStore(d / "s", create=True)
    summary = s.load([d / "b.json"], workers=0)
    assert not summary.refused, summary.refused
    yield s
    s.close()


def test_window_2013_2014_follows_the_clinical_date_rule(store):
    got = {r["id"] for r in store.everything_all(PID, "2013", "2014")}
    expected = {eid for eid, _, _, inside in ENCOUNTERS if inside} | {PID, "claim-2019"}
    assert got == expected


def test_only_start_or_only_end(store):
    # ge2015: starts in 2015 or later, or ends after 2015; an encounter reaching only into early 2015 is out
    after = {r["id"] for r in store.everything_all(PID, "2015", None)}
    assert after == {"after", "ends-2015-in-utc", "claim-2019", PID}  # the latter starts 2015-01-01T01:00Z
    before = {r["id"] for r in store.everything_all(PID, None, "2012")}
    assert "before" in before and "after" not in before and "inside" not in before
