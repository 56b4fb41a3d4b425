"""A patient's whole record as projected rows (resources plus note chunks), read through ``FHIRStore``."""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, Field

from ehr_agent.tools.store.base import FHIRStore, NotFound

from .notes import note_chunks
from .projections import FINANCIAL_TYPES, Row, project_row, reference_displays

#: Shared resources are not part of the record itself: their names reach it through reference displays
#: (and Medication through inlining below).
SHARED_TYPES = frozenset({"Practitioner", "PractitionerRole", "Organization", "Location", "Medication"})


class PatientRecord(BaseModel):
    """The projected record of one patient."""

    patient_id: str
    rows: list[Row]
    warnings: list[str] = Field(default_factory=list)
    excluded: dict[str, int] = Field(default_factory=dict)
    """Resources left out by type (financial types unless asked for, shared resources)."""
    resources: int = 0
    """Resources read from the store for this patient (before exclusion)."""


def _sort_key(row: Row) -> tuple:
    # Undated rows (Patient aside, which has birthDate) go first; note chunks stay in note order.
    ref, _, n = row.ref.partition("#")
    return (row.date or "", row.type != "Patient", ref, int(n) if n.isdigit() else 0)


def _inline_medication(resource: dict, store: FHIRStore, cache: dict[str, dict | None]) -> dict:
    """Copy of a Medication* resource with ``medicationReference`` replaced by the Medication's code,
    so that its line names the drug instead of an opaque id."""
    ref = (resource.get("medicationReference") or {}).get("reference")
    if not isinstance(ref, str) or not ref.startswith("Medication/"):
        return resource
    if ref not in cache:
        try:
            cache[ref] = store.read("Medication", ref.split("/", 1)[1])
        except NotFound:
            cache[ref] = None
    med = cache[ref]
    if not med or not isinstance(med.get("code"), dict):
        return resource
    out = {k: v for k, v in resource.items() if k != "medicationReference"}
    out["medicationCodeableConcept"] = med["code"]
    return out


def patient_record(store: FHIRStore, patient_id: str, *, include_financial: bool = False) -> PatientRecord:
    """Read ``Patient/ID/$everything`` and project it: one row per resource, note chunks after their
    DocumentReference's header row, sorted by date.  Raises :class:`NotFound` for an unknown patient."""
    store.read("Patient", patient_id)  # NotFound with a clear message, before any work
    rows: list[Row] = []
    warnings: list[str] = []
    excluded: Counter[str] = Counter()
    seen: set[str] = set()
    meds: dict[str, dict | None] = {}
    resources = list(store.everything_all(patient_id))
    displays = reference_displays(resources)
    n = 0
    for res in resources:
        n += 1
        rtype = res.get("resourceType", "")
        key = f"{rtype}/{res.get('id')}"
        if key in seen:
            continue
        seen.add(key)
        if rtype in SHARED_TYPES:
            if rtype == "Medication":
                meds[key] = res
            excluded[rtype] += 1
            continue
        if rtype in FINANCIAL_TYPES and not include_financial:
            excluded[rtype] += 1
            continue
        if rtype.startswith("Medication"):
            res = _inline_medication(res, store, meds)
        row = project_row(res, displays)
        row.patient = patient_id
        rows.append(row)
        if rtype == "DocumentReference":
            chunks, w = note_chunks(res)
            for c in chunks:
                c.patient = patient_id
            rows.extend(chunks)
            warnings.extend(w)
    rows.sort(key=_sort_key)
    return PatientRecord(patient_id=patient_id, rows=rows, warnings=warnings, excluded=dict(excluded), resources=n)


def patient_rows(store: FHIRStore, patient_id: str, *, include_financial: bool = False) -> list[Row]:
    """The whole projected record of a patient (resources and note chunks), sorted by date.

    Claims and ExplanationOfBenefit are left out unless ``include_financial`` (see docs/retrieval.md).
    Raises :class:`tools.store.base.NotFound` for an unknown patient.
    """
    return patient_record(store, patient_id, include_financial=include_financial).rows


def render_rows(rows: list[Row]) -> str:
    """Rows as text grouped under ``## DATE`` headings, in date order (undated rows first)."""
    out: list[str] = []
    current: object = object()
    for r in rows:
        if r.date != current:
            current = r.date
            out.append(f"## {r.date or 'undated'}")
        out.append(r.text)
    return "\n".join(out)
