"""A minimal read-only, in-memory :class:`~ehr_agent.tools.store.base.FHIRStore` over Synthea bundle files.

It exists so that retrieval's tests and benchmark can run on the real shared data in seconds, without
loading an embedded store first.  It supports exactly what retrieval reads: ``read``, a compartment/type
search without parameters, and ``$everything``.  ``urn:uuid:`` references are rewritten to ``Type/id``
as the embedded loader does; conditional references are kept as written.  Not a search engine.
"""

from __future__ import annotations

import bz2
import json
from collections.abc import Iterable
from pathlib import Path

from ehr_agent.tools.store.base import FHIRStore, NotFound, ParamsLike, SearchError, normalize_params
from ehr_agent.tools.store.compartment import patient_compartments


def read_bundle(path: str | Path) -> dict:
    """A bundle from ``.json`` or ``.json.bz2``."""
    p = Path(path)
    opener = bz2.open if p.suffix == ".bz2" else open
    with opener(p, "rt", encoding="utf-8") as f:
        return json.load(f)


def _rewrite(node: object, urls: dict[str, str]) -> object:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "reference" and isinstance(v, str) and v in urls:
                out[k] = urls[v]
            else:
                out[k] = _rewrite(v, urls)
        return out
    if isinstance(node, list):
        return [_rewrite(x, urls) for x in node]
    return node


class MemoryStore(FHIRStore):
    """Resources held in dicts; see the module docstring for what it supports."""

    base_url = "urn:ehr-agent:memory"

    def __init__(self, resources: Iterable[dict] = ()):
        self._by_key: dict[tuple[str, str], dict] = {}
        self._compartment: dict[str, list[tuple[str, str]]] = {}
        self.add(resources)

    @classmethod
    def from_files(cls, paths: Iterable[str | Path]) -> "MemoryStore":
        """Load bundles (``.json`` / ``.json.bz2``), rewriting ``urn:uuid`` references across all of them."""
        bundles = [read_bundle(p) for p in paths]
        urls: dict[str, str] = {}
        for b in bundles:
            for e in b.get("entry") or []:
                r = e.get("resource") or {}
                if e.get("fullUrl") and r.get("resourceType") and r.get("id"):
                    urls[e["fullUrl"]] = f"{r['resourceType']}/{r['id']}"
        resources = []
        for b in bundles:
            for e in b.get("entry") or []:
                if e.get("resource"):
                    resources.append(_rewrite(e["resource"], urls))
        return cls(resources)

    def add(self, resources: Iterable[dict]) -> None:
        """Add (or replace) resources and index their patient compartments."""
        for r in resources:
            key = (r["resourceType"], r["id"])
            new = key not in self._by_key
            self._by_key[key] = r
            if new:
                for pid in sorted(patient_compartments(r)):
                    self._compartment.setdefault(pid, []).append(key)

    def read(self, resource_type: str, resource_id: str) -> dict:
        try:
            return self._by_key[(resource_type, resource_id)]
        except KeyError:
            raise NotFound(f"{resource_type}/{resource_id} not found") from None

    def _bundle(self, resources: list[dict]) -> dict:
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(resources),
            "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
        }

    def search(self, resource_type: str | None, params: ParamsLike = None, *, compartment=None) -> dict:
        p = [(k, v) for k, v in normalize_params(params) if k not in ("_count", "_elements", "_summary")]
        if p:
            raise SearchError(f"MemoryStore supports no search parameters (got {p})")
        if compartment:
            keys = self._compartment.get(compartment[1], [])
        else:
            keys = list(self._by_key)
        out = [self._by_key[k] for k in keys if resource_type is None or k[0] == resource_type]
        return self._bundle(out)

    def next_page(self, bundle: dict) -> dict | None:
        return None

    def everything(self, patient_id: str, start: str | None = None, end: str | None = None, *, count: int | None = None) -> dict:
        self.read("Patient", patient_id)
        return self._bundle([self._by_key[k] for k in self._compartment.get(patient_id, [])])
