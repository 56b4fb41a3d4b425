"""Evaluation tasks: the question, its typed gold answer and the resources that prove it, plus JSONL IO.

A task file is JSON Lines, one :class:`Task` per line, so that generated, adapted and sampled task sets
are all the same shape and can be concatenated with ``cat``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, ValidationError


class QuantityGold(BaseModel):
    """A measured value: correct when the answer states it within tolerance, in any convertible unit."""

    kind: Literal["quantity"] = "quantity"
    value: float
    unit: str | None = None
    #: absolute tolerance in ``unit``; the scorer also accepts 1% relative difference
    tolerance: float = 0.0

    def display(self) -> str:
        return f"{_fmt(self.value)} {self.unit}" if self.unit else _fmt(self.value)


class DateGold(BaseModel):
    """A calendar day (``YYYY-MM-DD``)."""

    kind: Literal["date"] = "date"
    value: str

    def display(self) -> str:
        return self.value


class IntegerGold(BaseModel):
    """A count or an age."""

    kind: Literal["integer"] = "integer"
    value: int

    def display(self) -> str:
        return str(self.value)


class SetGold(BaseModel):
    """A list of items (medications, vaccines...).

    ``distractors`` are other items of the same kind that exist in the record but are not in the answer
    (e.g. stopped medications): mentioning one counts against precision. Precision is therefore measured
    over the record's own vocabulary, not over free-text fragments of the answer.
    """

    kind: Literal["set"] = "set"
    items: list[str]
    distractors: list[str] = Field(default_factory=list)

    def display(self) -> str:
        return "; ".join(self.items) if self.items else "(none)"


class YesNoGold(BaseModel):
    """A yes/no question."""

    kind: Literal["yes_no"] = "yes_no"
    value: bool

    def display(self) -> str:
        return "yes" if self.value else "no"


class ChoiceGold(BaseModel):
    """One of a few named options (gender, trend direction, education level...).

    ``options`` maps each option to the phrases that express it; the answer is correct when it uses a
    phrase of ``value`` and none of another option's.
    """

    kind: Literal["choice"] = "choice"
    value: str
    options: dict[str, list[str]]

    def display(self) -> str:
        return self.value


class TextGold(BaseModel):
    """Free text: correct when the answer contains ``value`` or one of ``accept`` (normalised)."""

    kind: Literal["text"] = "text"
    value: str
    accept: list[str] = Field(default_factory=list)

    def display(self) -> str:
        return self.value


class AgeGold(BaseModel):
    """An age in completed years at an event (a diagnosis).

    ``tolerance`` is 0 unless the event falls within a day of a birthday: the event's day is written in the
    offset of the record, so one day either side can flip the completed years (see docs/evaluation.md).
    """

    kind: Literal["age"] = "age"
    value: int
    tolerance: int = 0

    def display(self) -> str:
        return f"{self.value} years old"


class DirectionGold(BaseModel):
    """Whether a value went ``up`` or ``down`` between two periods."""

    kind: Literal["direction"] = "direction"
    value: Literal["up", "down"]

    def display(self) -> str:
        return "went up" if self.value == "up" else "went down"


Gold = Annotated[
    Union[QuantityGold, DateGold, IntegerGold, SetGold, YesNoGold, ChoiceGold, TextGold, AgeGold, DirectionGold],
    Field(discriminator="kind"),
]


class Task(BaseModel):
    """One evaluation question.

    ``patient`` is the FHIR id of the patient the question is about, ``None`` for a cohort question
    (adapted tasks may carry only an MRN in ``meta["patient_identifier"]``, resolved at run time).
    ``as_of`` is the day the question is asked ("today" for words like *current*); ``gold_refs`` are the
    ``Type/id`` of the resources that prove the answer.
    """

    id: str
    patient: str | None
    category: str
    question: str
    as_of: str | None = None
    answer: Gold
    gold_refs: list[str] = Field(default_factory=list)
    source: str = "generated"
    meta: dict[str, Any] = Field(default_factory=dict)


class TaskFileError(ValueError):
    """A task file that cannot be read: missing, not JSON Lines, or a line that is not a task."""


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def write_tasks(path: str | Path, tasks: Iterable[Task]) -> int:
    """Write tasks as JSON Lines (overwriting ``path``); returns how many were written."""
    n = 0
    p = Path(path)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", encoding="utf-8") as f:
        for t in tasks:
            f.write(t.model_dump_json(exclude_none=False) + "\n")
            n += 1
    return n


def read_tasks(path: str | Path) -> list[Task]:
    """Read a JSON Lines task file; raises :class:`TaskFileError` naming the bad line."""
    return [t for _, t in read_numbered_tasks(path)]


def read_numbered_tasks(path: str | Path) -> list[tuple[int, Task]]:
    """Like :func:`read_tasks`, each task with its line number in the file (for later error messages)."""
    p = Path(path)
    if not p.is_file():
        raise TaskFileError(f"task file not found: {p}")
    tasks: list[tuple[int, Task]] = []
    seen: set[str] = set()
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                t = Task.model_validate(json.loads(line))
            except json.JSONDecodeError as e:
                raise TaskFileError(f"{p}:{lineno}: not JSON ({e.msg})") from None
            except ValidationError as e:
                first = e.errors()[0]
                loc = ".".join(str(x) for x in first["loc"])
                raise TaskFileError(f"{p}:{lineno}: not a task ({loc}: {first['msg']})") from None
            if t.id in seen:
                raise TaskFileError(f"{p}:{lineno}: duplicate task id {t.id!r}")
            seen.add(t.id)
            tasks.append((lineno, t))
    return tasks


def check_patients(numbered: Iterable[tuple[int, Task]], known: Iterable[str], path: str | Path) -> None:
    """Raise :class:`TaskFileError` naming the lines whose patient is not among ``known`` ids.

    Checked before a run starts, so a task file written for another store fails at once with its line numbers
    instead of filling the results with "unknown patient" answers. Cohort tasks (no patient) and adapted tasks
    that name the patient by identifier only (``meta.patient_identifier``, resolved when the task runs) pass.
    """
    ids = set(known)
    bad = [(n, t.patient) for n, t in numbered
           if t.patient is not None and t.patient not in ids]
    if not bad:
        return
    n, pid = bad[0]
    more = "" if len(bad) == 1 else (
        f"; {len(bad) - 1} more line(s) name patients not in the store: "
        + ", ".join(str(k) for k, _ in bad[1:11]) + (" ..." if len(bad) > 11 else ""))
    raise TaskFileError(f"{path}:{n}: patient {pid!r} is not in the store{more}")
