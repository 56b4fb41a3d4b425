"""Search results on synthea-blaze-120 checked against expectations computed here, in plain Python,
straight from the raw bundle files (never through the search engine): compartments, chains, reverse
chains, sorting, paging, $everything with dates, date prefixes, token/string/quantity forms, composite
parameters, _include/_revinclude, _elements and _summary."""

from __future__ import annotations

import bz2
import json
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pytest

from conftest import BLAZE, need_shared

pytestmark = pytest.mark.shared
UTC = timezone.utc
SHARED_TYPES = {"Medication", "Organization", "Practitioner", "PractitionerRole", "Location"}


class Raw:
    """The raw data set: resources by type and id, references resolved the way a FHIR server would."""

    def __init__(self, folder):
        self.by_type: dict[str, dict[str, dict]] = defaultdict(dict)
        self.type_of: dict[str, str] = {}
        self.file_of: dict[tuple[str, str], str] = {}
        ident: dict[tuple[str, str], str] = {}
        for path in sorted(folder.glob("*.json.bz2")):
            doc = json.load(bz2.open(path))
            for e in doc["entry"]:
                r = e["resource"]
                self.by_type[r["resourceType"]][r["id"]] = r
                self.type_of[r["id"]] = r["resourceType"]
                self.file_of[(r["resourceType"], r["id"])] = path.name
                for i in r.get("identifier", []):
                    ident[(r["resourceType"], f"{i.get('system')}|{i.get('value')}")] = r["id"]
        self.ident = ident

    def resolve(self, ref: str | None) -> tuple[str, str] | None:
        if not ref:
            return None
        if ref.startswith("urn:uuid:"):
            rid = ref[9:]
            return (self.type_of[rid], rid) if rid in self.type_of else None
        if "?identifier=" in ref:
            t, _, q = ref.partition("?identifier=")
            rid = self.ident.get((t, q))
            return (t, rid) if rid else None
        t, _, rid = ref.partition("/")
        return (t, rid)

    def refs(self, node) -> list[tuple[str, str]]:
        """Every resolved literal reference anywhere inside ``node``."""
        out = []
        if isinstance(node, dict):
            if isinstance(node.get("reference"), str):
                r = self.resolve(node["reference"])
                if r:
                    out.append(r)
            for v in node.values():
                out.extend(self.refs(v))
        elif isinstance(node, list):
            for v in node:
                out.extend(self.refs(v))
        return out

    def ref_at(self, r: dict, key: str) -> tuple[str, str] | None:
        v = r.get(key)
        return self.resolve(v.get("reference")) if isinstance(v, dict) else None

    def patient_of(self, r: dict) -> str | None:
        for key in ("subject", "patient", "beneficiary"):
            t = self.ref_at(r, key)
            if t and t[0] == "Patient":
                return t[1]
        return None

    def compartment(self, pid: str) -> set[tuple[str, str]]:
        """The patient and every resource that references the patient (Synthea: its compartment)."""
        if not hasattr(self, "_comp"):
            comp: dict[str, set[tuple[str, str]]] = defaultdict(set)
            for t, rs in self.by_type.items():
                if t in SHARED_TYPES or t == "Patient":
                    continue
                for rid, r in rs.items():
                    for rt, pid_ in self.refs(r):
                        if rt == "Patient":
                            comp[pid_].add((t, rid))
            self._comp = comp
        return {("Patient", pid)} | self._comp.get(pid, set())


@pytest.fixture(scope="module")
def raw():
    need_shared(BLAZE)
    return Raw(BLAZE)


