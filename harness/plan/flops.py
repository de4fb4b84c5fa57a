"""Model FLOPs per trained token, the numerator of MFU. Pure Python (no torch).

Convention of PaLM (Chowdhery et al. 2022, appendix B), also used by llm-foundry and
torchtitan: a matmul with N weights costs 2·N FLOPs per token forward and 4·N backward
(input and weight gradients), and attention adds 12·L·s·d_attn per token for the
QKᵀ and AV products of a length-s sequence (forward 4·L·s·d_attn, backward twice that),
counted as if not causal. So:

- full fine-tune:          6·N_matmul + 12·L·s·d_attn
- adapter on a frozen base: 4·N_matmul + 6·N_adapter + 12·L·s·d_attn
  (the frozen weights need no weight gradient: 2·N forward + 2·N input gradient)

N_matmul counts every weight used in a matmul per token: the decoder-layer linears and
the output projection (tied or not); the input embedding is a lookup and norms are
element-wise, so neither counts. d_attn = num_heads · head_dim. Recomputation under
gradient checkpointing is not counted (model FLOPs, not hardware FLOPs), nor is
dequantization of 4/8-bit weights.
"""

from __future__ import annotations

from typing import Any, Dict

from harness.config.model import ModelConfig
from harness.plan.params import count_params, head_dim

FORMULA = {
    "full": "6*N_matmul + 12*L*s*d_attn (PaLM appendix B)",
    "adapter": "4*N_matmul + 6*N_adapter + 12*L*s*d_attn (frozen base: no weight gradient)",
}


def flops_per_token(model: ModelConfig, seq_len: float, adapter_params: int = 0, full: bool = False) -> float:
    """Model FLOPs (forward + backward) per token of a length-``seq_len`` sequence."""
    n = count_params(model).matmul
    attention = 12 * model.num_layers * seq_len * model.num_heads * head_dim(model)
    if full:
        return 6.0 * n + attention
    return 4.0 * n + 6.0 * adapter_params + attention


def describe(model: ModelConfig, seq_len: float, adapter_params: int, full: bool) -> Dict[str, Any]:
    """FLOPs per token with its formula and inputs, for records and plan output."""
    return {
        "flops_per_token": flops_per_token(model, seq_len, adapter_params, full),
        "formula": FORMULA["full" if full else "adapter"],
        "n_matmul": count_params(model).matmul,
        "n_adapter": 0 if full else adapter_params,
        "seq_len": seq_len,
    }
