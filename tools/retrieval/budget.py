"""Token counting and packing a patient's evidence into a token budget.

:class:`TokenCounter` counts with the serving model's own tokenizer when a local one is configured
(a directory for ``transformers.AutoTokenizer`` or a ``tokenizer.json``), else with a documented,
deliberately conservative estimate (see :func:`estimate_tokens`).

:func:`pack_context` returns the whole projected record when it fits; otherwise the best-ranked rows
that fit, grouped under their dates in date order, with the refs it left out so the agent can page.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from pydantic import BaseModel, Field

from ehr_agent.tools.store.base import FHIRStore

from .errors import BudgetTooSmall, EmptyRecord, ModelUnavailable, RetrievalError
from .manifest import build_manifest
from .projections import Row
from .records import render_rows

_PIECE = re.compile(r"[A-Za-z]+|\d+|\S")


def estimate_tokens(text: str) -> int:
    """Upper-leaning estimate of BPE tokens without a tokenizer.

    Letters: one token per started 4 characters of a word; digits: one per digit (several current
    tokenizers split numbers digit by digit, and ids and dates are full of them); every other
    non-space character: one token.  Whitespace is free (BPE merges it into the next word).  On
    projected rows this overestimates GPT-style tokenizers (3-digit number groups) by roughly a fifth,
    which is the safe side for a context budget.
    """
    n = 0
    for piece in _PIECE.findall(text):
        c = piece[0]
        if c.isalpha():
            n += math.ceil(len(piece) / 4)
        elif c.isdigit():
            n += len(piece)
        else:
            n += 1
    return n


class TokenCounter:
    """Counts tokens with a local tokenizer (``exact=True``) or :func:`estimate_tokens`."""

    def __init__(self, tokenizer_path: str | None = None):
        self.tokenizer_path = tokenizer_path
        self._encode = None
        self.exact = False
        if tokenizer_path:
            self._encode = self._load(tokenizer_path)
            self.exact = True

    @staticmethod
    def _load(path: str):
        p = Path(path)
        if not p.exists():
            raise ModelUnavailable(f"tokenizer path {path} does not exist")
        try:
            if p.is_file():
                from tokenizers import Tokenizer

                tok = Tokenizer.from_file(str(p))
                # A tokenizer.json may carry padding/truncation settings for batching: a count needs neither.
                tok.no_padding()
                tok.no_truncation()
                return lambda text: len(tok.encode(text, add_special_tokens=False).ids)
            from transformers import AutoTokenizer

            hf = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
            hf.model_max_length = 1 << 40  # counting a whole record is not feeding a model: no length warning
            return lambda text: len(hf.encode(text, add_special_tokens=False))
        except Exception as e:  # noqa: BLE001 - any loader failure is the same problem for the user
            raise ModelUnavailable(f"cannot load tokenizer from {path}: {type(e).__name__}: {str(e)[:200]}") from None

    def count(self, text: str) -> int:
        """Tokens in ``text``."""
        if not text:
            return 0
        if self._encode is not None:
            return self._encode(text)
        return estimate_tokens(text)

    @property
    def method(self) -> str:
        """``tokenizer:<path>`` or ``estimate``."""
        return f"tokenizer:{self.tokenizer_path}" if self.exact else "estimate"


class PackedContext(BaseModel):
    """Evidence for one question, within a token budget."""

    text: str
    tokens: int
    rows: list[Row]
    omitted: int
    """Rows of the record left out."""
    omitted_refs: list[str] = Field(default_factory=list)
    note: str
    """One line saying what was packed and how to get the rest."""
    full_record_tokens: int = 0
    """Tokens the whole record would have taken (manifest + every row)."""
    counting: str = "estimate"


def _line_tokens(counter: TokenCounter, rows: list[Row]) -> list[int]:
    # +1 for the newline joining rows; date headings are charged separately below.
    return [counter.count(r.text) + 1 for r in rows]


def pack_context(
    store: FHIRStore,
    patient_id: str,
    question: str,
    budget: int | None = None,
    *,
    counter: TokenCounter | None = None,
    index=None,
    settings=None,
) -> PackedContext:
    """Pack a patient's evidence for ``question`` into ``budget`` tokens.

    The text is the patient manifest followed by rows grouped under ``## DATE`` headings.  When the
    whole record fits it is returned entire (``omitted == 0``).  Otherwise rows are taken in the order
    ``index.search`` ranks them (a :class:`~ehr_agent.tools.retrieval.index.HybridIndex`; without one, an
    in-memory lexical ranking of this patient's rows) until the budget is full, then shown in date order.
    Raises :class:`NotFound`, :class:`EmptyRecord` or :class:`BudgetTooSmall`.
    """
    from .index import HybridIndex
    from .settings import RetrievalSettings

    settings = settings or (index.settings if index is not None else RetrievalSettings())
    counter = counter or TokenCounter(settings.tokenizer_path)
    budget = settings.default_budget if budget is None else int(budget)
    if index is not None:
        rec = index.record(patient_id)
    else:
        from .records import patient_record

        rec = patient_record(store, patient_id, include_financial=settings.include_financial)
    rows = rec.rows
    if not any(r.type != "Patient" for r in rows):
        raise EmptyRecord(f"Patient/{patient_id} has no clinical resources to pack")
    manifest = build_manifest(store, patient_id, record=rec).render()
    full_text = manifest + "\n\n" + render_rows(rows)
    full_tokens = counter.count(full_text)
    if full_tokens <= budget:
        return PackedContext(
            text=full_text, tokens=full_tokens, rows=rows, omitted=0, omitted_refs=[],
            note=f"whole record: {len(rows)} rows, {full_tokens} tokens (budget {budget})",
            full_record_tokens=full_tokens, counting=counter.method,
        )

    if index is None:
        # Rank without a persistent index: a throw-away lexical index of this patient's rows only.
        from .lexical import LexicalIndex

        lex = LexicalIndex(":memory:")
        lex.apply(patient_id, rows, [])
        ranked = [ref for ref, _ in lex.search(patient_id, question, limit=len(rows))]
        lex.close()
    else:
        if not isinstance(index, HybridIndex):
            raise RetrievalError("index must be a HybridIndex")
        mode = "hybrid" if index.use_dense else "lexical"
        ranked = [h.ref for h in index.search(patient_id, question, k=min(len(rows), 500), mode=mode)]
    ranked_set = set(ranked)
    # Rows the ranker did not reach follow in recency order: recent care is the usual default need.
    rest = [r.ref for r in sorted(rows, key=lambda r: r.date or "", reverse=True) if r.ref not in ranked_set]
    # The manifest already names the patient, so the Patient row competes like any other row.
    order = ranked + rest

    # A budget too small for the manifest still gets evidence, under a one-line header instead.
    for header in (manifest, f"Patient/{patient_id} (manifest left out: budget too small)"):
        packed = _fill(rows, order, header, budget, counter)
        if packed is not None:
            text, tokens, chosen, omitted_refs, note = packed
            break
    else:
        raise BudgetTooSmall(f"budget of {budget} tokens cannot hold even one row of evidence and its header")
    return PackedContext(
        text=text, tokens=tokens, rows=chosen, omitted=len(omitted_refs), omitted_refs=omitted_refs,
        note=note, full_record_tokens=full_tokens, counting=counter.method,
    )


def _fill(rows: list[Row], order: list[str], header: str, budget: int, counter: TokenCounter):
    """Greedy fill in rank order under ``header``; ``None`` when not one clinical row fits."""
    by_ref = {r.ref: r for r in rows}
    note_reserve = 64  # the "partial record" line added below
    used = counter.count(header) + 2 + note_reserve
    chosen: list[Row] = []  # in rank order, so trimming drops the weakest first
    dates: set = set()
    for ref in order:
        r = by_ref[ref]
        cost = counter.count(r.text) + 1
        if r.date not in dates:
            cost += counter.count(f"## {r.date or 'undated'}") + 1
        if used + cost > budget:
            continue  # a shorter row further down may still fit
        chosen.append(r)
        dates.add(r.date)
        used += cost

    def assemble(picked: list[Row]) -> tuple[str, list[Row], list[str], str]:
        refs = {r.ref for r in picked}
        in_date_order = [r for r in rows if r.ref in refs]
        omitted = [r.ref for r in rows if r.ref not in refs]
        note = (
            f"partial record: {len(in_date_order)} of {len(rows)} rows ({len(omitted)} omitted; the rows ranked best "
            "for the question were kept); retrieve more with a narrower query, a type filter or a date range"
        )
        return header + "\n" + note + "\n\n" + render_rows(in_date_order), in_date_order, omitted, note

    text, picked, omitted_refs, note = assemble(chosen)
    tokens = counter.count(text)
    # Exact tokenizers are not additive across joins: trim the weakest rows until the whole text fits.
    while tokens > budget and chosen:
        chosen.pop()
        text, picked, omitted_refs, note = assemble(chosen)
        tokens = counter.count(text)
    if tokens > budget or not any(r.type != "Patient" for r in picked):
        return None
    return text, tokens, picked, omitted_refs, note
