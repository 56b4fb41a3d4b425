"""The nodes of the agent graphs and the routing between them.

``begin`` -> ``agent`` <-> ``tools`` ... ``agent`` -> ``check`` -> (``repair`` -> ``agent``) -> ``finish``;
``limit`` ends a run that used up its steps. Every node catches what can go wrong in it and turns it
into state (``error``), so the graph never raises to its caller.

One set of nodes (:class:`AgentNodes`) serves the patient graph and the cohort graph. What differs is a
*mode* (:class:`GraphMode`): the first node (``manifest`` for a patient, ``start`` for a cohort), the
toolkit the tools run on (a :class:`tools.patient_tools.PatientSession` or a
:class:`tools.cohort_tools.CohortSession`, both :class:`tools.toolkit.Toolkit`), the check and the
repair prompt. :class:`PatientMode` is here; the cohort mode lives in :mod:`agent.cohort`.

A run's store, model, index and settings come from LangGraph's runtime context
(``runtime: Runtime[EHRContext]``, see :mod:`agent.context`), which also owns the tool sessions.

Progress is written to LangGraph's custom stream (``stream_mode="custom"``) as small dicts with a
``type``: ``token`` (model text as generated), ``model`` (one model turn done), ``tool`` (one tool call
and how many rows it returned), ``check`` (the citation verdict), ``repair``. The model's tokens and the
messages (AI turns, tool results) also reach ``stream_mode="messages"`` (see :mod:`agent.lc`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import date
from typing import Any, Protocol

from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.runtime import Runtime

from ehr_agent import prompts
from ehr_agent.agent.citations import CitationReport, attach_citations, check_answer
from ehr_agent.agent.claims import ClaimChecker
from ehr_agent.agent.configuration import AgentSettings
from ehr_agent.agent.align import align_call
from ehr_agent.agent.context import EHRContext
from ehr_agent.tools.toolkit import Toolkit
from ehr_agent.agent.lc import LangChainChat, to_chat_messages, to_lc_message, usage_of
from ehr_agent.agent.models.base import ChatMessage, ChatResult, ModelError, ToolCall
from ehr_agent.agent.schema import AnswerResult
from ehr_agent.agent.state import AgentState
from ehr_agent.agent.trajectory import trajectory_from_state
from ehr_agent.tools.facts import LookupArgs
from ehr_agent.tools.patient_tools import PatientSession
from ehr_agent.tools.store.base import StoreError

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _writer():
    try:
        return get_stream_writer()
    except Exception:  # noqa: BLE001 - outside a runnable context there is simply no stream
        return lambda _chunk: None


def _msg(role: str, content: str, **kw: Any) -> BaseMessage:
    return to_lc_message(ChatMessage(role=role, content=content, **kw))


def fresh_question(started: float) -> dict[str, Any]:
    """The per-question state every first node starts from."""
    return {"started": started, "steps": 0, "repairs": 0, "draft": "", "report": None, "tool_log": [],
            "prompt_tokens": 0, "completion_tokens": 0, "model_seconds": 0.0, "error": None, "result": None,
            "route": "agent", "manifest": "", "messages": []}


def history_messages(state: AgentState) -> list[BaseMessage]:
    """The last turns of the thread, as a user question and an assistant answer each."""
    out: list[BaseMessage] = []
    for turn in (state.get("history") or [])[-4:]:
        out.append(_msg("user", turn["question"]))
        out.append(_msg("assistant", turn["answer"]))
    return out


class GraphMode(Protocol):
    """What makes a graph a patient graph or a cohort graph; the nodes of :class:`AgentNodes` do the rest."""

    #: the graph's name and its first node's name
    name: str
    first: str
    #: tools whose results carry computed ``Answer:`` sentences (``answer_direct``)
    direct_tools: tuple[str, ...]

    def toolkit(self, ctx: EHRContext, state: AgentState) -> Toolkit:
        """The tool session of this run (cached in ``ctx.sessions``)."""
        ...

    def begin(self, state: AgentState, ctx: EHRContext) -> dict[str, Any]:
        """The first node: reset per-question state, build the prompt (or route to ``finish`` with an error)."""
        ...

    def check(self, state: AgentState, ctx: EHRContext) -> dict[str, Any]:
        """Verify the draft; route to ``finish`` or ``repair``."""
        ...

    def repair_prompt(self, state: AgentState, ctx: EHRContext) -> str:
        """The user turn that sends the check's findings back to the model."""
        ...

    def compose(self, state: AgentState, ctx: EHRContext, every_call: bool = False) -> tuple[str, CitationReport] | None:
        """An answer written from the tools' own computed sentences of this question, with its passing check;
        None when there is none or it does not pass (``answer_from_tools``). ``every_call``: None unless every
        call's sentence can be used (the direct answer must answer all the question asked)."""
        ...

    def first_call_tools(self, settings: AgentSettings) -> tuple[str, ...]:
        """Tools the constrained first turn may call."""
        ...

    def prepare_calls(self, calls: list[ToolCall], state: AgentState, ctx: EHRContext) -> list[ToolCall]:
        """The model's calls as they will run (a mode may hold their arguments to what the question says)."""
        ...


