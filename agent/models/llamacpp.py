"""In-process GGUF models through llama.cpp: the embedded default and ``llamacpp:PATH``.

Two Python bindings of llama.cpp can run them (``engine``):

* ``xllamacpp`` (what the default install brings: a prebuilt wheel on PyPI, nothing to compile):
  llama.cpp's own C++ server engine in-process, with the model's Jinja chat template, JSON-schema
  constrained sampling and prompt (KV-cache prefix) reuse done natively;
* ``llama-cpp-python`` (the optional extra ``ehr-agent[llama-cpp-python]``, built from source for the
  machine's own CPU: AVX-512 where there is one, which xllamacpp's portable wheel leaves out).

When both are installed the source build is used: whoever installed it did so for its prompt speed.
``benchmarks/llama_backends.py`` measured both side by side (docs/models.md). The model's own chat
template formats the conversation; tools reach the model only through our text protocol, because
small models follow one plain instruction more reliably than a template's tool section, and the same
prompt then works for every backend.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from ehr_agent.agent.models.base import ChatMessage, ChatModel, ChatResult, ModelError, TokenCallback, ToolSpec
from ehr_agent.agent.models.common import finish_text, text_mode_messages
from ehr_agent.agent.models.shaping import is_gemma
from ehr_agent.agent.protocol import RESULT_STOP

#: bindings we can drive, in order of preference (import name, pip name): a build for this very CPU
#: first (only there when someone chose to compile it), then the prebuilt wheel of the default install
ENGINES: dict[str, tuple[str, str]] = {
    "llama-cpp-python": ("llama_cpp", "llama-cpp-python"),
    "xllamacpp": ("xllamacpp", "xllamacpp"),
}


def auto_threads(limit: int = 2) -> int:
    """Threads for llama.cpp: ``limit`` (2) on a quiet machine, 1 when it is oversubscribed.

    llama.cpp's threads meet at a barrier several hundred times per generated token; when the load
    average is at or above the core count, each meeting waits for the scheduler. Measured on the
    2-core dev machine at load 11: 1 thread generated 4.6 tok/s, 2 threads 0.4 tok/s (docs/models.md).
    """
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        load = 0.0
    return 1 if load >= cores else max(1, min(limit, cores))


def available_engines() -> list[str]:
    """The llama.cpp bindings installed here, preferred first (found without importing them)."""
    return [name for name, (module, _) in ENGINES.items() if importlib.util.find_spec(module) is not None]


def llama_cpp_available() -> bool:
    """Whether any llama.cpp binding (xllamacpp or llama-cpp-python) is installed."""
    return bool(available_engines())


def resolve_engine(engine: str | None) -> str:
    """The binding to use: ``engine`` when given (it must be installed), else the first installed."""
    if engine is not None and engine not in ENGINES:
        raise ValueError(f"unknown llama.cpp engine {engine!r}; known: {', '.join(ENGINES)}")
    found = available_engines()
    if engine is None:
        if not found:
            raise ModelError(
                "no llama.cpp binding is installed: `pip install xllamacpp` (prebuilt wheel), or use the "
                "transformers backend (transformers:/path/model.gguf)"
            )
        return found[0]
    if engine not in found:
        raise ModelError(f"engine {engine} asked for, but it is not installed: `pip install {ENGINES[engine][1]}`")
    return engine


class Engine(Protocol):
    """What :class:`LlamaCppModel` needs from a binding."""

    def complete(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        stop: list[str] | None,
        sampling: dict[str, Any],
        json_schema: dict[str, Any] | None,
        on_token: TokenCallback | None,
    ) -> tuple[str, int, int]:
        """One chat completion: (text, prompt tokens, completion tokens)."""

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` (no BOS, special tokens as plain text)."""

    def detokenize(self, tokens: list[int]) -> str:
        """Text of ``tokens``."""

    def close(self) -> None:
        """Free the model."""


