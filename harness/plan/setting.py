"""What a memory prediction is about: the cell's shape, the free coefficients, the constants the terms use,
and the resolved ``Setting`` each term reads (see ``harness.plan.memory`` for the model)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from harness.config.model import ModelConfig, checkpoint_shape
from harness.config.peft import LoraConfig, PeftConfig, QuantConfig, lora_target_modules
from harness.config.train import TrainConfig

MIB = 1024 * 1024
COUNTERS = ("cuda_peak_allocated", "host_peak_rss")
"""What a prediction predicts: torch's peak allocated bytes on CUDA, or the worker's peak RSS on CPU."""
CUDA_CONTEXT_MIB = 500.0
"""CUDA context, cuBLAS/cuDNN handles and kernels: device memory torch's allocator does not count (typ. 0.3-0.6 GiB)."""
RESERVED_SLACK = 0.08
"""Caching-allocator slack: reserved exceeds allocated by this fraction (typ. 5-15 %)."""
FUSED_HEAD_TOKENS = 4096
FUSED_HEAD_VOCAB = 32768
"""trl's fused LM head tile: TOKEN_CHUNK_SIZE x _CHUNKED_LOGPROB_CHUNK_SIZE (trl/kernels/chunked_logprob.py)."""
GEMMA2_SOFTCAP = {"gemma2"}
"""Families whose eager attention applies tanh logit soft-capping (one more saved s² tensor)."""
EAGER_BY_DEFAULT = {"gemma2"}
"""Families transformers runs with eager attention by default (the rest use SDPA)."""

# optimizer name -> (states per trainable parameter, bytes per state; None = the parameter's own bytes)
OPTIMIZERS: Dict[str, tuple] = {
    "adamw_torch": (2, None), "adamw_torch_fused": (2, None), "adamw_hf": (2, None), "adamw": (2, None),
    "adamw_apex_fused": (2, 4), "paged_adamw_32bit": (2, 4), "adamw_bnb_8bit": (2, 1), "adamw_8bit": (2, 1),
    "paged_adamw_8bit": (2, 1), "lion_32bit": (1, 4), "paged_lion_32bit": (1, 4), "lion_8bit": (1, 1),
    "paged_lion_8bit": (1, 1), "sgd": (0, None), "adagrad": (1, None), "rmsprop": (1, None), "adafactor": (0, None),
}
FOREACH_TEMP = {"adamw_torch", "adamw_hf", "adamw"}
"""torch's AdamW, whose step allocates temporaries: on CUDA (foreach) one copy of a state for all parameters at once;
on CPU, where torch defaults to the single-tensor loop, two per parameter (see SINGLE_TENSOR_TEMPS)."""
SINGLE_TENSOR_TEMPS = 2
"""Parameter-sized temporaries of torch's single-tensor AdamW step (CPU default: foreach is for CUDA tensors only):
``denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)`` holds the sqrt and the quotient at once, one
parameter at a time, so the step peaks at two copies of the largest trainable parameter (measured, Qwen2.5-0.5B full
fine-tune on CPU: +1,039 MiB = 2 x its tied 151936 x 896 fp32 embedding, over the gradients)."""
CPU_HEAD_TEMP_BYTES = 29.0
"""Bytes per tile element, besides the tile itself, that trl's torch fallback (no Triton: CPU) of the fused LM head's
backward holds at its peak (``_backward_tile``): seven fp32 tensors (the scaled tile, z, log_p, p, grad, the one-hot
difference and its product with the incoming gradient) and a bool target mask, 7 x 4 + 1. Measured on CPU, Qwen2.5-0.5B
widths, LoRA b4 x 66: +269 MiB at the head's backward = 8.25 tiles of 260 x 32768 fp32."""


@dataclass(frozen=True)
class Coefficients:
    """The free coefficients of the model (fitted by ``harness.plan.calibrate``)."""

    act_scale: float = 1.0
    """Multiplies the analytic activation and head bytes."""
    overhead_mib: float = 128.0
    """Constant added to every prediction, MiB."""


