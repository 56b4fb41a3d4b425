"""In-process GGUF models through llama-cpp-python: the embedded default and ``llamacpp:PATH``.

The model's own chat template (from the GGUF metadata) formats the conversation; tools reach the
model only through our text protocol, because small models follow one plain instruction more
reliably than a template's tool section, and the same prompt then works for every backend.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from agent.models.base import ChatMessage, ChatModel, ChatResult, ModelError, TokenCallback, ToolSpec
from agent.models.common import finish_text, text_mode_messages
from agent.models.shaping import is_gemma
from agent.protocol import RESULT_STOP


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


def llama_cpp_available() -> bool:
    """Whether llama-cpp-python can be imported."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


class LlamaCppModel(ChatModel):
    """A GGUF model run by llama.cpp on the CPU, loaded on first use.

    ``temperature`` defaults to 0 (greedy): for tool calling with a small model, determinism and the
    most likely format matter more than variety. ``n_threads`` None means :func:`auto_threads`.
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
    ) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise ModelError(f"GGUF model file not found: {self.model_path}")
        self.name = name or f"llamacpp:{self.model_path.name}"
        self.n_ctx, self.n_batch = n_ctx, n_batch
        self.n_threads = n_threads or auto_threads()
        self.sampling = {"temperature": temperature, "top_p": top_p, "top_k": top_k}
        self.default_max_tokens = max_tokens
        self.seed = seed
        self.gemma = is_gemma(self.model_path.name, family)
        self._llm: Any = None
        # llama.cpp contexts are not re-entrant: one generation at a time per model.
        self._lock = threading.Lock()

    def load(self) -> Any:
        """Load the weights now (otherwise the first chat() does)."""
        if self._llm is None:
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise ModelError(
                    "llama-cpp-python is not installed; `pip install llama-cpp-python` (or use the "
                    "transformers backend: transformers:/path/model.gguf)"
                ) from exc
            try:
                self._llm = Llama(
                    model_path=str(self.model_path),
                    n_ctx=self.n_ctx,
                    n_threads=self.n_threads,
                    n_threads_batch=self.n_threads,
                    n_batch=self.n_batch,
                    seed=self.seed,
                    verbose=False,
                )
            except (ValueError, RuntimeError, OSError) as exc:
                raise ModelError(f"llama.cpp could not load {self.model_path}: {exc}") from exc
        return self._llm

    def chat(
        self,
        messages: list[ChatMessage],
        tools: list[ToolSpec] | None = None,
        *,
        on_token: TokenCallback | None = None,
        max_tokens: int | None = None,
        constrain: dict[str, Any] | None = None,
    ) -> ChatResult:
        """One turn; ``constrain`` (a JSON schema) makes llama.cpp sample only text that matches it."""
        payload = text_mode_messages(messages, tools, gemma=self.gemma)
        kwargs: dict[str, Any] = {
            "messages": payload,
            "max_tokens": max_tokens or self.default_max_tokens,
            "stop": [RESULT_STOP] if tools else None,
            **{k: v for k, v in self.sampling.items() if v is not None},
        }
        if constrain is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": constrain}
        start = time.perf_counter()
        with self._lock:
            llm = self.load()
            try:
                if on_token is None:
                    response = llm.create_chat_completion(**kwargs)
                    raw = response["choices"][0]["message"].get("content") or ""
                    usage = response.get("usage") or {}
                else:
                    pieces: list[str] = []
                    for chunk in llm.create_chat_completion(stream=True, **kwargs):
                        delta = chunk["choices"][0].get("delta", {}).get("content")
                        if delta:
                            pieces.append(delta)
                            on_token(delta)
                    raw = "".join(pieces)
                    usage = {}
            except ValueError as exc:  # e.g. the prompt exceeds n_ctx
                raise ModelError(f"{self.name}: {exc}") from exc
            if not usage:
                # Streams carry no usage; the context's fill level (prompt + generated) does.
                completion = len(llm.tokenize(raw.encode(), add_bos=False, special=True))
                prompt = llm.n_tokens - completion if llm.n_tokens > completion else self._count_prompt(llm, payload)
                usage = {"prompt_tokens": prompt, "completion_tokens": completion}
        return finish_text(
            raw,
            tools,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            seconds=time.perf_counter() - start,
        )

    @staticmethod
    def _count_prompt(llm: Any, payload: list[dict[str, str]]) -> int:
        text = "\n".join(m["content"] for m in payload)
        return len(llm.tokenize(text.encode(), add_bos=True, special=False))

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` with the model's own tokenizer (loads the model if needed)."""
        with self._lock:
            return len(self.load().tokenize(text.encode(), add_bos=False, special=False))

    def close(self) -> None:
        with self._lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None
