"""What reading one patient's record costs, paid once: a cache of raw reads owned by an object.

Evaluation and notebooks ask many questions about the same patient, each in a fresh tool session;
reading a long record (``$everything``, the manifest) costs far more than the rest of a question. A
:class:`RecordCache` keeps those reads for a few patients per store. Whoever creates one decides how
long it lives (a runtime context, a server, a test); sessions given none share
:data:`DEFAULT_RECORD_CACHE`.

Entries are keyed by the store object (weakly: a dropped store takes its entries with it), the patient
and :meth:`FHIRStore.data_version`, so data loaded into the store while a process keeps asking
questions is read afresh at the next call, with nothing to clear by hand. A store that cannot tell its
version (``""``, e.g. a FHIR server) is cached until :meth:`RecordCache.clear`.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from ehr_agent.tools.retrieval.lexical import LexicalIndex
from ehr_agent.tools.retrieval.projections import Row
from ehr_agent.tools.store.base import FHIRStore


class PatientRecord:
    """One patient's raw reads and what is derived from them alone (at one data version of one store).

    Nothing here depends on a session's as-of date, so sessions at different dates share it. Filled lazily
    by the session and the scope policy that use it.
    """

    def __init__(self) -> None:
        self.everything: list[dict] | None = None
        #: every reference the patient's own resources make (which shared resources the patient may read)
        self.refs: set[str] | None = None
        self.by_type: dict[str, list[dict]] = {}
        self.manifest: dict[int, str] = {}
        self.rows: dict[str, Row] = {}
        self.words: dict[str, set[str]] = {}
        self.allowed: dict[str, bool] = {}
        #: thread id -> in-memory BM25 index of the record and its rows (SQLite connections stay in one thread)
        self.bm25: dict[int, tuple[LexicalIndex, dict[str, Row]]] = {}


class _StoreRecords:
    """The records of one store at one data version, least recently used first."""

    __slots__ = ("version", "patients")

    def __init__(self, version: str) -> None:
        self.version = version
        self.patients: OrderedDict[str, PatientRecord] = OrderedDict()


def data_version_of(store: Any) -> str:
    """``store.data_version()``, or ``""`` (cannot tell) for a store object that does not offer it."""
    fn = getattr(store, "data_version", None)
    return fn() if callable(fn) else ""


T = TypeVar("T")


def lru_get(items: "OrderedDict[Any, T]", key: Any, make: Callable[[], T], size: int,
            fresh: Callable[[T], bool] = lambda _v: True) -> T:
    """``items[key]`` as the most recently used entry, made with ``make()`` when absent (or when ``fresh(value)``
    says it no longer serves), the oldest entries dropped beyond ``size``. The caller holds the lock."""
    value = items.get(key)
    if value is None or not fresh(value):
        value = items[key] = make()
        while len(items) > size:
            items.popitem(last=False)
    else:
        items.move_to_end(key)
    return value


class RecordCache:
    """Raw record reads of the last ``max_patients`` patients per store, at the store's current data version.

    Thread-safe. A new data version of a store drops every record of that store (they are all stale).
    """

    def __init__(self, max_patients: int = 4) -> None:
        self.max_patients = max_patients
        self._stores: weakref.WeakKeyDictionary[Any, _StoreRecords] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def record(self, store: FHIRStore, patient_id: str, version: str | None = None) -> PatientRecord:
        """The cached record of ``patient_id`` in ``store`` at ``version`` (default: the store's current one);
        a fresh, empty record when there is none yet, or when the store cannot be weakly referenced."""
        version = data_version_of(store) if version is None else version
        with self._lock:
            try:
                held = self._stores.get(store)
            except TypeError:  # a store that cannot be weakly referenced simply is not cached
                return PatientRecord()
            if held is None or held.version != version:
                held = self._stores[store] = _StoreRecords(version)
            return lru_get(held.patients, patient_id, PatientRecord, self.max_patients)

    def clear(self, store: FHIRStore | None = None) -> None:
        """Forget the records of one store, or of all (a store whose data version is ``""`` needs it after a load)."""
        with self._lock:
            if store is None:
                self._stores.clear()
            else:
                self._stores.pop(store, None)

    def __len__(self) -> int:
        """How many patient records are held, over all stores."""
        with self._lock:
            return sum(len(h.patients) for h in self._stores.values())


#: The cache of sessions that are given none: process-wide, invalidated by each store's data version.
DEFAULT_RECORD_CACHE = RecordCache()
