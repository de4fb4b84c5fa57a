"""When a cell does not fit a GPU: the nearest configurations that do, as overrides to paste.

Like ``accelerate estimate-memory`` lists the dtypes a model fits in, this lists changes of the cell that make it
fit one catalogue GPU, each with its predicted device memory, throughput and time. The knobs, in the order they are
tried (the first three keep what is trained; a shorter sequence changes it, so it always comes last):

- ``train.gradient_checkpointing=true``: recompute each layer in the backward (slower, far fewer activations);
- ``quant=4bit``: a QLoRA base (adapters only: a full fine-tune cannot train 4-bit weights);
- ``train.batch_size=b' train.grad_accum=g'``: a smaller micro-batch with b' x g' = batch_size x grad_accum, so the
  global batch (and the optimisation) stays the same;
- ``train.max_seq_len=s'``: the longest sequence that fits, a multiple of SEQ_STEP.

Options are ordered by how little they change (a shorter sequence last, then fewer knobs first), then by predicted
time. For each knob set only the mildest setting that fits is kept (the largest micro-batch, the longest sequence).
Pure Python: no torch.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import combinations
from typing import Any, Callable, Dict, List, Optional, Tuple

from harness.config.hardware import Hardware
from harness.config.peft import QuantConfig
from harness.plan.memory import predict, with_train
from harness.plan.setting import Cell, Coefficients

KNOBS = ("checkpointing", "quant", "micro_batch", "seq")
"""Knob names in the order they are tried (and shown)."""
SEQ_STEP = 64
"""A suggested train.max_seq_len is a multiple of this (and at least this)."""
MAX_OPTIONS = 5
"""Options listed per GPU."""


def _divisors_below(n: int) -> List[int]:
    """Divisors of n smaller than n, largest first (micro-batches that keep the global batch exact)."""
    return [d for d in range(n - 1, 0, -1) if n % d == 0]


def _apply(cell: Cell, knobs: Tuple[str, ...], batch: Optional[int], seq: Optional[int]) -> Cell:
    """``cell`` with the given knobs turned (batch and seq: the micro-batch and sequence length to try)."""
    if "checkpointing" in knobs:
        cell = with_train(cell, gradient_checkpointing=True)
    if "quant" in knobs:
        # the values of conf/quant/4bit.yaml (NF4, double quantization), as ``quant=4bit`` composes them
        cell = replace(cell, quant=QuantConfig(mode="4bit", quant_type="nf4", double_quant=True))
    if "micro_batch" in knobs and batch is not None:
        train = cell.train
        cell = with_train(cell, batch_size=batch, grad_accum=train.batch_size * train.grad_accum // batch)
    if "seq" in knobs and seq is not None:
        cell = with_train(cell, max_seq_len=seq)
    return cell


def _applicable(cell: Cell, knob: str) -> bool:
    """Whether turning ``knob`` changes anything for this cell."""
    if knob == "checkpointing":
        return not cell.train.gradient_checkpointing
    if knob == "quant":
        return cell.peft.method in ("lora", "dora") and cell.quant.mode != "4bit"
    if knob == "micro_batch":
        return cell.train.batch_size > 1
    return cell.train.max_seq_len > SEQ_STEP


def _mildest(cell: Cell, knobs: Tuple[str, ...], fits: Callable[[Cell], bool]) -> Optional[Cell]:
    """The cell with ``knobs`` turned as little as still fits (largest micro-batch, then longest sequence); None
    when no setting of them fits."""
    batches = _divisors_below(cell.train.batch_size) if "micro_batch" in knobs else [None]
    top = cell.train.max_seq_len - 1
    seqs = list(range(top - top % SEQ_STEP, 0, -SEQ_STEP)) if "seq" in knobs else [None]
    for batch in batches:  # the largest micro-batch first: a smaller one only when it does not fit at any length
        for seq in _longest_first(seqs, lambda s, b=batch: fits(_apply(cell, knobs, b, s))):
            return _apply(cell, knobs, batch, seq)
    return None


def _longest_first(seqs: List[Optional[int]], fits: Callable[[Optional[int]], bool]) -> List[Optional[int]]:
    """The first (largest) of ``seqs`` that fits, found by bisection (memory grows with the sequence); [] if none."""
    if seqs == [None]:
        return [None] if fits(None) else []
    low, high = 0, len(seqs) - 1  # seqs descend: find the smallest index that fits
    if not fits(seqs[high]):
        return []
    while low < high:
        mid = (low + high) // 2
        if fits(seqs[mid]):
            high = mid
        else:
            low = mid + 1
    return [seqs[low]]


def overrides(before: Cell, after: Cell) -> str:
    """The overrides that turn ``before`` into ``after``, with conf/'s key names, ready to paste."""
    parts = []
    if after.train.gradient_checkpointing != before.train.gradient_checkpointing:
        parts.append("train.gradient_checkpointing=true")
    if after.quant.mode != before.quant.mode:
        parts.append(f"quant={after.quant.mode}")
    if after.train.batch_size != before.train.batch_size:
        parts += [f"train.batch_size={after.train.batch_size}", f"train.grad_accum={after.train.grad_accum}"]
    if after.train.max_seq_len != before.train.max_seq_len:
        parts.append(f"train.max_seq_len={after.train.max_seq_len}")
    return " ".join(parts)


