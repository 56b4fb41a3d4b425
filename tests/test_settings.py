"""The one settings root (tools/settings.py): flat and nested variables, unknown names, defaults,
renamed variables, each former ``from_env`` path, and the generated docs page."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ehr_agent.tools import settings as root
from ehr_agent.tools.settings import (
    AgentSettings,
    MCPSettings,
    ModelSettings,
    RestSettings,
    RetrievalSettings,
    Settings,
    SettingsError,
    load_settings,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No EHR_AGENT_* variable from the caller's shell (CI sets EHR_AGENT_SHARED_DATA, for one)."""
    for key in list(os.environ):
        if key.upper().startswith("EHR_AGENT_"):
            monkeypatch.delenv(key)
    return monkeypatch


def test_unknown_variable_is_an_error_naming_it_and_the_closest_name(clean_env):
    clean_env.setenv("EHR_AGENT_MAX_STEP", "3")
    for build in (load_settings, AgentSettings, RetrievalSettings):  # the root and a section built alone
        with pytest.raises(SettingsError) as err:
            build()
        message = str(err.value)
        assert "EHR_AGENT_MAX_STEP;" in message and "did you mean EHR_AGENT_MAX_STEPS?" in message
        assert "\n" not in message


def test_unknown_variable_without_a_close_name_is_still_named(clean_env):
    clean_env.setenv("EHR_AGENT_ZZZ_QQQ", "1")
    with pytest.raises(SettingsError, match=r"unknown setting EHR_AGENT_ZZZ_QQQ \(every setting"):
        load_settings()


