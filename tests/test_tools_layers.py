"""Layers point one way: nothing under tools/ imports agent/, the loader writes through the store's public
write interface and imports no store module, and the moved tool types are the same objects everywhere."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT
from ehr_agent.tools.store.loader import LoadTarget
from ehr_agent.tools.store.sqlite_store import SQLiteStore

TOOLS = ROOT / "tools"


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports (relative imports resolved against its package under ehr_agent.tools)."""
    tree = ast.parse(path.read_text())
    package = ["ehr_agent", "tools", *path.parent.relative_to(TOOLS).parts]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join([*base, node.module] if node.module else base)
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def test_no_tools_module_imports_the_agent():
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in imported_modules(p) if m.startswith(("ehr_agent.agent", "agent")))
                 for p in TOOLS.rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}
    assert not [p for p in TOOLS.rglob("*.py") if "ehr_agent.agent" in p.read_text()]


def test_loader_imports_no_store_implementation_and_calls_no_private_store_method():
    loader = TOOLS / "store" / "loader.py"
    mods = imported_modules(loader)
    assert not [m for m in mods if m.endswith(("sqlite_store", "rest", "server"))], mods
    private = [n.attr for n in ast.walk(ast.parse(loader.read_text()))
               if isinstance(n, ast.Attribute) and n.attr.startswith("_") and not n.attr.startswith("__")
               and isinstance(n.value, (ast.Name, ast.Attribute))
               and (getattr(n.value, "id", None) == "store" or getattr(n.value, "attr", None) == "store")]
    assert private == []
    # and the store uses only the loader's public names
    store_src = ast.parse((TOOLS / "store" / "sqlite_store.py").read_text())
    from_loader = [a.name for n in ast.walk(store_src) if isinstance(n, ast.ImportFrom) and n.module == "loader"
                   for a in n.names]
    assert from_loader and not [a for a in from_loader if a.startswith("_")]


def test_the_embedded_store_offers_the_loaders_write_interface(tmp_path):
    store = SQLiteStore(tmp_path, create=True)
    assert isinstance(store, LoadTarget)
    for name in ("resolve_conditional", "write_file", "retry_unresolved", "unresolved_references"):
        assert callable(getattr(store, name))


def test_moved_tool_types_are_one_object_each():
    from ehr_agent.agent.models import ToolSpec as from_models
    from ehr_agent.agent.models.base import ToolSpec as from_base
    from ehr_agent.tools import patient_tools, spec
    from ehr_agent.tools.cohort_tools import dispatch_tool as cohort_dispatch
    from ehr_agent.tools.dispatch import dispatch_tool

    assert from_models is from_base is spec.ToolSpec is patient_tools.ToolSpec
    assert patient_tools.ToolOutput is spec.ToolOutput and patient_tools.compact_schema is spec.compact_schema
    assert patient_tools.dispatch_tool is dispatch_tool is cohort_dispatch
