"""The answer-shaped ``lookup`` tool and the vocabulary that resolves lay names (tools/facts.py,
tools/vocabulary.py): on the project's fixtures (values known from fhir_fixtures/make_fixtures.py) and on
real Synthea rows from synthea-blaze-120 (expected values recomputed here from the raw resources)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ALICE, BOB
from ehr_agent.tools import vocabulary as vocab
from ehr_agent.tools.facts import LookupArgs, age_between, iso_date
from ehr_agent.tools.patient_tools import PatientSession


def look(store, pid, as_of="2026-01-01", **kw):
    s = PatientSession(store, pid, as_of)
    out = s.call("lookup", kw)
    assert not out.error, out.text
    return out


def answer_line(out) -> str:
    return next(line for line in out.text.splitlines() if line.startswith("Answer:"))


# ---- vocabulary ---------------------------------------------------------------------------------


def test_lay_phrases_longest_first():
    found = [p for p, _, _ in vocab.lay_phrases("was his bmi percentile up?")]
    assert found == ["bmi percentile"]
    assert [p for p, _, _ in vocab.lay_phrases("any high blood pressure?")] == ["high blood pressure"]


def test_resolve_prefers_code_and_keeps_bmi_apart_from_percentile():
    bmi = vocab.Concept("Observation", "http://loinc.org|39156-5", "Body Mass Index", {"39156-5"}, ["Observation/1"])
    pct = vocab.Concept("Observation", "http://loinc.org|59576-9", "Body mass index (BMI) [Percentile] Per age and gender",
                        {"59576-9"}, ["Observation/2"])
    assert vocab.resolve("BMI", [pct, bmi], single=True)[0].concept is bmi
    assert vocab.resolve("bmi percentile", [bmi, pct], single=True)[0].concept is pct


def test_resolve_flu_shot_takes_every_influenza_vaccine_and_nothing_else():
    a = vocab.Concept("Immunization", "cvx|140", "Influenza, seasonal, injectable, preservative free", {"140"}, ["I/1"])
    b = vocab.Concept("Immunization", "cvx|141", "Influenza, seasonal, injectable", {"141"}, ["I/2"])
    c = vocab.Concept("Immunization", "cvx|113", "Td (adult) preservative free", {"113"}, ["I/3"])
    got = {m.concept.key for m in vocab.resolve("flu shot", [a, b, c])}
    assert got == {"cvx|140", "cvx|141"}
    assert {m.concept.key for m in vocab.resolve("tetanus booster", [a, b, c])} == {"cvx|113"}


def test_resolve_unrelated_words_match_nothing():
    a = vocab.Concept("Condition", "sct|195967001", "Asthma", {"195967001"}, ["C/1"])
    assert vocab.resolve("diabetes", [a]) == []
    assert vocab.resolve("asthma", [a])[0].concept is a


def test_resolve_drops_a_name_that_holds_fewer_of_the_words():
    names = ["Chronic sinusitis (disorder)", "Sinusitis (disorder)", "Viral sinusitis (disorder)",
             "Perennial allergic rhinitis", "Seasonal allergic rhinitis"]
    cs = [vocab.Concept("Condition", f"sct|{i}", n, {str(i)}, [f"Condition/{i}"]) for i, n in enumerate(names)]
    assert [m.concept.display for m in vocab.resolve("chronic sinusitis", cs)] == ["Chronic sinusitis (disorder)"]
    # equally specific names all stay ("allergic rhinitis" is both), and a bare word keeps every name holding it
    assert {m.concept.display for m in vocab.resolve("allergic rhinitis", cs)} == set(names[3:])
    assert {m.concept.display for m in vocab.resolve("sinusitis", cs)} == set(names[:3])


def test_resolve_prefix_tolerance_allows_short_endings_only():
    colon = vocab.Concept("Condition", "sct|1", "Polyp of colon", {"1"}, ["Condition/1"])
    scope = vocab.Concept("Procedure", "sct|2", "Colonoscopy", {"2"}, ["Procedure/2"])
    asthma = vocab.Concept("Condition", "sct|3", "Asthma", {"3"}, ["Condition/3"])
    assert vocab.resolve("colonoscopy", [colon]) == []
    assert vocab.resolve("colonoscopy", [colon, scope])[0].concept is scope
    assert vocab.resolve("asthmatic", [asthma])[0].concept is asthma
    assert vocab.resolve("hypertens", [vocab.Concept("Condition", "sct|4", "Hypertension", {"4"}, ["C/4"])])


def test_resolve_phrases_finds_the_name_among_other_words_but_only_when_the_whole_names_nothing():
    asthma = vocab.Concept("Condition", "sct|1", "Childhood asthma", {"1"}, ["Condition/1"])
    polyp = vocab.Concept("Condition", "sct|2", "Polyp of colon", {"2"}, ["Condition/2"])
    assert vocab.resolve("how old was the little guy when they diagnosed his asthma", [asthma]) == []
    got = vocab.resolve_phrases("how old was the little guy when they diagnosed his asthma", [asthma])
    assert [m.concept for m in got] == [asthma]
    # one phrase only: nothing to fall back to, so an absent thing stays absent
    assert vocab.resolve_phrases("kidney stones", [asthma, polyp]) == []


# ---- lookup on the fixtures ---------------------------------------------------------------------


def test_latest_a1c_is_the_newest_reading(fixture_store):
    out = look(fixture_store, ALICE, op="latest", what="A1c")
    line = answer_line(out)
    assert "6.5 %" in line and "2023-10-03" in line
    ref = re.search(r"\[(Observation/[^\]]+)\]", line).group(1)
    assert "4548-4" in out.evidence[ref]
    # As of 2020 the latest is the 2019 reading: later rows are invisible.
    line = answer_line(look(fixture_store, ALICE, as_of="2020-01-01", op="latest", what="hba1c"))
    assert "6.8 %" in line and "2019-09-30" in line


def test_change_since_2015_went_down(fixture_store):
    line = answer_line(look(fixture_store, ALICE, op="change", what="A1c", start="2015", end="2026"))
    assert "went down" in line and "7.4 %" in line and "6.5 %" in line


def test_first_prescription_by_generic_name(fixture_store):
    line = answer_line(look(fixture_store, ALICE, op="first", what="metformin"))
    assert "2012-01-15" in line and "Metformin" in line


def test_exists_true_and_false(fixture_store):
    assert answer_line(look(fixture_store, ALICE, op="exists", what="diabetes")).startswith("Answer: Yes")
    assert answer_line(look(fixture_store, ALICE, op="exists", what="asthma")).startswith("Answer: No")
    assert answer_line(look(fixture_store, BOB, op="exists", what="high blood pressure")).startswith("Answer: Yes")


def test_count_inpatient_stays_in_a_year(fixture_store):
    out = look(fixture_store, BOB, op="count", what="hospital stays", start="2010", end="2010")
    assert answer_line(out).startswith("Answer: 2 (hospital stays) in 2010")
    assert out.computed == ["2"]
    out = look(fixture_store, ALICE, op="count", what="flu shot", start="2014", end="2014")
    assert answer_line(out).startswith("Answer: 1 (flu shot) in 2014")


def test_age_at_diagnosis(fixture_store):
    out = look(fixture_store, ALICE, op="age_at", what="diabetes")
    assert age_between("1961-04-12", "2012-01-15") == 50
    assert "was 50 years old" in answer_line(out) and "50" in out.computed
    assert f"Patient/{ALICE}" in out.evidence


def test_on_date_active_on_and_ended(fixture_store):
    assert "135 mg/dL" in answer_line(look(fixture_store, ALICE, op="on_date", what="glucose", date="2015-06-20"))
    miss = answer_line(look(fixture_store, ALICE, op="on_date", what="glucose", date="2015-06-21"))
    assert miss.startswith("Answer: none recorded on 2015-06-21") and "2015-06-20" in miss
    assert answer_line(look(fixture_store, ALICE, op="active_on", what="pneumonia", date="2016-08-10")).startswith("Answer: Yes")
    assert answer_line(look(fixture_store, ALICE, op="active_on", what="pneumonia", date="2016-09-01")).startswith("Answer: No")
    assert "2016-08-20" in answer_line(look(fixture_store, ALICE, op="ended", what="pneumonia"))


def test_list_allergies_and_nothing_found(fixture_store):
    assert "Latex allergy" in answer_line(look(fixture_store, ALICE, op="list", what="allergies", kind="allergy"))
    out = look(fixture_store, ALICE, op="latest", what="unicorn horn level")
    assert "nothing in the record" in out.text and not out.evidence


def test_lookup_stays_in_the_patient(fixture_store):
    # Bob's data never appears in Alice's lookups, whatever the words.
    out = look(fixture_store, ALICE, op="list", what="conditions", kind="condition")
    assert "hypertension" not in out.text.lower() and "obstructive" not in out.text.lower()


def test_invalid_op_is_a_message(fixture_store):
    s = PatientSession(fixture_store, ALICE, "2026-01-01")
    out = s.call("lookup", {"op": "median", "what": "A1c"})
    assert out.error and "invalid arguments for lookup" in out.text
    assert LookupArgs(op="latest", what="x").kind == "any"


# ---- lookup on real Synthea rows ----------------------------------------------------------------


def _obs_by_code(store, pid, code):
    rows = list(store.search_all("Observation", {"code": f"http://loinc.org|{code}", "_count": "1000"},
                                 compartment=("Patient", pid)))
    rows.sort(key=lambda r: r.get("effectiveDateTime", ""))
    return rows


@pytest.mark.shared
def test_real_latest_and_first_match_a_recomputation(blaze_store):
    pids = [r["id"] for r in blaze_store.search_all("Patient", {"_count": "200"})][:40]
    checked = 0
    for pid in pids:
        for lay, code in (("BMI", "39156-5"), ("pulse", "8867-4"), ("weight", "29463-7")):
            obs = _obs_by_code(blaze_store, pid, code)
            if not obs:
                continue
            as_of = "2030-01-01"
            last, first = obs[-1], obs[0]
            out = look(blaze_store, pid, as_of=as_of, op="latest", what=lay)
            assert f"[Observation/{last['id']}]" in answer_line(out) or \
                last["effectiveDateTime"][:10] in answer_line(out), (pid, lay, out.text)
            out = look(blaze_store, pid, as_of=as_of, op="first", what=lay)
            assert first["effectiveDateTime"][:10] in answer_line(out), (pid, lay, out.text)
            checked += 1
    assert checked >= 30


@pytest.mark.shared
def test_real_vaccine_counts_and_history(blaze_store):
    checked = 0
    for p in list(blaze_store.search_all("Patient", {"_count": "200"}))[:30]:
        pid = p["id"]
        imms = list(blaze_store.search_all("Immunization", {"_count": "1000"}, compartment=("Patient", pid)))
        flu = [i for i in imms if "influenza" in str(i["vaccineCode"]).lower()]
        years = sorted({i["occurrenceDateTime"][:4] for i in flu})
        for y in years[:2]:
            n = sum(1 for i in flu if i["occurrenceDateTime"][:4] == y)
            out = look(blaze_store, pid, as_of="2030-01-01", op="count", what="flu shots", start=y, end=y)
            assert answer_line(out).startswith(f"Answer: {n} (flu shots)"), (pid, y, out.text)
            checked += 1
        conds = list(blaze_store.search_all("Condition", {"_count": "1000"}, compartment=("Patient", pid)))
        has_asthma = any("asthma" in str(c["code"]).lower() for c in conds)
        line = answer_line(look(blaze_store, pid, as_of="2030-01-01", op="exists", what="asthma"))
        assert line.startswith("Answer: Yes" if has_asthma else "Answer: No"), (pid, line)
    assert checked >= 10


def test_demographic_words_answer_from_the_patient_resource(fixture_store):
    out = look(fixture_store, ALICE, op="latest", what="male or female")
    assert "gender female" in answer_line(out) and f"Patient/{ALICE}" in out.evidence
    # "age at ... diagnosis" names a condition: not a demographic question.
    assert "Diabetes" in answer_line(look(fixture_store, ALICE, op="age_at", what="age at diabetes diagnosis"))


def test_numbers_inside_a_name_are_not_codes():
    pain = vocab.Concept("Observation", "loinc|72514-3", "Pain severity - 0-10 verbal numeric rating [Score] - Reported",
                         {"72514-3"}, ["O/1"])
    ipv = vocab.Concept("Immunization", "cvx|10", "IPV", {"10"}, ["I/1"])
    got = vocab.resolve("Pain severity - 0-10 verbal numeric rating [Score] - Reported", [ipv, pain])
    assert [m.concept for m in got] == [pain]


@pytest.mark.parametrize("text,iso", [
    ("Dec 30 2016", "2016-12-30"), ("30 December 2016", "2016-12-30"), ("December 30th, 2016", "2016-12-30"),
    ("October 2019", "2019-10"), ("Oct. 2019", "2019-10"), ("12/30/2016", "2016-12-30"),
    ("2019-10", "2019-10"), ("2016-12-30", "2016-12-30"), ("yesterday", "yesterday"), (None, None),
    ("13-May-2015", "2015-05-13"), ("May-13-2015", "2015-05-13"), ("2015/05/13", "2015-05-13"), ("05/2015", "2015-05"),
    ("13/2015", "13/2015"), ("10/23/20", "2020-10-23"), ("10/23/99", "1999-10-23"),
])
def test_iso_date_reads_dates_written_in_words(text, iso):
    assert iso_date(text) == iso


def test_written_dates_finds_days_written_with_dashes_and_slashes():
    """The probe's "labs drawn 13-May-2015" (answered with the latest reading when the day went unread)."""
    from ehr_agent.tools.facts import written_dates

    assert written_dates("Need her Hgb from the labs drawn 13-May-2015.") == ["2015-05-13"]
    assert written_dates("BP on 2015/05/13 and in 06/2016?") == ["2015-05-13", "2016-06"]
    assert written_dates("in 2016") == []


