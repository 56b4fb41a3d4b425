"""Validation of incoming resources with ``fhir.resources``.

Synthea writes FHIR R4. ``fhir.resources``' default models are R5 and reject it, while its ``R4B`` models
(R4B differs from R4 only in a few medication/evidence resources Synthea does not emit) accept Synthea's
output, so the store validates against R4B.
"""

from __future__ import annotations

import re
from functools import lru_cache

from pydantic import ValidationError

from .search.dates import parse_range
from .search.params import R4_TYPES

# Resource types that exist in DSTU2 (or STU3) but not in R4: their presence means the file is not R4.
PRE_R4_TYPES = frozenset({
    "MedicationOrder", "DiagnosticOrder", "DeviceUseRequest", "ProcedureRequest", "ReferralRequest",
    "ProcessRequest", "ProcessResponse", "EligibilityRequest", "EligibilityResponse", "Order", "OrderResponse",
    "BodySite", "DeviceComponent", "DataElement", "Conformance", "ImagingObjectSelection", "Sequence",
})


class InvalidResource(ValueError):
    """A resource that ``fhir.resources`` (R4B) refuses; the message names the resource and the first errors."""


@lru_cache(maxsize=None)
def _model_class(resource_type: str):
    from fhir.resources.R4B import get_fhir_model_class

    try:
        return get_fhir_model_class(resource_type)
    except (KeyError, ValueError, AttributeError):
        return None


def check_resource_type(resource_type: object) -> None:
    """Raise :class:`InvalidResource` if ``resource_type`` is not an R4 resource type."""
    if not isinstance(resource_type, str) or not resource_type:
        raise InvalidResource("entry without a resourceType")
    if resource_type in PRE_R4_TYPES:
        raise InvalidResource(
            f"resourceType {resource_type} does not exist in FHIR R4 (this looks like a DSTU2/STU3 file)"
        )
    if resource_type in _R4_WITH_MODEL:  # most resources: no need to import fhir.resources (about 1 s)
        return
    if resource_type in R4_WITHOUT_R4B_MODEL or _model_class(resource_type) is None:
        raise InvalidResource(f"unknown resourceType {resource_type!r}")


# The R4 resource types that fhir.resources.R4B has no model for (R4B dropped them);
# tests/test_load_validation_levels.py checks this against the installed fhir.resources.
R4_WITHOUT_R4B_MODEL = frozenset({
    "EffectEvidenceSynthesis", "MedicinalProduct", "MedicinalProductAuthorization", "MedicinalProductContraindication",
    "MedicinalProductIndication", "MedicinalProductIngredient", "MedicinalProductInteraction",
    "MedicinalProductManufactured", "MedicinalProductPackaged", "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect", "RiskEvidenceSynthesis", "SubstanceNucleicAcid", "SubstancePolymer",
    "SubstanceProtein", "SubstanceReferenceInformation", "SubstanceSourceMaterial", "SubstanceSpecification",
})
_R4_WITH_MODEL = R4_TYPES - R4_WITHOUT_R4B_MODEL


def validate_resource(resource: dict) -> None:
    """Validate one resource; raise :class:`InvalidResource` with a one-line reason if it fails."""
    if not isinstance(resource, dict):
        raise InvalidResource(f"entry resource is a {type(resource).__name__}, not a JSON object")
    rtype = resource.get("resourceType")
    check_resource_type(rtype)
    try:
        _model_class(rtype).model_validate(resource)
    except ValidationError as e:
        errs = e.errors()
        parts = []
        for err in errs[:3]:
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__")
            parts.append(f"{loc or rtype}: {err.get('msg', '')}".strip())
        more = f" (+{len(errs) - 3} more)" if len(errs) > 3 else ""
        raise InvalidResource(
            f"{rtype}/{resource.get('id', '?')} does not validate as FHIR R4: {'; '.join(parts)}{more}"
        ) from None
    except (TypeError, ValueError) as e:  # fhir.resources raises these for some malformed primitives
        raise InvalidResource(f"{rtype}/{resource.get('id', '?')} does not validate as FHIR R4: {e}") from None


# --- index-level validation (the default) ---------------------------------------------------------

LEVELS = ("index", "strict")
DEFAULT_LEVEL = "index"
_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
# Every element of Coding, CodeableConcept, Identifier and ContactPoint (the objects a token reads).
_TOKEN_OBJECT_KEYS = frozenset({
    "id", "extension", "system", "version", "code", "display", "userSelected", "coding", "text", "use", "type",
    "value", "period", "assigner", "rank",
})
_CODING_FIELDS = ("system", "code", "display", "value", "version", "unit", "text", "use")


