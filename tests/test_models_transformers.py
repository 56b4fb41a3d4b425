"""The transformers backend on a tiny random checkpoint built here (byte-level BPE tokenizer with a
chat template, 2-layer Llama): loading from a local directory, chat template, generate, streaming,
token counting, stop at "Tool result", and Gemma's template rules (a template that rejects the
system role, as Gemma's does). The replies are random text; what is checked is the plumbing."""

from __future__ import annotations

from pathlib import Path

import pytest

from ehr_agent.agent.models import make_model
from ehr_agent.agent.models.base import ChatMessage, ModelError, ToolSpec
from ehr_agent.agent.models.hf import TransformersModel

TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
GEMMA_LIKE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def _tiny_checkpoint(path: Path, template: str) -> Path:
    torch = pytest.importorskip("torch")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["The patient has hypertension. Tool result for search_notes."] * 20, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")
    fast.chat_template = template
    fast.save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                         eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_checkpoint(tmp_path_factory.mktemp("tiny-llama"), TEMPLATE)


def test_generate_stream_and_count(tiny: Path) -> None:
    model = make_model(f"transformers:{tiny}#&device=cpu&max_tokens=12&temperature=0")
    assert isinstance(model, TransformersModel) and not model.gemma
    pieces: list[str] = []
    msgs = [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="The patient?")]
    result = model.chat(msgs, on_token=pieces.append)
    assert 1 <= result.completion_tokens <= 12 and result.prompt_tokens > 5
    assert "".join(pieces).strip() == result.raw.strip()
    again = model.chat(msgs)  # greedy: the same reply
    assert again.raw == result.raw
    assert model.count_tokens("hypertension") == len(model.load()[1].encode("hypertension", add_special_tokens=False))
    assert model.sampling() == {"temperature": 0.0}
    # with tools: the tools section reaches the prompt, generation stops at "Tool result", and the
    # random reply comes back as a result (never an exception)
    tool = ToolSpec(name="search_notes", description="Search notes.",
                    parameters={"type": "object", "properties": {"query": {"type": "string"}}})
    with_tools = model.chat(msgs, [tool])
    assert with_tools.prompt_tokens > result.prompt_tokens + 50
    assert "Tool result" not in with_tools.raw and with_tools.completion_tokens <= 12


def test_gemma_rules_satisfy_a_strict_template(tmp_path: Path) -> None:
    path = _tiny_checkpoint(tmp_path / "tiny-gemma", GEMMA_LIKE)
    model = TransformersModel(path, device="cpu", max_tokens=4, temperature=0.0)
    assert model.gemma
    msgs = [ChatMessage(role="system", content="S"), ChatMessage(role="user", content="a"),
            ChatMessage(role="user", content="b")]
    assert model.chat(msgs).completion_tokens >= 1  # system merged, users merged: the template accepts it
    # the same conversation unshaped is what Gemma's template rejects
    model.gemma = False
    with pytest.raises(ModelError, match="System role not supported"):
        model.chat(msgs)
    # Gemma sampling defaults apply when sampling is not overridden
    assert TransformersModel(path, device="cpu").sampling() == {"temperature": 1.0, "top_p": 0.95, "top_k": 64}


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model path not found"):
        make_model(f"transformers:{tmp_path / 'nope'}")
