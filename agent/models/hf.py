"""In-process transformers models: ``transformers:/local/model/dir`` (GPU when there is one, else CPU),
also a GGUF file (``transformers:/path/model.gguf``), which transformers dequantizes on load.

Only local files are read (``local_files_only``): no hub downloads at run time.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from ehr_agent.agent.models.base import ChatMessage, ChatModel, ChatResult, ModelError, TokenCallback, ToolSpec
from ehr_agent.agent.models.common import finish_text, text_mode_messages
from ehr_agent.agent.models.shaping import GEMMA_SAMPLING, SamplingDefaults, is_gemma
from ehr_agent.agent.protocol import RESULT_STOP


class TransformersModel(ChatModel):
    """A local checkpoint run with ``model.generate``; tools through our text protocol.

    Sampling: explicit arguments win, then the checkpoint's ``generation_config`` (Gemma ships
    top_k 64 / top_p 0.95 there), then the family defaults; ``temperature=0`` means greedy.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        gguf_file: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        max_tokens: int = 512,
        family: str | None = None,
        name: str | None = None,
    ) -> None:
        path = Path(path)
        if path.suffix == ".gguf" and gguf_file is None:
            path, gguf_file = path.parent, path.name
        if not path.exists():
            raise ModelError(f"model path not found: {path}")
        self.path, self.gguf_file = path, gguf_file
        self.device, self.dtype = device, dtype
        self._overrides = {"temperature": temperature, "top_p": top_p, "top_k": top_k}
        self.default_max_tokens = max_tokens
        self.gemma = is_gemma(str(path) + (gguf_file or ""), family)
        self.name = name or f"transformers:{path / gguf_file if gguf_file else path}"
        self._model: Any = None
        self._tok: Any = None
        self._lock = threading.Lock()

    def load(self) -> tuple[Any, Any]:
        """Load tokenizer and weights now (otherwise the first chat() does)."""
        if self._model is None:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            dtype = getattr(torch, self.dtype) if self.dtype else (torch.bfloat16 if device == "cuda" else torch.float32)
            kwargs: dict[str, Any] = {"local_files_only": True}
            if self.gguf_file:
                kwargs["gguf_file"] = self.gguf_file
            try:
                self._tok = AutoTokenizer.from_pretrained(str(self.path), **kwargs)
                self._model = AutoModelForCausalLM.from_pretrained(str(self.path), dtype=dtype, **kwargs).to(device)
            except (OSError, ValueError, ImportError) as exc:
                raise ModelError(f"transformers could not load {self.name}: {exc}") from exc
            self._model.eval()
        return self._model, self._tok

    def sampling(self) -> dict[str, Any]:
        """Sampling settings in effect (see the class docstring for the precedence)."""
        model, _ = self.load()
        cfg = getattr(model, "generation_config", None)
        from_cfg = SamplingDefaults(
            temperature=getattr(cfg, "temperature", None) if getattr(cfg, "do_sample", False) else None,
            top_p=getattr(cfg, "top_p", None) if getattr(cfg, "do_sample", False) else None,
            top_k=getattr(cfg, "top_k", None) if getattr(cfg, "do_sample", False) else None,
        )
        base = GEMMA_SAMPLING if self.gemma else SamplingDefaults()
        merged = base.merged(**from_cfg.model_dump())
        merged.update({k: v for k, v in self._overrides.items() if v is not None})
        return merged

    def chat(
        self,
        messages: list[ChatMessage],
        tools: list[ToolSpec] | None = None,
        *,
        on_token: TokenCallback | None = None,
        max_tokens: int | None = None,
    ) -> ChatResult:
        import torch

        payload = text_mode_messages(messages, tools, gemma=self.gemma)
        start = time.perf_counter()
        with self._lock:
            model, tok = self.load()
            try:
                ids = tok.apply_chat_template(payload, add_generation_prompt=True, return_tensors="pt", return_dict=True)
            except Exception as exc:  # template errors come as jinja2/ValueError/TemplateError
                raise ModelError(f"{self.name}: chat template failed: {exc}") from exc
            ids = {k: v.to(model.device) for k, v in ids.items()}
            sampling = self.sampling()
            temperature = sampling.get("temperature", 0.0)
            gen: dict[str, Any] = {"max_new_tokens": max_tokens or self.default_max_tokens}
            if temperature and temperature > 0:
                gen.update(do_sample=True, **sampling)
            else:
                gen.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            if tools:
                gen.update(stop_strings=[RESULT_STOP], tokenizer=tok)
            streamer = _CallbackStreamer(tok, on_token) if on_token else None
            with torch.inference_mode():
                out = model.generate(**ids, **gen, streamer=streamer)
            new = out[0, ids["input_ids"].shape[1]:]
            raw = tok.decode(new, skip_special_tokens=True)
            if raw.endswith(RESULT_STOP):
                raw = raw[: -len(RESULT_STOP)]
        return finish_text(
            raw,
            tools,
            prompt_tokens=int(ids["input_ids"].shape[1]),
            completion_tokens=int(new.shape[0]),
            seconds=time.perf_counter() - start,
        )

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` with the checkpoint's tokenizer."""
        _, tok = self.load()
        return len(tok.encode(text, add_special_tokens=False))

    def close(self) -> None:
        with self._lock:
            self._model = self._tok = None


class _CallbackStreamer:
    """Minimal generate() streamer that decodes incrementally and hands text pieces to a callback."""

    def __init__(self, tok: Any, callback: TokenCallback) -> None:
        self.tok, self.callback = tok, callback
        self.ids: list[int] = []
        self.sent = 0
        self.skipped_prompt = False

    def put(self, value: Any) -> None:
        if not self.skipped_prompt:  # the first put() is the prompt
            self.skipped_prompt = True
            return
        self.ids.extend(value.reshape(-1).tolist())
        text = self.tok.decode(self.ids, skip_special_tokens=True)
        # Hold back a trailing replacement char: a multi-byte character is still incomplete.
        if text.endswith("\ufffd"):
            return
        if len(text) > self.sent:
            self.callback(text[self.sent:])
            self.sent = len(text)

    def end(self) -> None:
        text = self.tok.decode(self.ids, skip_special_tokens=True)
        if len(text) > self.sent:
            self.callback(text[self.sent:])
            self.sent = len(text)