def validate_indexed(resource: dict) -> None:
    """Check what the store reads: the resource type, the id, ``meta`` and every element a search
    parameter indexes (its JSON shape for the parameter's type; dates must parse as FHIR dates). Raise
    :class:`InvalidResource` with a one-line reason.

    Why not always ``fhir.resources``: it costs about 0.26 ms a resource, more than everything else a load
    does, and it checks elements the store never reads. This check is what keeps the index (and every
    answer built on it) correct; ``validate="strict"`` (``ehr-agent load --strict``) adds the full R4
    model check. Written here because no library validates a FHIR resource partially.
    """
    if not isinstance(resource, dict):
        raise InvalidResource(f"entry resource is a {type(resource).__name__}, not a JSON object")
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        raise InvalidResource("entry without a resourceType")
    if rtype in PRE_R4_TYPES:
        raise InvalidResource(f"resourceType {rtype} does not exist in FHIR R4 (this looks like a DSTU2/STU3 file)")
    if rtype not in R4_TYPES:
        raise InvalidResource(f"unknown resourceType {rtype!r}")
    rid = resource.get("id")
    label = f"{rtype}/{rid if isinstance(rid, str) else '?'}"
    if rid is not None and not (isinstance(rid, str) and _ID_RE.match(rid)):
        raise InvalidResource(f"{label} does not validate as FHIR R4: id {rid!r} is not a FHIR id")
    meta = resource.get("meta")
    if meta is not None:
        if not isinstance(meta, dict):
            raise InvalidResource(f"{label} does not validate as FHIR R4: meta: expected an object")
        lu = meta.get("lastUpdated")
        if lu is not None and not (isinstance(lu, str) and parse_range(lu)):
            raise InvalidResource(f"{label} does not validate as FHIR R4: meta.lastUpdated: not a FHIR instant")
    for ptype, path, head in _checked_paths(rtype):
        if head is not None and head not in resource:  # most paths of a type are absent from a resource
            continue
        for value, kind in _walk(resource, path):
            problem = _shape_problem(ptype, value, kind)
            if problem:
                where = ".".join(s.name + ("[x]" if s.choice == "x" else (s.choice or "")) for s in path)
                raise InvalidResource(f"{label} does not validate as FHIR R4: {where}: {problem}")


@lru_cache(maxsize=None)
def _checked_paths(rtype: str) -> tuple:
    """(parameter type, path, first element's name or None for a choice) of every element the index reads
    for ``rtype`` (each path once)."""
    from .search.params import SEARCH_PARAMS, lookup

    names = list(SEARCH_PARAMS.get(rtype, {})) or ["_profile", "_tag", "_security", "_source"]
    out, seen = [], set()
    for name in names:
        p = lookup(rtype, name)
        if p is None or getattr(p, "alias_of", ()) or getattr(p, "special", None) in ("_id", "_lastUpdated"):
            continue
        for path in getattr(p, "paths", ()):
            if (p.type, path) not in seen:
                seen.add((p.type, path))
                out.append((p.type, path, None if path[0].choice is not None else path[0].name))
    return tuple(out)


def _walk(resource: dict, path):
    global _walk
    from .search.extract import walk

    _walk = walk  # bound once: the import machinery is not free per call
    return walk(resource, path)


def _strings(d: dict, fields=_CODING_FIELDS) -> str | None:
    for f in fields:
        v = d.get(f)
        if v is not None and not isinstance(v, str):
            return f"{f} must be a string, got {type(v).__name__}"
    return None


def _shape_problem(ptype: str | None, value: object, kind: str | None) -> str | None:
    """Why ``value`` cannot be an element a parameter of type ``ptype`` reads, or None."""
    if value is None:
        return "null is not a FHIR value"
    if ptype == "token":
        if isinstance(value, (str, bool, int, float)):
            return None
        if not isinstance(value, dict):
            return f"expected a code or a Coding/CodeableConcept/Identifier object, got {type(value).__name__}"
        unknown = sorted(set(value) - _TOKEN_OBJECT_KEYS)
        if unknown or not value:
            return (f"expected a code or a Coding/CodeableConcept/Identifier/ContactPoint object, "
                    f"got an object with {', '.join(unknown[:3]) or 'no elements'}")
        bad = _strings(value)
        if bad:
            return bad
        coding = value.get("coding")
        if coding is not None:
            if not isinstance(coding, list) or not all(isinstance(c, dict) and not _strings(c) for c in coding):
                return "coding must be a list of Coding objects with string fields"
        return None
    if ptype == "reference":
        if isinstance(value, str) and kind not in (None, "Reference"):  # a canonical or uri choice
            return None
        if not isinstance(value, dict):
            return f"expected a Reference object, got {type(value).__name__}"
        ref = value.get("reference")
        if ref is not None and not isinstance(ref, str):
            return "reference must be a string"
        return None
    if ptype == "date":
        if isinstance(value, str):
            return None if parse_range(value) else f"{value[:40]!r} is not a FHIR date/dateTime/instant"
        if isinstance(value, dict):
            for f in ("start", "end"):
                v = value.get(f)
                if v is not None and not (isinstance(v, str) and parse_range(v)):
                    return f"{f}: {str(v)[:40]!r} is not a FHIR dateTime"
            for ev in value.get("event") or []:
                if not (isinstance(ev, str) and parse_range(ev)):
                    return f"event: {str(ev)[:40]!r} is not a FHIR dateTime"
            return None
        if isinstance(value, (int, float, bool)) and kind in ("Boolean", "Integer", "Decimal"):
            return None
        return f"expected a date string or a Period, got {type(value).__name__}"
    if ptype == "string":
        if isinstance(value, str):
            return None
        if not isinstance(value, dict):
            return f"expected a string or an object, got {type(value).__name__}"
        for k, v in value.items():
            if isinstance(v, list):
                if k in ("given", "prefix", "suffix", "line") and not all(isinstance(x, str) for x in v):
                    return f"{k} must be a list of strings"
            elif k in ("family", "text", "city", "state", "country", "postalCode", "district") and not isinstance(v, str):
                return f"{k} must be a string"
        return None
    if ptype == "quantity":
        if not isinstance(value, dict):
            return None if kind not in (None, "Quantity") else f"expected a Quantity object, got {type(value).__name__}"
        v = value.get("value")
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            return "value must be a number"
        return _strings(value, ("system", "code", "unit"))
    if ptype == "uri":
        return None if isinstance(value, str) else f"expected a uri string, got {type(value).__name__}"
    if ptype == "number":
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "expected a number"
    return None


def validate_level(resource: dict, level: str) -> None:
    """Validate at ``level``: ``"index"`` (:func:`validate_indexed`) or ``"strict"`` (that, then ``fhir.resources``)."""
    validate_indexed(resource)
    if level == "strict":
        validate_resource(resource)