def fit_options(cell: Cell, hw: Hardware, coeff: Optional[Coefficients], rate: Callable[[Cell], Tuple[float, str]],
                tokens: Optional[float], options: Dict[str, Any], limit: int = MAX_OPTIONS) -> List[Dict[str, Any]]:
    """Up to ``limit`` changed cells that fit ``hw``, nearest first, each with its overrides, device memory (GiB),
    tokens/s, hours and USD for ``tokens`` (None when unknown); ``rate`` gives a cell's tokens/s and its source."""
    capacity = hw.memory_gib * 1024

    def need(c: Cell) -> float:
        return predict(c, "cuda", coeff=coeff, **options).device_total_mib

    def fits(c: Cell) -> bool:
        return need(c) <= capacity

    knobs = [k for k in KNOBS if _applicable(cell, k)]
    found: List[Tuple[Tuple[Any, ...], Dict[str, Any]]] = []
    for count in range(1, len(knobs) + 1):
        for chosen in combinations(knobs, count):
            if any(set(done["knobs"]) < set(chosen) for _, done in found):
                continue  # a subset of these knobs already fits: the extra knob changes more for nothing
            changed = _mildest(cell, chosen, fits)
            if changed is None:
                continue
            tok_s, source = rate(changed)
            hours = tokens / tok_s / 3600 if tokens and tok_s else None
            row = {"knobs": list(chosen), "overrides": overrides(cell, changed), "device_gib": need(changed) / 1024,
                   "tokens_per_s": tok_s, "throughput_source": source, "hours": hours,
                   "cost_usd": hours * hw.price_usd_per_h if hours is not None and hw.price_usd_per_h is not None else None}
            found.append((("seq" in chosen, count, -tok_s if tok_s else 0.0), row))
    found.sort(key=lambda item: item[0])
    return [row for _, row in found[:limit]]


def fit_lines(by_gpu: Dict[str, List[Dict[str, Any]]]) -> List[str]:
    """The printed form of ``fit_options``' results: per GPU a heading and one table row per option."""
    from harness.text import to_markdown

    lines: List[str] = []
    for gpu, rows in by_gpu.items():
        lines.append("")
        if not rows:
            lines.append(f"does not fit {gpu}, and no change of checkpointing, quantization, micro-batch or sequence "
                         "length makes it fit")
            continue
        lines.append(f"does not fit {gpu}; nearest configurations that do (fewest changes first, then fastest; "
                     "grad_accum keeps the global batch; paste the overrides):")
        table = [{"overrides": r["overrides"], "need GiB": r["device_gib"], "tok/s": r["tokens_per_s"],
                  "hours": r["hours"], "USD": r["cost_usd"]} for r in rows]
        lines.append(to_markdown(table, list(table[0])))
    return lines
