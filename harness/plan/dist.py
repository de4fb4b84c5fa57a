"""Per-GPU memory and communication of a cell trained by k ranks (``dist``): DDP, FSDP full shard, DeepSpeed ZeRO-2/3.

Every single-device term (``harness.plan.terms``) is computed for one rank's micro-batch, then split the way the
strategy splits it; k = dist.processes ranks in all:

- weights and adapter: whole on every GPU (ddp, ZeRO-2), / k (fsdp, ZeRO-3);
- gradients, optimizer states, step temporaries: whole (ddp), / k (fsdp, ZeRO-2, ZeRO-3);
- activations, head, recompute: one rank's micro-batch (train.batch_size per GPU), unchanged by k;
- buckets: DDP keeps a copy of every gradient (``gradient_as_bucket_view=False``, the default accelerate keeps: each
  25 MiB bucket is allocated when DDP is built, not per backward; pytorch PR #41954 measured ~1 GB saved on a ~1 GB
  model by viewing instead); ZeRO-2 with overlap_comm (which the hf backend sets) 4.5 x (reduce_bucket_size +
  allgather_bucket_size) elements in the compute dtype, DeepSpeed's defaults 5e8 each: 9 GB in bf16 (HF's DeepSpeed
  guide); ZeRO-3 two reduce buckets of 5e8 elements (double-buffered, assumed);
- gathered (forward/backward only; fsdp, ZeRO-3, k > 1): the root unit (embeddings, LM head, final norm: never
  resharded between forward and backward) plus PREFETCH_LAYERS decoder layers (the running one and the one
  prefetched), in the dtype they are stored in; a full fine-tune adds one layer's unsharded gradient before its
  reduce-scatter.

QLoRA sharded (fsdp or ZeRO-3 on a 4-bit base), as in the Answer.AI / HF FSDP-QLoRA recipe: the packed 4-bit data is
stored in the compute dtype (``bnb_4bit_quant_storage``), still 0.5 byte per weight, and sharded with everything else;
the non-quantized parameters stay in the compute dtype (trl skips peft's fp32 upcast for sharded QLoRA); the absmax
constants are module metadata, not parameters, so every rank keeps all of them.

DeepSpeed trains in its own mixed precision (ZeRO paper, Rajbhandari et al. 2020): trainable parameters and gradients
in the compute dtype, fp32 master weights plus fp32 optimizer states (12 bytes per parameter for Adam).
cpu_offload moves to the CPU: fsdp, each rank's shard of weights, adapter, gradients and optimizer states (the
optimizer steps there); deepspeed (ZeRO-Offload), the optimizer states and gradient partitions, and with ZeRO-3 the
parameter shards. The gathered units and the buckets stay on the GPU.

Communication per GPU and optimizer step, ring collectives, f = (k - 1) / k, over ga = train.grad_accum micro-batches:
ddp 2f x gradient bytes (one all-reduce per step: accumulation runs under no_sync); ZeRO-2 ga x f x gradients
(reduce-scatter) + f x trainable parameters (all-gather after the step); fsdp / ZeRO-3 ga x (2f x gathered parameter
bytes (all-gather in forward and again in backward) + f x gradients (reduce-scatter)): 3f x parameter bytes for a full
fine-tune, while an adapter reduce-scatters only its own gradients but still all-gathers the frozen base. Offloading
adds PCIe traffic. Time = bytes / link bandwidth per direction (a ring sends and receives at once).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, Optional, Tuple

from harness.config.hardware import Hardware
from harness.plan.memory import Prediction, assemble, with_train
from harness.plan.params import NORMS_PER_LAYER, count_params, layer_linears
from harness.plan.setting import FOREACH_TEMP, MIB, OPTIMIZERS, Cell, Coefficients, Setting, resolve
from harness.plan.terms import (
    TermBytes,
    adapter_param_count,
    quantized_parts,
    term_bytes,
    trainable_param_bytes,
    trainable_param_count,
    weights_bytes,
)

K_CHOICES = (1, 2, 4, 8, 16, 32, 64)
"""Rank counts the GPU table tries when it looks for the smallest k that fits."""
DEFAULT_K = 8
"""Ranks planned when dist.processes is null (the GPUs visible at run time; the planner sees none): one 8-GPU node."""
GPUS_PER_NODE = 8
"""Ranks per node assumed for a k the user did not give (K_CHOICES above 8 span several nodes)."""
PREFETCH_LAYERS = 2
"""Decoder layers unsharded at once: the running one and the next, prefetched (FSDP's backward_prefetch=BACKWARD_PRE
and FSDP2's implicit prefetch; ZeRO-3's stage3_max_live_parameters, 1e9 elements by default, allows as much)."""
ZERO_BUCKET = 5e8
"""DeepSpeed's default reduce_bucket_size and allgather_bucket_size, elements (the hf backend sets neither)."""
ZERO2_OVERLAP = 4.5
"""overlap_comm holds 4.5 x both buckets (HF's DeepSpeed guide: 5e8 x 2 bytes x 2 x 4.5 = 9 GB)."""
DEFAULT_NETWORK_GB_PER_S = 12.5
"""Inter-node bandwidth per GPU assumed when the catalogue has none: 100 Gb/s Ethernet, per direction."""