def test_on_date_finds_the_reading_of_a_day_written_in_words(fixture_store):
    s = PatientSession(fixture_store, ALICE)
    out = s.call("lookup", {"op": "on_date", "what": "A1c", "date": "October 3, 2023"}).text
    assert "6.5" in out and "2023-10-03" in out
    out = s.call("lookup", {"op": "on_date", "what": "A1c", "date": "Oct 2023"}).text
    assert "6.5" in out


@pytest.mark.shared
def test_a_year_in_what_is_the_window_not_a_name(blaze_store):
    """"medications prescribed in 2016" lists the year's prescriptions (real blaze rows), each cited."""
    for p in blaze_store.search_all("Patient", {"_count": "200"}):
        rx = [r for r in blaze_store.search_all("MedicationRequest", {"_count": "1000"}, compartment=("Patient", p["id"]))
              if r["authoredOn"][:4] == "2016"]
        if rx:
            break
    else:
        pytest.fail("no blaze patient with a 2016 prescription")
    s = PatientSession(blaze_store, p["id"], "2030-01-01")
    out = s.call("lookup", {"op": "list", "what": "medications prescribed in 2016", "start": "2016-01-01",
                            "end": "2016-12-31"})
    line = answer_line(out)
    assert all(f"[MedicationRequest/{r['id']}]" in out.text for r in rx[:1]), out.text
    assert re.search(r"\d+ distinct in 2016", line), line


