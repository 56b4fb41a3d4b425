"""The scope policy: what a session scoped to one patient may read. Every patient tool applies it.

The rule: a resource may be read if it is in the patient's compartment (the FHIR Patient compartment,
:mod:`tools.store.compartment`), or if it is a shared resource (Practitioner, Organization, Medication...)
that one of the patient's own resources references. Everything else, another patient's data above all,
is refused, whatever ids or search parameters the model passes:

* a read checks the resource it got against the rule;
* a FHIR search must name a compartment type, may not use the parameters that would widen it to other
  patients or change paging (:data:`FORBIDDEN_PARAMS`), runs as a compartment search, and every result is
  checked again (a store that ignored the compartment still leaks nothing);
* retrieval hits are checked by reference before they are shown.
"""

from __future__ import annotations

from typing import Any

from ehr_agent.tools.record_cache import PatientRecord
from ehr_agent.tools.store.base import FHIRStore, Params, StoreError
from ehr_agent.tools.store.compartment import PATIENT_COMPARTMENT, SHARED_TYPES, patient_compartments

#: Search parameters a scoped search may not pass: they name a patient (the compartment does that), reach
#: other resources (``_include``, ``_has``...), or change paging and shape (the tools page with ``offset``).
FORBIDDEN_PARAMS = frozenset({"patient", "subject", "_include", "_revinclude", "_has", "_contained",
                              "_containedType", "_count", "_offset", "_summary", "_elements", "_format"})


def ref_of(resource: dict) -> str:
    """``Type/id`` of a resource."""
    return f"{resource.get('resourceType')}/{resource.get('id')}"


def collect_references(node: Any, out: set[str]) -> None:
    """Add every ``reference`` string found anywhere in ``node`` to ``out`` (without ``/_history/...``)."""
    if isinstance(node, dict):
        r = node.get("reference")
        if isinstance(r, str):
            out.add(r.split("/_history/")[0])
        for v in node.values():
            if isinstance(v, (dict, list)):
                collect_references(v, out)
    elif isinstance(node, list):
        for x in node:
            collect_references(x, out)


def read_everything(store: FHIRStore, patient_id: str) -> list[dict]:
    """The patient's whole compartment (``$everything``, every page)."""
    # Large pages where the store allows it: the embedded store's default page is small.
    try:
        first = store.everything(patient_id, count=1000)  # type: ignore[call-arg]
    except TypeError:
        first = store.everything(patient_id)
    return [e["resource"] for page in store.pages(first) for e in page.get("entry", [])]


def search_refusal(resource_type: str, params: Params) -> str | None:
    """Why a scoped FHIR search of ``resource_type`` with ``params`` is not allowed, or ``None`` if it is."""
    if resource_type in SHARED_TYPES:
        return (f"error: {resource_type} is shared, not part of one record; read the {resource_type} a record "
                f"references with read_resource.")
    if resource_type not in PATIENT_COMPARTMENT:
        return (f"error: unknown or unsupported resource type '{resource_type}'. Use one of: "
                + ", ".join(sorted(PATIENT_COMPARTMENT)) + ".")
    bad = sorted({k for k, _ in params if k.split(":")[0].split(".")[0] in FORBIDDEN_PARAMS})
    if bad:
        return (f"error: parameter(s) {', '.join(bad)} not allowed here (the search is already "
                f"limited to this patient; paging uses offset).")
    return None


class PatientScope:
    """The policy applied to one patient's record at one data version (decisions are kept in ``record``)."""

    def __init__(self, store: FHIRStore, patient_id: str, record: PatientRecord):
        self.store = store
        self.patient_id = patient_id
        self.record = record

    @property
    def compartment(self) -> tuple[str, str]:
        """The compartment every search of this session runs in."""
        return ("Patient", self.patient_id)

    def everything(self) -> list[dict]:
        """The whole compartment (read once per record)."""
        if self.record.everything is None:
            self.record.everything = read_everything(self.store, self.patient_id)
        return self.record.everything

    def compartment_refs(self) -> set[str]:
        """Every reference made by this patient's own resources: a shared resource is readable only if in here."""
        if self.record.refs is None:
            refs: set[str] = set()
            for r in self.everything():
                if self.patient_id in patient_compartments(r):
                    collect_references(r, refs)
            self.record.refs = refs
        return self.record.refs

    def allowed(self, resource: dict) -> bool:
        """True if ``resource`` is in this patient's compartment, or a shared resource this patient's data references."""
        key = ref_of(resource)
        ok = self.record.allowed.get(key)
        if ok is None:
            if self.patient_id in patient_compartments(resource):
                ok = True
            elif resource.get("resourceType") in SHARED_TYPES:
                ok = key in self.compartment_refs()
            else:
                ok = False
            self.record.allowed[key] = ok
        return ok

    def belongs(self, ref: str) -> bool:
        """Whether ``Type/id`` (or ``Type/id#n``) names a resource this patient's session may read (False if it
        does not exist or the store fails)."""
        rtype, _, rid = ref.split("#")[0].partition("/")
        try:
            return self.allowed(self.store.read(rtype, rid))
        except StoreError:
            return False
