"""Published memory figures the planner is compared with, and its error on each.

    python -m harness.plan.anchors          # markdown tables (the README's copies come from here)

Two parts: one-GPU figures (``ANCHORS``, ``table``) and multi-GPU ones (``DIST_ANCHORS``, per-GPU figures of FSDP
runs, and ``FIT_CLAIMS``, published "k of this GPU are enough" statements checked against the predicted smallest k;
``dist_table``).

Figures are transcribed from the sources named (see the README's "Capacity planner"); each
comes with its conditions. Where a source leaves a condition out, the value assumed here is
written in the row, and the row is marked indicative. Publications report whole-GPU figures
(nvidia-smi or the allocator's reserve), so the error is taken against the planner's device
total (allocated x (1 + slack) + CUDA context); the allocated prediction is shown beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Tuple

from harness.config.hardware import load_catalogue
from harness.config.model import ModelConfig
from harness.config.peft import LoraConfig, PeftConfig, QuantConfig
from harness.config.train import TrainConfig
from harness.plan.dist import DistSetting, predict_dist, smallest_k
from harness.plan.memory import Prediction, predict
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
    dropout: float = 0.05
    grad_accum: int = 1


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


def _cell(anchor: Anchor) -> Cell:
    """The cell an anchor's conditions describe."""
    lora = LoraConfig(r=anchor.r, modules=anchor.modules, dropout=anchor.dropout)
    train = TrainConfig(batch_size=anchor.batch, max_seq_len=anchor.seq, gradient_checkpointing=anchor.checkpointing,
                        optimizer=anchor.optimizer, grad_accum=anchor.grad_accum)
    return Cell(anchor.model, PeftConfig(method=anchor.method), lora, QuantConfig(mode=anchor.quant), train)


def evaluate(anchor: Anchor) -> Dict[str, Any]:
    """The planner's prediction under the anchor's conditions and its error."""
    p = predict(_cell(anchor), "cuda", head=anchor.head, attention="sdpa", **anchor.options)
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


