"""The project's prompts: Markdown files shipped as package data, read by one loader.

Every prompt is ``prompts/<name>.md`` (``agent_*``, ``cohort_*``, ``eval_*``, ``tool_protocol*``). They are
read through :mod:`importlib.resources`, so an editable checkout, a wheel and a zip import all find them.
Placeholders are ``{name}``; only the names passed are replaced, so braces elsewhere in a prompt (JSON
examples) need no escaping.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

__all__ = ["PromptMissing", "fill", "load", "names", "render"]

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


class PromptMissing(FileNotFoundError):
    """A prompt name with no file in the package."""


@lru_cache(maxsize=None)
def load(name: str) -> str:
    """The text of ``<name>.md`` exactly as shipped (cached for the process: prompts are package data)."""
    node = resources.files(__name__).joinpath(f"{name}.md")
    if not node.is_file():
        raise PromptMissing(f"prompt {name!r} is missing: no {name}.md in package {__name__}")
    return node.read_text(encoding="utf-8")


def fill(template: str, **values: object) -> str:
    """``template`` with each ``{key}`` given in ``values`` replaced; other braces stay as written."""
    if not values:
        return template
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), template)


def render(name: str, **values: object) -> str:
    """The prompt ``<name>.md``, stripped, with ``{key}`` placeholders filled from ``values``."""
    return fill(load(name).strip(), **values)


def names() -> list[str]:
    """Every prompt shipped, without the ``.md``."""
    return sorted(p.name[:-3] for p in resources.files(__name__).iterdir() if p.name.endswith(".md"))