@dataclass(frozen=True)
class DistSetting:
    """What the planner reads of ``dist``: strategy, ranks and the sharding keys."""

    strategy: str
    """ddp, fsdp or deepspeed."""
    k: int
    """Ranks in all (the world size)."""
    nodes: int = 1
    zero_stage: int = 3
    cpu_offload: bool = False
    activation_checkpointing: bool = False
    fsdp_version: int = 2
    storage_bytes: Optional[int] = None
    """Bytes per sharded base parameter when an unquantized base is stored wider than it computes (FSDP mixed
    precision over fp32 weights: 4); None: the compute dtype, as the hf backend loads it."""
    requested: bool = True
    """False when dist.processes was null: k is DEFAULT_K for the breakdown, and the GPU table plans each GPU at the
    smallest k that holds the cell."""

    @classmethod
    def of(cls, dist: Any) -> "DistSetting":
        """From a DistConfig: dist.processes ranks, else DEFAULT_K (``requested`` False)."""
        return cls(dist.strategy, dist.processes or DEFAULT_K, dist.nodes, dist.zero_stage,
                   dist.cpu_offload and dist.strategy != "ddp",  # DDP has nothing to offload
                   dist.activation_checkpointing, dist.fsdp_version, requested=dist.processes is not None)

    def for_cell(self, x: Setting) -> "DistSetting":
        """This setting as the run stores its weights: accelerate's FSDP prepare upcasts every trainable parameter to
        fp32 under bf16/fp16 mixed precision (fsdp_utils.fsdp2_prepare_model; FSDP1 likewise), so a full fine-tune's
        sharded weights, gradients and optimizer states are fp32; adapters already are, a frozen base is not."""
        if self.strategy == "fsdp" and self.storage_bytes is None and not x.adapter and x.e < 4:
            return replace(self, storage_bytes=4)
        return self

    @property
    def shards_params(self) -> bool:
        """True for fsdp and ZeRO-3: each rank keeps 1/k of the weights."""
        return self.strategy == "fsdp" or (self.strategy == "deepspeed" and self.zero_stage == 3)

    @property
    def label(self) -> str:
        """How the output names the strategy."""
        name = {"ddp": "DDP", "fsdp": f"FSDP{self.fsdp_version} full shard",
                "deepspeed": f"DeepSpeed ZeRO-{self.zero_stage}"}[self.strategy]
        return name + (" + CPU offload" if self.cpu_offload and self.strategy != "ddp" else "")


def sharded_qlora(x: Setting, d: DistSetting) -> bool:
    """A quantized base under an adapter whose weights are sharded (the FSDP-QLoRA recipe)."""
    return x.adapter and x.cell.quant.mode != "none" and d.shards_params