HEAP_TENSOR_MAX = 32 * MIB
"""glibc's largest dynamic mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX): a freed block up to this size raises
the threshold to its size, so after the first such free every smaller tensor comes from the heap, whose freed pages stay
resident (returned to the OS only from the heap's top); larger tensors are mmapped and unmapped on free."""
CPU_HEAP_SCALE = 1.4
"""Default act_scale for host RSS, an allocator factor, not a tensor count: glibc's heap (2.36 here) keeps about
1.4 x the activation and head bytes resident at the peak, the temporaries freed between the saved tensors leaving
holes that later tensors do not fit (fragmentation). Derived from the tiny CPU records (the 19 hf records under
reports/ and 5 of a CPU rehearsal of the GPU check: fitted act_scale 1.40, overhead 599 MiB). Checked at real size
with a plain torch loop at Qwen2.5-0.5B widths (LoRA, glibc's in-use bytes sampled every 2 ms): the in-use peak
over the step's start matches the analytic activation + head terms within 3 % (1,253 vs 1,255 MiB at b4 x 66, 288
vs 295 at b1 x 62), and RSS adds 0.37 x (b4) and 0.59 x (b1) of that on top of its own baseline."""

DEFAULTS = {
    # cuBLAS workspaces and small framework buffers allocated through torch's allocator
    "cuda_peak_allocated": Coefficients(1.0, 128.0),
    # the worker's Python + torch + transformers + trl runtime and the trainer's own objects:
    # ~450 MiB RSS after a tiny model loads, ~600 MiB at the training peak (torch 2.13 CPU)
    "host_peak_rss": Coefficients(CPU_HEAP_SCALE, 600.0),
}


@dataclass(frozen=True)
class Cell:
    """The config blocks the memory model reads (a HarnessConfig has all of them)."""

    model: ModelConfig
    peft: PeftConfig
    lora: LoraConfig
    quant: QuantConfig
    train: TrainConfig

    @classmethod
    def of(cls, cfg: Any) -> "Cell":
        """From a HarnessConfig (or anything with those attributes); a local model folder's shape from its
        config.json (``checkpoint_shape``)."""
        return cls(checkpoint_shape(cfg.model), cfg.peft, cfg.lora, cfg.quant, cfg.train)

    @classmethod
    def from_dict(cls, config: Dict[str, Any]) -> "Cell":
        """From a record's resolved config dict, ignoring keys this version does not know."""

        def build(kind: type, block: Optional[Dict[str, Any]]) -> Any:
            known = kind.__dataclass_fields__
            return kind(**{k: v for k, v in (block or {}).items() if k in known})

        return cls(
            checkpoint_shape(build(ModelConfig, config.get("model"))),
            build(PeftConfig, config.get("peft")),
            build(LoraConfig, config.get("lora")),
            build(QuantConfig, config.get("quant")),
            build(TrainConfig, config.get("train")),
        )


def compute_bytes(dtype: str, device: str) -> int:
    """Bytes per element of the compute dtype: auto = bf16 on CUDA, fp32 on CPU (as the hf backend resolves it)."""
    if dtype == "float32" or (dtype == "auto" and device != "cuda"):
        return 4
    return 2


def attention_variant(model: ModelConfig, attention: str) -> str:
    """sdpa or eager: ``auto`` follows transformers' default for the family."""
    if attention == "auto":
        return "eager" if model.arch in EAGER_BY_DEFAULT else "sdpa"
    return attention


@dataclass(frozen=True)
class Setting:
    """One prediction's arguments, resolved to what every term function reads (``resolve`` builds it)."""

    cell: Cell
    device: str
    """cuda or cpu."""
    batch: int
    seq: int
    e: int
    """Bytes per element of the compute dtype (``compute_bytes``)."""
    attention: str
    """sdpa or eager, ``auto`` resolved (``attention_variant``)."""
    head: str
    """fused (trl's LM head) or full (plain HF logits and loss)."""
    loss_fraction: float
    """Share of positions that carry loss."""
    adapter: bool
    """True for LoRA/DoRA, False for a full fine-tune."""
    modules: List[str]
    """Module names the adapter targets; empty for a full fine-tune."""

    @property
    def tokens(self) -> int:
        """Tokens per micro-batch, t = batch x seq."""
        return self.batch * self.seq


def resolve(
    cell: Cell,
    device: str = "cuda",
    batch: Optional[int] = None,
    seq: Optional[int] = None,
    attention: str = "auto",
    head: str = "fused",
    loss_fraction: float = 1.0,
) -> Setting:
    """The Setting ``predict`` computes its terms from; same arguments and defaults as ``predict``."""
    m, train = cell.model, cell.train
    adapter = cell.peft.method in ("lora", "dora")
    return Setting(
        cell=cell,
        device=device,
        batch=batch or train.batch_size,
        seq=seq or train.max_seq_len,
        e=compute_bytes(m.dtype, device),
        attention=attention_variant(m, attention),
        head=head,
        loss_fraction=loss_fraction,
        adapter=adapter,
        modules=lora_target_modules(m.arch, cell.lora) if adapter else [],
    )
