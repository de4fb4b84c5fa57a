"""Parameter counts and linear-layer shapes of each architecture, from the config numbers alone.

Exact for the five families the harness ships (a test builds every conf/model entry with
transformers on the meta device and compares): tied embeddings count once, Gemma 2's
head_dim can differ from hidden/heads and it has four norms per layer, Phi-3 fuses q/k/v
and gate/up, Qwen2 has biases on q/k/v. Pure Python: the planner never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

from harness.config.model import ARCH_LINEAR_MODULES, ModelConfig

NORMS_PER_LAYER = {"llama": 2, "mistral": 2, "qwen2": 2, "phi3": 2, "gemma2": 4}
"""RMSNorm weight vectors per decoder layer (Gemma 2 adds pre/post feed-forward norms)."""
QKV_BIAS = {"qwen2"}
"""Families whose q/k/v projections carry a bias."""


@dataclass(frozen=True)
class Linear:
    """One linear sub-module of a decoder layer."""

    name: str
    d_in: int
    d_out: int
    bias: bool

    @property
    def params(self) -> int:
        """Weight plus bias elements."""
        return self.d_in * self.d_out + (self.d_out if self.bias else 0)


def head_dim(model: ModelConfig) -> int:
    """Per-head width: model.head_dim when set (Gemma 2), else hidden_size // num_heads."""
    return model.head_dim if model.head_dim is not None else model.hidden_size // model.num_heads


def layer_linears(model: ModelConfig) -> List[Linear]:
    """The linear sub-modules of one decoder layer, in module-name order of ARCH_LINEAR_MODULES."""
    h, i = model.hidden_size, model.intermediate_size
    q, kv = model.num_heads * head_dim(model), model.num_kv_heads * head_dim(model)
    bias = model.arch in QKV_BIAS
    shapes: Dict[str, Tuple[int, int, bool]] = {
        "q_proj": (h, q, bias),
        "k_proj": (h, kv, bias),
        "v_proj": (h, kv, bias),
        "qkv_proj": (h, q + 2 * kv, False),
        "o_proj": (q, h, False),
        "gate_proj": (h, i, False),
        "up_proj": (h, i, False),
        "gate_up_proj": (h, 2 * i, False),
        "down_proj": (i, h, False),
    }
    table = ARCH_LINEAR_MODULES[model.arch]
    return [Linear(name, *shapes[name]) for name in table["attention"] + table["mlp"]]


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts of the base model, split the ways the memory model needs."""

    embedding: int
    """Input embedding matrix (vocab x hidden)."""
    lm_head: int
    """Output projection; 0 when tied to the input embedding."""
    layer_linear: int
    """All decoder-layer linear weights and biases (what bitsandbytes quantizes)."""
    norms: int
    """All RMSNorm weights."""

    @property
    def total(self) -> int:
        """Every parameter of the model, tied weights counted once (= sum(p.numel() for p in model.parameters()))."""
        return self.embedding + self.lm_head + self.layer_linear + self.norms

    @property
    def matmul(self) -> int:
        """Weights that take part in a matmul per token: layer linears plus the output projection (tied or not)."""
        return self.layer_linear + self.embedding  # the LM head has the embedding's shape either way


def count_params(model: ModelConfig) -> ParamCounts:
    """Exact parameter counts of the architecture described by ``model``."""
    h, v = model.hidden_size, model.vocab_size
    per_layer = sum(linear.params for linear in layer_linears(model))
    return ParamCounts(
        embedding=v * h,
        lm_head=0 if model.tie_embeddings else v * h,
        layer_linear=model.num_layers * per_layer,
        norms=model.num_layers * NORMS_PER_LAYER[model.arch] * h + h,
    )


def adapter_params(model: ModelConfig, modules: List[str], r: int, dora: bool) -> int:
    """Trainable adapter parameters: r·(d_in + d_out) per targeted module and layer, plus d_out for DoRA's magnitude."""
    total = 0
    for linear in layer_linears(model):
        if linear.name in modules:
            total += r * (linear.d_in + linear.d_out) + (linear.d_out if dora else 0)
    return total * model.num_layers