@pytest.fixture(scope="module")
def patients(raw):
    """Three patients: the one with the most resources, the fewest, and one in the middle."""
    sizes = defaultdict(int)
    for t, rs in raw.by_type.items():
        for r in rs.values():
            p = raw.patient_of(r)
            if p:
                sizes[p] += 1
    ranked = sorted(sizes, key=lambda p: (sizes[p], p))
    return [ranked[-1], ranked[len(ranked) // 2], ranked[0]]


def codes(cc) -> set[tuple[str, str]]:
    if isinstance(cc, list):
        return set().union(*(codes(x) for x in cc)) if cc else set()
    return {(c.get("system"), c.get("code")) for c in (cc or {}).get("coding", [])}


def ts(s: str) -> datetime:
    """A raw dateTime (Synthea writes seconds and an offset; dates are whole days in UTC)."""
    if len(s) == 10:
        return datetime.fromisoformat(s).replace(tzinfo=UTC)
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def span(r: dict, *keys: str) -> tuple[datetime, datetime] | None:
    """[start, end) of the first present date element among ``keys`` (Period, dateTime or date)."""
    for k in keys:
        v = r.get(k)
        if isinstance(v, dict) and "start" in v:
            end = ts(v["end"]) + timedelta(seconds=1) if v.get("end") else datetime.max.replace(tzinfo=UTC)
            return ts(v["start"]), end
        if isinstance(v, str):
            s = ts(v)
            return s, s + (timedelta(days=1) if len(v) == 10 else timedelta(seconds=1))
    return None


def ids(bundle_or_iter) -> list[str]:
    return [r["id"] for r in bundle_or_iter]


# --- compartments and paging -------------------------------------------------------------------


def test_compartment_searches(blaze_store, raw, patients):
    for pid in patients:
        comp = raw.compartment(pid)
        for rtype in ("Observation", "Condition", "Encounter", "Claim", "Provenance"):
            want = {i for t, i in comp if t == rtype}
            got = blaze_store.search(rtype, {"_summary": "count"}, compartment=("Patient", pid))["total"]
            assert got == len(want), (pid, rtype)
        everything = blaze_store.search(None, {"_summary": "count"}, compartment=("Patient", pid))
        assert everything["total"] == len(comp)


def test_paging_walks_every_match_once(blaze_store, raw, patients):
    pid = patients[0]
    want = {i for t, i in raw.compartment(pid) if t == "Observation"}
    first = blaze_store.search("Observation", {"_count": "100"}, compartment=("Patient", pid))
    assert first["total"] == len(want) and any(lk["relation"] == "next" for lk in first["link"])
    seen = []
    for page in blaze_store.pages(first):
        assert page["type"] == "searchset" and page["total"] == len(want)
        for e in page.get("entry", []):
            assert e["search"]["mode"] == "match"
            assert e["fullUrl"].endswith(f"/Observation/{e['resource']['id']}")
            seen.append(e["resource"]["id"])
    assert len(seen) == len(set(seen)) == len(want) and set(seen) == want


# --- chains and reverse chains ------------------------------------------------------------------


def test_chain_on_patient(blaze_store, raw):
    females = {i for i, p in raw.by_type["Patient"].items() if p.get("gender") == "female"}
    want = {
        i for i, o in raw.by_type["Observation"].items()
        if ("http://loinc.org", "8302-2") in codes(o.get("code")) and raw.patient_of(o) in females
    }
    assert want
    got = set(ids(blaze_store.search_all("Observation", {"patient.gender": "female", "code": "http://loinc.org|8302-2", "_count": "1000"})))
    assert got == want
    typed = set(ids(blaze_store.search_all("Observation", {"subject:Patient.gender": "female", "code": "8302-2", "_count": "1000"})))
    assert typed == want


def test_chain_to_shared_organization(blaze_store, raw):
    counts = defaultdict(int)
    for e in raw.by_type["Encounter"].values():
        t = raw.ref_at(e, "serviceProvider")
        if t:
            counts[t[1]] += 1
    org_id = max(counts, key=counts.get)
    word = raw.by_type["Organization"][org_id]["name"].split()[0]
    orgs = {i for i, o in raw.by_type["Organization"].items() if o["name"].lower().startswith(word.lower())}
    want = {i for i, e in raw.by_type["Encounter"].items() if (raw.ref_at(e, "serviceProvider") or ("", ""))[1] in orgs}
    got = set(ids(blaze_store.search_all("Encounter", {"service-provider.name": word, "_count": "1000"})))
    assert got == want and len(want) >= counts[org_id]


def test_two_level_chain(blaze_store, raw):
    """Condition -> Encounter (encounter) -> Organization (service-provider) -> name."""
    orgs = raw.by_type["Organization"]
    word = sorted(o["name"] for o in orgs.values())[len(orgs) // 3].split()[0]
    chosen = {i for i, o in orgs.items() if any(n.lower().startswith(word.lower()) for n in [o["name"], *o.get("alias", [])])}
    encs = {i for i, e in raw.by_type["Encounter"].items() if (raw.ref_at(e, "serviceProvider") or ("", ""))[1] in chosen}
    want = {i for i, c in raw.by_type["Condition"].items() if (raw.ref_at(c, "encounter") or ("", ""))[1] in encs}
    got = set(ids(blaze_store.search_all("Condition", {"encounter.service-provider.name": word, "_count": "1000"})))
    assert want and got == want


def test_reverse_chain_and_nesting(blaze_store, raw):
    diabetes = ("http://snomed.info/sct", "44054006")
    want = {raw.patient_of(c) for c in raw.by_type["Condition"].values() if diabetes in codes(c.get("code"))}
    assert want
    got = set(ids(blaze_store.search_all("Patient", {"_has:Condition:patient:code": "http://snomed.info/sct|44054006"})))
    assert got == want
    # patients having an encounter at which an HbA1c (LOINC 4548-4) was measured
    encs = {
        raw.ref_at(o, "encounter")[1] for o in raw.by_type["Observation"].values()
        if ("http://loinc.org", "4548-4") in codes(o.get("code")) and raw.ref_at(o, "encounter")
    }
    want2 = {raw.patient_of(raw.by_type["Encounter"][e]) for e in encs if e in raw.by_type["Encounter"]}
    got2 = set(ids(blaze_store.search_all("Patient", {"_has:Encounter:patient:_has:Observation:encounter:code": "4548-4"})))
    assert want2 and got2 == want2


# --- sorting -------------------------------------------------------------------------------------


def test_sort_by_date_string_and_multiple_keys(blaze_store, raw, patients):
    pts = raw.by_type["Patient"]
    got = [r["birthDate"] for r in blaze_store.search_all("Patient", {"_sort": "birthdate", "_count": "37"})]
    assert got == sorted(p["birthDate"] for p in pts.values())
    got = [(r["gender"], r["birthDate"]) for r in blaze_store.search_all("Patient", {"_sort": "gender,-birthdate", "_count": "1000"})]
    assert [g for g, _ in got] == sorted(g for g, _ in got)
    for g in ("female", "male"):
        dates = [d for gg, d in got if gg == g]
        assert dates == sorted(dates, reverse=True)
    fam = [r["name"][0]["family"].lower() for r in blaze_store.search_all("Patient", {"_sort": "family", "_count": "1000"})]
    assert len(fam) == len(pts)
    # population-wide latest-first pages (served by walking the date index when large)
    all_dates = sorted((ts(o["effectiveDateTime"]) for o in raw.by_type["Observation"].values()), reverse=True)
    page = blaze_store.search("Observation", {"_sort": "-date", "_count": "7", "_offset": "5"})
    assert page["total"] == len(all_dates)
    assert [ts(e["resource"]["effectiveDateTime"]) for e in page["entry"]] == all_dates[5:12]
    vitals = sorted((ts(o["effectiveDateTime"]) for o in raw.by_type["Observation"].values()
                     if "vital-signs" in {c for _, c in codes(o.get("category"))}), reverse=True)
    page = blaze_store.search("Observation", {"category": "vital-signs", "_sort": "-date", "_count": "10"})
    assert [ts(e["resource"]["effectiveDateTime"]) for e in page["entry"]] == vitals[:10]
    pid = patients[0]
    obs = [o for o in raw.by_type["Observation"].values() if raw.patient_of(o) == pid and ("http://loinc.org", "8302-2") in codes(o.get("code"))]
    want = sorted((ts(o["effectiveDateTime"]) for o in obs), reverse=True)
    bundle = blaze_store.search("Observation", {"code": "8302-2", "_sort": "-date", "_count": "1000"}, compartment=("Patient", pid))
    assert [ts(e["resource"]["effectiveDateTime"]) for e in bundle["entry"]] == want


# --- $everything -----------------------------------------------------------------------------------

# The clinical date of each type, written independently of the engine's registry.
# The R4 clinical-date parameter (`date`) of the types Synthea emits among its base types: the only
# resources $everything's start/end filter (docs/search.md, "$everything").
CLINICAL_DATE_R4 = {
    "Encounter": ("period",), "Observation": ("effectiveDateTime", "effectivePeriod", "effectiveInstant"),
    "Procedure": ("performedDateTime", "performedPeriod"), "Immunization": ("occurrenceDateTime",),
    "DiagnosticReport": ("effectiveDateTime", "effectivePeriod"), "CarePlan": ("period",), "CareTeam": ("period",),
    "AllergyIntolerance": ("recordedDate",),
}


def test_everything_with_dates(blaze_store, raw, patients):
    """start=2015&end=2016 keeps a resource of a clinical-date type when its date matches `ge2015` (starts in
    2015 or later, or ends after 2015) and `le2016` (ends by the end of 2016, or starts before 2016);
    resources of other types are all kept."""
    pid = patients[1]
    y2015, y2016, y2017 = (datetime(y, 1, 1, tzinfo=UTC) for y in (2015, 2016, 2017))
    want = set()
    for t, i in raw.compartment(pid):
        r = raw.by_type[t][i]
        if t not in CLINICAL_DATE_R4:
            want.add((t, i))
            continue
        sp = span(r, *CLINICAL_DATE_R4[t])
        if sp is not None and (sp[0] >= y2015 or sp[1] > y2016) and (sp[1] <= y2017 or sp[0] < y2016):
            want.add((t, i))
    entries = [e for page in blaze_store.pages(blaze_store.everything(pid, "2015", "2016")) for e in page.get("entry", [])]
    matches = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in entries if e["search"]["mode"] == "match"}
    assert matches == want
    assert entries[0]["resource"]["resourceType"] == "Patient"
    included = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in entries if e["search"]["mode"] == "include"}
    referenced = {ref for t, i in want for ref in raw.refs(raw.by_type[t][i]) if ref[0] in SHARED_TYPES}
    assert included == referenced and included
    everything = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in
                  (x for p in blaze_store.pages(blaze_store.everything(pid)) for x in p.get("entry", []))}
    assert {k for k in everything if k[0] not in SHARED_TYPES} == raw.compartment(pid)