class PatientMode:
    """The patient graph: questions about one patient, scoped to their record at an as-of date."""

    name = "ehr-agent"
    first = "manifest"
    direct_tools = ("lookup",)

    def session(self, ctx: EHRContext, patient_id: str, as_of: str) -> PatientSession:
        """The tool session for a patient at an as-of date, on this run's store, at its current data version."""
        store, s, index = ctx.store, ctx.agent_settings, ctx.index
        version = store.data_version() if store is not None else ""
        key = ("patient", id(store), id(index), patient_id, as_of, version, s.max_rows, s.max_tool_chars,
               s.manifest_top)
        return ctx.sessions.get(key, store, lambda: PatientSession(
            store, patient_id, as_of, index, max_rows=s.max_rows, max_chars=s.max_tool_chars,
            manifest_top=s.manifest_top))

    def toolkit(self, ctx: EHRContext, state: AgentState) -> PatientSession:
        return self.session(ctx, state["patient_id"], state["resolved_as_of"])

    def first_call_tools(self, settings: AgentSettings) -> tuple[str, ...]:
        return tuple(settings.first_call_tools)

    def _question_names(self, call: dict[str, Any], state: AgentState, ctx: EHRContext) -> bool:
        """``lookup``'s resolved concept is one the question names firmly (PatientSession.question_names)."""
        if call.get("name") != "lookup":
            return False
        try:
            args = LookupArgs.model_validate(call.get("arguments") or {})
        except ValueError:
            return False
        return self.toolkit(ctx, state).question_names(args, state.get("question") or "")

    def prepare_calls(self, calls: list[ToolCall], state: AgentState, ctx: EHRContext) -> list[ToolCall]:
        """``lookup`` calls held to what the question states (:func:`~ehr_agent.agent.align.align_call`)."""
        question = state.get("question") or ""
        if not any(c.name == "lookup" for c in calls):
            return calls
        session = self.toolkit(ctx, state)
        written = session.concept_written_in(question)
        return [c.model_copy(update={"arguments": align_call(c.name, c.arguments, question, session.names_something,
                                                             written.display if written else None)})
                if c.name == "lookup" and isinstance(c.arguments, dict) else c for c in calls]

    def begin(self, state: AgentState, ctx: EHRContext) -> dict[str, Any]:
        """Start a question: resolve as-of, check the patient exists, put the record overview in the prompt."""
        settings = ctx.agent_settings
        pid = str(state.get("patient_id") or ctx.patient_id or "").strip()
        question = str(state.get("question") or "").strip()
        fresh = fresh_question(time.perf_counter())
        if state.get("evidence_patient") != pid:
            # Evidence carries over to follow-ups in a thread, but never from another patient.
            fresh.update(evidence={}, computed=[], proofs={}, evidence_patient=pid, history=[])
        if not pid or not question:
            return fresh | {"route": "finish", "error": "a patient id and a question are required",
                            "draft": "No answer: a patient id and a question are required."}
        if ctx.patient_id and pid != ctx.patient_id:
            # A graph set up for one patient never answers about another, whatever the input says.
            return fresh | {"route": "finish", "error": f"this graph answers about patient {ctx.patient_id} only",
                            "draft": f"No answer: this graph answers about patient {ctx.patient_id} only."}
        fresh["patient_id"] = pid
        as_of = state.get("as_of") or ctx.as_of
        if as_of and not _DATE.match(str(as_of)):
            return fresh | {"route": "finish", "error": f"invalid as_of {as_of!r}",
                            "draft": f"No answer: the as-of date {as_of!r} is not YYYY-MM-DD."}
        try:
            probe = self.session(ctx, pid, str(as_of or date.today().isoformat()))
            if not probe.exists():
                return fresh | {"route": "finish", "error": "unknown patient",
                                "draft": prompts.render("agent_unknown_patient", patient_id=pid)}
            if not as_of:
                as_of = date.today().isoformat()
                if settings.as_of_policy == "last_record":
                    as_of = probe.last_record_date() or as_of
            session = self.session(ctx, pid, str(as_of))
            manifest = session.manifest()
            patient_row = session.row(session.patient())
        except StoreError as e:
            return fresh | {"route": "finish", "error": f"record store failed: {e.message}",
                            "draft": f"No answer: the record store failed ({e.message})."}
        if len(manifest) > settings.max_tool_chars:
            manifest = manifest[: settings.max_tool_chars].rsplit("\n", 1)[0] + "\n..."
        # The system prompt is the same for every question and patient, so a backend that keeps its KV cache
        # (llama.cpp) or a server with prefix caching (vLLM) reuses it: the patient and date come after it.
        messages: list[BaseMessage] = [_msg("system", prompts.render("agent_system")), *history_messages(state)]
        # The Patient line opens the question, so the model may cite it (birth date, sex) like a tool result.
        evidence = dict(fresh.get("evidence", state.get("evidence")) or {})
        evidence[patient_row.ref] = patient_row.text
        log: list[dict[str, Any]] = []
        related = ""
        if settings.prefetch_k:
            # Optional: rows a search of the record finds for the question, put in the first prompt.
            t0 = time.perf_counter()
            args = {"query": question, "k": settings.prefetch_k}
            pre = session.call("search_record", args)
            evidence.update(pre.evidence)
            related = "\n".join(pre.evidence.values())
            entry = {"name": "search_record", "arguments": args, "rows": len(pre.evidence), "refused": pre.refused,
                     "error": pre.error, "seconds": round(time.perf_counter() - t0, 4), "prefetch": True}
            log.append(entry)
            _writer()({"type": "tool", **entry, "preview": pre.text.split("\n", 1)[0][:160]})
        prompt = prompts.render("agent_question_rows" if related else "agent_question", manifest=manifest,
                                question=question, rows=related, patient=patient_row.text, as_of=as_of)
        messages.append(_msg("user", prompt))
        return fresh | {"resolved_as_of": str(as_of), "manifest": manifest, "messages": messages,
                        "evidence": evidence, "tool_log": log}

    def check(self, state: AgentState, ctx: EHRContext) -> dict[str, Any]:
        """Verify the draft's citations (and claims) by code."""
        settings = ctx.agent_settings
        evidence = state.get("evidence") or {}

        def run_check(text: str) -> CitationReport:
            return self.verdict(text, state, ctx)

        draft = cite_counts(state.get("draft") or "", state.get("proofs") or {})
        report = run_check(draft)
        auto: list[str] = []
        if not report.verified and settings.auto_cite:
            patched, auto = attach_citations(draft, report)
            if auto:
                retry = run_check(patched)
                if len(retry.unsupported) < len(report.unsupported):
                    draft, report = patched, retry
                else:
                    auto = []
        composed = False
        if not report.verified:
            # lookup printed its computed answer as sentences with their citations; when the model's own
            # sentence fails (a give-up over a count that ran, a wrong reading), those sentences are checked
            # in its place, by the same citation and claim checks, instead of spending a repair turn.
            found = self.compose(state, ctx)
            if found:
                (draft, report), composed = found, True
        _writer()({"type": "check", "verified": report.verified, "citations": report.citations,
                   "unsupported": report.unsupported, "auto_cited": auto, "composed": composed})
        repairs = int(state.get("repairs") or 0)
        route_to = "finish" if report.verified or repairs >= settings.max_repairs else "repair"
        out: dict[str, Any] = {"report": report.model_dump(), "route": route_to, "draft": draft}
        if report.claim_evidence:
            # Rows that contradict a claim become evidence, so the repaired answer can cite them.
            out["evidence"] = {**evidence, **report.claim_evidence}
        return out

    def compose(self, state: AgentState, ctx: EHRContext, every_call: bool = False) -> tuple[str, CitationReport] | None:
        """lookup's ``Answer:`` sentences of this question, if they pass the citation and claim checks."""
        if not ctx.agent_settings.answer_from_tools:
            return None
        calls = [e for e in state.get("tool_log") or [] if not e.get("prefetch")]
        named = [self._question_names(e, state, ctx) for e in calls]
        if every_call and not all(named):
            return None
        # Only the sentences of calls whose concept the question names: a sentence about what the model's
        # words happened to match ("low" -> LDL) answers another question, however true it is.
        lines = lookup_answers(state.get("messages") or [],
                               keep=lambda i: i < len(named) and named[i])
        if not lines:
            return None
        text = " ".join(lines)
        report = self.verdict(text, state, ctx)
        return (text, report) if report.verified else None

    def verdict(self, text: str, state: AgentState, ctx: EHRContext) -> CitationReport:
        """The citation and claim checks of ``text`` against this question's evidence (one place for the
        model's draft, its auto-cited version and the tools' own sentences)."""
        session = self.toolkit(ctx, state)
        question = state.get("question") or ""
        checker = ClaimChecker(session, question) if ctx.agent_settings.check_claims else None
        return check_answer(text, state.get("evidence") or {}, belongs=session.belongs,
                            computed=state.get("computed") or [], question=question,
                            as_of=state.get("resolved_as_of"), claims=checker)

    def repair_prompt(self, state: AgentState, ctx: EHRContext) -> str:
        report = CitationReport.model_validate(state["report"])
        evidence = state.get("evidence") or {}
        lines = list(evidence.values())[-ctx.agent_settings.evidence_in_answer_prompt:]
        return prompts.render("agent_repair", problems="\n".join(f"- {p}" for p in report.problems()),
                              evidence="\n".join(lines) or "(none)")


