"""Any OpenAI-compatible chat server (vLLM, llama.cpp's server, ...) over httpx.

Two tool modes: ``native`` sends ``tools`` and reads the server's ``tool_calls`` (vLLM with a tool
parser); ``text`` lists the tools in the prompt with our protocol and parses the reply (MedGemma,
or any server whose tool support is unreliable). Pitfalls handled here, seen with
``llama_cpp.server``: tools are ignored unless ``tool_choice="auto"`` is sent, and an assistant
message with ``content: null`` is answered with HTTP 500, so content is always a string.
"""

from __future__ import annotations

import json
import random
import threading
import time
from typing import Any

import httpx

from ehr_agent.agent.models.base import (
    ChatMessage,
    ChatModel,
    ChatResult,
    ModelError,
    TokenCallback,
    ToolCall,
    ToolSpec,
)
from ehr_agent.agent.models.common import ToolMode, finish_text, native_mode_messages, openai_tools, text_mode_messages
from ehr_agent.agent.models.shaping import GEMMA_SAMPLING, SamplingDefaults, is_gemma
from ehr_agent.agent.protocol import RESULT_STOP, loads_lenient, parse_tool_calls, strip_thinking, validate_arguments

#: failures worth another try: the server may be starting, overloaded or restarting
_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class _Retryable(Exception):
    pass