@pytest.mark.shared
def test_a_day_asked_of_the_notes_finds_that_days_note(blaze_store):
    """Nothing coded is named "chief complaint": lookup shows the note chunks of the asked day, not of others."""
    for p in blaze_store.search_all("Patient", {"_count": "200"}):
        notes = list(blaze_store.search_all("DocumentReference", {"_count": "1000"}, compartment=("Patient", p["id"])))
        if len(notes) >= 3:
            break
    day = sorted(n["date"][:10] for n in notes)[1]
    s = PatientSession(blaze_store, p["id"], "2030-01-01")
    out = s.call("lookup", {"op": "on_date", "what": "chief complaint", "date": day})
    dated = [v for v in out.evidence.values()]
    assert dated and all(v.startswith(day) for v in dated), out.text


@pytest.mark.shared
def test_one_lay_name_for_an_analyte_coded_two_ways_is_one_series(blaze_store):
    """"creat" names LOINC 2160-0 (serum) and 38483-4 (blood): latest and first run over both (real blaze rows,
    same unit); systolic stays its own series."""
    def readings(pid, code):
        return [r for r in blaze_store.search_all("Observation", {"code": f"http://loinc.org|{code}"},
                                                  compartment=("Patient", pid))]
    for p in blaze_store.search_all("Patient", {"_count": "200"}):
        a, b = readings(p["id"], "2160-0"), readings(p["id"], "38483-4")
        if a and b and {r["valueQuantity"]["unit"] for r in a + b} == {"mg/dL"}:
            break
    else:
        pytest.fail("no blaze patient with both creatinine codes")
    both = sorted(a + b, key=lambda r: r["effectiveDateTime"])
    s = PatientSession(blaze_store, p["id"], "2030-01-01")
    assert f"[Observation/{both[-1]['id']}]" in answer_line(s.call("lookup", {"op": "latest", "what": "creat"}))
    assert f"[Observation/{both[0]['id']}]" in answer_line(s.call("lookup", {"op": "first", "what": "creat"}))


@pytest.mark.shared
def test_a_whole_name_is_that_record_not_another_sharing_a_word(blaze_store):
    """The probe's "Is a seizure disorder documented for her?": lookup answered with "History of single seizure"
    and "Seizure disorder" together, and the concept check then refused the answer for citing the first.
    A record's whole name now resolves to that record alone; a word both share still finds both."""
    from ehr_agent.tools.patient_tools import PatientSession

    def names(pid):
        return {c["code"]["coding"][0]["display"] for c in
                blaze_store.search_all("Condition", {"_count": "1000"}, compartment=("Patient", pid))}

    pid = next(p["id"] for p in blaze_store.search_all("Patient", {"_count": "200"})
               if {"Seizure disorder", "History of single seizure (situation)"} <= names(p["id"]))
    s = PatientSession(blaze_store, pid, "2026-12-02")
    whole = s.call("lookup", {"op": "exists", "what": "Seizure disorder"}).text
    assert "matched Seizure disorder (" in whole and "History of single seizure" not in whole, whole
    word = s.call("lookup", {"op": "exists", "what": "seizures"}).text
    assert "History of single seizure" in word and "Seizure disorder" in word, word
