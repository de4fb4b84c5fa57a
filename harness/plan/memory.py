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

from harness.config import LoraConfig, ModelConfig, PeftConfig, QuantConfig, TrainConfig, lora_target_modules
from harness.plan.params import NORMS_PER_LAYER, adapter_params, count_params, head_dim, layer_linears

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
        """From a HarnessConfig (or anything with those attributes)."""
        return cls(cfg.model, cfg.peft, cfg.lora, cfg.quant, cfg.train)

    @classmethod
    def from_dict(cls, config: Dict[str, Any]) -> "Cell":
        """From a record's resolved config dict, ignoring keys this version does not know."""

        def build(kind: type, block: Optional[Dict[str, Any]]) -> Any:
            known = kind.__dataclass_fields__
            return kind(**{k: v for k, v in (block or {}).items() if k in known})

        return cls(
            build(ModelConfig, config.get("model")),
            build(PeftConfig, config.get("peft")),
            build(LoraConfig, config.get("lora")),
            build(QuantConfig, config.get("quant")),
            build(TrainConfig, config.get("train")),
        )


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

    def as_dict(self) -> Dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


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


def _weights_bytes(cell: Cell, e: int) -> float:
    counts = count_params(cell.model)
    mode = cell.quant.mode
    if mode == "none":
        return counts.total * e
    other = counts.total - counts.layer_linear  # embeddings, LM head, norms: upcast to fp32 by peft
    weights = sum(lin.d_in * lin.d_out for lin in layer_linears(cell.model)) * cell.model.num_layers
    biases = counts.layer_linear - weights
    if mode == "8bit":
        rows = sum(lin.d_out for lin in layer_linears(cell.model)) * cell.model.num_layers
        quantized = weights * 1.0 + rows * 4.0
    else:
        block = 64
        absmax = (1.0 / block + 4.0 / (block * 256)) if cell.quant.double_quant else 4.0 / block
        quantized = weights * (0.5 + absmax)
    return quantized + (other + biases) * 4.0


def _layer_bytes(
    cell: Cell, t: int, b: int, s: int, e: int, attention: str, adapter: bool, modules: List[str], device: str,
    cap: Optional[float] = None,
) -> float:
    """Bytes autograd saves for one decoder layer over t = b·s tokens.

    With ``cap``, only tensors of at most ``cap`` bytes each are counted (those glibc serves from its heap, see
    HEAP_TENSOR_MAX).
    """
    m = cell.model
    h, inter = m.hidden_size, m.intermediate_size
    d_attn = m.num_heads * head_dim(m)
    d_kv = m.num_kv_heads * head_dim(m)

    def k(total: float, tensor: float) -> float:  # total bytes of tensors of ``tensor`` bytes each
        return total if cap is None or tensor <= cap else 0.0

    norms = k(NORMS_PER_LAYER[m.arch] * 4.0 * t * h, 4.0 * t * h)  # fp32 copy of each norm's input
    if not adapter:  # trainable norm weights also keep the normalised output
        out = (4.0 if m.arch == "gemma2" else e) * t * h
        norms += k(NORMS_PER_LAYER[m.arch] * out, out)
    kv = d_attn if m.num_kv_heads < m.num_heads else d_kv  # repeat_kv when a padding mask is present
    if attention == "sdpa":
        attn = k(2 * e * t * d_attn, e * t * d_attn) + k(2 * e * t * kv, e * t * kv)  # q, output; k, v
    else:
        scores = 4.0 + e + (e if m.arch in GEMMA2_SOFTCAP else 0.0)  # fp32 softmax, probs (+ tanh)
        attn = k(e * t * d_attn, e * t * d_attn) + k(2 * e * t * kv, e * t * kv)
        attn += k(b * m.num_heads * s * s * scores, b * m.num_heads * s * s * 4.0)
    mlp = k(3.0 * e * t * inter, e * t * inter)  # gate (activation input), activation output, up
    linears = layer_linears(m)
    if adapter:
        targeted = [lin for lin in linears if lin.name in modules]
        if cell.lora.dropout > 0:
            # each module drops out its own copy of the input. CUDA (autocast): a bool mask plus
            # lora_A's bf16 input, e + 1 bytes; CPU: peft casts the input to the fp32 adapter
            # dtype and dropout keeps an fp32 output and an fp32 noise tensor, 8 bytes
            per_elem = (e + 1.0) if device == "cuda" else 8.0
            inputs = sum(k(per_elem * t * lin.d_in, min(per_elem, 4.0) * t * lin.d_in) for lin in targeted)
        else:  # lora_A keeps the shared input once per distinct input
            inputs = sum(k(e * t * d, e * t * d) for d in _distinct_inputs(targeted))
        inputs += len(targeted) * t * cell.lora.r * (e if device == "cuda" else 4.0)  # lora_A outputs
        if cell.peft.method == "dora":  # base output and adapter output are kept for the magnitude gradient
            inputs += sum(k(2.0 * e * t * lin.d_out, e * t * lin.d_out) for lin in targeted)
    else:
        inputs = sum(k(e * t * d, e * t * d) for d in _distinct_inputs(linears))
    return norms + attn + mlp + inputs


