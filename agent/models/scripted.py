"""A deterministic model for tests and demos: it plays back a script of replies.

Each turn is a string in our text protocol (parsed exactly as a real model's reply would be), a
ready :class:`ChatResult`, or a callable ``(messages) -> str | ChatResult`` for replies that depend
on what the agent sent. Every call is recorded, so tests can assert what the model was shown.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Union

from ehr_agent.agent.models.base import ChatMessage, ChatModel, ChatResult, ModelError, TokenCallback, ToolSpec
from ehr_agent.agent.protocol import result_from_text

Turn = Union[str, ChatResult, Callable[[list[ChatMessage]], Union[str, ChatResult]]]


class ScriptedModel(ChatModel):
    """Returns ``turns`` in order; raises :class:`ModelError` when the script runs out.

    ``calls`` holds (messages, tools) for every call made.
    """

    def __init__(self, turns: Sequence[Turn], *, name: str = "scripted") -> None:
        self.turns = list(turns)
        self.name = name
        self.calls: list[tuple[list[ChatMessage], list[ToolSpec] | None]] = []
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: str | Path) -> ScriptedModel:
        """A script from a JSON file holding a list of reply strings."""
        path = Path(path)
        try:
            turns = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read script {path}: {exc}") from exc
        if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
            raise ValueError(f"script {path} must be a JSON list of strings")
        return cls(turns, name=f"scripted:{path.name}")

    @property
    def messages_seen(self) -> list[list[ChatMessage]]:
        """The message lists of every call, in order."""
        return [m for m, _ in self.calls]

    def chat(
        self,
        messages: list[ChatMessage],
        tools: list[ToolSpec] | None = None,
        *,
        on_token: TokenCallback | None = None,
        max_tokens: int | None = None,
    ) -> ChatResult:
        start = time.perf_counter()
        with self._lock:
            index = len(self.calls)
            self.calls.append(([m.model_copy(deep=True) for m in messages], tools))
            if index >= len(self.turns):
                raise ModelError(f"{self.name}: script exhausted ({len(self.turns)} turn(s), call {index + 1})")
            turn = self.turns[index]
        if callable(turn) and not isinstance(turn, ChatResult):
            turn = turn(messages)
        if isinstance(turn, ChatResult):
            return turn
        if not isinstance(turn, str):
            raise ModelError(f"{self.name}: turn {index + 1} is {type(turn).__name__}, not str/ChatResult")
        if on_token is not None:
            for piece in re.findall(r"\s*\S+\s*?(?=\s|$)|\s+$", turn):
                on_token(piece)
        prompt = sum(self.count_tokens(m.content) for m in messages)
        return result_from_text(
            turn,
            tools,
            prompt_tokens=prompt,
            completion_tokens=self.count_tokens(turn),
            seconds=time.perf_counter() - start,
        )
