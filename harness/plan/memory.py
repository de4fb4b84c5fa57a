"""Peak training memory of a cell, predicted from its config alone (no torch, no weights).

The model follows what the hf backend actually does (transformers 5, peft, trl >= 1.16):

- **weights**: unquantized base at the compute dtype (bf16 on GPU, fp32 on CPU). 4-bit NF4:
  0.5 byte per layer-linear weight plus its absmax constants (1 byte per 64-block with
  double quantization + 4 bytes per 256 blocks, else 4 bytes per block); 8-bit LLM.int8:
  1 byte plus a 4-byte scale per output row. On a quantized base, peft's
  ``prepare_model_for_kbit_training`` upcasts every non-quantized tensor (embeddings, LM
  head, norms, biases) to fp32: 4 bytes each.
- **adapter**: LoRA r·(d_in + d_out) per targeted module (+ d_out for DoRA's magnitude), fp32
  (peft's ``autocast_adapter_dtype``). Gradients: 4 bytes per adapter parameter, or the
  compute dtype per parameter for a full fine-tune.
- **optimizer**: states per trainable parameter from OPTIMIZERS (AdamW: two states in the
  parameter's dtype). torch's AdamW also allocates temporaries during ``step()``: on CUDA
  (foreach) one copy of a state for all parameters at once; on CPU (the single-tensor loop,
  torch's default there) two copies of the largest trainable parameter (``step_temp``).
- **activations** per micro-batch of t = b·s tokens, per decoder layer, counting the tensors
  autograd saves: fp32 copies of every RMSNorm input (4·t·h each); SDPA's q, repeated k/v
  and output (4·e·t·d_attn; eager attention adds b·heads·s²·(4 + e [+ e with softcapping]));
  the MLP's gate, activation and up (3·e·t·I); per LoRA module with dropout, the dropped-out
  input and its bool mask ((e+1)·t·d_in); for a full fine-tune, every linear's input instead.
  Gradient checkpointing keeps only each layer's input (e·t·h); the backward then peaks
  either in the LM head or while one layer is recomputed, whichever is larger.
- **head**: trl's fused LM head never builds the logits: it keeps the final hidden states
  and per-token statistics, and works through a 4096 x 32768 tile buffer; the backward
  adds an fp32 hidden-state gradient. On CUDA a Triton kernel works on the tile in place; on
  CPU trl's torch fallback holds the tile plus seven fp32 temporaries of its size and a bool
  mask (CPU_HEAD_TEMP_BYTES) at the backward's peak. ``head="full"`` models a plain HF loss
  instead: logits plus fp32 log-softmax and its gradients, (e + 12)·t·V bytes.
- **overhead**: a constant (framework buffers on CUDA; on CPU the Python/torch runtime,
  since the host counter is the worker's whole RSS).
- **host RSS** (CPU) also counts what glibc's heap keeps: the activation and head rows are
  the analytic bytes x CPU_HEAP_SCALE (fragmentation: freed temporaries leave holes), and at
  the optimizer step the pages of the freed activations are still resident (row
  ``activations`` of that phase; only tensors above HEAP_TENSOR_MAX are mmapped and given
  back on free).

The total is the larger of two phases: forward/backward (activations, the head or the
recomputed layer, and the gradients alive meanwhile) and the optimizer step (all gradients
plus the step's temporaries, and on CPU the resident activation pages), on top of weights,
adapter, optimizer states and overhead. The breakdown lists what is alive at the peak, so
its rows add up to the total; ``phases`` gives each phase's total.

Each term is one function of a resolved ``Setting`` (``resolve``): ``weights_bytes``, ``adapter_bytes``,
``optimizer_bytes``, ``gradient_bytes`` / ``concurrent_gradient_bytes``, ``step_temp_bytes``, ``activation_bytes``
(from ``layer_bytes``, ``head_bytes`` and ``mask_bytes``) and ``resident_bytes``; ``term_bytes`` gathers them and
``predict`` assembles the phases (``assemble``, which ``harness.plan.dist`` also uses for one rank of a multi-GPU cell).

Not modelled: bitsandbytes' CPU path for quantized weights (tiny 4-bit cells on CPU measured
up to 30 % above the prediction); such predictions carry a caveat and calibration leaves
those records out.

``act_scale`` and ``overhead_mib`` are the free coefficients ``calibrate`` fits to measured
records. The device-level total used for "does it fit" adds the allocator's slack and the
CUDA context, which torch's allocated counter does not see.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, List, Optional

from harness.plan.params import count_params
from harness.plan.setting import (
    CUDA_CONTEXT_MIB,
    DEFAULTS,
    MIB,
    OPTIMIZERS,
    RESERVED_SLACK,
    Cell,
    Coefficients,
    Setting,
    resolve,
)
from harness.plan.terms import TermBytes, adapter_param_count, term_bytes, trainable_param_count


@dataclass
class Prediction:
    """A predicted training peak with its breakdown (MiB) and the conditions it holds for."""

    counter: str
    """cuda_peak_allocated or host_peak_rss (see COUNTERS)."""
    components: Dict[str, float]
    """MiB alive at the peak, per component (they add up to ``total_mib``): weights, adapter, optimizer, overhead
    always; in the forward/backward phase activations, recompute (the layer gradient checkpointing recomputes,
    when that outgrows the head), head and the gradients alive meanwhile; in the optimizer step phase every
    gradient, step_temp (the optimizer's temporaries) and, for host RSS only, activations: the freed activations'
    pages glibc still holds. A row of the phase that does not peak is 0."""
    total_mib: float
    """Predicted value of the counter."""
    device_total_mib: float
    """What the device must hold: total x (1 + allocator slack) + CUDA context on GPU; = total on CPU."""
    phase: str
    """Which phase peaks: forward/backward (activations alive) or optimizer step."""
    batch: int
    seq: int
    params: Dict[str, int]
    """total, trainable, adapter and frozen parameter counts."""
    assumptions: List[str] = field(default_factory=list)
    terms: Dict[str, float] = field(default_factory=dict)
    """MiB pieces the calibration refits, whichever phase peaks: fixed (weights + adapter + optimizer), scalable
    (activations + head or recomputed layer, before act_scale), concurrent (gradients alive with the activations),
    step (gradients + step temporaries) and resident (host RSS: activation bytes still resident at the optimizer
    step, before act_scale; 0 on CUDA)."""
    phases: Dict[str, float] = field(default_factory=dict)
    """Predicted counter value, MiB, if each phase were the peak: forward/backward and optimizer step."""
    caveats: List[str] = field(default_factory=list)
    """What this prediction does not model for this cell (shown as notes wherever it is printed)."""
    dist: Dict[str, Any] = field(default_factory=dict)
    """A multi-GPU plan's per-GPU facts (``harness.plan.dist``): strategy, ranks, how each row is split, what moved to
    the CPU, bytes communicated per step; empty for one device."""

    def as_dict(self) -> Dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def _components(terms: TermBytes, in_fwd: bool, coeff: Coefficients) -> Dict[str, float]:
    """MiB per component alive at the peak; the rows of the phase that does not peak are 0."""
    scale = coeff.act_scale
    return {
        "weights": terms.weights / MIB,
        "adapter": terms.adapter / MIB,
        "optimizer": terms.optimizer / MIB,
        "gradients": (terms.concurrent_gradients if in_fwd else terms.gradients) / MIB,
        # at the optimizer step this row is the freed activations' pages the host heap still holds (0 on CUDA)
        "activations": (scale * terms.activations if in_fwd else scale * terms.resident) / MIB,
        "recompute": (scale * terms.recompute if in_fwd else 0.0) / MIB,
        "head": (scale * terms.head if in_fwd else 0.0) / MIB,
        "step_temp": (0.0 if in_fwd else terms.step_temp) / MIB,
        "overhead": coeff.overhead_mib,
    }


def _assumptions(x: Setting, terms: TermBytes, scale: float) -> List[str]:
    """The conditions a prediction holds for, one line each."""
    train = x.cell.train
    notes = [
        (
            f"{'bf16' if x.e == 2 else 'fp32'} compute, {x.attention} attention, "
            f"{'gradient checkpointing' if train.gradient_checkpointing else 'no checkpointing'}, "
            f"{'trl fused LM head' if x.head == 'fused' else 'full logits'}"
        ),
        f"every sequence at {x.seq} tokens, {x.loss_fraction:.0%} of positions loss-bearing",
    ]
    if train.optimizer not in OPTIMIZERS:
        notes.append(f"optimizer {train.optimizer} not in the table: assumed AdamW (2 states)")
    if x.cell.quant.mode != "none" and x.adapter:
        notes.append("non-quantized weights upcast to fp32 by peft's prepare_model_for_kbit_training")
    if x.device != "cuda":
        notes.append(f"host RSS: activation and head bytes x {scale:g} for glibc's heap (fragmentation); at the optimizer "
                     "step the activations row is the freed activations' pages the heap still holds")
    if train.gradient_checkpointing:
        peak = "recomputing a layer" if terms.recompute else "in the LM head"
        notes.append(f"gradient checkpointing: the backward peaks {peak} "
                     f"(layer {scale * terms.layer / MIB:,.0f} MiB, head {scale * terms.head_pass / MIB:,.0f} MiB)")
    return notes


def _param_counts(x: Setting) -> Dict[str, int]:
    """total, trainable, adapter and frozen parameter counts (as ``Prediction.params`` lists them)."""
    total = count_params(x.cell.model).total
    frozen = total if x.adapter else 0
    return {"total": total, "trainable": trainable_param_count(x), "adapter": adapter_param_count(x), "frozen": frozen}


def predict(
    cell: Cell,
    device: str = "cuda",
    batch: Optional[int] = None,
    seq: Optional[int] = None,
    attention: str = "auto",
    head: str = "fused",
    coeff: Optional[Coefficients] = None,
    loss_fraction: float = 1.0,
) -> Prediction:
    """Predicted training peak of ``cell`` on ``device`` (cuda or cpu) at micro-batch ``batch`` x ``seq``.

    Defaults: train.batch_size x train.max_seq_len (every sequence at full length, the
    worst case a sweep can meet). ``loss_fraction`` is the share of positions that carry
    loss (trl's fused head scores only those on CUDA); 1.0 is the worst case.
    """
    x = resolve(cell, device, batch, seq, attention, head, loss_fraction)
    return assemble(x, term_bytes(x), coeff)


def assemble(x: Setting, terms: TermBytes, coeff: Optional[Coefficients] = None,
             fixed_rows: Optional[Dict[str, float]] = None, fwd_rows: Optional[Dict[str, float]] = None) -> Prediction:
    """The Prediction for ``x`` from its ``terms``: both phases, the peak, its breakdown and the device total.

    ``fixed_rows`` (bytes) are alive in both phases and ``fwd_rows`` (bytes) in the forward/backward phase only, each
    a breakdown row of its own, neither scaled by act_scale: the multi-GPU terms (``harness.plan.dist``) add DDP's
    gradient buckets and FSDP's all-gathered units this way, on top of the single-device terms.
    """
    counter = "cuda_peak_allocated" if x.device == "cuda" else "host_peak_rss"
    coeff = coeff or DEFAULTS[counter]
    fixed_rows, fwd_rows = fixed_rows or {}, fwd_rows or {}
    fixed = terms.fixed + sum(fixed_rows.values())
    concurrent = terms.concurrent_gradients + sum(fwd_rows.values())
    scale = coeff.act_scale
    fwd_bwd = scale * terms.scalable + concurrent
    phase = "forward/backward" if fwd_bwd >= terms.step + scale * terms.resident else "optimizer step"
    phases = {"forward/backward": (fixed + fwd_bwd) / MIB + coeff.overhead_mib,
              "optimizer step": (fixed + terms.step + scale * terms.resident) / MIB + coeff.overhead_mib}
    total = max(phases.values())
    in_fwd = phase == "forward/backward"
    components = _components(terms, in_fwd, coeff)
    components.update({name: b / MIB for name, b in fixed_rows.items()})
    components.update({name: (b if in_fwd else 0.0) / MIB for name, b in fwd_rows.items()})
    return Prediction(
        counter=counter,
        components=components,
        total_mib=total,
        device_total_mib=total * (1 + RESERVED_SLACK) + CUDA_CONTEXT_MIB if x.device == "cuda" else total,
        phase=phase,
        batch=x.batch,
        seq=x.seq,
        params=_param_counts(x),
        assumptions=_assumptions(x, terms, scale),
        terms={"fixed": fixed / MIB, "scalable": terms.scalable / MIB,
               "concurrent": concurrent / MIB, "step": terms.step / MIB, "resident": terms.resident / MIB},
        phases=phases,
        caveats=caveats(x.cell, x.device),
    )


def caveats(cell: Cell, device: str) -> List[str]:
    """What the model leaves out for this cell: bitsandbytes' CPU path (quantized weights on CPU)."""
    if device == "cuda" or cell.quant.mode == "none":
        return []
    measured = " (tiny 4-bit cells measured up to 30 % above the prediction)" if cell.quant.mode == "4bit" else ""
    return [f"CPU {cell.quant.mode} is not modelled: bitsandbytes' CPU path holds more host memory than its CUDA path, "
            f"which this prediction follows{measured}; read it as a lower bound"]


def with_train(cell: Cell, **changes: Any) -> Cell:
    """A copy of ``cell`` with train keys changed (``with_train(cell, batch_size=8)``)."""
    return replace(cell, train=replace(cell.train, **changes))
