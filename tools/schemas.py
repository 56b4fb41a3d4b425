"""The arguments of the patient tools: the schemas the model sees (keep descriptions short: they cost
prompt tokens). ``lookup`` takes :class:`tools.facts.LookupArgs` and ``calculate``
:class:`tools.calculator.CalcArgs`, defined beside the code that runs them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

RecordKind = Literal["conditions", "medications", "immunizations", "procedures", "encounters", "allergies",
                     "reports", "careplans", "devices", "notes"]

#: a ``records`` kind -> the FHIR types it lists
KIND_TYPES: dict[str, tuple[str, ...]] = {
    "conditions": ("Condition",),
    "medications": ("MedicationRequest", "MedicationStatement"),
    "immunizations": ("Immunization",),
    "procedures": ("Procedure",),
    "encounters": ("Encounter",),
    "allergies": ("AllergyIntolerance",),
    "reports": ("DiagnosticReport",),
    "careplans": ("CarePlan",),
    "devices": ("Device",),
    "notes": ("DocumentReference",),
}


class NoArgs(BaseModel):
    """No arguments."""


class ObservationArgs(BaseModel):
    code: str | None = Field(None, description="LOINC code, e.g. 4548-4")
    text: str | None = Field(None, description="words in the name, e.g. 'hemoglobin a1c'")
    mode: Literal["latest", "earliest", "all"] = Field(
        "latest", description="latest: newest per kind; earliest: oldest per kind; all: every value, newest first")
    start: str | None = Field(None, description="from date YYYY[-MM[-DD]]")
    end: str | None = Field(None, description="to date")
    offset: int = Field(0, ge=0)


class RecordsArgs(BaseModel):
    kind: RecordKind
    text: str | None = Field(None, description="words in the name")
    status: str | None = Field(None, description="e.g. active, resolved, completed, stopped")
    start: str | None = Field(None, description="from date YYYY[-MM[-DD]]")
    end: str | None = Field(None, description="to date")
    offset: int = Field(0, ge=0)


class SearchArgs(BaseModel):
    resource_type: str = Field(description="FHIR type, e.g. Observation")
    params: dict[str, str] = Field(default_factory=dict, description="FHIR search params, e.g. {\"code\": \"8867-4\"}")
    offset: int = Field(0, ge=0)


class ReadArgs(BaseModel):
    reference: str = Field(description="Type/id")


class RecordSearchArgs(BaseModel):
    query: str = Field(description="what to look for, in words")
    types: list[str] | None = Field(None, description="limit to FHIR types")
    since: str | None = Field(None, description="only on/after date")
    k: int = Field(6, ge=1, le=20)
