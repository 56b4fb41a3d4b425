"""A patient manifest: what the record holds, at a glance (counts, date span, frequent codes).

The agent reads it first to know which types exist and which questions the record can answer,
before spending tokens on rows.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from pydantic import BaseModel, Field

from ehr_agent.tools.store.base import FHIRStore

from .records import patient_record


class CodeCount(BaseModel):
    """One code and how often it occurs."""

    code: str
    """``system|code``."""
    display: str | None = None
    count: int


class Manifest(BaseModel):
    """Summary of one patient's record."""

    patient_id: str
    summary: str
    """The Patient resource's projected line (name, sex, birth, death)."""
    counts: dict[str, int]
    """Rows per resource type (note chunks counted under ``note chunks``)."""
    first_date: str | None
    last_date: str | None
    top_codes: dict[str, list[CodeCount]] = Field(default_factory=dict)
    excluded: dict[str, int] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)

    def render(self) -> str:
        """Plain-text manifest, a dozen lines, for the top of a context."""
        lines = [f"Patient manifest for Patient/{self.patient_id}", self.summary]
        lines.append(f"Record spans {self.first_date or '?'} to {self.last_date or '?'}.")
        lines.append("Counts: " + ", ".join(f"{t} {n}" for t, n in sorted(self.counts.items())))
        if self.excluded:
            lines.append("Left out: " + ", ".join(f"{t} {n}" for t, n in sorted(self.excluded.items())))
        for t in sorted(self.top_codes):
            codes = "; ".join(f"{c.display or c.code} x{c.count}" for c in self.top_codes[t])
            lines.append(f"Top {t}: {codes}")
        if self.warnings:
            lines.append(f"Warnings: {len(self.warnings)} (first: {self.warnings[0]})")
        return "\n".join(lines)


def build_manifest(store: FHIRStore, patient_id: str, *, top: int = 8, record=None) -> Manifest:
    """Manifest of one patient.  Raises :class:`tools.store.base.NotFound` for an unknown patient.

    ``record`` (a :class:`~ehr_agent.tools.retrieval.records.PatientRecord`) avoids reading the store twice.
    """
    rec = record or patient_record(store, patient_id)
    counts: Counter[str] = Counter()
    codes: dict[str, Counter[str]] = defaultdict(Counter)
    displays: dict[str, str] = {}
    dates = []
    summary = f"Patient/{patient_id}"
    for r in rec.rows:
        if "#" in r.ref:
            counts["note chunks"] += 1
            continue
        counts[r.type] += 1
        if r.type == "Patient":
            summary = r.text
            continue  # a birth date is not a clinical event: it would stretch the span
        if r.date:
            dates.append(r.date)
        if r.code:
            codes[r.type][r.code] += 1
            if r.display:
                displays.setdefault(r.code, r.display)
    top_codes = {
        t: [CodeCount(code=c, display=displays.get(c), count=n) for c, n in sorted(cnt.items(), key=lambda x: (-x[1], x[0]))[:top]]
        for t, cnt in codes.items()
    }
    return Manifest(
        patient_id=patient_id,
        summary=summary,
        counts=dict(counts),
        first_date=min(dates) if dates else None,
        last_date=max(dates) if dates else None,
        top_codes=top_codes,
        excluded=rec.excluded,
        warnings=rec.warnings,
    )