# --- date prefixes on real periods -------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"])
def test_encounter_period_prefixes(blaze_store, raw, prefix):
    lo, hi = datetime(2015, 3, 1, tzinfo=UTC), datetime(2015, 4, 1, tzinfo=UTC)  # 2015-03
    want = set()
    for i, e in raw.by_type["Encounter"].items():
        s, en = span(e, "period")
        inside = s >= lo and en <= hi
        ok = {"eq": inside, "ne": not inside, "gt": en > hi, "lt": s < lo, "ge": en > hi or inside,
              "le": s < lo or inside, "sa": s >= hi, "eb": en <= lo}[prefix]
        if ok:
            want.add(i)
    bundle = blaze_store.search("Encounter", {"date": f"{prefix}2015-03", "_summary": "count"})
    assert bundle["total"] == len(want)
    if len(want) < 500:
        assert set(ids(blaze_store.search_all("Encounter", {"date": f"{prefix}2015-03", "_count": "500"}))) == want


def test_date_range_with_timezone(blaze_store, raw):
    lo = datetime(2019, 5, 1, 12, 0, tzinfo=UTC)
    want = {i for i, o in raw.by_type["Observation"].items()
            if "effectiveDateTime" in o and ts(o["effectiveDateTime"]) >= lo and ts(o["effectiveDateTime"]) < lo + timedelta(days=30)}
    got = blaze_store.search("Observation", [("date", "ge2019-05-01T14:00:00+02:00"), ("date", "lt2019-05-31T12:00:00Z"), ("_summary", "count")])
    assert got["total"] == len(want) and want