def _summary(rows: List[Dict[str, Any]]) -> str:
    """Median and worst absolute error of ``rows``."""
    errors = sorted(abs(r["error_pct"]) for r in rows)
    median = errors[len(errors) // 2] if len(errors) % 2 else (errors[len(errors) // 2 - 1] + errors[len(errors) // 2]) / 2
    return f"absolute error vs published: median {median:.1f} %, worst {errors[-1]:.1f} %"


def table() -> str:
    """The comparison as a markdown table, with the median and worst absolute error."""
    from harness.text import to_markdown

    rows = [evaluate(a) for a in ANCHORS]
    shown = ["source", "figure", "conditions", "unit", "published", "pred_allocated", "pred_device", "error_pct"]
    return to_markdown(rows, shown) + "\n\n" + _summary(rows)


# ---- across GPUs -------------------------------------------------------------------------------

LLAMA2_70B = ModelConfig(name="llama-2-70b", hub_id="meta-llama/Llama-2-70b-hf", arch="llama", tiny=False, num_layers=80,
                         hidden_size=8192, num_heads=64, num_kv_heads=8, intermediate_size=28672, vocab_size=32000)
LLAMA3_70B = replace(LLAMA2_70B, name="llama-3-70b", hub_id="meta-llama/Meta-Llama-3-70B", vocab_size=128256)
"""Llama 3(.1) 70B: Llama 2 70B's decoder with a 128,256-token vocabulary (conf/model/llama-70b.yaml's shapes)."""


@dataclass
class DistAnchor(Anchor):
    """A published per-GPU figure of a k-rank run (or, as a ``FitClaim``, a published "k of this GPU suffice")."""

    url: str = ""
    k: int = 2
    strategy: str = "fsdp"
    cpu_offload: bool = False
    storage_bytes: Optional[int] = None
    """Bytes per stored base parameter when the run kept fp32 weights under bf16 mixed precision (see DistSetting)."""


@dataclass
class FitClaim(DistAnchor):
    """A published claim that k GPUs of catalogue entry ``gpu`` hold the cell; ``published_bytes`` is unused (0)."""

    gpu: str = "a100-80gb"


PEFT_FSDP = "https://huggingface.co/docs/peft/accelerate/fsdp"
SCHMID = "https://www.philschmid.de/fsdp-qlora-llama3"
ANSWER = "https://github.com/AnswerDotAI/fsdp_qlora (README)"
PEFT_QLORA = dict(model=LLAMA2_70B, quant="4bit", r=8, dropout=0.1, batch=2, seq=2048, checkpointing=True, grad_accum=2,
                  k=2, assumed="Llama-2-70B, r=8 all-linear, dropout 0.1, NF4 double quant in bf16 storage, packed "
                  "2048-token rows, flash-attn (as sdpa), 2024 trl: full logits")
SCHMID_COMMON = dict(model=LLAMA3_70B, r=16, dropout=0.05, batch=1, seq=3072, checkpointing=True, grad_accum=2,
                     assumed="Llama-3-70B, r=16 all-linear, packed 3072-token rows, sdpa, 2024 trl: full logits")
DIST_ANCHORS: List[DistAnchor] = [
    DistAnchor("PEFT FSDP guide (2x24GB)", "QLoRA + FSDP + CPU offload, per GPU", 19.6 * GB, "GB", url=PEFT_FSDP,
               cpu_offload=True, **PEFT_QLORA),
    DistAnchor("PEFT FSDP guide (2 GPUs)", "QLoRA + FSDP, no offload, per GPU", 35.6 * GB, "GB", url=PEFT_FSDP,
               **PEFT_QLORA),
    DistAnchor("philschmid, FSDP Q-LoRA Llama 3 (4x A10G)", "QLoRA + FSDP + CPU offload, per GPU", 22 * GB, "GB",
               url=SCHMID, quant="4bit", k=4, cpu_offload=True, **SCHMID_COMMON),
    DistAnchor("PEFT FSDP guide (8x H100 80GB)", "LoRA + FSDP, per GPU (72-80 GB: midpoint)", 76 * GB, "GB", url=PEFT_FSDP,
               model=LLAMA2_70B, r=8, dropout=0.1, batch=8, seq=2048, checkpointing=True, grad_accum=4, k=8,
               storage_bytes=4, assumed="indicative: nvidia-smi (caching allocator), weights loaded fp32 under bf16 "
               "mixed precision (peft examples/sft), r=8 all-linear, packed 2048-token rows, full logits"),
]
FIT_CLAIMS: List[FitClaim] = [
    FitClaim("Answer.AI fsdp_qlora", "Llama-2-70B QLoRA on 2x 24GB", 0.0, "GB", url=ANSWER, gpu="rtx-3090", k=2,
             model=LLAMA2_70B, quant="4bit", batch=2, seq=2048, checkpointing=True, cpu_offload=True,
             assumed="batch 2 x 2048, grad ckpt, CPU offload as the README runs it; LoRA r=8 all-linear assumed"),
    FitClaim("Answer.AI fsdp_qlora", "Llama-2-70B QLoRA on 4x A100 40GB", 0.0, "GB", url=ANSWER, gpu="a100-40gb", k=4,
             model=LLAMA2_70B, quant="4bit", batch=2, seq=512, checkpointing=True, grad_accum=4,
             assumed="batch 2 x 512, grad ckpt, no offload; LoRA r=8 all-linear assumed"),
    FitClaim("philschmid", "FSDP + Q-LoRA needs ~2x 40GB", 0.0, "GB", url=SCHMID, gpu="a100-40gb", k=2, quant="4bit",
             **SCHMID_COMMON),
    FitClaim("philschmid", "FSDP + LoRA needs ~8x 80GB", 0.0, "GB", url=SCHMID, gpu="a100-80gb", k=8, **SCHMID_COMMON),
    FitClaim("philschmid", "full fine-tuning with FSDP needs ~16x 80GB", 0.0, "GB", url=SCHMID, gpu="a100-80gb", k=16,
             method="full", **{**SCHMID_COMMON, "assumed": "as above; full fine-tune, bf16 AdamW states"}),
    FitClaim("guide 000:93 (CLAIMS.md mem-70b-fsdp-4xa100)", "Llama-3.1-70B, ZeRO-3/FSDP on 4x A100 80GB, batch 2/GPU",
             0.0, "GB", url="../shared/CLAIMS.md", gpu="a100-80gb", k=4, model=LLAMA3_70B, r=16, batch=2, seq=2048,
             checkpointing=True, assumed="method not stated: LoRA r=16 all-linear bf16 assumed, 2048 tokens, grad ckpt"),
]


def _dist_predict(anchor: DistAnchor, k: Optional[int] = None) -> Tuple[Prediction, DistSetting]:
    """The planner's per-GPU prediction under a multi-GPU anchor's conditions, at ``k`` ranks (default: the anchor's)."""
    d = DistSetting(anchor.strategy, k or anchor.k, cpu_offload=anchor.cpu_offload, fsdp_version=1,  # 2024 runs: FSDP1
                    storage_bytes=anchor.storage_bytes)
    return predict_dist(_cell(anchor), d, "cuda", head=anchor.head, attention="sdpa"), d


def _conditions(anchor: DistAnchor, d: DistSetting) -> str:
    return (f"{d.label}, k={d.k}, b{anchor.batch} x {anchor.seq}" + (", ckpt" if anchor.checkpointing else "")
            + f", head={anchor.head}" + (f"; {anchor.assumed}" if anchor.assumed else ""))


def evaluate_dist(anchor: DistAnchor) -> Dict[str, Any]:
    """The planner's per-GPU prediction under a multi-GPU anchor's conditions and its error vs the published figure."""
    p, d = _dist_predict(anchor)
    scale = {"GiB": GIB, "GB": GB}[anchor.unit]
    device, allocated = p.device_total_mib * 2**20, p.total_mib * 2**20
    return {"source": f"{anchor.source}: {anchor.url}", "figure": anchor.what, "conditions": _conditions(anchor, d),
            "unit": anchor.unit, "published": anchor.published_bytes / scale, "pred_allocated": allocated / scale,
            "pred_device": device / scale, "error_pct": (device - anchor.published_bytes) / anchor.published_bytes * 100}


def evaluate_claim(claim: FitClaim, catalogue: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Whether k of the claim's GPU hold its cell by the planner, and the smallest k that does."""
    capacity = (catalogue or load_catalogue())[claim.gpu].memory_gib * 1024
    p, d = _dist_predict(claim)
    least = smallest_k(lambda k: _dist_predict(claim, k)[0].device_total_mib <= capacity)
    return {"source": f"{claim.source}: {claim.url}", "claim": claim.what, "conditions": _conditions(claim, d),
            "gpu": claim.gpu, "claimed_k": claim.k, "pred_GiB_per_GPU": p.device_total_mib / 1024,
            "fits_at_claimed_k": "yes" if p.device_total_mib <= capacity else "no",
            "predicted_smallest_k": least if least is not None else "none <= 64"}


def dist_table() -> str:
    """The multi-GPU comparison: per-GPU figures with their errors, then the published fit claims."""
    from harness.text import to_markdown

    rows = [evaluate_dist(a) for a in DIST_ANCHORS]
    shown = ["source", "figure", "conditions", "unit", "published", "pred_allocated", "pred_device", "error_pct"]
    catalogue = load_catalogue()
    claims = [evaluate_claim(c, catalogue) for c in FIT_CLAIMS]
    return (to_markdown(rows, shown) + "\n\n" + _summary(rows) + " (per GPU)\n\n"
            + to_markdown(claims, list(claims[0])))


if __name__ == "__main__":
    print(table())
    print("\n## Across GPUs (dist)\n")
    print(dist_table())
