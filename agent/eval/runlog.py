"""The header of a results file: how a run was made, so the file is the whole run as data (docs/evaluation.md).

A results file is JSON Lines. Its first line is a :class:`RunHeader` (``"record": "header"``): agent settings,
model name, spec and backend options, package version, git commit, task file and its sha256, solver,
concurrency and start time (what inspect_ai keeps as a log's ``eval`` spec and plan). Each resumed session
appends a :class:`ResumeNote` (``"record": "resume"``); every other line is a scored task record. Files
written before the header existed have no header and still load.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

#: Bumped when a field changes meaning; readers accept every format up to it.
LOG_FORMAT = 1

#: What must match for a resumed run to append to a file: a run's records are comparable only when these agree.
RESUME_KEYS = ("solver", "model", "settings", "task_sha256")


class RunHeader(BaseModel):
    """The first line of a results file."""

    record: Literal["header"] = "header"
    log_format: int = LOG_FORMAT
    started_at: str = ""
    package_version: str | None = None
    git_commit: str | None = None
    #: uncommitted changes to tracked files when the run started (None outside a checkout)
    git_dirty: bool | None = None
    python: str = Field(default_factory=platform.python_version)
    solver: str = ""
    model: str = ""
    model_spec: str = ""
    #: the spec parsed (kind, target, options after ``#``/``&``) and the model settings taken from the environment
    backend_options: dict[str, Any] = Field(default_factory=dict)
    #: the agent settings (:class:`agent.configuration.AgentSettings`) as a dict; empty for solvers without them
    settings: dict[str, Any] = Field(default_factory=dict)
    task_file: str | None = None
    task_sha256: str | None = None
    tasks: int | None = None
    store: str | None = None
    concurrency: int | None = None
    timeout: float | None = None
    limit: int | None = None
    judge: list[str] = Field(default_factory=list)
    #: later operations on the file's records, e.g. ``eval rescore`` (``{"op": "rescore", "at": ..., ...}``)
    notes: list[dict[str, Any]] = Field(default_factory=list)


class ResumeNote(BaseModel):
    """A line appended when a run resumes into an existing file."""

    record: Literal["resume"] = "resume"
    started_at: str
    package_version: str | None = None
    git_commit: str | None = None
    #: fields of :data:`RESUME_KEYS` that differ from the header, ``{field: [in the file, now]}`` (only with
    #: ``allow_mismatch``), and other differences worth knowing (commit, version, model name)
    changed: dict[str, list[Any]] = Field(default_factory=dict)


class ResumeMismatch(ValueError):
    """A resumed run whose settings, model spec, solver or task file differ from the file's header."""


def now() -> str:
    """UTC now, to the second, ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_version() -> str | None:
    """The installed ``ehr-agent`` distribution's version, or None when it is not installed."""
    try:
        return metadata.version("ehr-agent")
    except metadata.PackageNotFoundError:
        return None


def _git(root: Path, *args: str) -> str | None:
    try:
        p = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):  # no git, or it hung: the header says null
        return None
    return p.stdout.strip() if p.returncode == 0 else None


def source_root() -> Path:
    """The folder holding ``agent/``, ``tools/`` and ``prompts/`` of the code that is running."""
    return Path(__file__).resolve().parents[2]


