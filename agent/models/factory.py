"""``make_model(spec)``: one entry point for every chat-model backend.

Specs (see :mod:`agent.models.spec` for the grammar)::

    embedded                                    the default: small GGUF model from PyPI, llama.cpp, CPU
    embedded:1.5b                               another embedded model (0.5b, 1.5b)
    openai:http://127.0.0.1:8000/v1#MODEL       OpenAI-compatible server; &tool_mode=native|text,
                                                &timeout=S &retries=N &temperature=T &max_tokens=N ...
    transformers:/local/dir  |  transformers:/path/model.gguf
    llamacpp:/path/model.gguf                   any local GGUF through llama.cpp
    scripted:/path/turns.json | scripted:["reply 1", "reply 2"]   (tests, demos)
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ehr_agent.agent.models import weights
from ehr_agent.agent.models.base import ChatModel, ModelError
from ehr_agent.agent.models.spec import ModelSettings, ModelSpec
from ehr_agent.tools.settings import AgentSettings

log = logging.getLogger(__name__)

#: chosen by measurement (docs/models.md, benchmarks/models.py)
DEFAULT_EMBEDDED = "qwen2.5-coder-1.5b"

_OPENAI_OPTS = {
    "tool_mode": str, "timeout": float, "connect_timeout": float, "retries": int, "backoff": float,
    "temperature": float, "top_p": float, "top_k": int, "max_tokens": int, "family": str, "stream_usage": bool,
}
_HF_OPTS = {
    "gguf_file": str, "device": str, "dtype": str, "temperature": float, "top_p": float, "top_k": int,
    "max_tokens": int, "family": str,
}
_LLAMA_OPTS = {
    "n_ctx": int, "n_threads": int, "n_batch": int, "temperature": float, "top_p": float, "top_k": int,
    "max_tokens": int, "seed": int, "family": str, "backend": str, "engine": str,
}


def _options(spec: ModelSpec, allowed: dict[str, type]) -> dict[str, Any]:
    unknown = set(spec.options) - set(allowed)
    if unknown:
        raise ValueError(
            f"{spec.kind}: unknown option(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}"
        )
    return {k: spec.option(k, cast) for k, cast in allowed.items() if k in spec.options}


def _fill(opts: dict[str, Any], settings: ModelSettings, names: list[str]) -> dict[str, Any]:
    """Settings fill what the spec left open (the spec is the more specific of the two)."""
    for n in names:
        if n not in opts and getattr(settings, n, None) is not None:
            opts[n] = getattr(settings, n)
    return opts


def resolve_spec(spec: str | None = None) -> str:
    """The spec a model is built from: ``spec``, else ``$EHR_AGENT_MODEL``, else ``embedded``."""
    return spec or AgentSettings().model


def make_model(spec: str | None = None, settings: Any = None) -> ChatModel:
    """Build the chat model a spec names; ``None`` means ``$EHR_AGENT_MODEL`` or the embedded default.

    ``settings``: a :class:`ModelSettings`, a dict, or any object with the same attribute names
    (model_name, api_key, tool_mode, timeout, retries, temperature, max_tokens, n_ctx, n_threads);
    environment variables ``EHR_AGENT_<FIELD>`` fill the rest. Raises ValueError for a malformed
    spec and :class:`ModelError` when the backend cannot be set up.
    """
    parsed = ModelSpec.parse(resolve_spec(spec))
    cfg = ModelSettings.coerce(settings)
    builder = {
        "openai": _openai,
        "transformers": _transformers,
        "embedded": _embedded,
        "llamacpp": _llamacpp,
        "scripted": _scripted,
    }[parsed.kind]
    return builder(parsed, cfg)


def _openai(spec: ModelSpec, cfg: ModelSettings) -> ChatModel:
    from ehr_agent.agent.models.openai_compat import OpenAIChatModel

    opts = _fill(_options(spec, _OPENAI_OPTS), cfg, ["tool_mode", "timeout", "retries", "temperature", "max_tokens"])
    return OpenAIChatModel(spec.target, spec.model_name or cfg.model_name, api_key=cfg.api_key, **opts)


def _transformers(spec: ModelSpec, cfg: ModelSettings) -> ChatModel:
    from ehr_agent.agent.models.hf import TransformersModel

    opts = _fill(_options(spec, _HF_OPTS), cfg, ["temperature", "max_tokens"])
    return TransformersModel(spec.target, **opts)


def _llamacpp(spec: ModelSpec, cfg: ModelSettings) -> ChatModel:
    from ehr_agent.agent.models.llamacpp import LlamaCppModel

    opts = _fill(_options(spec, _LLAMA_OPTS), cfg, ["n_ctx", "n_threads", "temperature", "max_tokens"])
    opts.pop("backend", None)
    return LlamaCppModel(spec.target, **opts)


def _embedded(spec: ModelSpec, cfg: ModelSettings) -> ChatModel:
    from ehr_agent.agent.models.llamacpp import LlamaCppModel, llama_cpp_available

    key = spec.target or spec.model_name or DEFAULT_EMBEDDED
    info = weights.resolve_key(key)
    opts = _fill(_options(spec, _LLAMA_OPTS), cfg, ["n_ctx", "n_threads", "temperature", "max_tokens"])
    asked = opts.pop("backend", None)
    backend = asked or ("llamacpp" if llama_cpp_available() else "transformers")
    try:
        path = weights.assemble(info.key)
    except weights.WeightsUnavailable as exc:
        raise ModelError(str(exc)) from exc
    name = f"embedded:{info.key}"
    if backend == "llamacpp":
        if not llama_cpp_available():
            raise ModelError("backend=llamacpp asked for, but no llama.cpp binding is installed: pip install xllamacpp")
        return LlamaCppModel(path, name=name, **opts)
    if backend != "transformers":
        raise ValueError(f"embedded: backend must be llamacpp or transformers, not {backend!r}")
    if not asked:
        log.warning(
            "no llama.cpp binding is installed; running %s through transformers' GGUF loader "
            "(dequantized to float32: slower, ~4x the memory). `pip install xllamacpp` to fix.",
            info.key,
        )
    from ehr_agent.agent.models.hf import TransformersModel

    if "engine" in opts:
        raise ValueError("embedded: engine= applies to backend=llamacpp, not transformers")
    hf_opts = {k: v for k, v in opts.items() if k in ("temperature", "top_p", "top_k", "max_tokens", "family")}
    hf_opts.setdefault("temperature", 0.0)
    return TransformersModel(path, name=name + "(transformers)", **hf_opts)


def _scripted(spec: ModelSpec, cfg: ModelSettings) -> ChatModel:
    from ehr_agent.agent.models.scripted import ScriptedModel

    if spec.target.lstrip().startswith("["):
        try:
            turns = json.loads(spec.target)
        except ValueError as exc:
            raise ValueError(f"scripted: inline turns are not a JSON list: {exc}") from exc
        if not all(isinstance(t, str) for t in turns):
            raise ValueError("scripted: inline turns must be strings")
        return ScriptedModel(turns)
    return ScriptedModel.from_file(spec.target)