class OpenAIChatModel(ChatModel):
    """A chat model behind ``{base_url}/chat/completions``.

    Retries connection errors, timeouts and HTTP 5xx/429 with exponential backoff, then raises
    :class:`ModelError` naming the server and the last failure. Thread-safe (one shared httpx client).
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        tool_mode: ToolMode = "text",
        timeout: float = 120.0,
        connect_timeout: float = 5.0,
        retries: int = 2,
        backoff: float = 0.5,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        max_tokens: int = 1024,
        family: str | None = None,
        stream_usage: bool = True,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        if tool_mode not in ("text", "native"):
            raise ValueError(f"tool_mode must be 'text' or 'native', not {tool_mode!r}")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base URL must start with http:// or https://: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.tool_mode: ToolMode = tool_mode
        self.retries = max(0, retries)
        self.backoff = backoff
        self.default_max_tokens = max_tokens
        self.family = family
        self.stream_usage = stream_usage
        self.extra_body = extra_body or {}
        self._overrides = {"temperature": temperature, "top_p": top_p, "top_k": top_k}
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            headers=headers, timeout=httpx.Timeout(timeout, connect=connect_timeout)
        )
        self._model_lock = threading.Lock()
        self.name = f"openai:{self.base_url}" + (f"#{model}" if model else "")

    # -- helpers ---------------------------------------------------------------------------------

    @property
    def gemma(self) -> bool:
        return is_gemma(self.model, self.family)

    def _sampling(self) -> dict[str, Any]:
        defaults = GEMMA_SAMPLING if self.gemma else SamplingDefaults()
        return defaults.merged(**self._overrides)

    def resolve_model(self) -> str:
        """The model name to send: the configured one, else the first the server lists."""
        with self._model_lock:
            if self.model is None:
                data = self._request_json("GET", "/models")
                try:
                    self.model = data["data"][0]["id"]
                except (KeyError, IndexError, TypeError) as exc:
                    raise ModelError(f"{self.base_url}/models lists no model; give one as URL#MODEL") from exc
                self.name = f"openai:{self.base_url}#{self.model}"
            return self.model

    def _describe(self, exc: Exception) -> str:
        if isinstance(exc, httpx.ConnectError):
            return f"cannot connect ({exc})"
        if isinstance(exc, httpx.TimeoutException):
            return f"timed out ({type(exc).__name__})"
        return str(exc) or type(exc).__name__

    def _with_retries(self, what: str, fn: Any) -> Any:
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                # Exponential backoff with jitter so concurrent callers do not retry in lockstep.
                time.sleep(self.backoff * (2 ** (attempt - 1)) * (1 + random.random() * 0.25))
            try:
                return fn()
            except _Retryable as exc:
                last = exc
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                last = exc
        raise ModelError(
            f"{what} at {self.base_url} failed after {self.retries + 1} attempt(s): {self._describe(last)}"
        )

    @staticmethod
    def _check(response: httpx.Response) -> None:
        if response.status_code in _RETRY_STATUS:
            raise _Retryable(f"HTTP {response.status_code}: {response.text[:300]}")
        if response.status_code >= 400:
            raise ModelError(f"HTTP {response.status_code} from {response.request.url}: {response.text[:500]}")

    def _request_json(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        def once() -> dict[str, Any]:
            response = self._client.request(method, self.base_url + path, json=body)
            self._check(response)
            try:
                return response.json()
            except ValueError as exc:
                raise _Retryable(f"server sent a non-JSON body: {response.text[:200]!r}") from exc

        return self._with_retries(f"{method} {path}", once)

    # -- chat ------------------------------------------------------------------------------------

    def _payload(self, messages: list[ChatMessage], tools: list[ToolSpec] | None, max_tokens: int | None) -> dict:
        body: dict[str, Any] = {"model": self.resolve_model(), "max_tokens": max_tokens or self.default_max_tokens}
        body.update(self._sampling())
        if self.tool_mode == "native":
            body["messages"] = native_mode_messages(messages, gemma=self.gemma)
            if tools:
                body["tools"] = openai_tools(tools)
                body["tool_choice"] = "auto"  # llama.cpp's server ignores tools without it
        else:
            body["messages"] = text_mode_messages(messages, tools, gemma=self.gemma)
            if tools:
                body["stop"] = [RESULT_STOP]
        body.update(self.extra_body)
        return body

    def chat(
        self,
        messages: list[ChatMessage],
        tools: list[ToolSpec] | None = None,
        *,
        on_token: TokenCallback | None = None,
        max_tokens: int | None = None,
    ) -> ChatResult:
        body = self._payload(messages, tools, max_tokens)
        start = time.perf_counter()
        if on_token is None:
            data = self._request_json("POST", "/chat/completions", body)
            try:
                message = data["choices"][0]["message"]
            except (KeyError, IndexError, TypeError) as exc:
                raise ModelError(f"{self.base_url}: response has no choices[0].message: {str(data)[:300]}") from exc
            raw = message.get("content") or ""
            native = message.get("tool_calls") or []
            usage = data.get("usage") or {}
        else:
            raw, native, usage = self._stream(body, on_token)
        return self._result(raw, native, usage, tools, messages, time.perf_counter() - start)

    def _stream(self, body: dict[str, Any], on_token: TokenCallback) -> tuple[str, list[dict], dict]:
        body = {**body, "stream": True}
        if self.stream_usage:
            body["stream_options"] = {"include_usage": True}
        state: dict[str, Any] = {}

        def once() -> tuple[str, list[dict], dict]:
            pieces: list[str] = []
            calls: dict[int, dict[str, Any]] = {}
            usage: dict[str, Any] = {}
            state["started"] = False
            with self._client.stream("POST", self.base_url + "/chat/completions", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                self._check(response)
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError:
                        continue  # keep-alive comments or a damaged event: skip, never abort the answer
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        delta = choice.get("delta") or {}
                        if delta.get("content"):
                            state["started"] = True
                            pieces.append(delta["content"])
                            on_token(delta["content"])
                        for tc in delta.get("tool_calls") or []:
                            slot = calls.setdefault(tc.get("index", len(calls)), {"function": {"arguments": ""}})
                            if tc.get("id"):
                                slot["id"] = tc["id"]
                            fn = tc.get("function") or {}
                            if fn.get("name"):
                                slot["function"]["name"] = fn["name"]
                            slot["function"]["arguments"] += fn.get("arguments") or ""
            return "".join(pieces), [calls[k] for k in sorted(calls)], usage

        def guarded() -> tuple[str, list[dict], dict]:
            try:
                return once()
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                if state.get("started"):
                    # Tokens already reached the caller; a retry would repeat them.
                    raise ModelError(f"{self.base_url}: stream broke after it started: {self._describe(exc)}") from exc
                raise

        return self._with_retries("POST /chat/completions (stream)", guarded)

    def _result(
        self,
        raw: str,
        native: list[dict],
        usage: dict[str, Any],
        tools: list[ToolSpec] | None,
        messages: list[ChatMessage],
        seconds: float,
    ) -> ChatResult:
        counts = {
            "prompt_tokens": int(usage.get("prompt_tokens") or 0)
            or self.count_tokens("\n".join(m.content for m in messages)),
            "completion_tokens": int(usage.get("completion_tokens") or 0) or (self.count_tokens(raw) if raw else 0),
            "seconds": seconds,
        }
        if self.tool_mode == "text" or not tools:
            return finish_text(raw, tools, **counts)
        # Native mode: the server's calls, validated like ours; when the server's parser missed a
        # call the model wrote as text (vLLM leaves it in content), our parser still finds it.
        content = strip_thinking(raw).strip()
        if not native:
            outcome = parse_tool_calls(raw, tools)
            return ChatResult(
                content=outcome.content, tool_calls=outcome.tool_calls, raw=raw, parse_error=outcome.error, **counts
            )
        by_name = {t.name: t for t in tools}
        calls, errors = [], []
        for i, item in enumerate(native):
            fn = item.get("function") or {}
            name = fn.get("name") or ""
            tool = by_name.get(name)
            if tool is None:
                errors.append(f"unknown tool {name!r} (available: {', '.join(by_name)})")
                continue
            try:
                args = loads_lenient(fn.get("arguments") or "{}") if isinstance(fn.get("arguments"), str) else fn.get("arguments")
            except ValueError as exc:
                errors.append(f"{name}: arguments are {exc}")
                continue
            args, problems = validate_arguments(tool, args)
            if problems:
                errors.extend(problems)
                continue
            calls.append(ToolCall(id=item.get("id") or f"call_{i}", name=name, arguments=args))
        return ChatResult(
            content=content,
            tool_calls=[] if errors else calls,
            raw=raw or json.dumps(native),
            parse_error="; ".join(errors) if errors else None,
            **counts,
        )

    def close(self) -> None:
        self._client.close()