def _base(x: Setting, d: DistSetting) -> Tuple[float, float, float]:
    """(sharded, replicated, as all-gathered) bytes of the frozen or trained base weights of the whole model."""
    if sharded_qlora(x, d):
        data, constants, unquantized = quantized_parts(x.cell)
        return data + unquantized * x.e, constants, data + unquantized * x.e
    if not d.shards_params:
        return 0.0, weights_bytes(x), 0.0
    total = count_params(x.cell.model).total
    return total * (d.storage_bytes or x.e), 0.0, total * x.e  # gathered in the compute dtype (FSDP param_dtype)


def _gathered(x: Setting, d: DistSetting) -> float:
    """Bytes all-gathered at the forward/backward peak: the root unit plus PREFETCH_LAYERS decoder layers."""
    if not d.shards_params or (d.k == 1 and not d.cpu_offload):  # one rank's shard is the whole parameter; offloaded,
        return 0.0  # each unit still comes up to the GPU when it runs
    m, counts = x.cell.model, count_params(x.cell.model)
    root = (counts.embedding + counts.lm_head + m.hidden_size) * x.e  # not quantized: compute dtype
    layer_params = sum(lin.params for lin in layer_linears(m)) + NORMS_PER_LAYER[m.arch] * m.hidden_size
    if sharded_qlora(x, d):
        data, _, _ = quantized_parts(x.cell)
        weights = sum(lin.d_in * lin.d_out for lin in layer_linears(m))
        layer = data / m.num_layers + (layer_params - weights) * x.e  # packed data + norms and biases
    else:
        layer = layer_params * x.e
    layer += adapter_param_count(x) / m.num_layers * _adapter_bytes(x, d)
    grad = 0.0 if x.adapter else layer_params * x.e  # a full fine-tune's unsharded layer gradient, before reduce-scatter
    return root + PREFETCH_LAYERS * layer + grad


def _adapter_bytes(x: Setting, d: DistSetting) -> int:
    """Bytes per adapter parameter: fp32 (peft), or the compute dtype under DeepSpeed, which casts the module."""
    return x.e if d.strategy == "deepspeed" else 4


def _deepspeed_states(x: Setting, t: TermBytes) -> TermBytes:
    """DeepSpeed's mixed precision: compute-dtype parameters and gradients, fp32 master weights and optimizer states."""
    n, e = trainable_param_count(x), x.e
    states, _ = OPTIMIZERS.get(x.cell.train.optimizer, (2, None))
    gradients = n * e
    return replace(t, adapter=adapter_param_count(x) * e, gradients=gradients,
                   concurrent_gradients=gradients if t.concurrent_gradients else 0.0,
                   optimizer=n * 4.0 * (1 + states),  # master copy + each state, fp32
                   step_temp=n * 4.0 if x.cell.train.optimizer in FOREACH_TEMP else 0.0)