# --- tokens, strings, quantities, composites ----------------------------------------------------------


def test_token_forms(blaze_store, raw):
    obs = raw.by_type["Observation"]
    height = sum(1 for o in obs.values() if any(c == "8302-2" for _, c in codes(o.get("code"))))
    assert blaze_store.count("Observation", {"code": "8302-2"}) == height
    assert blaze_store.count("Observation", {"code": "|8302-2"}) == 0  # every Synthea code has a system
    loinc = sum(1 for o in obs.values() if any(s == "http://loinc.org" for s, _ in codes(o.get("code"))))
    assert blaze_store.count("Observation", {"code": "http://loinc.org|"}) == loinc
    vitals = sum(1 for o in obs.values() if ("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs") in codes(o.get("category")))
    assert blaze_store.count("Observation", {"category": "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"}) == vitals
    p = next(iter(raw.by_type["Patient"].values()))
    ssn = next(i["value"] for i in p["identifier"] if i.get("system") == "http://hl7.org/fhir/sid/us-ssn")
    assert ids(blaze_store.search_all("Patient", {"identifier": f"http://hl7.org/fhir/sid/us-ssn|{ssn}"})) == [p["id"]]
    phone = next(t["value"] for t in p["telecom"] if t["system"] == "phone")
    want = {i for i, q in raw.by_type["Patient"].items() if any(t.get("value") == phone for t in q.get("telecom", []))}
    assert set(ids(blaze_store.search_all("Patient", {"phone": phone}))) == want
    text_want = {i for i, o in obs.items() if "body height" in (o["code"].get("text") or "").lower()
                 or any("body height" in c.get("display", "").lower() for c in o["code"].get("coding", []))}
    assert blaze_store.count("Observation", {"code:text": "body height"}) == len(text_want)
    not_final = sum(1 for o in obs.values() if o.get("status") != "final")
    assert blaze_store.count("Observation", {"status:not": "final"}) == not_final


