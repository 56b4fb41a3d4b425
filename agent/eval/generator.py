"""Generate evaluation tasks from the raw FHIR resources of a store.

Every gold answer is computed here from raw JSON read through :class:`~ehr_agent.tools.store.base.FHIRStore`
(``everything_all`` and ``read``), never through the agent's tools or retrieval projections, so the
generator and the agent check each other. A question whose answer is ambiguous in the data (same-day
values that differ, a missing unit, notes that disagree) is not emitted.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

from . import gen_clinical, gen_cohort, gen_notes, gen_observations
from .fhirdata import PatientRecord
from .gen_common import Vocabulary
from .tasks import Task

EVERYTHING_PAGE = 1000

CATEGORIES = (
    "demographics",
    "observation_latest",
    "observation_earliest",
    "observation_at_date",
    "observation_trend",
    "encounters",
    "conditions",
    "medications",
    "immunizations",
    "procedures",
    "allergies",
    "care_plans",
    "notes",
    "cohort",
)


def load_record(store, patient_id: str) -> PatientRecord:
    """One patient's compartment as raw resources, with referenced Medication resources fetched."""
    from ehr_agent.tools.store.base import NotFound

    def resolve(reference: str) -> dict | None:
        rtype, _, rid = reference.partition("/")
        if not rid:
            return None
        try:
            return store.read(rtype, rid)
        except NotFound:
            return None

    return PatientRecord.from_resources(_everything(store, patient_id), resolve=resolve)


def _everything(store, patient_id: str):
    """``$everything`` in large pages where the store takes a page size (small pages cost a query each)."""
    try:
        first = store.everything(patient_id, count=EVERYTHING_PAGE)
    except TypeError:  # a store whose everything() has no page-size argument
        yield from store.everything_all(patient_id)
        return
    for page in store.pages(first):
        for e in page.get("entry", []):
            yield e["resource"]


def candidates_for(rec: PatientRecord, seed: int, vocab: Vocabulary) -> dict[str, list[Task]]:
    """Every candidate task of one patient, by category (deterministic for a seed)."""
    end = rec.last_day() or "2000-01-01"

    def rng(cat: str) -> random.Random:
        return random.Random(f"{seed}:{rec.id}:{cat}")

    out: dict[str, list[Task]] = {c: [] for c in CATEGORIES}
    for cat, ts in gen_clinical.generate(rec, rng("clinical"), vocab, end).items():
        out[cat].extend(ts)
    for cat, ts in gen_observations.generate(rec, rng("observations"), vocab).items():
        out[cat].extend(ts)
    out["notes"].extend(gen_notes.generate(rec, rng("notes")))
    return out


def select(cands: dict[str, list[Task]], n: int, rng: random.Random) -> list[Task]:
    """Up to ``n`` tasks spread over categories: round robin over a shuffled category order."""
    pools = {c: list(ts) for c, ts in cands.items() if ts}
    for ts in pools.values():
        rng.shuffle(ts)
    order = sorted(pools)
    rng.shuffle(order)
    chosen: list[Task] = []
    seen: set[str] = set()
    while len(chosen) < n and any(pools.values()):
        for c in order:
            if pools[c] and len(chosen) < n:
                t = pools[c].pop()
                if t.id not in seen:
                    seen.add(t.id)
                    chosen.append(t)
    return chosen


def generate_from_records(
    records: list[PatientRecord],
    *,
    per_patient: int = 10,
    seed: int = 0,
    cohort: int = 20,
    cohort_records: list[PatientRecord] | None = None,
) -> list[Task]:
    """Tasks for ``records``; cohort questions are computed over ``cohort_records`` (the whole store)
    and left out when it is ``None``."""
    vocab = Vocabulary()
    for rec in cohort_records or records:
        gen_clinical.vocabulary_of(rec, vocab)
    tasks: list[Task] = []
    for rec in sorted(records, key=lambda r: r.id):
        cands = candidates_for(rec, seed, vocab)
        tasks.extend(select(cands, per_patient, random.Random(f"{seed}:{rec.id}:select")))
    if cohort_records is not None and cohort > 0:
        tasks.extend(gen_cohort.generate(sorted(cohort_records, key=lambda r: r.id), random.Random(f"{seed}:cohort"), cohort))
    return tasks


def generate_tasks(
    store,
    *,
    patients: Iterable[str] | None = None,
    per_patient: int = 10,
    seed: int = 0,
    cohort: int = 20,
    progress: Callable[[int, int], None] | None = None,
) -> list[Task]:
    """Generate tasks from a store (see the module docstring).

    ``patients`` limits the per-patient questions to those ids (cohort questions are still computed over
    every patient in the store, since their answer depends on all of them). ``progress(done, total)``
    is called after each patient is read.
    """
    all_ids = store.patient_ids()
    wanted = list(patients) if patients else all_ids
    unknown = sorted(set(wanted) - set(all_ids))
    if unknown:
        raise ValueError(f"patient(s) not in the store: {', '.join(unknown[:5])}")
    need = all_ids if cohort > 0 else wanted
    records: dict[str, PatientRecord] = {}
    for i, pid in enumerate(need, 1):
        records[pid] = load_record(store, pid)
        if progress:
            progress(i, len(need))
    return generate_from_records(
        [records[p] for p in wanted],
        per_patient=per_patient,
        seed=seed,
        cohort=cohort,
        cohort_records=list(records.values()) if cohort > 0 else None,
    )