def _largest_trainable(m: ModelConfig, modules: List[str], r: int, method: str) -> int:
    """Elements of the largest trainable parameter tensor: an embedding or linear weight, or a LoRA matrix."""
    linears = layer_linears(m)
    if method == "full":
        return max([m.vocab_size * m.hidden_size] + [lin.d_in * lin.d_out for lin in linears])
    targeted = [lin for lin in linears if lin.name in modules]
    return max([r * max(lin.d_in, lin.d_out) for lin in targeted] + [lin.d_out for lin in targeted if method == "dora"] + [0])


def _distinct_inputs(linears: list) -> List[int]:
    """Input widths of the distinct tensors feeding ``linears`` (q/k/v share one, gate/up another)."""
    groups = {"q_proj": "attn_in", "k_proj": "attn_in", "v_proj": "attn_in", "qkv_proj": "attn_in",
              "gate_proj": "mlp_in", "up_proj": "mlp_in", "gate_up_proj": "mlp_in"}
    seen: Dict[str, int] = {}
    for linear in linears:
        seen.setdefault(groups.get(linear.name, linear.name), linear.d_in)
    return list(seen.values())


def _head_bytes(cell: Cell, t: int, e: int, device: str, head: str, adapter: bool, loss_fraction: float) -> float:
    """Final norm, LM head and loss at the start of the backward pass."""
    m = cell.model
    h, v = m.hidden_size, m.vocab_size
    norm = 4.0 * t * h
    if head == "full":
        grad_w = 0.0 if adapter else e * v * h
        return norm + (e + 12.0) * t * v + grad_w
    # trl's fused head: on CUDA only loss-bearing positions are scored; elsewhere all of them
    n = t * loss_fraction if device == "cuda" else t
    if device == "cuda":  # Triton folds the recomputed tile into its gradient in place: the buffer is all
        tile = min(n, FUSED_HEAD_TOKENS) * FUSED_HEAD_VOCAB * e
    else:  # torch fallback: the tile's touched columns plus the temporaries _backward_tile holds at once
        tile = min(n, FUSED_HEAD_TOKENS) * min(v, FUSED_HEAD_VOCAB) * (e + CPU_HEAD_TEMP_BYTES)
    saved = e * n * h + 40.0 * n  # hidden-state copy, ten fp32 per-token statistics
    # full fine-tune: the fp32 weight-gradient accumulator, plus its cast to the weight's dtype unless that is fp32
    grad_w = 0.0 if adapter else (4.0 + (e if e != 4 else 0.0)) * v * h
    backward = 4.0 * n * h + tile + grad_w  # fp32 hidden-state gradient, recomputed tile
    return norm + saved + backward


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
    counter = "cuda_peak_allocated" if device == "cuda" else "host_peak_rss"
    coeff = coeff or DEFAULTS[counter]
    m, train = cell.model, cell.train
    b = batch or train.batch_size
    s = seq or train.max_seq_len
    t = b * s
    e = compute_bytes(m.dtype, device)
    attention = attention_variant(m, attention)
    adapter = cell.peft.method in ("lora", "dora")
    modules = lora_target_modules(m.arch, cell.lora) if adapter else []
    counts = count_params(m)
    n_adapter = adapter_params(m, modules, cell.lora.r, cell.peft.method == "dora") if adapter else 0
    trainable = n_adapter if adapter else counts.total
    param_bytes = 4 if adapter else e

    states, state_bytes = OPTIMIZERS.get(train.optimizer, (2, None))
    state_bytes = param_bytes if state_bytes is None else state_bytes
    optimizer = trainable * states * state_bytes
    grads = trainable * param_bytes
    if train.optimizer not in FOREACH_TEMP:
        step_temp = 0.0
    elif device == "cuda":
        step_temp = trainable * state_bytes
    else:
        step_temp = SINGLE_TENSOR_TEMPS * _largest_trainable(m, modules, cell.lora.r, cell.peft.method) * state_bytes

    layer = _layer_bytes(cell, t, b, s, e, attention, adapter, modules, device)
    head_b = _head_bytes(cell, t, e, device, head, adapter, loss_fraction)
    mask4d = b * s * s * (1 if attention == "sdpa" else e)
    mask = mask4d + 24.0 * t  # 4D mask, ids/labels/attention mask
    if train.gradient_checkpointing:
        # only each layer's input is kept; the backward frees the head before it recomputes
        # layer by layer, so the peak holds one of the two, never both
        activations = m.num_layers * e * t * m.hidden_size + mask
        recompute, head_part = (layer, 0.0) if layer > head_b else (0.0, head_b)
    else:
        activations, recompute, head_part = m.num_layers * layer + mask, 0.0, head_b
    scalable = activations + recompute + head_part
    scale = coeff.act_scale
    # host RSS at the optimizer step still holds the pages of the activations glibc served from its heap: freed
    # during the backward below the gradients allocated meanwhile, they are not returned to the OS (only tensors
    # above HEAP_TENSOR_MAX are mmapped and unmapped on free). torch's caching allocator on CUDA reuses them.
    resident = 0.0
    if device != "cuda":
        cap = HEAP_TENSOR_MAX
        if train.gradient_checkpointing:
            checkpoint = e * t * m.hidden_size
            resident = m.num_layers * (checkpoint if checkpoint <= cap else 0.0)
        else:
            resident = m.num_layers * _layer_bytes(cell, t, b, s, e, attention, adapter, modules, device, cap=cap)
        resident += (mask4d if mask4d <= cap else 0.0) + 24.0 * t

    # gradients of a full fine-tune are freed between steps (set_to_none) and grow while the
    # activations shrink; with accumulation they persist. Adapter gradients are small: count them.
    concurrent_grads = grads if (adapter or train.grad_accum > 1) else 0.0
    fwd_bwd = scale * scalable + concurrent_grads
    step = grads + step_temp
    phase = "forward/backward" if fwd_bwd >= step + scale * resident else "optimizer step"
    in_fwd = phase == "forward/backward"
    weights = _weights_bytes(cell, e) if adapter else counts.total * e
    adapter_w = n_adapter * 4.0
    fixed = weights + adapter_w + optimizer
    components = {
        "weights": weights / MIB,
        "adapter": adapter_w / MIB,
        "optimizer": optimizer / MIB,
        "gradients": (concurrent_grads if in_fwd else grads) / MIB,
        "activations": (scale * activations if in_fwd else scale * resident) / MIB,
        "recompute": (scale * recompute if in_fwd else 0.0) / MIB,
        "head": (scale * head_part if in_fwd else 0.0) / MIB,
        "step_temp": (0.0 if in_fwd else step_temp) / MIB,
        "overhead": coeff.overhead_mib,
    }
    phases = {"forward/backward": (fixed + fwd_bwd) / MIB + coeff.overhead_mib,
              "optimizer step": (fixed + step + scale * resident) / MIB + coeff.overhead_mib}
    total = max(phases.values())
    device_total = total * (1 + RESERVED_SLACK) + CUDA_CONTEXT_MIB if device == "cuda" else total
    notes = [
        (
            f"{'bf16' if e == 2 else 'fp32'} compute, {attention} attention, "
            f"{'gradient checkpointing' if train.gradient_checkpointing else 'no checkpointing'}, "
            f"{'trl fused LM head' if head == 'fused' else 'full logits'}"
        ),
        f"every sequence at {s} tokens, {loss_fraction:.0%} of positions loss-bearing",
    ]
    if train.optimizer not in OPTIMIZERS:
        notes.append(f"optimizer {train.optimizer} not in the table: assumed AdamW (2 states)")
    if cell.quant.mode != "none" and adapter:
        notes.append("non-quantized weights upcast to fp32 by peft's prepare_model_for_kbit_training")
    if device != "cuda":
        notes.append(f"host RSS: activation and head bytes x {scale:g} for glibc's heap (fragmentation); at the optimizer "
                     "step the activations row is the freed activations' pages the heap still holds")
    if train.gradient_checkpointing:
        notes.append(f"gradient checkpointing: the backward peaks {'recomputing a layer' if recompute else 'in the LM head'} "
                     f"(layer {scale * layer / MIB:,.0f} MiB, head {scale * head_b / MIB:,.0f} MiB)")
    return Prediction(
        counter=counter,
        components=components,
        total_mib=total,
        device_total_mib=device_total,
        phase=phase,
        batch=b,
        seq=s,
        params={"total": counts.total, "trainable": trainable, "adapter": n_adapter, "frozen": counts.total - (0 if adapter else counts.total)},
        assumptions=notes,
        terms={"fixed": fixed / MIB, "scalable": scalable / MIB, "concurrent": concurrent_grads / MIB, "step": step / MIB,
               "resident": resident / MIB},
        phases=phases,
        caveats=caveats(cell, device),
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