_ANSWER_LINE = re.compile(r"^Answer: (.+)$", re.M)
_NOTE_CITED = re.compile(r"\[(?:DiagnosticReport|DocumentReference)/[^\]#]+\]")


def lookup_answers(messages: list, keep: Callable[[int], bool] = lambda i: True) -> list[str]:
    """The ``Answer:`` sentences of this question's ``lookup`` results, in order, each once; ``keep(i)`` says
    whether the i-th tool result of the question (any tool, counted from 0) is used."""
    out: list[str] = []
    tool_results = [m for m in messages if getattr(m, "type", "") == "tool"]
    for i, m in enumerate(tool_results):
        if getattr(m, "name", "") == "lookup" and keep(i):
            for line in _ANSWER_LINE.findall(str(m.content)):
                line = line.strip()
                line = line if line.endswith(".") else line + "."
                if line not in out:
                    out.append(line)
    return out


class AgentNodes:
    """The nodes of a graph, for one :class:`GraphMode`.

    ``default`` is the context of runs that bring none, and fills what a run's context leaves ``None``.
    The nodes hold no per-run state and no caches: sessions belong to the context.
    """

    def __init__(self, mode: GraphMode, default: EHRContext | None = None):
        self.mode = mode
        self.default = default or EHRContext()

    def context(self, runtime: Runtime[EHRContext] | None) -> EHRContext:
        """This run's context (the run's own, completed from the default)."""
        ctx = getattr(runtime, "context", None)
        if ctx is None:
            return self.default
        if isinstance(ctx, dict):  # a context that arrived as JSON without being coerced
            ctx = EHRContext(**ctx)
        return ctx.with_defaults(self.default)

    # ---- nodes ----------------------------------------------------------------------------------
    def begin(self, state: AgentState, runtime: Runtime[EHRContext]) -> dict[str, Any]:
        """The mode's first node, after checking the run has a store and a model."""
        ctx = self.context(runtime)
        try:
            ctx.require()
        except ValueError as e:
            return fresh_question(time.perf_counter()) | {"route": "finish", "error": str(e),
                                                          "draft": f"No answer: {e}."}
        return self.mode.begin(state, ctx)

    def agent(self, state: AgentState, config: RunnableConfig, runtime: Runtime[EHRContext]) -> dict[str, Any]:
        """One model turn: tool calls go to ``tools``, a text answer to ``check``, a failure to ``finish``."""
        ctx = self.context(runtime)
        settings = ctx.agent_settings
        steps = int(state.get("steps") or 0)
        if steps >= settings.max_steps:
            # Out of steps: a draft under repair is still returned (marked); otherwise the honest limit answer.
            return {"route": "finish" if state.get("draft") else "limit"}
        write = _writer()
        session = self.mode.toolkit(ctx, state)
        model = ctx.model
        specs = session.tool_specs()
        extra: dict[str, Any] = {}
        if steps == 0 and settings.first_call_constrained and getattr(model, "constrained_output", False):
            # The first turn must be tool calls: a backend that can enforce a JSON schema (llama.cpp grammar,
            # vLLM guided decoding) makes a malformed call or an answer without looking impossible.
            schema = first_call_schema(specs, self.mode.first_call_tools(settings))
            if schema is not None:
                extra["constrain"] = schema
        chat = LangChainChat(chat_model=model, tools=specs, max_tokens=settings.answer_max_tokens, options=extra,
                             on_token=lambda t: write({"type": "token", "text": t}))
        try:
            turn = chat.invoke(list(state.get("messages") or []), config)
            res: ChatResult = chat.result
        except ModelError as e:
            return {"route": "finish", "error": f"model error: {e}", "steps": steps + 1}
        except Exception as e:  # noqa: BLE001 - a backend bug must not crash the graph either
            return {"route": "finish", "error": f"model error: {type(e).__name__}: {e}", "steps": steps + 1}
        usage = {
            "steps": steps + 1,
            "prompt_tokens": int(state.get("prompt_tokens") or 0) + res.prompt_tokens,
            "completion_tokens": int(state.get("completion_tokens") or 0) + res.completion_tokens,
            "model_seconds": float(state.get("model_seconds") or 0.0) + res.seconds,
        }
        write({"type": "model", "step": steps + 1, "tool_calls": [c.name for c in res.tool_calls],
               "parse_error": res.parse_error, "seconds": res.seconds})
        out = list(state.get("messages") or [])
        # The model's turn keeps the id it streamed under, so the "messages" stream shows it once.
        said = {"id": turn.id, "usage_metadata": usage_of(res)}
        if res.tool_calls:
            out.append(to_lc_message(ChatMessage(role="assistant", content=res.content, tool_calls=res.tool_calls),
                                     **said))
            return usage | {"messages": out, "route": "tools"}
        if res.parse_error:
            from ehr_agent.agent.protocol import repair_messages

            reply, fix = repair_messages(res)
            out.extend([to_lc_message(reply, **said), to_lc_message(fix)])
            return usage | {"messages": out, "route": "agent"}
        text = (res.content or "").strip()
        if not text:
            out.append(to_lc_message(ChatMessage(role="assistant", content=res.raw or ""), **said))
            out.append(_msg("user", prompts.render("agent_nudge")))
            return usage | {"messages": out, "route": "agent"}
        out.append(to_lc_message(ChatMessage(role="assistant", content=text), **said))
        return usage | {"messages": out, "draft": text, "route": "check"}

    def tools(self, state: AgentState, runtime: Runtime[EHRContext]) -> dict[str, Any]:
        """Run the tool calls of the last model turn; record what they returned as evidence."""
        ctx = self.context(runtime)
        write = _writer()
        session = self.mode.toolkit(ctx, state)
        messages = list(state.get("messages") or [])
        last = to_chat_messages(messages[-1:])[0]
        calls = self.mode.prepare_calls(list(last.tool_calls), state, ctx)
        if calls != last.tool_calls:
            # The state shows the calls as they ran.
            messages[-1] = to_lc_message(last.model_copy(update={"tool_calls": calls}), id=getattr(messages[-1], "id", None))
        evidence = dict(state.get("evidence") or {})
        computed = list(state.get("computed") or [])
        proofs = dict(state.get("proofs") or {})
        log = list(state.get("tool_log") or [])
        for call in calls:
            t0 = time.perf_counter()
            out = session.call(call.name, call.arguments)
            evidence.update(out.evidence)
            computed.extend(out.computed)
            proofs.update(out.proofs)
            messages.append(_msg("tool", out.text, tool_call_id=call.id, name=call.name))
            entry = {"name": call.name, "arguments": call.arguments, "rows": len(out.evidence),
                     "refused": out.refused, "error": out.error, "seconds": round(time.perf_counter() - t0, 4)}
            log.append(entry)
            write({"type": "tool", **entry, "preview": out.text.split("\n", 1)[0][:160]})
        return {"messages": messages, "evidence": evidence, "computed": computed, "proofs": proofs, "tool_log": log,
                "last_calls": [c.name for c in calls]}

    def check(self, state: AgentState, runtime: Runtime[EHRContext]) -> dict[str, Any]:
        """Verify the draft (the mode's check)."""
        return self.mode.check(state, self.context(runtime))

    def repair(self, state: AgentState, runtime: Runtime[EHRContext]) -> dict[str, Any]:
        """Send the check's findings back to the model for one more try."""
        ctx = self.context(runtime)
        report = CitationReport.model_validate(state["report"])
        text = self.mode.repair_prompt(state, ctx)
        _writer()({"type": "repair", "problems": report.problems()})
        messages = list(state.get("messages") or []) + [_msg("user", text)]
        return {"messages": messages, "repairs": int(state.get("repairs") or 0) + 1}

    def direct(self, state: AgentState, runtime: Runtime[EHRContext]) -> dict[str, Any]:
        """After the first tool round, answer with the tools' computed sentences when they pass the checks.

        The model has read the question, chosen the answer-shaped tool and filled its slots; what is left is
        copying the computed sentence, which code does exactly and a second model turn does slowly (about
        half of a question's time on two cores) and sometimes wrongly. Anything the checks refuse goes back
        to the model as before."""
        ctx = self.context(runtime)
        found = self.mode.compose(state, ctx, every_call=True)
        if not found:
            return {"route": "agent"}
        text, report = found
        _writer()({"type": "check", "verified": True, "citations": report.citations, "unsupported": [],
                   "auto_cited": [], "composed": True, "direct": True})
        # The answer is the thread's assistant turn, as a written one would be (chat views, the messages stream).
        messages = list(state.get("messages") or []) + [_msg("assistant", text)]
        return {"messages": messages, "draft": text, "report": report.model_dump(), "route": "finish"}

    def limit(self, state: AgentState, runtime: Runtime[EHRContext]) -> dict[str, Any]:
        """The step limit was reached: say so, with the evidence found so far."""
        ctx = self.context(runtime)
        max_steps = ctx.agent_settings.max_steps
        found = self.mode.compose(state, ctx)
        if found:
            # The model kept calling tools (often the same call again), but a tool already computed an answer
            # that passes the checks: return that rather than "could not answer".
            text, report = found
            _writer()({"type": "check", "verified": True, "citations": report.citations, "unsupported": [],
                       "auto_cited": [], "composed": True})
            return self._done(state, self._result(state, answer=text, citations=report.citations, verified=True))
        evidence = state.get("evidence") or {}
        lines = "\n".join(f"- {v}" for v in list(evidence.values())[:15]) or "- (none)"
        text = prompts.render("agent_limit", steps=max_steps, evidence=lines)
        result = self._result(state, answer=text, citations=list(evidence)[:15], verified=False,
                              error=f"step limit ({max_steps}) reached")
        return self._done(state, result)

    def finish(self, state: AgentState) -> dict[str, Any]:
        """Assemble the :class:`AnswerResult`."""
        error = state.get("error")
        if error and error.startswith("model error") and not state.get("report"):
            result = self._result(state, answer=prompts.render("agent_error", error=error), citations=[], verified=False,
                                  error=error)
            return self._done(state, result)
        if state.get("report"):
            report = CitationReport.model_validate(state["report"])
            answer = (state.get("draft") or "") if report.verified else report.marked_answer
            result = self._result(state, answer=answer, citations=report.citations, verified=report.verified,
                                  unsupported=report.unsupported, unsupported_reasons=report.unsupported_reasons,
                                  error=error)
        else:
            result = self._result(state, answer=state.get("draft") or "", citations=[], verified=False, error=error)
        return self._done(state, result)

    # ---- routing --------------------------------------------------------------------------------
    def after_tools(self, state: AgentState, runtime: Runtime[EHRContext]) -> str:
        """Routing after ``tools``: back to the model, or to ``limit`` when the steps are used up."""
        max_steps = self.context(runtime).agent_settings.max_steps
        log = state.get("tool_log") or []
        n = len(state.get("last_calls") or [])
        repeated = bool(n) and all(c in [(e["name"], e["arguments"]) for e in log[:-n]]
                                   for c in [(e["name"], e["arguments"]) for e in log[-n:]])
        # A model that only repeats calls it already made has nothing new to read: stop the loop there.
        if repeated or int(state.get("steps") or 0) >= max_steps:
            return "limit"
        settings = self.context(runtime).agent_settings
        if settings.answer_direct and settings.answer_from_tools and int(state.get("steps") or 0) == 1 and n \
                and self._round_answered(state, n):
            return "direct"  # which then checks that the question names what each call found
        return "agent"

    def _round_answered(self, state: AgentState, n: int) -> bool:
        """Whether each of the last ``n`` tool results is from an answer-shaped tool and states an answer."""
        results = [m for m in state.get("messages") or [] if getattr(m, "type", "") == "tool"][-n:]
        # An answer that only names a note ("The latest History and physical note, on ...", citing the whole
        # note) is not what a question about the note's contents asks: the model reads the note instead. What
        # a note states (lookup's statements, citing the chunk #n that says it) is.
        return len(results) == n and all(getattr(m, "name", "") in self.mode.direct_tools
                                          and _ANSWER_LINE.search(str(m.content))
                                          and not _NOTE_CITED.search(" ".join(_ANSWER_LINE.findall(str(m.content))))
                                          for m in results)

    # ---- helpers --------------------------------------------------------------------------------
    def _result(self, state: AgentState, **kw: Any) -> AnswerResult:
        return AnswerResult(
            steps=int(state.get("steps") or 0),
            prompt_tokens=int(state.get("prompt_tokens") or 0),
            completion_tokens=int(state.get("completion_tokens") or 0),
            seconds=round(time.perf_counter() - float(state.get("started") or time.perf_counter()), 4),
            tool_calls=list(state.get("tool_log") or []),
            evidence_refs=list((state.get("evidence") or {}).keys()),
            computed=[str(c) for c in state.get("computed") or []],
            trajectory=trajectory_from_state(state),
            **kw,
        )

    def _done(self, state: AgentState, result: AnswerResult) -> dict[str, Any]:
        history = list(state.get("history") or [])
        if not result.error:
            history.append({"question": state.get("question") or "", "answer": result.answer})
        return {"result": result.model_dump(), "history": history, "route": "end"}


