"""Both tool sessions satisfy the Toolkit protocol the graph's nodes drive: at run time (every member
present) and by signature (every call the protocol allows, each class accepts)."""

from __future__ import annotations

import inspect

import pytest

from conftest import ALICE, BOB
from ehr_agent.tools.cohort_tools import CohortSession
from ehr_agent.tools.patient_tools import PatientSession
from ehr_agent.tools.spec import ToolOutput, ToolSpec
from ehr_agent.tools.toolkit import Toolkit

MEMBERS = ("store", "tool_names", "tool_specs", "call", "first_call_tools", "belongs")


@pytest.fixture()
def sessions(fixture_store):
    return [PatientSession(fixture_store, ALICE, "2025-01-01"), CohortSession(fixture_store)]


def test_protocol_members_are_what_the_test_expects():
    declared = {n for n in vars(Toolkit) if not n.startswith("_")} | set(Toolkit.__annotations__)
    assert declared == set(MEMBERS)


@pytest.mark.parametrize("cls", [PatientSession, CohortSession])
def test_each_method_accepts_every_call_the_protocol_allows(cls):
    for name in MEMBERS:
        proto = getattr(Toolkit, name, None)
        if not callable(proto) or isinstance(proto, property):
            continue
        want = list(inspect.signature(proto).parameters.values())[1:]
        have = inspect.signature(getattr(cls, name)).parameters
        have_list = list(have.values())[1:]
        for i, p in enumerate(want):  # same names in the same places
            assert i < len(have_list) and have_list[i].name == p.name, (cls.__name__, name, p.name)
        extra = have_list[len(want):]
        assert all(p.default is not inspect.Parameter.empty for p in extra), (cls.__name__, name)
    assert isinstance(inspect.getattr_static(cls, "tool_names"), property)


def test_both_sessions_satisfy_the_toolkit(sessions):
    for s in sessions:
        assert isinstance(s, Toolkit)
        specs = s.tool_specs()
        assert specs and all(isinstance(x, ToolSpec) for x in specs)
        assert {x.name for x in specs} <= set(s.tool_names)
        assert set(s.first_call_tools()) <= {x.name for x in specs}
        out = s.call("no_such_tool", {})
        assert isinstance(out, ToolOutput) and out.error


def test_belongs_follows_each_sessions_scope(sessions, fixture_store):
    patient, cohort = sessions
    assert patient.belongs(f"Patient/{ALICE}") and not patient.belongs(f"Patient/{BOB}")
    assert cohort.belongs(f"Patient/{ALICE}") and cohort.belongs(f"Patient/{BOB}")  # the whole store
    for s in sessions:
        assert not s.belongs("Patient/does-not-exist") and not s.belongs("nonsense")


def test_first_call_tools():
    assert PatientSession(None, "").first_call_tools() == ("lookup", "search_record")  # type: ignore[arg-type]
    assert CohortSession.FIRST_CALL_TOOLS == ("cohort_count",)
