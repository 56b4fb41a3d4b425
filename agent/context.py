"""The runtime context of the agent graphs: what one run works with (store, model, index, settings).

LangGraph's own way of handing a graph its dependencies: the graphs are built with
``StateGraph(..., context_schema=EHRContext)``, callers pass ``graph.invoke(inp, context=EHRContext(...))``
and the nodes read it from their ``runtime: Runtime[EHRContext]`` argument. A context given to
:func:`agent.graph.build_graph` is the default of every run that brings none (the ``langgraph dev``
server cannot send Python objects), and fills the fields a run's context leaves ``None``.

The context also owns the tool sessions of its runs (:class:`SessionCache`), so their lifetime is the
context's: keep one context to reuse them across questions, drop it (or ``context.sessions.clear()``) to
free them. A session is keyed on the store's :meth:`data_version`, so data loaded into the store while a
process asks questions is seen by the next question.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from pydantic import ConfigDict
from pydantic.json_schema import SkipJsonSchema

from ehr_agent.agent.configuration import AgentSettings
from ehr_agent.agent.models.base import ChatModel
from ehr_agent.tools.record_cache import lru_get
from ehr_agent.tools.store.base import FHIRStore
from ehr_agent.tools.toolkit import Toolkit  # the one protocol; re-exported for graph callers

T = TypeVar("T")


class SessionCache:
    """The most recently used tool sessions, by whatever key the graph gives (store, patient, as-of, data
    version...). Bounded, thread-safe; a session is reused only while it still holds the same store object
    (an ``id()`` in a key may be reused after the store it named was freed)."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._items: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, store: Any, make: Callable[[], T]) -> T:
        """The session under ``key``, made with ``make()`` when absent (or when it holds another store)."""
        with self._lock:
            return lru_get(self._items, key, make, self.size, lambda s: getattr(s, "store", store) is store)

    def clear(self) -> None:
        """Forget every session (their caches go with them)."""
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class EHRContext:
    """The dependencies of one agent run.

    ``store`` (read only, never written), ``model`` (an :class:`agent.models.base.ChatModel`), ``index``
    (an optional retrieval ``HybridIndex`` for ``search_record``), ``settings`` (:class:`AgentSettings`).
    ``patient_id`` and ``as_of`` are defaults for inputs that omit them; a graph whose context names a
    patient answers about that patient only (an input naming another one is refused).
    Only the two strings appear in the JSON schema LangGraph servers publish; the objects cannot travel
    as JSON.
    """

    # Lets pydantic (LangGraph's context JSON schema) accept the fields it cannot describe; they are skipped.
    __pydantic_config__ = ConfigDict(arbitrary_types_allowed=True)

    store: Annotated[FHIRStore | None, SkipJsonSchema()] = None
    model: Annotated[ChatModel | None, SkipJsonSchema()] = None
    index: Annotated[Any, SkipJsonSchema()] = None
    settings: Annotated[AgentSettings | None, SkipJsonSchema()] = None
    patient_id: str | None = None
    as_of: str | None = None
    sessions: Annotated[SessionCache, SkipJsonSchema()] = field(default_factory=SessionCache, repr=False,
                                                                 compare=False)

    def with_defaults(self, default: EHRContext | None) -> EHRContext:
        """This context with the fields it leaves ``None`` taken from ``default`` (its own sessions kept)."""
        if default is None or default is self:
            return self
        missing = {f.name: getattr(default, f.name) for f in dataclasses.fields(self)
                   if f.name != "sessions" and getattr(self, f.name) is None and getattr(default, f.name) is not None}
        return dataclasses.replace(self, **missing) if missing else self

    @property
    def agent_settings(self) -> AgentSettings:
        """``settings``, or the defaults (with ``EHR_AGENT_*`` variables) when none were given."""
        if isinstance(self.settings, dict):  # a context sent as JSON (langgraph server) holds a plain dict
            self.settings = AgentSettings(**self.settings)
        if self.settings is None:
            self.settings = AgentSettings()
        return self.settings

    def require(self) -> tuple[FHIRStore, ChatModel]:
        """The store and model, or a clear error naming what is missing."""
        missing = [name for name in ("store", "model") if getattr(self, name) is None]
        if missing:
            raise ValueError(f"the agent context has no {' and no '.join(missing)}: pass "
                             "context=EHRContext(store=..., model=...) to invoke/stream, or to build_graph")
        return self.store, self.model  # type: ignore[return-value]


__all__ = ["EHRContext", "SessionCache", "Toolkit"]
