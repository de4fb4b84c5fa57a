"""The terms of the memory model, one function each, in bytes, of a resolved ``Setting``.

``term_bytes`` gathers them; ``harness.plan.memory.predict`` adds them into the two phases. What each term
counts, and why, is in the ``harness.plan.memory`` docstring."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from harness.config.model import ModelConfig
from harness.plan.params import NORMS_PER_LAYER, adapter_params, count_params, head_dim, layer_linears
from harness.plan.setting import (
    CPU_HEAD_TEMP_BYTES,
    FOREACH_TEMP,
    FUSED_HEAD_TOKENS,
    FUSED_HEAD_VOCAB,
    GEMMA2_SOFTCAP,
    HEAP_TENSOR_MAX,
    OPTIMIZERS,
    SINGLE_TENSOR_TEMPS,
    Cell,
    Setting,
)


def quantized_parts(cell: Cell) -> Tuple[float, float, int]:
    """(packed data bytes, quantization-constant bytes, parameters left unquantized) of a quantized base's weights.

    bitsandbytes quantizes the decoder-layer linear weights only: 4-bit NF4 packs two per byte plus absmax constants
    (1 byte per 64-block with double quantization + 4 bytes per 256 blocks, else 4 bytes per block); 8-bit LLM.int8 is
    one byte plus a 4-byte scale per output row. Embeddings, LM head, norms and biases stay unquantized. For
    ``quant.mode == "none"``: (0, 0, every parameter).
    """
    counts = count_params(cell.model)
    mode = cell.quant.mode
    if mode == "none":
        return 0.0, 0.0, counts.total
    weights = sum(lin.d_in * lin.d_out for lin in layer_linears(cell.model)) * cell.model.num_layers
    unquantized = counts.total - weights  # embeddings, LM head, norms and the linears' biases
    if mode == "8bit":
        rows = sum(lin.d_out for lin in layer_linears(cell.model)) * cell.model.num_layers
        return weights * 1.0, rows * 4.0, unquantized
    block = 64
    absmax = (1.0 / block + 4.0 / (block * 256)) if cell.quant.double_quant else 4.0 / block
    return weights * 0.5, weights * absmax, unquantized


def _weights_bytes(cell: Cell, e: int) -> float:
    if cell.quant.mode == "none":
        return count_params(cell.model).total * e
    data, constants, unquantized = quantized_parts(cell)
    return data + constants + unquantized * 4.0  # the unquantized rest upcast to fp32 by peft


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


def adapter_param_count(x: Setting) -> int:
    """Trainable adapter parameters (LoRA/DoRA); 0 for a full fine-tune."""
    if not x.adapter:
        return 0
    return adapter_params(x.cell.model, x.modules, x.cell.lora.r, x.cell.peft.method == "dora")


def trainable_param_count(x: Setting) -> int:
    """Parameters the optimizer updates: the adapter's, or every base parameter in a full fine-tune."""
    return adapter_param_count(x) if x.adapter else count_params(x.cell.model).total


def trainable_param_bytes(x: Setting) -> int:
    """Bytes per trainable parameter and per gradient element: fp32 adapters, else the compute dtype."""
    return 4 if x.adapter else x.e  # peft's autocast_adapter_dtype keeps adapters in fp32


def weights_bytes(x: Setting) -> float:
    """The base model's weights: quantized per quant.mode under an adapter, at the compute dtype otherwise."""
    # the config refuses a quantized base for a full fine-tune (its weights could not be trained), so quant.mode
    # only counts under an adapter
    if x.adapter:
        return _weights_bytes(x.cell, x.e)
    return count_params(x.cell.model).total * x.e


def adapter_bytes(x: Setting) -> float:
    """The adapter's own weights, fp32 (peft's autocast_adapter_dtype); 0 for a full fine-tune."""
    return adapter_param_count(x) * 4.0


def _optimizer_states(x: Setting) -> Tuple[int, int]:
    """(states per trainable parameter, bytes per state) of train.optimizer; AdamW's for one not in OPTIMIZERS."""
    states, state_bytes = OPTIMIZERS.get(x.cell.train.optimizer, (2, None))
    return states, trainable_param_bytes(x) if state_bytes is None else state_bytes


def optimizer_bytes(x: Setting) -> float:
    """Optimizer states: only trainable parameters carry any, so frozen base weights add nothing."""
    states, state_bytes = _optimizer_states(x)
    return trainable_param_count(x) * states * state_bytes


def gradient_bytes(x: Setting) -> float:
    """Every gradient, alive at the optimizer step: one per trainable parameter, in its dtype."""
    return trainable_param_count(x) * trainable_param_bytes(x)


def concurrent_gradient_bytes(x: Setting) -> float:
    """Gradients counted alive alongside the activations in the forward/backward phase."""
    # a full fine-tune's gradients are freed between steps (set_to_none) and grow while the activations shrink, so
    # they do not add to the activations' peak; with accumulation they persist. Adapter gradients are small: count them.
    if x.adapter or x.cell.train.grad_accum > 1:
        return gradient_bytes(x)
    return 0.0