def git_state(root: Path | None = None) -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the checkout the running code comes from, ``(None, None)`` when it is not one.

    The checkout must be the code's own: an installed copy inside some other repository (a venv in a
    checkout) is not, so its top level must be :func:`source_root`."""
    root = root or source_root()
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root.resolve():
        return None, None
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return commit, (bool(status) if status is not None else None)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, hex."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def backend_options(spec: str) -> dict[str, Any]:
    """The spec parsed and the model settings from the environment (secrets masked), for the header."""
    if not spec:
        return {}
    try:
        from ehr_agent.agent.models.spec import ModelSettings, ModelSpec

        parsed = ModelSpec.parse(spec)
        env = ModelSettings.coerce(None).model_dump(exclude_none=True)
    except Exception as e:  # noqa: BLE001 - a header must never stop a run; say what went wrong instead
        return {"error": f"{type(e).__name__}: {e}"}
    return {"kind": parsed.kind, "target": parsed.target, "model_name": parsed.model_name,
            "options": _redact(dict(parsed.options)), "env": _redact(env)}


_SECRET = ("api_key", "apikey", "_token", "secret", "password")


def settings_dict(settings: Any) -> dict[str, Any]:
    """A settings object (pydantic model) as a JSON-able dict, secrets (API keys, tokens) replaced by
    ``"***"`` when set; ``{}`` for None."""
    if settings is None:
        return {}
    data = json.loads(settings.model_dump_json()) if hasattr(settings, "model_dump_json") else dict(settings)
    return _redact(data)


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "***" if v and (str(k).lower() == "token" or str(k).lower().endswith(_SECRET)) else _redact(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


def make_header(*, solver: str, model: str = "", model_spec: str = "", settings: Any = None,
                task_file: str | Path | None = None, tasks: int | None = None, store: str | None = None,
                concurrency: int | None = None, timeout: float | None = None, limit: int | None = None,
                judge: list[str] | None = None) -> RunHeader:
    """The header of a run starting now."""
    commit, dirty = git_state()
    return RunHeader(
        started_at=now(), package_version=package_version(), git_commit=commit, git_dirty=dirty, solver=solver,
        model=model, model_spec=model_spec, backend_options=backend_options(model_spec),
        settings=settings_dict(settings), task_file=str(task_file) if task_file is not None else None,
        task_sha256=file_sha256(task_file) if task_file is not None else None, tasks=tasks, store=store,
        concurrency=concurrency, timeout=timeout, limit=limit, judge=list(judge or []))


def parse_line(line: str) -> dict[str, Any] | None:
    """One JSON object of a results file, None for a blank or torn line."""
    if not line.strip():
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def read_header(path: str | Path) -> RunHeader | None:
    """The file's header: its first ``header`` line (None for a file written before headers, or no file)."""
    p = Path(path)
    if not p.is_file():
        return None
    with p.open(encoding="utf-8") as f:
        for line in f:
            obj = parse_line(line)
            if obj is not None and obj.get("record") == "header":
                try:
                    return RunHeader.model_validate(obj)
                except ValidationError:
                    return None
    return None


def mismatch(old: RunHeader, new: RunHeader) -> dict[str, list[Any]]:
    """The :data:`RESUME_KEYS` on which ``new`` differs from ``old``; unknown (empty) values never differ.

    Settings are compared key by key over the keys both hold, so a setting added to the code since the
    file began is no difference."""
    out: dict[str, list[Any]] = {}
    for key in RESUME_KEYS:
        a, b = getattr(old, key), getattr(new, key)
        if key == "model":  # the model itself, as reports group it: runtime options (threads) are no other model
            a, b = _model_key(old), _model_key(new)
        if key == "settings":
            diff = {k: [a[k], b[k]] for k in sorted(set(a) & set(b)) if a[k] != b[k]}
            if diff:
                out[key] = [{k: v[0] for k, v in diff.items()}, {k: v[1] for k, v in diff.items()}]
        elif a and b and a != b:
            out[key] = [a, b]
    return out


def _model_key(h: RunHeader) -> str:
    from .stats import model_label  # stats reads results files, which import this module

    return h.model.strip() if h.model_spec else model_label(h.model)


def resume_note(old: RunHeader, new: RunHeader, *, allow_mismatch: bool = False) -> ResumeNote:
    """The line a resumed run appends; raises :class:`ResumeMismatch` naming what differs unless allowed."""
    changed = mismatch(old, new)
    if changed and not allow_mismatch:
        detail = "; ".join(f"{k}: {v[0]!r} in the file, {v[1]!r} now" for k, v in changed.items())
        raise ResumeMismatch(f"the results file was started with other {', '.join(changed)} ({detail}); "
                             "resume with the same ones, write to a new file, or allow the mismatch")
    for key in ("git_commit", "package_version", "model_spec"):
        a, b = getattr(old, key), getattr(new, key)
        if a != b:
            changed[key] = [a, b]
    return ResumeNote(started_at=new.started_at, package_version=new.package_version, git_commit=new.git_commit,
                      changed=changed)
