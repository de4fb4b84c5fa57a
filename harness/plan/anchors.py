"""Published memory figures the planner is compared with, and its error on each.

    python -m harness.plan.anchors          # markdown table (the README's copy comes from here)

Figures are transcribed from the sources named (see the README's "Capacity planner"); each
comes with its conditions. Where a source leaves a condition out, the value assumed here is
written in the row, and the row is marked indicative. Publications report whole-GPU figures
(nvidia-smi or the allocator's reserve), so the error is taken against the planner's device
total (allocated x (1 + slack) + CUDA context); the allocated prediction is shown beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from harness.config.model import ModelConfig
from harness.config.peft import LoraConfig, PeftConfig, QuantConfig
from harness.config.train import TrainConfig
from harness.plan.memory import predict
from harness.plan.setting import Cell

GB, GIB = 1e9, 2**30
LLAMA2_7B = ModelConfig(name="llama-2-7b", hub_id="meta-llama/Llama-2-7b-hf", arch="llama", tiny=False, num_layers=32,
                        hidden_size=4096, num_heads=32, num_kv_heads=32, intermediate_size=11008, vocab_size=32000)
QWEN_7B = ModelConfig(name="qwen-7b-chat", hub_id="Qwen/Qwen-7B-Chat", arch="qwen2", tiny=False, num_layers=32,
                      hidden_size=4096, num_heads=32, num_kv_heads=32, intermediate_size=11008, vocab_size=151936)
"""Qwen-7B (v1): MHA, fused c_attn with bias (qwen2's q/k/v biases), 151,936-token vocabulary."""


@dataclass
class Anchor:
    """One published figure and the conditions it was measured under."""

    source: str
    what: str
    published_bytes: float
    unit: str
    model: ModelConfig
    method: str = "lora"
    quant: str = "none"
    r: int = 8
    modules: Optional[List[str]] = None
    batch: int = 1
    seq: int = 2048
    checkpointing: bool = False
    optimizer: str = "adamw_torch"
    head: str = "full"
    assumed: str = ""
    """Conditions the source does not state, and the value used here."""
    component: Optional[str] = None
    """Compare one breakdown component (e.g. weights) instead of the total."""
    options: Dict[str, Any] = field(default_factory=dict)


SWIFT = "ms-swift Benchmark.md (A100)"
RASCHKA = "Raschka, Practical Tips (Lit-GPT, A100)"
FACTORY = "LLaMA-Factory README (estimate)"
QKV = ["q_proj", "k_proj", "v_proj"]
QV = ["q_proj", "v_proj"]
ANCHORS: List[Anchor] = [
    Anchor(SWIFT, "qwen-7b-chat LoRA r=8 bf16, grad ckpt", 27.74 * GIB, "GiB", QWEN_7B, modules=QKV, checkpointing=True,
           assumed="LoRA on c_attn (q,k,v), every sample 2048 tokens"),
    Anchor(SWIFT, "LoRA r=2", 27.72 * GIB, "GiB", QWEN_7B, r=2, modules=QKV, checkpointing=True),
    Anchor(SWIFT, "LoRA r=64", 27.85 * GIB, "GiB", QWEN_7B, r=64, modules=QKV, checkpointing=True),
    Anchor(SWIFT, "LoRA on int4 bnb base", 23.85 * GIB, "GiB", QWEN_7B, quant="4bit", modules=QKV, checkpointing=True),
    Anchor(SWIFT, "LoRA, no grad checkpointing", 37.70 * GIB, "GiB", QWEN_7B, modules=QKV),
    Anchor(SWIFT, "full fine-tune, grad ckpt", 74.26 * GIB, "GiB", QWEN_7B, method="full", checkpointing=True),
    Anchor(RASCHKA, "Llama 2 7B LoRA r=8 bf16", 21.33 * GB, "GB", LLAMA2_7B, modules=QV, seq=1024,
           assumed="indicative: Lit-GPT, not HF; q,v LoRA, micro-batch 1 x 1024 tokens assumed"),
    Anchor(RASCHKA, "Llama 2 7B QLoRA NF4", 14.18 * GB, "GB", LLAMA2_7B, quant="4bit", modules=QV, seq=1024,
           assumed="indicative: as above"),
    Anchor(FACTORY, "7B full 16-bit", 60 * GB, "GB", LLAMA2_7B, method="full", seq=512, checkpointing=True,
           assumed="indicative estimate: batch 1 x 512, grad ckpt assumed"),
    Anchor(FACTORY, "7B LoRA", 16 * GB, "GB", LLAMA2_7B, modules=QV, seq=512, checkpointing=True, assumed="as above"),
    Anchor(FACTORY, "7B QLoRA 8-bit", 10 * GB, "GB", LLAMA2_7B, quant="8bit", modules=QV, seq=512, checkpointing=True,
           assumed="as above"),
    Anchor(FACTORY, "7B QLoRA 4-bit", 6 * GB, "GB", LLAMA2_7B, quant="4bit", modules=QV, seq=512, checkpointing=True,
           assumed="as above"),
    Anchor("QLoRA paper (Dettmers et al. 2023)", "LLaMA-7B 4-bit base model (weights only)", 5048 * 1e6, "MB", LLAMA2_7B,
           quant="4bit", component="weights", assumed="LLaMA-1 7B = Llama-2-7B shapes"),
]


def evaluate(anchor: Anchor) -> Dict[str, Any]:
    """The planner's prediction under the anchor's conditions and its error."""
    lora = LoraConfig(r=anchor.r, modules=anchor.modules) if anchor.modules else LoraConfig(r=anchor.r)
    train = TrainConfig(batch_size=anchor.batch, max_seq_len=anchor.seq, gradient_checkpointing=anchor.checkpointing,
                        optimizer=anchor.optimizer)
    cell = Cell(anchor.model, PeftConfig(method=anchor.method), lora, QuantConfig(mode=anchor.quant), train)
    p = predict(cell, "cuda", head=anchor.head, attention="sdpa", **anchor.options)
    if anchor.component:
        device = allocated = p.components[anchor.component] * 2**20
    else:
        device, allocated = p.device_total_mib * 2**20, p.total_mib * 2**20
    scale = {"GiB": GIB, "GB": GB, "MB": 1e6}[anchor.unit]
    return {
        "source": anchor.source,
        "figure": anchor.what,
        "published": anchor.published_bytes / scale,
        "pred_allocated": allocated / scale,
        "pred_device": device / scale,
        "unit": anchor.unit,
        "error_pct": (device - anchor.published_bytes) / anchor.published_bytes * 100,
        "conditions": f"b{anchor.batch} x {anchor.seq}" + (", ckpt" if anchor.checkpointing else "")
        + f", head={anchor.head}" + (f"; {anchor.assumed}" if anchor.assumed else ""),
    }


def table() -> str:
    """The comparison as a markdown table, with the median and worst absolute error."""
    from harness.text import to_markdown

    rows = [evaluate(a) for a in ANCHORS]
    errors = sorted(abs(r["error_pct"]) for r in rows)
    shown = ["source", "figure", "conditions", "unit", "published", "pred_allocated", "pred_device", "error_pct"]
    median = errors[len(errors) // 2] if len(errors) % 2 else (errors[len(errors) // 2 - 1] + errors[len(errors) // 2]) / 2
    return to_markdown(rows, shown) + f"\n\nabsolute error vs published: median {median:.1f} %, worst {errors[-1]:.1f} %"


if __name__ == "__main__":
    print(table())
