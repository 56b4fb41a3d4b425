"""Token counting and budgeted context packing."""

from __future__ import annotations

import pytest

from tests.conftest import ALICE
from ehr_agent.tools.retrieval.budget import TokenCounter, estimate_tokens, pack_context
from ehr_agent.tools.retrieval.errors import BudgetTooSmall, ModelUnavailable
from ehr_agent.tools.retrieval.settings import default_embedding_model


def test_estimate_is_documented_rule():
    assert estimate_tokens("") == 0
    assert estimate_tokens("Observation") == 3  # 11 letters -> 3 started groups of 4
    assert estimate_tokens("2010-09-16") == 10  # 8 digits + 2 dashes
    assert estimate_tokens("a  b\n c") == 3


def test_exact_counter_from_local_tokenizer_json_and_directory():
    model_dir = default_embedding_model()
    for path in (f"{model_dir}/tokenizer.json", model_dir):
        c = TokenCounter(path)
        assert c.exact and c.method.startswith("tokenizer:")
        n = c.count("hemoglobin a1c was 6.8 percent")
        assert 5 <= n <= 20
    with pytest.raises(ModelUnavailable):
        TokenCounter("/no/such/tokenizer.json")


def test_whole_record_when_it_fits(fixture_store):
    packed = pack_context(fixture_store, ALICE, "any question", 100_000)
    assert packed.omitted == 0 and packed.omitted_refs == []
    assert packed.tokens == packed.full_record_tokens <= 100_000
    assert packed.tokens == TokenCounter().count(packed.text)
    assert all(r.text in packed.text for r in packed.rows)
    assert "whole record" in packed.note


def test_partial_record_keeps_best_rows_in_date_order(fixture_store):
    full = pack_context(fixture_store, ALICE, "q", 100_000)
    budget = full.tokens // 3
    packed = pack_context(fixture_store, ALICE, "hemoglobin A1c results", budget)
    assert packed.tokens <= budget
    assert 0 < packed.omitted == len(packed.omitted_refs)
    assert len(packed.rows) + packed.omitted == len(full.rows)
    kept = {r.ref for r in packed.rows}
    assert not kept & set(packed.omitted_refs)
    # The rows the question asks about made it in; they come out in date order.
    a1c = [r.ref for r in full.rows if r.code == "http://loinc.org|4548-4"]
    assert set(a1c) <= kept
    dates = [r.date or "" for r in packed.rows]
    assert dates == sorted(dates)
    assert "partial record" in packed.note and "omitted" in packed.text


def test_exact_tokenizer_budget_respected(fixture_store):
    counter = TokenCounter(default_embedding_model())
    packed = pack_context(fixture_store, ALICE, "pneumonia", 700, counter=counter)
    assert packed.tokens <= 700 and packed.tokens == counter.count(packed.text)
    assert packed.counting.startswith("tokenizer:")


def test_budget_too_small(fixture_store):
    with pytest.raises(BudgetTooSmall, match="cannot hold even one row"):
        pack_context(fixture_store, ALICE, "anything", 20)


def test_small_budget_drops_manifest_before_evidence(fixture_store):
    packed = pack_context(fixture_store, ALICE, "pneumonia", 300)
    assert packed.tokens <= 300
    assert "manifest left out" in packed.text
    assert any("neumonia" in r.text for r in packed.rows)
