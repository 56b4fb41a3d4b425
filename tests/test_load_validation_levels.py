"""Validation levels of the loader: the default index-level check refuses any element the store would
misread, ``--strict`` adds the full R4 model check (fhir.resources), and real Synthea data passes both."""

from __future__ import annotations

import copy
import json

import pytest

from ehr_agent.agent.cli import main as cli_main
from conftest import FIXTURES, SMART, need_shared
from ehr_agent.tools.store.sqlite_store import SQLiteStore
from ehr_agent.tools.store.validation import InvalidResource, validate_indexed, validate_level

ALICE = json.loads((FIXTURES / "alice-moreau.json").read_text())


def first(rtype: str) -> dict:
    return copy.deepcopy(next(e["resource"] for e in ALICE["entry"] if e["resource"]["resourceType"] == rtype))


def obs_with(**changes) -> dict:
    r = first("Observation")
    r.update(changes)
    return r


BAD = [
    (obs_with(status={"not": "a code"}), "status"),
    (obs_with(effectiveDateTime="2014-13-45"), "effective[x]"),
    (obs_with(subject="Patient/x"), "subject"),
    (obs_with(id="has space"), "id"),
    (obs_with(valueQuantity={"value": "7.1", "unit": "%"}), "valueQuantity"),
    (obs_with(code={"coding": "http://loinc.org|4548-4"}), "code"),
    (obs_with(meta={"lastUpdated": "yesterday"}), "meta.lastUpdated"),
    ({**first("Patient"), "name": [{"family": 42}]}, "name"),
    ({**first("Patient"), "resourceType": "Spaceship"}, "Spaceship"),
]


@pytest.mark.parametrize("resource,where", BAD, ids=[f"{i}-{w}" for i, (_, w) in enumerate(BAD)])
def test_index_level_refuses_what_the_index_would_misread(resource, where):
    with pytest.raises(InvalidResource) as e:
        validate_indexed(resource)
    assert where in str(e.value) and "\n" not in str(e.value)


def test_strict_level_also_checks_elements_the_index_does_not_read():
    r = first("Patient")
    r["maritalStatus"] = {"coding": [{"code": "M"}], "bogus": 1}  # not indexed: only strict sees it
    validate_indexed(r)
    with pytest.raises(InvalidResource, match="does not validate as FHIR R4"):
        validate_level(r, "strict")


def test_cli_strict_flag(tmp_path, capsys):
    bundle = copy.deepcopy(ALICE)
    pat = bundle["entry"][0]["resource"]
    pat["maritalStatus"] = {"coding": [{"code": "M"}], "bogus": 1}
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bundle))
    assert cli_main(["load", "--store", str(tmp_path / "strict"), "-q", "--strict", str(path)]) == 1
    assert "does not validate" in capsys.readouterr().err
    assert cli_main(["load", "--store", str(tmp_path / "index"), "-q", str(path)]) == 0
    assert SQLiteStore(tmp_path / "index").read("Patient", pat["id"])["maritalStatus"]["bogus"] == 1


def test_real_data_passes_the_index_level_and_strict_agrees(tmp_path):
    need_shared(SMART)
    files = sorted(SMART.glob("*.json"))[:6]
    for level in (True, "strict"):
        store = SQLiteStore(tmp_path / str(level), create=True)
        summary = store.load(files, validate=level, workers=0)
        assert not summary.refused, summary.refused
    a = SQLiteStore(tmp_path / "True").counts()
    assert a == SQLiteStore(tmp_path / "strict").counts() and sum(a.values()) > 0


def test_r4_types_without_an_r4b_model_match_fhir_resources():
    # check_resource_type answers these without importing fhir.resources; the list must stay its truth
    from ehr_agent.tools.store.search.params import R4_TYPES
    from ehr_agent.tools.store.validation import R4_WITHOUT_R4B_MODEL, _model_class

    assert {t for t in R4_TYPES if _model_class(t) is None} == R4_WITHOUT_R4B_MODEL