class _XLlamaCppEngine:
    """xllamacpp: llama.cpp's C++ server engine in-process (chat template, grammar, prompt cache).

    The engine also listens on a loopback port (it cannot be turned off); it gets a random free port
    and a random API key, so other local processes cannot use it. Tokenising goes through that port
    because the binding exposes no tokenizer call.
    """

    def __init__(self, path: Path, *, n_ctx: int, n_threads: int, n_batch: int, seed: int) -> None:
        import xllamacpp as xlc

        params = xlc.CommonParams()
        params.model.path = str(path)
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_parallel = 1  # one conversation at a time, like llama-cpp-python; all of n_ctx for it
        params.cpuparams.n_threads = n_threads
        params.cpuparams_batch.n_threads = n_threads
        params.sampling.seed = seed
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        self._key = secrets.token_urlsafe(24)
        params.api_keys = [self._key]
        params.verbosity = -1
        params.warmup = False  # a warm-up decode costs seconds at load and buys nothing here
        # Fitting parameters to device memory loads the model twice (a dry run first): 1.5B load went
        # from 5.6-10.5 s to 3.4-3.9 s without it; on a CPU there is nothing to fit.
        params.fit_params = False
        params.cache_ram_mib = 0  # no host-RAM copies of old prompts; the live KV cache is still reused
        try:
            self._server = xlc.Server(params)
        except RuntimeError as exc:
            raise ModelError(f"xllamacpp could not load {path}: {exc}") from exc
        self._base = self._server.listening_address.rstrip("/")

    def complete(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        stop: list[str] | None,
        sampling: dict[str, Any],
        json_schema: dict[str, Any] | None,
        on_token: TokenCallback | None,
    ) -> tuple[str, int, int]:
        request: dict[str, Any] = {"messages": messages, "max_tokens": max_tokens, "cache_prompt": True, **sampling}
        if stop:
            request["stop"] = stop
        if json_schema is not None:
            request["json_schema"] = json_schema
        if on_token is None:
            response = self._server.handle_chat_completions(request)
            _raise_for_error(response)
            text = response["choices"][0]["message"].get("content") or ""
            usage = response.get("usage") or {}
            return text, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        pieces: list[str] = []
        usage = {}
        failure: list[BaseException] = []

        def on_chunk(chunk: dict[str, Any]) -> bool:
            # The binding swallows exceptions raised here; keep them to raise after the call.
            try:
                _raise_for_error(chunk)
                if chunk.get("usage"):
                    usage.update(chunk["usage"])
                for choice in chunk.get("choices") or []:
                    delta = (choice.get("delta") or {}).get("content")
                    if delta:
                        pieces.append(delta)
                        on_token(delta)
            except BaseException as exc:  # noqa: BLE001 - re-raised below, in the caller's thread
                failure.append(exc)
                return True  # stop generating
            return False

        request.update(stream=True, stream_options={"include_usage": True})
        self._server.handle_chat_completions(request, on_chunk)
        if failure:
            raise failure[0]
        return "".join(pieces), int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))

    def _post(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        try:
            response = httpx.post(self._base + route, json=body, timeout=60,
                                  headers={"Authorization": f"Bearer {self._key}"})
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise ModelError(f"xllamacpp {route} failed: {exc}") from exc
        return response.json()

    def tokenize(self, text: str) -> list[int]:
        return list(self._post("/tokenize", {"content": text, "add_special": False, "parse_special": False})["tokens"])

    def detokenize(self, tokens: list[int]) -> str:
        return str(self._post("/detokenize", {"tokens": tokens})["content"])

    def close(self) -> None:
        self._server = None  # the destructor stops its loop and frees the model


def _raise_for_error(response: dict[str, Any]) -> None:
    """A server-side error object as a ModelError (e.g. the prompt exceeds the context)."""
    error = response.get("error")
    if error:
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise ModelError(f"llama.cpp: {message}")


class _LlamaCppPythonEngine:
    """llama-cpp-python (``Llama``): the model's template through Jinja2, grammar from a JSON schema."""

    def __init__(self, path: Path, *, n_ctx: int, n_threads: int, n_batch: int, seed: int) -> None:
        from llama_cpp import Llama

        try:
            self._llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                              n_batch=n_batch, seed=seed, verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(f"llama.cpp could not load {path}: {exc}") from exc

    def complete(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        stop: list[str] | None,
        sampling: dict[str, Any],
        json_schema: dict[str, Any] | None,
        on_token: TokenCallback | None,
    ) -> tuple[str, int, int]:
        kwargs: dict[str, Any] = {"messages": messages, "max_tokens": max_tokens, "stop": stop, **sampling}
        if json_schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": json_schema}
        llm = self._llm
        try:
            if on_token is None:
                response = llm.create_chat_completion(**kwargs)
                usage = response.get("usage") or {}
                text = response["choices"][0]["message"].get("content") or ""
                return text, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
            pieces: list[str] = []
            for chunk in llm.create_chat_completion(stream=True, **kwargs):
                delta = chunk["choices"][0].get("delta", {}).get("content")
                if delta:
                    pieces.append(delta)
                    on_token(delta)
        except ValueError as exc:  # e.g. the prompt exceeds n_ctx
            raise ModelError(f"llama.cpp: {exc}") from exc
        text = "".join(pieces)
        # Streams carry no usage; the context's fill level (prompt + generated) does.
        completion = len(llm.tokenize(text.encode(), add_bos=False, special=True))
        prompt = llm.n_tokens - completion
        if prompt <= 0:
            joined = "\n".join(m["content"] for m in messages)
            prompt = len(llm.tokenize(joined.encode(), add_bos=True, special=False))
        return text, prompt, completion

    def tokenize(self, text: str) -> list[int]:
        return list(self._llm.tokenize(text.encode(), add_bos=False, special=False))

    def detokenize(self, tokens: list[int]) -> str:
        return self._llm.detokenize(tokens).decode("utf-8", errors="replace")

    def close(self) -> None:
        self._llm.close()


_ENGINE_CLASSES = {"xllamacpp": _XLlamaCppEngine, "llama-cpp-python": _LlamaCppPythonEngine}


class LlamaCppModel(ChatModel):
    """A GGUF model run by llama.cpp on the CPU, loaded on first use.

    ``temperature`` defaults to 0 (greedy): for tool calling with a small model, determinism and the
    most likely format matter more than variety. ``n_threads`` None means :func:`auto_threads`.
    ``engine`` picks the binding (``llama-cpp-python`` or ``xllamacpp``); None means the first
    installed, in that order (:data:`ENGINES`).
    """

    constrained_output = True

    def __init__(
        self,
        model_path: str | Path,
        *,
        name: str | None = None,
        n_ctx: int = 8192,
        n_threads: int | None = None,
        n_batch: int = 256,
        temperature: float = 0.0,
        top_p: float | None = None,
        top_k: int | None = None,
        max_tokens: int = 512,
        seed: int = 0,
        family: str | None = None,
        engine: str | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise ModelError(f"GGUF model file not found: {self.model_path}")
        self.engine = resolve_engine(engine)
        self.name = name or f"llamacpp:{self.model_path.name}"
        self.n_ctx, self.n_batch = n_ctx, n_batch
        self.n_threads = n_threads or auto_threads()
        self.sampling = {"temperature": temperature, "top_p": top_p, "top_k": top_k}
        self.default_max_tokens = max_tokens
        self.seed = seed
        self.gemma = is_gemma(self.model_path.name, family)
        self._engine: Engine | None = None
        # One generation at a time per model: llama-cpp-python's contexts are not re-entrant, and
        # xllamacpp runs one slot (so a second caller would only queue inside it).
        self._lock = threading.Lock()

    def load(self) -> Engine:
        """Load the weights now (otherwise the first chat() does); returns the engine."""
        if self._engine is None:
            self._engine = _ENGINE_CLASSES[self.engine](
                self.model_path, n_ctx=self.n_ctx, n_threads=self.n_threads, n_batch=self.n_batch, seed=self.seed
            )
        return self._engine

    def chat(
        self,
        messages: list[ChatMessage],
        tools: list[ToolSpec] | None = None,
        *,
        on_token: TokenCallback | None = None,
        max_tokens: int | None = None,
        json_schema: dict[str, Any] | None = None,
        constrain: dict[str, Any] | None = None,
    ) -> ChatResult:
        """One turn; ``json_schema`` (or ``constrain``, the name :class:`ChatModel` callers use) constrains the
        reply to JSON valid against it (grammar sampling)."""
        json_schema = json_schema if json_schema is not None else constrain
        payload = text_mode_messages(messages, tools, gemma=self.gemma)
        sampling = {k: v for k, v in self.sampling.items() if v is not None}
        start = time.perf_counter()
        with self._lock:
            engine = self.load()
            raw, prompt_tokens, completion_tokens = engine.complete(
                payload,
                max_tokens=max_tokens or self.default_max_tokens,
                stop=[RESULT_STOP] if tools else None,
                sampling=sampling,
                json_schema=json_schema,
                on_token=on_token,
            )
        return finish_text(
            raw,
            tools,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            seconds=time.perf_counter() - start,
        )

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` with the model's own tokenizer (loads the model if needed)."""
        with self._lock:
            return self.load().tokenize(text)

    def detokenize(self, tokens: list[int]) -> str:
        """Text of ``tokens`` (loads the model if needed)."""
        with self._lock:
            return self.load().detokenize(tokens)

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` with the model's own tokenizer (loads the model if needed)."""
        return len(self.tokenize(text))

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.close()
                self._engine = None


def serve(model_path: str | Path, *, host: str = "127.0.0.1", port: int = 8000, n_ctx: int = 4096,
          n_threads: int | None = None, n_parallel: int = 1) -> None:
    """Serve a GGUF over llama.cpp's OpenAI-compatible HTTP API (xllamacpp) until SIGINT/SIGTERM.

    The same C++ server as llama.cpp's ``llama-server``, with the model's own chat template; what
    ``python -m llama_cpp.server`` gave before, without a compiler.
    """
    import signal

    import xllamacpp as xlc

    threads = n_threads or auto_threads()
    params = xlc.CommonParams()
    params.model.path = str(model_path)
    params.n_ctx = n_ctx
    params.n_parallel = n_parallel
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.hostnames = [host]
    params.port = port
    params.warmup = False
    params.fit_params = False
    params.cache_ram_mib = 0
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server = xlc.Server(params)
    print(f"serving {model_path} on {server.listening_address}/v1", flush=True)
    stop.wait()
    del server


def main(argv: list[str] | None = None) -> int:
    """``python -m agent.models.llamacpp --model X.gguf [--host H] [--port P] [--n-ctx N] [--threads T]``."""
    import argparse

    parser = argparse.ArgumentParser(description=serve.__doc__)
    parser.add_argument("--model", required=True, help="path of a GGUF file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=None, help="default: auto_threads()")
    parser.add_argument("--parallel", type=int, default=1, help="concurrent requests (n_ctx is split among them)")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("xllamacpp") is None:
        parser.error("the server needs xllamacpp: pip install xllamacpp")
    serve(args.model, host=args.host, port=args.port, n_ctx=args.n_ctx, n_threads=args.threads,
          n_parallel=args.parallel)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
