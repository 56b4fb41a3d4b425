"""What the graph's nodes call on a tool session: the :class:`Toolkit` protocol.

The patient tools (:class:`tools.patient_tools.PatientSession`, one patient's record) and the cohort tools
(:class:`tools.cohort_tools.CohortSession`, the whole store) both satisfy it, so one set of nodes can drive
either: offer the specs to the model, run the calls it makes, constrain its first turn, and ask whether a
cited reference is one the session may read. What differs (the patient's manifest, the cohort recount) is
read from the concrete session by the node that needs it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ehr_agent.tools.spec import ToolOutput, ToolSpec
from ehr_agent.tools.store.base import FHIRStore


@runtime_checkable
class Toolkit(Protocol):
    """A session of tools over one store, as the graph drives it."""

    #: the store the tools read (never write)
    store: FHIRStore

    @property
    def tool_names(self) -> list[str]:
        """Every tool the session can run, including those not offered to the model."""
        ...

    def tool_specs(self) -> list[ToolSpec]:
        """The tools offered to the model, in the order it is shown them."""
        ...

    def call(self, name: str, arguments: dict | None) -> ToolOutput:
        """Run one call; unknown tools, bad arguments and store failures come back as messages, never raised."""
        ...

    def first_call_tools(self) -> tuple[str, ...]:
        """The tools a constrained first model turn may call."""
        ...

    def belongs(self, ref: str) -> bool:
        """Whether ``Type/id`` names a resource this session may read (what a citation may point at)."""
        ...
