"""Model spec strings, e.g. ``openai:http://127.0.0.1:8000/v1#medgemma&tool_mode=native``.

Grammar: ``KIND[:TARGET][#FRAGMENT]``. The fragment is ``&``-separated; a part with ``=`` is an
option (``timeout=60``), a part without is the model name. ``embedded`` alone is the default model.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

# The settings a spec does not carry are the ``model`` section of the settings root.
from ehr_agent.tools.settings import ModelSettings

__all__ = ["KINDS", "ModelSettings", "ModelSpec"]

KINDS = ("openai", "transformers", "embedded", "llamacpp", "scripted")


class ModelSpec(BaseModel):
    """A parsed spec string."""

    kind: str
    target: str = ""
    model_name: str | None = None
    options: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> ModelSpec:
        """Parse ``spec``; ValueError with the grammar on anything malformed."""
        if not spec or not spec.strip():
            raise ValueError("empty model spec")
        spec = spec.strip()
        kind = spec.partition(":")[0].lower()
        # A script may contain '#' anywhere, so scripted specs have no fragment.
        main, _, fragment = (spec, "", "") if kind == "scripted" else spec.partition("#")
        kind, _, target = main.partition(":")
        kind = kind.lower()
        if kind not in KINDS:
            raise ValueError(
                f"unknown model kind {kind!r} in {spec!r}; expected one of {', '.join(KINDS)} "
                "(e.g. openai:http://127.0.0.1:8000/v1#MODEL, transformers:/path, embedded, scripted:/turns.json)"
            )
        name, options = None, {}
        for part in filter(None, fragment.split("&")):
            if "=" in part:
                key, _, value = part.partition("=")
                options[key.strip()] = value.strip()
            elif name is None:
                name = part.strip()
            else:
                raise ValueError(f"two model names in {spec!r}: {name!r} and {part!r}")
        if kind in ("openai", "transformers", "llamacpp", "scripted") and not target:
            raise ValueError(f"{kind}: needs a target, e.g. {kind}:{'http://127.0.0.1:8000/v1' if kind == 'openai' else '/path'}")
        return cls(kind=kind, target=target, model_name=name, options=options)

    def option(self, key: str, cast: type = str, default: Any = None) -> Any:
        """Option ``key`` converted with ``cast``; ValueError naming the option when it does not convert."""
        if key not in self.options:
            return default
        raw = self.options[key]
        try:
            if cast is bool:
                if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(raw)
                return raw.lower() in ("1", "true", "yes")
            return cast(raw)
        except ValueError as exc:
            raise ValueError(f"option {key}={raw!r} is not a valid {cast.__name__}") from exc
