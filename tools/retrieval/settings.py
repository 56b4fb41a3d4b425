"""Retrieval settings: embedding model, vector store location, ranking and budget constants.

:class:`RetrievalSettings` is the ``retrieval`` section of the one settings root
(``ehr_agent.tools.settings``, every variable in ``docs/settings.md``): every field can be set as
``EHR_AGENT_<FIELD>`` (e.g. ``EHR_AGENT_CHROMA_URL=http://localhost:8000``) or
``EHR_AGENT_RETRIEVAL__<FIELD>``, and ``RetrievalSettings()`` reads them.
"""

from __future__ import annotations

from ehr_agent.tools.settings import RetrievalSettings, default_embedding_model, default_index_cache_dir

__all__ = ["RetrievalSettings", "default_embedding_model", "default_index_cache_dir"]