def test_cli_exits_2_with_one_line_naming_the_misspelt_variable(clean_env, capsys):
    from ehr_agent.agent.cli import main

    clean_env.setenv("EHR_AGENT_MAX_STEP", "3")
    rc = main(["ask", "--store", str(ROOT / "no-such-store"), "--patient", "p", "--model", 'scripted:["x"]', "q?"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.strip().splitlines() == [
        "error: unknown setting EHR_AGENT_MAX_STEP; did you mean EHR_AGENT_MAX_STEPS? "
        "(every setting: docs/settings.md or `ehr-agent settings`)"
    ]


def test_console_script_fails_without_traceback(clean_env):
    """The process as a user runs it: exit code 2, one line on stderr, nothing on stdout."""
    env = {**os.environ, "EHR_AGENT_MAX_STEP": "3"}
    proc = subprocess.run([sys.executable, "-m", "ehr_agent.agent.cli", "ask", "--store", "x", "--patient", "p", "q"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "EHR_AGENT_MAX_STEP" in proc.stderr


def test_flat_and_nested_forms_set_the_same_field(clean_env):
    clean_env.setenv("EHR_AGENT_MAX_STEPS", "4")
    clean_env.setenv("EHR_AGENT_RETRIEVAL__K", "7")
    clean_env.setenv("EHR_AGENT_MODEL__API_KEY", "nested-key")
    clean_env.setenv("EHR_AGENT_MODEL", 'scripted:["hi"]')  # flat agent.model beside the nested model section
    s = load_settings()
    assert (s.agent.max_steps, s.retrieval.k, s.model.api_key, s.agent.model) == (4, 7, "nested-key", 'scripted:["hi"]')
    assert AgentSettings().max_steps == 4 and RetrievalSettings().k == 7 and ModelSettings().api_key == "nested-key"
    clean_env.delenv("EHR_AGENT_MAX_STEPS")
    clean_env.setenv("EHR_AGENT_AGENT__MAX_STEPS", "5")
    assert load_settings().agent.max_steps == 5 and AgentSettings().max_steps == 5


def test_one_field_under_two_names_is_an_error(clean_env):
    clean_env.setenv("EHR_AGENT_MAX_STEPS", "4")
    clean_env.setenv("EHR_AGENT_AGENT__MAX_STEPS", "5")
    with pytest.raises(SettingsError, match="both set agent.max_steps; keep one") as err:
        load_settings()
    assert "EHR_AGENT_AGENT__MAX_STEPS" in str(err.value) and "EHR_AGENT_MAX_STEPS " in str(err.value)


def test_keyword_arguments_win_over_the_environment(clean_env):
    clean_env.setenv("EHR_AGENT_MAX_STEPS", "4")
    clean_env.setenv("EHR_AGENT_MAX_ROWS", "30")
    s = AgentSettings(max_steps=9)
    assert (s.max_steps, s.max_rows) == (9, 30)
    assert Settings(agent={"max_steps": 2}).agent.max_steps == 2


def test_bad_value_names_the_variable_in_one_line(clean_env):
    clean_env.setenv("EHR_AGENT_MAX_STEPS", "many")
    for build in (load_settings, AgentSettings):
        with pytest.raises(SettingsError, match=r"^EHR_AGENT_MAX_STEPS='many': Input should be a valid integer"):
            build()
    clean_env.setenv("EHR_AGENT_MAX_STEPS", "99")  # out of bounds (le=50)
    with pytest.raises(SettingsError, match="EHR_AGENT_MAX_STEPS='99'.*less than or equal to 50"):
        load_settings()


def test_defaults_without_environment(clean_env, tmp_path):
    clean_env.setenv("HOME", str(tmp_path))
    clean_env.delenv("XDG_CACHE_HOME", raising=False)
    clean_env.delenv("XDG_STATE_HOME", raising=False)
    s = load_settings()
    assert s.agent == AgentSettings()
    assert (s.agent.max_steps, s.agent.as_of_policy, s.agent.first_call_tools, s.agent.model) == (
        6, "today", ("lookup", "search_record"), "embedded")
    assert s.model.api_key is None and s.model.weights_dir == str(tmp_path / ".cache" / "ehr-agent" / "models")
    assert s.retrieval.index_cache_dir == str(tmp_path / ".cache" / "ehr-agent" / "retrieval")
    assert s.mcp.audit_log == str(tmp_path / ".local" / "state" / "ehr-agent" / "mcp-audit.jsonl")
    assert s.rest.fhir_token is None and s.tests.shared_data is None
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xc"))
    assert RetrievalSettings().index_cache_dir == str(tmp_path / "xc" / "ehr-agent" / "retrieval")


def test_empty_value_counts_as_unset_and_lists_parse_both_ways(clean_env):
    clean_env.setenv("EHR_AGENT_MAX_STEPS", "")
    clean_env.setenv("EHR_AGENT_FIRST_CALL_TOOLS", "lookup, observations")
    assert AgentSettings().max_steps == 6
    assert AgentSettings().first_call_tools == ("lookup", "observations")
    clean_env.setenv("EHR_AGENT_FIRST_CALL_TOOLS", '["search_record"]')
    assert AgentSettings().first_call_tools == ("search_record",)
    clean_env.setenv("EHR_AGENT_AUTO_CITE", "off")
    assert AgentSettings().auto_cite is False


def test_renamed_cache_variables_still_work_with_a_warning(clean_env, tmp_path):
    from ehr_agent.agent.models import weights

    clean_env.setenv("EHR_AGENT_CACHE", str(tmp_path / "old"))
    clean_env.setenv("EHR_AGENT_CACHE_DIR", str(tmp_path / "ix"))
    with pytest.warns(FutureWarning, match="EHR_AGENT_CACHE is deprecated.*EHR_AGENT_WEIGHTS_DIR"):
        assert weights.cache_dir() == tmp_path / "old" / "models"  # the old variable named the parent
    with pytest.warns(FutureWarning, match="EHR_AGENT_CACHE_DIR is deprecated.*EHR_AGENT_INDEX_CACHE_DIR"):
        assert RetrievalSettings().index_cache_dir == str(tmp_path / "ix")
    clean_env.setenv("EHR_AGENT_WEIGHTS_DIR", str(tmp_path / "new"))
    with pytest.raises(SettingsError, match="both set model.weights_dir"):
        weights.cache_dir()
    clean_env.delenv("EHR_AGENT_CACHE")
    assert weights.cache_dir() == tmp_path / "new"


def test_former_from_env_paths_are_honoured(clean_env, tmp_path):
    """Each place that read the environment itself before the root now reads the root, same names."""
    from ehr_agent.agent.mcp_server import default_audit_path
    from ehr_agent.agent.models.factory import resolve_spec
    from ehr_agent.tools.retrieval.settings import RetrievalSettings as FromRetrieval
    from ehr_agent.tools.store.rest import CommandToken, _token_from_environment

    clean_env.setenv("EHR_AGENT_API_KEY", "k")
    clean_env.setenv("EHR_AGENT_TIMEOUT", "2.5")
    assert ModelSettings.from_env().api_key == "k" and ModelSettings.coerce({"api_key": "x"}).timeout == 2.5
    clean_env.setenv("EHR_AGENT_CHROMA_URL", "http://127.0.0.1:9")
    clean_env.setenv("EHR_AGENT_INCLUDE_FINANCIAL", "1")
    s = FromRetrieval.from_env(chroma_url=None, k=5)
    assert (s.chroma_url, s.include_financial, s.k) == ("http://127.0.0.1:9", True, 5)
    clean_env.setenv("EHR_AGENT_MODEL", 'scripted:["from env"]')
    assert resolve_spec(None) == 'scripted:["from env"]' and resolve_spec("embedded") == "embedded"
    clean_env.setenv("EHR_AGENT_MCP__AUDIT_LOG", str(tmp_path / "a.jsonl"))
    assert default_audit_path() == tmp_path / "a.jsonl"
    clean_env.setenv("EHR_AGENT_REST__FHIR_TOKEN_COMMAND", "echo t")
    assert isinstance(_token_from_environment(), CommandToken)
    clean_env.setenv("EHR_AGENT_FHIR_TOKEN", "tok")
    assert _token_from_environment() == "tok" and RestSettings().fhir_token == "tok"
    clean_env.setenv("EHR_AGENT_SHARED_DATA", str(tmp_path))
    assert load_settings().tests.shared_data == str(tmp_path)
    assert MCPSettings().audit_log == str(tmp_path / "a.jsonl")


def test_settings_command_prints_effective_values_with_secrets_masked(clean_env, capsys):
    from ehr_agent.agent.cli import main

    clean_env.setenv("EHR_AGENT_API_KEY", "s3cret")
    clean_env.setenv("EHR_AGENT_MAX_STEPS", "4")
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    assert "EHR_AGENT_MAX_STEPS=4\n" in out and "EHR_AGENT_API_KEY=***\n" in out and "s3cret" not in out
    assert main(["settings", "--json"]) == 0
    values = json.loads(capsys.readouterr().out)
    assert values["agent"]["max_steps"] == 4 and values["model"]["api_key"] == "***"


def test_docs_page_is_generated_and_up_to_date():
    """Regenerate with: python -m ehr_agent.tools.settings --markdown > docs/settings.md"""
    page = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert page == root.render_markdown(), "docs/settings.md is stale: regenerate it (see this test's docstring)"
    for name in root.known_names():
        assert f"`{name}`" in page
    for old in root.RENAMED:
        assert f"`{old}`" in page


def test_every_environment_variable_the_tests_and_docs_use_is_known():
    """Names the docs and tests spell out are settings (or renamed ones), so the error never fires on them."""
    import re

    known = set(root.known_names()) | set(root.RENAMED)
    texts = [p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md"),
                                                     *(ROOT / "tests").glob("*.py")]]
    used = {m for text in texts for m in re.findall(r"\bEHR_AGENT_[A-Z0-9_]*[A-Z0-9]\b", text)}
    used -= {"EHR_AGENT_MAX_STEP", "EHR_AGENT_ZZZ_QQQ"}  # the misspellings this file sets on purpose
    assert used - known == set()


def test_settings_root_is_the_only_environment_reader_and_imports_nothing_of_the_project():
    """Must-show of issue 13: no settings read outside the root; and the root sits below every layer."""
    readers = sorted(str(p.relative_to(ROOT)) for d in ("agent", "tools") for p in (ROOT / d).rglob("*.py")
                     if "os.environ" in p.read_text(encoding="utf-8") or "getenv(" in p.read_text(encoding="utf-8"))
    assert readers == ["tools/settings.py"]
    tree = ast.parse((ROOT / "tools" / "settings.py").read_text(encoding="utf-8"))
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m.startswith(("ehr_agent", "agent", "tools"))]
