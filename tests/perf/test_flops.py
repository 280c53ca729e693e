"""Training FLOPs per token against torch's own FLOP counter, on tiny models of every family gradtune
builds, trained in full, with a frozen backbone and with LoRA (and the other freezing strategies)."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertConfig, BertForSequenceClassification, LlamaConfig, LlamaForCausalLM

from gradtune.config.schema import StrategyConfig
from gradtune.models.gpt import GPTConfig, GPTForCausalLM
from gradtune.models.mlp import MLPConfig, MLPForSequenceClassification
from gradtune.models.recurrent import RecurrentConfig, RecurrentForSequenceClassification
from gradtune.models.transformer import TransformerConfig, TransformerForSequenceClassification
from gradtune.perf.flops import count_training_flops, train_flops_per_token
from gradtune.training.head_cache import HeadOnly
from gradtune.training.strategies import apply_strategy

BATCH, SEQ = 2, 16


def bert() -> torch.nn.Module:
    return BertForSequenceClassification(BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64, num_labels=2))


def llama() -> torch.nn.Module:
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64))


def transformer() -> torch.nn.Module:
    return TransformerForSequenceClassification(TransformerConfig(
        vocab_size=100, embedding_size=32, hidden_size=64, num_layers=2, num_heads=2, max_positions=64, num_labels=3))


def gpt() -> torch.nn.Module:
    return GPTForCausalLM(GPTConfig(vocab_size=100, embedding_size=32, hidden_size=64, num_layers=2, num_heads=2,
                                    max_positions=64, causal=True))


def gru() -> torch.nn.Module:
    return RecurrentForSequenceClassification(RecurrentConfig(
        cell="gru", vocab_size=100, embedding_size=24, hidden_size=32, num_layers=2, num_labels=2))


def mlp() -> torch.nn.Module:
    return MLPForSequenceClassification(MLPConfig(num_features=10, hidden_sizes=[64, 32], num_labels=3))


def tokens() -> dict[str, torch.Tensor]:
    return {"input_ids": torch.randint(5, 90, (BATCH, SEQ)), "attention_mask": torch.ones(BATCH, SEQ, dtype=torch.long)}


def counted_by_torch(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> float:
    """FLOPs of one forward + backward as torch's dispatcher sees them (the math attention kernel:
    the CPU's fused one has no FLOP formula registered, it would count as zero)."""
    model.train()
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(**inputs).logits.float().sum().backward()
    return counter.get_total_flops()


def with_strategy(model: torch.nn.Module, method: str) -> torch.nn.Module:
    extra = {"layers": 1} if method == "top_k" else {}
    return model if method == "full" else apply_strategy(model, StrategyConfig(method=method, **extra))


CASES = [
    (bert, "full"), (bert, "head"), (bert, "lora"), (bert, "top_k"), (bert, "bitfit"),
    (llama, "full"), (llama, "lora"), (llama, "top_k"), (llama, "ia3"),
    (transformer, "full"), (transformer, "head"), (transformer, "lora"), (transformer, "top_k"),
    (gpt, "full"), (gpt, "lora"), (gpt, "top_k"),
    (gru, "full"), (gru, "head"),
]


@pytest.mark.parametrize(("build", "method"), CASES, ids=[f"{b.__name__}-{m}" for b, m in CASES])
def test_count_matches_torch_flop_counter(build, method):
    torch.manual_seed(0)
    model = with_strategy(build(), method)
    ours = train_flops_per_token(model, SEQ, method) * BATCH * SEQ
    # within 2%: the GRU's one known difference is the first step's hidden-state gradient (h0 is a
    # constant), 1/SEQ of its hidden-to-hidden backward
    assert ours == pytest.approx(counted_by_torch(model, tokens()), rel=0.02)


@pytest.mark.parametrize("method", ["full", "head"])
def test_mlp_counts_per_example(method):
    """Tabular: no tokens, a "token" is an example (seq_len 1)."""
    torch.manual_seed(0)
    model = with_strategy(mlp(), method)
    inputs = {"features": torch.randn(BATCH, 10)}
    assert train_flops_per_token(model, 1, method) * BATCH == pytest.approx(counted_by_torch(model, inputs), rel=0.01)


def test_cached_head_costs_only_the_head():
    torch.manual_seed(0)
    model = with_strategy(bert(), "head")
    head = HeadOnly(model, "classifier")
    features = {"features": torch.randn(BATCH, 32)}
    assert train_flops_per_token(head, 1) * BATCH == pytest.approx(counted_by_torch(head, features), rel=0.01)
    # the same number from the whole model, told that only its head runs
    assert train_flops_per_token(model, 1, "head_cached") == train_flops_per_token(head, 1)


def test_lstm_is_four_gates_of_input_plus_hidden_by_hidden():
    """torch's FLOP counter does not see the CPU LSTM kernel, so the LSTM is checked against the
    formula itself: forward 2 x 4 x (input + hidden) x hidden per token and layer, x3 when training."""
    model = RecurrentForSequenceClassification(RecurrentConfig(
        cell="lstm", vocab_size=100, embedding_size=24, hidden_size=32, num_layers=2, num_labels=2))
    rnn_forward = 2 * 4 * ((24 + 32) * 32 + (32 + 32) * 32)
    head_forward = 2 * 32 * 2  # once per example
    assert train_flops_per_token(model, SEQ) == pytest.approx(3 * (rnn_forward + head_forward / SEQ))
    with_strategy(model, "head")
    assert train_flops_per_token(model, SEQ) == pytest.approx(rnn_forward + 2 * head_forward / SEQ)


def test_freezing_saves_what_it_should():
    """6N in full; a frozen backbone under a trained head costs its forward only (2N); LoRA's frozen
    base costs forward + input gradient (4N) where something before it trains."""
    torch.manual_seed(0)
    full = count_training_flops(bert())
    frozen = count_training_flops(with_strategy(bert(), "head"))
    body = [m for m in full.matmuls if not m.per_example]
    assert all(m.flops == 6 * m.macs for m in full.matmuls)
    assert all(m.flops == 2 * m.macs for m in frozen.matmuls if not m.per_example)
    assert sum(m.flops for m in frozen.matmuls if not m.per_example) == pytest.approx(
        sum(m.flops for m in body) / 3)
    assert frozen.per_token(SEQ) < count_training_flops(with_strategy(bert(), "lora")).per_token(SEQ) \
        < full.per_token(SEQ)
    # "head" is the same whether the model was frozen by the strategy or is told so
    assert train_flops_per_token(bert(), SEQ, "head") == train_flops_per_token(with_strategy(bert(), "head"), SEQ)


def test_attention_grows_with_the_sequence():
    """PaLM's 12 x layers x seq x d_model per token: the only part that depends on seq_len in a decoder."""
    model = gpt()
    assert train_flops_per_token(model, 64) - train_flops_per_token(model, 32) == pytest.approx(12 * 2 * 32 * 32)


def test_output_layer_only_where_targets_are_scored():
    model = llama()
    count = count_training_flops(model)
    output = [m for m in count.matmuls if m.output]
    assert [m.name for m in output] == ["lm_head"]
    assert count.per_token(SEQ) - count.per_token(SEQ, output_share=0.25) == pytest.approx(0.75 * output[0].flops)