def rank_terms(x: Setting, d: DistSetting) -> Tuple[TermBytes, Dict[str, float], Dict[str, float], Dict[str, float], Dict[str, str]]:
    """One rank's terms: (TermBytes, rows alive in both phases, rows alive in forward/backward only, bytes moved to the
    CPU per row, how each row is split), all bytes."""
    d = d.for_cell(x)
    t = term_bytes(x)
    if d.strategy == "deepspeed":
        t = _deepspeed_states(x, t)
    elif d.storage_bytes and x.cell.quant.mode == "none" and not x.adapter:  # wide storage: states follow the weights
        s = d.storage_bytes / x.e
        t = replace(t, gradients=t.gradients * s, concurrent_gradients=t.concurrent_gradients * s,
                    optimizer=t.optimizer * s, step_temp=t.step_temp * s)
    k = d.k
    sharded, replicated, _ = _base(x, d)
    p, s = (k if d.shards_params else 1), (1 if d.strategy == "ddp" else k)
    how = {"weights": "whole on every GPU", "adapter": "whole on every GPU",
           "gradients": "whole on every GPU" if s == 1 else f"1/{k} per GPU"}
    if d.shards_params:
        how["weights"] = f"1/{k} per GPU" + (" (absmax constants whole)" if replicated else "")
        how["adapter"] = f"1/{k} per GPU"
    how["optimizer"] = how["step_temp"] = how["gradients"]
    how["activations"] = how["head"] = how["recompute"] = "this GPU's micro-batch (unchanged by k)"
    rank = replace(t, weights=sharded / p + replicated, adapter=t.adapter / p, gradients=t.gradients / s,
                   concurrent_gradients=t.concurrent_gradients / s, optimizer=t.optimizer / s, step_temp=t.step_temp / s)
    fixed: Dict[str, float] = {}
    if d.strategy == "ddp":
        fixed["buckets"] = t.gradients
        how["buckets"] = "a copy of every gradient (DDP, gradient_as_bucket_view=False)"
    elif d.strategy == "deepspeed":
        fixed["buckets"] = (ZERO2_OVERLAP * 2 * ZERO_BUCKET if d.zero_stage == 2 else 2 * ZERO_BUCKET) * x.e
        how["buckets"] = "ZeRO-2 overlap_comm: 4.5 x 2 x 5e8 elements" if d.zero_stage == 2 else "2 x 5e8-element reduce buckets"
    fwd = {"gathered": _gathered(x, d)} if d.shards_params else {}
    if fwd:
        how["gathered"] = f"root unit + {PREFETCH_LAYERS} decoder layers all-gathered" + ("" if x.adapter else " + 1 layer's gradient")
    moved: Dict[str, float] = {}
    if d.cpu_offload and d.strategy != "ddp":
        if d.strategy == "fsdp":  # the shard lives on the CPU; the optimizer steps there
            rows = ["weights", "adapter", "gradients", "optimizer", "step_temp"]
        else:  # ZeRO-Offload: optimizer states and gradient partitions; ZeRO-3's offload_param the parameter shards too
            rows = ["optimizer", "step_temp", "gradients"] + (["weights", "adapter"] if d.shards_params else [])
        for row in rows:
            value = (rank.weights - replicated) if row == "weights" else getattr(rank, row)
            moved[row], how[row] = value, "on the CPU (cpu_offload)"
        rank = replace(rank, **{r: (replicated if r == "weights" else 0.0) for r in rows},
                       concurrent_gradients=0.0 if "gradients" in rows else rank.concurrent_gradients)
    return rank, fixed, fwd, moved, how


def predict_dist(cell: Cell, d: DistSetting, device: str = "cuda", batch: Optional[int] = None, seq: Optional[int] = None,
                 attention: str = "auto", head: str = "fused", coeff: Optional[Coefficients] = None,
                 loss_fraction: float = 1.0) -> Prediction:
    """Predicted training peak of ONE rank of ``cell`` under ``d``, by term (``harness.plan.memory.predict`` per GPU)."""
    if d.activation_checkpointing and d.strategy == "fsdp":  # FSDP's own checkpoint wrapper: the same recomputation
        cell = with_train(cell, gradient_checkpointing=True)
    x = resolve(cell, device, batch, seq, attention, head, loss_fraction)
    rank, fixed, fwd, moved, how = rank_terms(x, d)
    p = assemble(x, rank, coeff, fixed, fwd)
    if sharded_qlora(x, d):  # the recipe keeps the rest of the base in the compute dtype
        p.assumptions = [a for a in p.assumptions if "prepare_model_for_kbit_training" not in a]
        p.assumptions.append("sharded QLoRA (Answer.AI/HF recipe): 4-bit data packed in the compute dtype and sharded, "
                             "non-quantized weights kept in the compute dtype, absmax constants whole on every rank")
    p.assumptions.append(f"{d.label}, k={d.k} ranks on {d.nodes} node(s): per-GPU terms; micro-batch {x.batch} per GPU")
    if d.strategy == "deepspeed":
        p.assumptions.append("DeepSpeed mixed precision: compute-dtype parameters and gradients, fp32 master weights "
                             "and optimizer states")
    if x.cell.quant.mode == "8bit" and d.shards_params:
        p.caveats.append("8-bit bitsandbytes weights have no float storage dtype to shard (PEFT's FSDP guide: known "
                         "issues); predicted as if they sharded like 4-bit ones")
    p.assumptions.append("the device total leaves out NCCL's own buffers (outside torch's allocator, so not in its "
                         "counter either) and fragmentation beyond the allocator slack")
    p.dist = {"strategy": d.strategy, "label": d.label, "k": d.k, "nodes": d.nodes, "how": how,
              "offloaded_mib": {row: b / MIB for row, b in moved.items()}, "comm_bytes": comm_bytes(x, d)}
    return p