def step_temp_bytes(x: Setting) -> float:
    """Temporaries torch's AdamW allocates during ``step()`` (FOREACH_TEMP); 0 for every other optimizer."""
    if x.cell.train.optimizer not in FOREACH_TEMP:
        return 0.0
    _, state_bytes = _optimizer_states(x)
    if x.device == "cuda":  # foreach: one copy of a state for all parameters at once
        return trainable_param_count(x) * state_bytes
    # CPU's single-tensor loop: SINGLE_TENSOR_TEMPS copies of one parameter at a time, so the largest one peaks
    m = x.cell.model
    return SINGLE_TENSOR_TEMPS * _largest_trainable(m, x.modules, x.cell.lora.r, x.cell.peft.method) * state_bytes


def layer_bytes(x: Setting, cap: Optional[float] = None) -> float:
    """Bytes autograd saves for one decoder layer over the micro-batch (``cap``: see ``_layer_bytes``)."""
    return _layer_bytes(x.cell, x.tokens, x.batch, x.seq, x.e, x.attention, x.adapter, x.modules, x.device, cap=cap)


def head_bytes(x: Setting) -> float:
    """Final norm, LM head and loss at the start of the backward pass, before act_scale."""
    return _head_bytes(x.cell, x.tokens, x.e, x.device, x.head, x.adapter, x.loss_fraction)


def mask4d_bytes(x: Setting) -> float:
    """The 4D attention mask, b·s² elements: bool for SDPA, the compute dtype for eager attention."""
    return x.batch * x.seq * x.seq * (1 if x.attention == "sdpa" else x.e)


def mask_bytes(x: Setting) -> float:
    """Every mask and id tensor of a micro-batch: the 4D mask plus ids, labels and the attention mask (24 B/token)."""
    return mask4d_bytes(x) + 24.0 * x.tokens


def activation_bytes(x: Setting, layer: float, head: float) -> Tuple[float, float, float]:
    """(activations, recompute, head) at the forward/backward peak, before act_scale.

    ``layer`` and ``head`` are ``layer_bytes(x)`` and ``head_bytes(x)``. Without checkpointing every layer's saved
    tensors and the head are alive at once (recompute 0); with it only each layer's input is kept, plus whichever of
    the recomputed layer and the head is larger (the other 0).
    """
    m = x.cell.model
    if x.cell.train.gradient_checkpointing:
        # the backward frees the head before it recomputes layer by layer, so the peak holds one of the two, never both
        activations = m.num_layers * x.e * x.tokens * m.hidden_size + mask_bytes(x)
        recompute, head_part = (layer, 0.0) if layer > head else (0.0, head)
        return activations, recompute, head_part
    return m.num_layers * layer + mask_bytes(x), 0.0, head


def resident_bytes(x: Setting) -> float:
    """Host RSS only: activation bytes still resident at the optimizer step, before act_scale; 0 on CUDA."""
    # freed during the backward below the gradients allocated meanwhile, the pages of the activations glibc served
    # from its heap are not returned to the OS (only tensors above HEAP_TENSOR_MAX are mmapped and unmapped on free).
    # torch's caching allocator on CUDA reuses them.
    if x.device == "cuda":
        return 0.0
    m, cap = x.cell.model, HEAP_TENSOR_MAX
    if x.cell.train.gradient_checkpointing:
        checkpoint = x.e * x.tokens * m.hidden_size
        resident = m.num_layers * (checkpoint if checkpoint <= cap else 0.0)
    else:
        resident = m.num_layers * layer_bytes(x, cap=cap)
    mask4d = mask4d_bytes(x)
    return resident + ((mask4d if mask4d <= cap else 0.0) + 24.0 * x.tokens)


@dataclass(frozen=True)
class TermBytes:
    """Every term of one prediction in bytes, before act_scale, each from its function above."""

    weights: float
    adapter: float
    optimizer: float
    gradients: float
    """All gradients (the optimizer step's)."""
    concurrent_gradients: float
    """Gradients alive alongside the activations."""
    step_temp: float
    activations: float
    recompute: float
    head: float
    """The head's bytes where they make the forward/backward peak (0 when a recomputed layer outgrows them)."""
    resident: float
    layer: float
    """One decoder layer's saved bytes (what checkpointing recomputes)."""
    head_pass: float
    """The head's bytes, whether or not they make the peak."""

    @property
    def fixed(self) -> float:
        """Alive in both phases: weights, adapter and optimizer states."""
        return self.weights + self.adapter + self.optimizer

    @property
    def scalable(self) -> float:
        """What act_scale multiplies in the forward/backward phase."""
        return self.activations + self.recompute + self.head

    @property
    def step(self) -> float:
        """The optimizer step's own bytes: every gradient plus the step's temporaries."""
        return self.gradients + self.step_temp


def term_bytes(x: Setting) -> TermBytes:
    """Every term of the prediction for ``x``, unscaled."""
    layer, head = layer_bytes(x), head_bytes(x)
    activations, recompute, head_part = activation_bytes(x, layer, head)
    return TermBytes(
        weights=weights_bytes(x),
        adapter=adapter_bytes(x),
        optimizer=optimizer_bytes(x),
        gradients=gradient_bytes(x),
        concurrent_gradients=concurrent_gradient_bytes(x),
        step_temp=step_temp_bytes(x),
        activations=activations,
        recompute=recompute,
        head=head_part,
        resident=resident_bytes(x),
        layer=layer,
        head_pass=head,
    )
