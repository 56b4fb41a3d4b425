"""The OpenAI-compatible backend against small stdlib HTTP servers on 127.0.0.1: failure modes
(down, timeout, 500 then success, 500 always, 4xx, non-JSON), request shape (tool_choice, Gemma
rules), native and text tool calls, SSE streaming and usage accounting."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ehr_agent.agent.models.base import ChatMessage, ModelError, ToolSpec
from ehr_agent.agent.models.openai_compat import OpenAIChatModel

TOOLS = [
    ToolSpec(
        name="search_notes",
        description="Search notes.",
        parameters={"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    )
]
USER = [ChatMessage(role="system", content="Sys"), ChatMessage(role="user", content="Q?")]


def completion(content: str | None = "ok", tool_calls: list | None = None, usage: dict | None = None) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    body: dict[str, Any] = {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
    if usage:
        body["usage"] = usage
    return body


class Script:
    """What the fake server answers, one entry per request (the last one repeats)."""

    def __init__(self) -> None:
        self.replies: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def next(self) -> dict[str, Any]:
        with self.lock:
            return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]


@pytest.fixture()
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep pytest output clean
            pass

        def _reply(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            script.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
            reply = script.next()
            time.sleep(reply.get("delay", 0))
            if "sse" in reply:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for event in reply["sse"]:
                    data = event if isinstance(event, str) else json.dumps(event)
                    self.wfile.write(f"data: {data}\n\n".encode())
                    self.wfile.flush()
                return
            raw = reply.get("raw")
            payload = raw.encode() if raw is not None else json.dumps(reply.get("json", {})).encode()
            self.send_response(reply.get("status", 200))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            try:
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

        do_GET = do_POST = _reply

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", script
    finally:
        httpd.shutdown()
        httpd.server_close()


def model(url: str, **kw: Any) -> OpenAIChatModel:
    kw.setdefault("retries", 2)
    kw.setdefault("backoff", 0.01)
    return OpenAIChatModel(url, kw.pop("name", "test-model"), **kw)


def test_server_down_raises_model_error_after_retries() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    m = model(f"http://127.0.0.1:{port}/v1", retries=1)
    start = time.perf_counter()
    with pytest.raises(ModelError) as info:
        m.chat(USER)
    assert "failed after 2 attempt(s): cannot connect" in str(info.value)
    assert f"127.0.0.1:{port}" in str(info.value)
    assert time.perf_counter() - start < 5


def test_timeout_raises_model_error(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [{"delay": 2.0, "json": completion()}]
    m = model(url, timeout=0.3, retries=1)
    with pytest.raises(ModelError, match="timed out"):
        m.chat(USER)
    assert len(script.requests) == 2


def test_500_then_success_is_retried(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [{"status": 500, "json": {"error": "boom"}}, {"status": 503, "raw": "busy"},
                      {"json": completion("fine", usage={"prompt_tokens": 11, "completion_tokens": 2})}]
    result = model(url).chat(USER)
    assert result.content == "fine" and len(script.requests) == 3
    assert (result.prompt_tokens, result.completion_tokens) == (11, 2)


def test_500_always_raises_model_error(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [{"status": 500, "json": {"error": "exploded"}}]
    with pytest.raises(ModelError) as info:
        model(url).chat(USER)
    assert "failed after 3 attempt(s): HTTP 500" in str(info.value) and "exploded" in str(info.value)
    assert len(script.requests) == 3


def test_client_error_is_not_retried(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [{"status": 400, "json": {"error": "context length exceeded"}}]
    with pytest.raises(ModelError, match="HTTP 400.*context length exceeded"):
        model(url).chat(USER)
    assert len(script.requests) == 1


def test_non_json_body_and_missing_choices(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [{"raw": "<html>proxy error</html>"}]
    with pytest.raises(ModelError, match="non-JSON body"):
        model(url, retries=0).chat(USER)
    script.replies = [{"json": {"object": "error"}}]
    with pytest.raises(ModelError, match=r"no choices\[0\]\.message"):
        model(url, retries=0).chat(USER)


def test_text_mode_request_and_garbage_reply(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [{"json": completion('```tool_call\n{"tool": "search_notes", "arguments": {"query": \n```')},
                      {"json": completion('```tool_call\n{"tool": "search_notes", "arguments": {"query": "x"}}\n```')}]
    m = model(url, api_key="secret")
    bad = m.chat(USER, TOOLS)  # garbage never raises: it becomes a parse_error for the graph
    assert bad.tool_calls == [] and bad.parse_error and "search_notes" not in (bad.content or "")
    good = m.chat(USER, TOOLS)
    assert good.tool_calls[0].arguments == {"query": "x"} and good.parse_error is None
    body = script.requests[0]["body"]
    assert "tools" not in body and body["stop"] == ["Tool result"]
    assert body["messages"][0]["role"] == "system" and "`search_notes`" in body["messages"][0]["content"]
    assert script.requests[0]["auth"] == "Bearer secret"
    assert good.prompt_tokens > 0 and good.completion_tokens > 0  # estimated: the server sent no usage


def test_native_mode_sends_tool_choice_and_reads_tool_calls(server: tuple[str, Script]) -> None:
    url, script = server
    calls = [{"id": "c9", "type": "function", "function": {"name": "search_notes", "arguments": '{"query": "a1c"}'}}]
    script.replies = [{"json": completion(None, calls)}]
    history = USER + [ChatMessage(role="assistant", content="")]
    result = model(url, tool_mode="native").chat(history + [ChatMessage(role="user", content="again")], TOOLS)
    assert [(c.id, c.name, c.arguments) for c in result.tool_calls] == [("c9", "search_notes", {"query": "a1c"})]
    assert result.content == ""
    body = script.requests[0]["body"]
    assert body["tool_choice"] == "auto" and body["tools"][0]["function"]["name"] == "search_notes"
    assert all(isinstance(m["content"], str) for m in body["messages"])  # never null (llama.cpp: HTTP 500)


def test_native_mode_bad_arguments_and_text_fallback(server: tuple[str, Script]) -> None:
    url, script = server
    bad = [{"id": "c1", "type": "function", "function": {"name": "search_notes", "arguments": '{"q": 1}'}}]
    script.replies = [{"json": completion("", bad)}, {"json": completion('[search_notes(query="x")]')}]
    m = model(url, tool_mode="native")
    r1 = m.chat(USER, TOOLS)
    assert r1.tool_calls == [] and "'query' is a required property" in r1.parse_error
    r2 = m.chat(USER, TOOLS)  # the server's parser missed a pythonic call; ours finds it
    assert r2.tool_calls[0].arguments == {"query": "x"}


def test_gemma_request_shape_and_thinking(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [{"json": completion("<unused94>let me think<unused95>Answer.")}]
    result = model(url, name="google/medgemma-27b-text-it").chat(USER + [ChatMessage(role="user", content="more")])
    assert result.content == "Answer."
    body = script.requests[0]["body"]
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert body["messages"][0]["content"] == "Sys\n\nQ?\n\nmore"
    assert (body["temperature"], body["top_p"], body["top_k"]) == (1.0, 0.95, 64)
    script.replies = [{"json": completion("x")}]
    model(url, name="medgemma", temperature=0.0).chat(USER)
    assert script.requests[1]["body"]["temperature"] == 0.0


def test_model_name_is_resolved_from_the_server(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [{"json": {"data": [{"id": "served-model"}]}}, {"json": completion("hi")}]
    m = OpenAIChatModel(url, None, retries=0)
    assert m.chat(USER).content == "hi"
    assert script.requests[0]["path"] == "/v1/models" and script.requests[1]["body"]["model"] == "served-model"
    assert m.name.endswith("#served-model")


def test_streaming_sse(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [{"sse": [
        {"choices": [{"delta": {"role": "assistant"}}]},
        ": keep-alive",
        {"choices": [{"delta": {"content": "Hel"}}]},
        {"choices": [{"delta": {"content": "lo"}}]},
        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}},
        "[DONE]",
    ]}]
    pieces: list[str] = []
    result = model(url).chat(USER, on_token=pieces.append)
    assert pieces == ["Hel", "lo"] and result.content == "Hello"
    assert (result.prompt_tokens, result.completion_tokens) == (5, 2)
    body = script.requests[0]["body"]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_streaming_native_tool_call_deltas(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [{"sse": [
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "search_notes", "arguments": ""}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"query": '}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '"x"}'}}]}}]},
        "[DONE]",
    ]}]
    result = model(url, tool_mode="native").chat(USER, TOOLS, on_token=lambda _: None)
    assert [(c.id, c.arguments) for c in result.tool_calls] == [("c1", {"query": "x"})]


def test_streaming_500_is_retried(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [{"status": 500, "json": {"error": "x"}}, {"sse": [{"choices": [{"delta": {"content": "ok"}}]}, "[DONE]"]}]
    assert model(url).chat(USER, on_token=lambda _: None).content == "ok"
    assert len(script.requests) == 2


def test_concurrent_calls_share_one_client(server: tuple[str, Script]) -> None:
    url, script = server
    script.replies = [{"delay": 0.05, "json": completion("same")}]
    m = model(url)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(m.chat(USER).content)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["same"] * 6 and len(script.requests) == 6