def comm_bytes(x: Setting, d: DistSetting) -> Dict[str, float]:
    """Bytes each GPU sends per optimizer step, by collective (ring algorithms), plus ``pcie`` for offload traffic."""
    k, ga = d.k, x.cell.train.grad_accum
    f = (k - 1) / k
    per = x.e if d.strategy == "deepspeed" else trainable_param_bytes(x)  # gradients are reduced in their own dtype
    grads = trainable_param_count(x) * per
    out: Dict[str, float] = {}
    if d.strategy == "ddp":
        out["all-reduce gradients"] = 2 * f * grads
    elif not d.shards_params:  # ZeRO-2
        out["reduce-scatter gradients"] = ga * f * grads
        out["all-gather parameters"] = f * grads  # the updated trainable parameters, once per step
    else:
        _, _, gathered = _base(x, d)
        gathered += adapter_param_count(x) * _adapter_bytes(x, d)
        out["all-gather parameters (forward + backward)"] = ga * 2 * f * gathered
        out["reduce-scatter gradients"] = ga * f * grads
    if d.cpu_offload and d.strategy != "ddp":
        sharded = (_base(x, d)[0] + adapter_param_count(x) * _adapter_bytes(x, d)) / k if d.shards_params else 0.0
        if d.strategy == "fsdp":  # the shard up for each all-gather, its gradient down
            out["pcie"] = ga * (2 * sharded + grads / k)
        else:  # ZeRO-Offload: gradient partitions down, updated parameters up (ZeRO-3: shards up for each gather)
            out["pcie"] = ga * grads / k + grads / k + ga * 2 * sharded
    return out


def link(hw: Hardware, d: DistSetting) -> Tuple[Optional[float], str]:
    """(GB/s per direction, name) of the link the ranks' collectives cross: the network across nodes, else NVLink,
    else PCIe."""
    if d.nodes > 1:
        if hw.network_gb_per_s:
            return hw.network_gb_per_s, "network"
        return DEFAULT_NETWORK_GB_PER_S, "network (assumed 100 Gb/s Ethernet)"
    if hw.nvlink_gb_per_s:
        return hw.nvlink_gb_per_s, "NVLink"
    return hw.pcie_gb_per_s, "PCIe"


def comm_seconds(comm: Dict[str, float], hw: Hardware, d: DistSetting) -> Optional[float]:
    """Seconds per optimizer step spent communicating: collectives over ``link`` plus offload traffic over PCIe, added
    (they may share the PCIe link); None when the catalogue lacks a bandwidth it needs."""
    collective = sum(v for name, v in comm.items() if name != "pcie") if d.k > 1 else 0.0
    pcie = comm.get("pcie", 0.0)
    bandwidth, _ = link(hw, d)
    if (collective and not bandwidth) or (pcie and not hw.pcie_gb_per_s):
        return None
    return (collective / (bandwidth * 1e9) if collective else 0.0) + (pcie / (hw.pcie_gb_per_s * 1e9) if pcie else 0.0)


def smallest_k(fits: Callable[[int], bool]) -> Optional[int]:
    """The smallest rank count in K_CHOICES for which ``fits(k)``; None when none does."""
    return next((k for k in K_CHOICES if fits(k)), None)


def nodes_for(k: int, d: DistSetting) -> int:
    """Nodes a k-rank plan spans: the user's dist.nodes at the requested k, else k / GPUS_PER_NODE rounded up."""
    return d.nodes if k == d.k else max(1, -(-k // GPUS_PER_NODE))
