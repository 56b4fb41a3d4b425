"""Message shaping for model families with strict chat templates (Gemma 3 / MedGemma).

Gemma's chat template has no system role (the system text belongs at the top of the first user
turn), raises unless user and assistant turns alternate starting with the user, and MedGemma may
emit thinking spans ``<unused94>…<unused95>`` that must not reach the answer or the history.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ehr_agent.agent.models.base import ChatMessage
from ehr_agent.agent.protocol import merge_consecutive, strip_thinking

__all__ = ["SamplingDefaults", "GEMMA_SAMPLING", "is_gemma", "shape_for_gemma", "strip_thinking"]


class SamplingDefaults(BaseModel):
    """Sampling a family's authors recommend (sent unless the user overrides it)."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None

    def merged(self, **overrides: Any) -> dict[str, Any]:
        """Defaults with the non-None ``overrides`` applied, without None entries."""
        values = self.model_dump()
        values.update({k: v for k, v in overrides.items() if v is not None})
        return {k: v for k, v in values.items() if v is not None}


#: From the ``generation_config.json`` Google ships with Gemma 3 and MedGemma checkpoints
#: (``do_sample: true, top_k: 64, top_p: 0.95``; temperature left at transformers' default 1.0),
#: matching the Gemma 3 model card's recommended inference settings. A local checkpoint's own
#: generation_config wins (see :mod:`agent.models.hf`).
GEMMA_SAMPLING = SamplingDefaults(temperature=1.0, top_p=0.95, top_k=64)


def is_gemma(name: str | None, family: str | None = None) -> bool:
    """Whether a model name (or an explicit ``family`` setting) means the Gemma rules apply."""
    if family:
        return family.lower() in ("gemma", "gemma3", "medgemma")
    return bool(name) and "gemma" in name.lower()


def shape_for_gemma(messages: list[ChatMessage], *, keep_tool_role: bool = False) -> list[ChatMessage]:
    """Rewrite messages so Gemma's template accepts them.

    - system messages are merged into the first user turn (a user turn is created if none comes
      before the first assistant turn);
    - thinking spans are stripped from assistant history;
    - consecutive same-role turns are merged so roles alternate user/assistant;
    - ``tool`` messages are kept only when ``keep_tool_role`` (native tool calling, where the
      server's tool template renders them); in text mode they must already be user turns
      (:func:`agent.protocol.to_text_protocol`).
    """
    system = "\n\n".join(m.content.strip() for m in messages if m.role == "system" and m.content.strip())
    rest: list[ChatMessage] = []
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "tool" and not keep_tool_role:
            raise ValueError("tool messages must be turned into user turns first (text protocol)")
        if m.role == "assistant":
            m = m.model_copy(update={"content": strip_thinking(m.content).strip()})
        rest.append(m)
    if system:
        if rest and rest[0].role == "user":
            rest[0] = rest[0].model_copy(update={"content": f"{system}\n\n{rest[0].content}".rstrip()})
        else:
            rest.insert(0, ChatMessage(role="user", content=system))
    if not rest or rest[0].role != "user":
        # Gemma's template demands a user turn first; an empty one is the least invasive fix.
        rest.insert(0, ChatMessage(role="user", content=""))
    return merge_consecutive(rest)
