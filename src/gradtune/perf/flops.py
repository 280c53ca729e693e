"""Training FLOPs per token, counted from the model actually built (its module tree and which of its
weights train), for model FLOPs utilisation: MFU = tokens/s x FLOPs per token / the machine's peak.

The formula (Kaplan et al. 2020, "Scaling Laws for Neural Language Models", section 2.1; Chowdhery et
al. 2022, PaLM, appendix B; nanoGPT's `estimate_mfu`): a weight matrix of N multiply-adds applied to
a token costs 2N FLOPs forward and 4N backward (2N for the gradient of its input, 2N for the gradient
of its weight), so 6N per token for a model whose every weight trains; attention adds its two
weight-free matmuls, Q K^T and A V, 4 x seq x width forward and 8 x seq x width backward: the
12 x layers x seq x d_model per token of PaLM. Counted per weight, freezing saves what it saves:

- a frozen weight still costs its forward (2N); its weight gradient (2N) is never computed; its input
  gradient (2N) only if something before it trains (the gradient has somewhere to go);
- `strategy.method: lora`: the frozen base as above, plus each adapter's own A and B matrices at 6N
  (A's input gradient only where something before it trains);
- `head` with cached features (the model is then the head alone): only the head's FLOPs.

What counts as N: Linear / Conv (and GPT-2's Conv1D) weights, nn.MultiheadAttention's input
projection, and the input-to-hidden and hidden-to-hidden matrices of LSTM / GRU / RNN layers (an
LSTM layer is 4 gates x (input + hidden) x hidden multiply-adds per token). Embedding lookups are not
matmuls and cost nothing; a language model's output layer is a matmul (tied to the embedding or not)
and counts. A module that runs once per example (BERT's pooler, a classifier on the pooled vector,
gradtune's scratch models' `head`) costs its FLOPs / seq_len per token. Attention counts the full
seq x seq square also for a causal decoder, as PaLM and nanoGPT do (the kernels compute it).
Elementwise work (norms, activations, softmax, the loss) is left out, as in all three sources.

Checked against torch's FlopCounterMode (tests/perf/test_flops.py): exact for BERT, Llama, gradtune's
transformer / gpt and the MLP in full, head, LoRA, top_k, bitfit and IA3; a GRU within 1.1% (the
first step's hidden state is a constant: no gradient flows into it). Not modelled: DoRA is counted as
LoRA (peft's DoRA also recomputes the weight norm each step and, with adapter dropout, runs the base
layer a second time: 28% more on a tiny Llama), prompt/prefix tuning's virtual tokens (they lengthen
the sequence), and a seq2seq decoder's own length (its tokens are counted at the encoder's seq_len).
For tabular models (no tokens) pass seq_len=1: a "token" is then an example.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

# children that read the same input in parallel (an attention's projections, a gated MLP's two
# inputs): a trainable sibling earlier in the module order is not upstream of them
PARALLEL = {"query", "key", "value", "q_proj", "k_proj", "v_proj", "q_lin", "k_lin", "v_lin", "gate_proj", "up_proj"}
# the query / key / value projections of an attention module, by naming family; "qkv" / "c_attn" fused
QKV_NAMES = (("query", "key", "value"), ("q_proj", "k_proj", "v_proj"), ("q_lin", "k_lin", "v_lin"))
FUSED_QKV = ("qkv", "c_attn")
# modules that run once per example on a pooled vector, not once per token
PER_EXAMPLE = {"pooler", "classifier", "pre_classifier", "head"}
# norms registered after the sublayer they feed (Llama, Mistral, Qwen, Gemma decoder layers)
PRE_NORMS = {"input_layernorm": "self_attn", "post_attention_layernorm": "mlp", "pre_feedforward_layernorm": "mlp"}
# the heads a frozen body trains (strategy head), as training/strategies/heads.py names them
HEAD_NAMES = ("classifier", "score", "head", "qa_outputs")
STRATEGY_OVERRIDES = ("head", "head_cached")


@dataclass(frozen=True)
class Matmul:
    """One weight matrix: `macs` multiply-adds each time it is applied (per token or per example)."""

    name: str
    macs: int
    trains: bool  # its weight gradient is computed
    grad_in: bool  # the gradient of its input is computed
    per_example: bool = False
    output: bool = False  # a language model's output layer (it may run only where a token is predicted)

    @property
    def flops(self) -> float:
        """Forward + backward FLOPs of one application."""
        return 2 * self.macs * (1 + self.trains + self.grad_in)


@dataclass(frozen=True)
class Attention:
    """The weight-free matmuls of one attention module of `width` (heads x head_dim) channels."""

    name: str
    width: int
    q_grad: bool  # whether the queries / keys / values carry a gradient (their backward runs)
    k_grad: bool
    v_grad: bool

    def flops(self, seq_len: int) -> float:
        """Per token: Q K^T and A V forward (2 x seq x width each), and their backward: dV, dA (needed
        for dQ or dK), dQ, dK."""
        backward = self.v_grad + (self.q_grad or self.k_grad) + self.q_grad + self.k_grad
        return 2 * seq_len * self.width * (2 + backward)


@dataclass
class FlopCount:
    matmuls: list[Matmul] = field(default_factory=list)
    attention: list[Attention] = field(default_factory=list)

    def per_token(self, seq_len: int, output_share: float = 1.0) -> float:
        """Training (forward + backward) FLOPs per token of sequences `seq_len` long; `output_share`:
        the share of the tokens a language model's output layer runs at (the loop may score only
        the positions whose next token is a target)."""
        seq = max(int(seq_len), 1)
        per_token = sum(m.flops for m in self.matmuls if not m.per_example and not m.output)
        output = sum(m.flops for m in self.matmuls if m.output)
        per_example = sum(m.flops for m in self.matmuls if m.per_example)
        return per_token + output * output_share + per_example / seq + sum(a.flops(seq) for a in self.attention)

    @property
    def trained_parameters(self) -> int:
        """The matmul weights whose gradient is computed (the N of 6N), per token."""
        return sum(m.macs for m in self.matmuls if m.trains)


def _parts(name: str) -> list[str]:
    """A module's path without peft's wrapping (base_model.model., modules_to_save.default)."""
    parts = name.split(".")
    if parts[:2] == ["base_model", "model"]:
        parts = parts[2:]
    return [p for p in parts if p not in ("modules_to_save", "default")]


def _slot(parts: list[str]) -> tuple[list[str], str]:
    """Where a matmul sits in the original model, and its role: "base" / "lora_A" / "lora_B" inside a
    peft LoRA layer, else "plain"."""
    for role in ("base_layer", "lora_A", "lora_B"):
        if role in parts:
            return parts[: parts.index(role)], "base" if role == "base_layer" else role
    return parts, "plain"


def _matmul_macs(module: nn.Module) -> int | None:
    """Multiply-adds of one application of a leaf with a weight matrix (None: not such a leaf)."""
    from transformers.pytorch_utils import Conv1D

    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    if isinstance(module, Conv1D):
        return module.weight.numel()
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):  # per output position: one position per token in text models
        return module.weight.numel()
    return None


def _head_trains(parts: list[str]) -> bool:
    return bool(parts) and parts[0] in HEAD_NAMES


def count_training_flops(model: nn.Module, strategy: str = "full") -> FlopCount:
    """Every matmul of `model` with what its training computes, walking the modules in registration
    order (the forward order of the model families gradtune builds) so that "something before it
    trains" can be told. strategy: "full" (or any method already applied to the model: what trains is
    read from requires_grad), "head" (only the task head trains, whatever the flags say) or
    "head_cached" (only the task head runs: its inputs were computed once)."""
    count = FlopCount()
    seen_trainable = False  # a trainable parameter before this point: its gradient needs ours
    parallel_input: dict[str, bool] = {}  # parent path -> seen_trainable where its parallel children start
    lora_a_trains: dict[str, bool] = {}
    sole_head = strategy == "head_cached"
    modules = dict(model.named_modules())
    output_layer = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None

    def trains(parts: list[str], param: torch.Tensor | None) -> bool:
        if param is None:
            return False
        return _head_trains(parts) if strategy in STRATEGY_OVERRIDES else param.requires_grad

    for name, module in model.named_modules():
        raw = name.split(".")
        if "original_module" in raw:  # peft's untouched copy of a head: never runs
            continue
        parts = _parts(name)
        if sole_head and not _head_trains(parts):
            continue
        children = dict(module.named_children())
        # Llama-style decoder layers register their norms after the attention and MLP they feed
        parent_module = modules.get(name.rpartition(".")[0]) if name else None
        feeding = [n for n, feeds in PRE_NORMS.items() if feeds == raw[-1]]
        if parent_module is not None and any(trains(parts, q) for n in feeding if hasattr(parent_module, n)
                                             for q in getattr(parent_module, n).parameters()):
            seen_trainable = True
        if len(PARALLEL & children.keys()) >= 2:
            parallel_input[".".join(parts)] = seen_trainable
        slot, role = _slot(parts)
        slot_name, parent = (slot[-1] if slot else ""), ".".join(slot[:-1])
        # the gradient of this matmul's input is computed if anything upstream of that input trains
        upstream = parallel_input[parent] if slot_name in PARALLEL and parent in parallel_input else seen_trainable
        per_example = any(p in PER_EXAMPLE for p in parts)
        macs = _matmul_macs(module)
        if macs is not None:
            weight_trains = trains(parts, module.weight)
            if role == "lora_B":
                upstream = upstream or lora_a_trains.get(".".join(slot), False)
            if role == "lora_A":
                lora_a_trains[".".join(slot)] = weight_trains
            count.matmuls.append(Matmul(name, macs, weight_trains, upstream, per_example,
                                        output_layer is not None and module is output_layer))
        elif isinstance(module, (nn.LSTM, nn.GRU, nn.RNN)):
            count.matmuls += _recurrent(name, module, lambda p, at=parts: trains(at, p), upstream)
        elif isinstance(module, nn.MultiheadAttention):
            d = module.embed_dim
            w_trains = trains(parts, module.in_proj_weight)
            count.matmuls.append(Matmul(f"{name}.in_proj", 3 * d * d, w_trains, upstream, per_example))
            grad = upstream or w_trains
            count.attention.append(Attention(name, d, grad, grad, grad))
        attention = _attention(name, module, children, upstream, lambda p, at=parts: trains(at, p))
        if attention is not None and not sole_head:
            count.attention.append(attention)
        if any(trains(parts, p) for p in module.parameters(recurse=False)):
            seen_trainable = True
    return count


def _recurrent(name: str, rnn: nn.RNNBase, trains: object, upstream: bool) -> list[Matmul]:
    """Each layer and direction: input-to-hidden (gates x input x hidden) and hidden-to-hidden
    (gates x hidden x hidden) multiply-adds per token."""
    gates = {"LSTM": 4, "GRU": 3}.get(rnn.mode, 1)
    hidden, directions = rnn.hidden_size, 2 if rnn.bidirectional else 1
    out: list[Matmul] = []
    grad_in = upstream
    for layer in range(rnn.num_layers):
        size_in = rnn.input_size if layer == 0 else hidden * directions
        layer_trains = False
        for suffix in ("", "_reverse")[:directions]:
            w_trains = bool(trains(getattr(rnn, f"weight_ih_l{layer}{suffix}")))
            layer_trains = layer_trains or w_trains
            # the gradient through time flows into h whenever anything in or before this layer trains
            out.append(Matmul(f"{name}.l{layer}{suffix}.ih", gates * size_in * hidden, w_trains, grad_in))
            out.append(Matmul(f"{name}.l{layer}{suffix}.hh", gates * hidden * hidden, w_trains, grad_in or w_trains))
        grad_in = grad_in or layer_trains
    return out


def _q_width(module: nn.Module | None) -> int:
    """Output channels of a (possibly LoRA-wrapped) projection."""
    base = getattr(module, "base_layer", module)
    macs = _matmul_macs(base) if base is not None else None
    if macs is None:
        return 0
    return base.out_features if isinstance(base, nn.Linear) else base.weight.shape[-1]


def _attention(name: str, module: nn.Module, children: dict[str, nn.Module], upstream: bool,
               trains: object) -> Attention | None:
    """The attention core of a module holding query / key / value projections."""
    def grad(child: nn.Module) -> bool:
        return upstream or any(trains(p) for p in child.parameters())

    for q, k, v in QKV_NAMES:
        if q in children and k in children and v in children:
            return Attention(name, _q_width(children[q]), grad(children[q]), grad(children[k]), grad(children[v]))
    for fused in FUSED_QKV:
        if fused in children and _q_width(children[fused]):
            g = grad(children[fused])
            return Attention(name, _q_width(children[fused]) // 3, g, g, g)
    return None


def train_flops_per_token(model: torch.nn.Module, seq_len: int, strategy: str = "full") -> float:
    """Training (forward + backward) FLOPs per token for `model` as built, on sequences of `seq_len`
    tokens. strategy: "full" or the method already applied to the model (what trains is read from the
    parameters' requires_grad), "head" (only the task head trains) or "head_cached" (only the head runs)."""
    return count_training_flops(model, strategy).per_token(seq_len)
