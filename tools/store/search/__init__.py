"""FHIR R4 search over the embedded SQLite store.

The loader calls :func:`index_rows` for every resource it writes and inserts the rows with
:data:`INSERT_SQL` into the tables created by :data:`INDEX_DDL`; :class:`SQLiteStore` answers searches
with :func:`execute_search` and ``$everything`` with :func:`execute_everything`.  See
``docs/search.md`` for what is supported.

Modules: ``params`` (the R4 search-parameter registry), ``dates`` (FHIR dates as ranges),
``extract`` (index tables and index values), ``parse`` (search values), ``sql`` (compiling a
search to one SQL statement), ``bundle`` (running it and building the searchset Bundle), ``bench``
(latency of agent-typical searches, optionally on a store scaled to ~1M resources).
"""

from .bundle import DEFAULT_COUNT, MAX_COUNT, execute_everything, execute_search
from .extract import INDEX_DDL, INDEX_TABLES, INDEX_VERSION, INSERT_SQL, derived_rows, index_rows
from .params import SEARCH_PARAMS, known_types

__all__ = [
    "DEFAULT_COUNT",
    "INDEX_DDL",
    "INDEX_TABLES",
    "INDEX_VERSION",
    "INSERT_SQL",
    "MAX_COUNT",
    "SEARCH_PARAMS",
    "derived_rows",
    "execute_everything",
    "execute_search",
    "index_rows",
    "known_types",
]
