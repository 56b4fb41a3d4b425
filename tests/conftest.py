"""Shared test fixtures: data locations and loaded stores (session-scoped, so each data set loads once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ehr_agent.tools.settings import TestSettings

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fhir_fixtures"
# $EHR_AGENT_SHARED_DATA (a documented setting, docs/settings.md), else ../shared/data beside the repo.
SHARED = Path(TestSettings().shared_data or ROOT.parent / "shared" / "data")
BLAZE = SHARED / "synthea-blaze-120"
SMART = SHARED / "synthea-smart-75"
SPEZI = SHARED / "synthea-spezi-8"

# Fixture patients (ids are uuid5s fixed by fhir_fixtures/make_fixtures.py, which says what each record holds)
ALICE = "4a3b1eaa-e40e-5bdd-9d4c-47cfdcced897"  # diabetes, HbA1c series 2014-2023, pneumonia stay, note: keeps bees
BOB = "2c7e4b04-7d30-5717-b1bd-14b7f14e5e64"  # hypertension, 2 inpatient stays in 2010, COPD 2015, note with an injection
DANA = "9b55a1d9-f86b-56ea-b123-c9a291ce26b2"  # one encounter whose practitioner is never loaded (unresolved)


def need_shared(path: Path = SHARED) -> None:
    """Skip when ../shared/data is absent (a clone without it); CI always has it."""
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set EHR_AGENT_SHARED_DATA or place ../shared/data beside the repo)")


@pytest.fixture(scope="session")
def fixture_store(tmp_path_factory):
    """The project's own fixtures loaded into a fresh embedded store (read it, never write it)."""
    from ehr_agent.tools.store.sqlite_store import SQLiteStore

    store = SQLiteStore(tmp_path_factory.mktemp("fixture-store"), create=True)
    summary = store.load([FIXTURES])
    assert not summary.refused, summary.refused
    yield store
    store.close()


@pytest.fixture(scope="session")
def blaze_store(tmp_path_factory):
    """All of synthea-blaze-120 (92,114 resources) loaded once per test session."""
    need_shared(BLAZE)
    from ehr_agent.tools.store.sqlite_store import SQLiteStore

    store = SQLiteStore(tmp_path_factory.mktemp("blaze-store"), create=True)
    summary = store.load([BLAZE])
    assert not summary.refused, [(f.path, f.reason) for f in summary.refused]
    yield store
    store.close()