def test_string_forms(blaze_store, raw):
    pts = raw.by_type["Patient"]

    def parts(p):
        return [s for n in p.get("name", []) for s in [n.get("family", "")] + n.get("given", []) + n.get("prefix", [])]

    fam = next(iter(pts.values()))["name"][0]["family"]
    pre = fam[:3]
    want = {i for i, p in pts.items() if any(s.lower().startswith(pre.lower()) for s in parts(p))}
    assert set(ids(blaze_store.search_all("Patient", {"name": pre.upper()}))) == want
    exact = {i for i, p in pts.items() if any(n.get("family") == fam for n in p["name"])}
    assert set(ids(blaze_store.search_all("Patient", {"family:exact": fam}))) == exact
    mid = fam[2:5].lower()
    contains = {i for i, p in pts.items() if any(mid in n.get("family", "").lower() for n in p["name"])}
    assert set(ids(blaze_store.search_all("Patient", {"family:contains": mid}))) == contains
    city = next(iter(pts.values()))["address"][0]["city"]
    in_city = {i for i, p in pts.items() if any(a.get("city") == city for a in p.get("address", []))}
    assert set(ids(blaze_store.search_all("Patient", {"address-city": city}))) == in_city


def test_quantity_and_composite(blaze_store, raw):
    obs = raw.by_type["Observation"]
    want = {i for i, o in obs.items() if (q := o.get("valueQuantity")) and q.get("code") == "mg/dL"
            and q.get("system") == "http://unitsofmeasure.org" and q["value"] > 100}
    got = blaze_store.count("Observation", {"value-quantity": "gt100|http://unitsofmeasure.org|mg/dL"})
    assert got == len(want) and want
    systolic = {i for i, o in obs.items() for c in o.get("component", [])
                if ("http://loinc.org", "8480-6") in codes(c.get("code")) and c.get("valueQuantity", {}).get("value", 0) >= 140}
    got = set(ids(blaze_store.search_all("Observation", {"component-code-value-quantity": "http://loinc.org|8480-6$ge140", "_count": "1000"})))
    assert got == systolic and systolic
    assert blaze_store.count("Observation", {"combo-code-value-quantity": "8480-6$ge140"}) == len(systolic)


# --- includes, elements, summary ----------------------------------------------------------------------


def test_include_and_revinclude(blaze_store, raw, patients):
    pid = patients[1]
    encs = [e for e in raw.by_type["Encounter"].values() if raw.patient_of(e) == pid]
    want_orgs = {raw.ref_at(e, "serviceProvider")[1] for e in encs if raw.ref_at(e, "serviceProvider")}
    bundle = blaze_store.search("Encounter", {"patient": pid, "_include": "Encounter:service-provider", "_count": "1000"})
    inc = [e for e in bundle["entry"] if e["search"]["mode"] == "include"]
    assert {e["resource"]["id"] for e in inc} == want_orgs
    assert all(e["resource"]["resourceType"] == "Organization" for e in inc)
    assert sum(1 for e in bundle["entry"] if e["search"]["mode"] == "match") == len(encs) == bundle["total"]
    prov = {i for i, p in raw.by_type["Provenance"].items() if ("Patient", pid) in raw.refs(p.get("target"))}
    bundle = blaze_store.search("Patient", {"_id": pid, "_revinclude": "Provenance:target"})
    assert bundle["total"] == 1
    assert {e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "include"} == prov and prov


def test_elements_and_summary_count(blaze_store, raw):
    bundle = blaze_store.search("Patient", {"_elements": "gender,birthDate", "_count": "5"})
    for e in bundle["entry"]:
        r = e["resource"]
        assert set(r) <= {"resourceType", "id", "meta", "gender", "birthDate"} and "gender" in r
        assert any(t.get("code") == "SUBSETTED" for t in r["meta"]["tag"])
    c = blaze_store.search("Condition", {"_summary": "count"})
    assert c["total"] == len(raw.by_type["Condition"]) and "entry" not in c