_CITED = re.compile(r"\[[A-Z][A-Za-z]+/[^\]]+\]")


def cite_counts(answer: str, proofs: dict[str, list[str]]) -> str:
    """Cite, by code, an uncited sentence that states a count a tool computed, with the records counted.

    Small models drop the dozen references of "5 visits in 2017"; the records are known, and the claim
    check recounts them, so a wrong count still fails."""
    if not proofs:
        return answer
    from ehr_agent.agent.citations import split_sentences

    for sentence in split_sentences(answer):
        if _CITED.search(sentence):
            continue
        nums = set(re.findall(r"(?<![\d.\-/])(\d+)(?![\d.\-/])", sentence))
        hit = next((n for n in nums if n in proofs and proofs[n]), None)
        if hit is None:
            continue
        body = sentence.rstrip()
        end = len(body) - len(body.rstrip(".!?"))
        refs = " ".join(f"[{r}]" for r in proofs[hit])
        answer = answer.replace(sentence, f"{body[: len(body) - end]} {refs}{body[len(body) - end:]}", 1)
    return answer


def first_call_schema(specs: list, names: tuple[str, ...], max_calls: int = 3) -> dict[str, Any] | None:
    """JSON schema of a first turn made only of tool calls: a list of 1..``max_calls`` ``{"tool", "arguments"}``
    objects, one shape per tool named in ``names`` (the text protocol's call format, so the same parser reads it)."""
    shapes = []
    for s in specs:
        if s.name not in names:
            continue
        params = dict(s.parameters)
        shapes.append({"type": "object", "properties": {"tool": {"const": s.name}, "arguments": params},
                       "required": ["tool", "arguments"]})
    if not shapes:
        return None
    item = shapes[0] if len(shapes) == 1 else {"anyOf": shapes}
    return {"type": "array", "items": item, "minItems": 1, "maxItems": max_calls}




def route(state: AgentState) -> str:
    """The next node, as chosen by the node that just ran."""
    return state.get("route") or "finish"
