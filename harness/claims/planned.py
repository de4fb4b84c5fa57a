"""The capacity planner's figures for a claim's config: memory with the planner's stated error, time, cost, counts.

The memory band is the planner's own stated error: the median absolute error of its device-level prediction against
the published figures of ``harness.plan.anchors`` (one-GPU anchors for one-GPU cells, the per-GPU anchors for
``dist`` cells), computed here, not copied. Time uses tokens/s measured by a record when one is given, else the
planner's MFU assumption (``harness.plan.estimate``) with a stated MFU range as its band.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Dict, Optional, Tuple

from harness.config.hardware import Hardware
from harness.plan.dist import DistSetting, predict_dist
from harness.plan.estimate import DEFAULT_MFU, assumed_mfu
from harness.plan.flops import flops_per_token
from harness.plan.memory import Prediction, predict
from harness.plan.params import adapter_params, count_params
from harness.plan.setting import Cell, resolve
from harness.plan.terms import term_bytes

GIB = 1024.0
MFU_RANGE = (0.20, 0.46)
"""The band of an assumed MFU: 46 % is the top of torchtitan / llm-foundry's 33-46 % for 7-8B full fine-tunes on
H100 (shared anchors); 20 % is assumed for LoRA at small batches on consumer cards (no anchor)."""
ADAPTER_HEADER_BYTES = 0
"""Bytes beside the tensors in a saved adapter file: counted as 0 by the planner (safetensors' JSON header is a few
tens of kB); a measured adapter file says the real figure."""


@dataclass(frozen=True)
class Figure:
    """One figure of the planner (or of a record): value and band in ``unit``, or why there is none."""

    value: Optional[float]
    unit: str
    low: Optional[float] = None
    high: Optional[float] = None
    source: str = ""
    """Where it comes from: the counter or formula, and its band's definition."""
    missing: str = ""
    """Why there is no value (``value`` None): does not fit, not modelled, ..."""
    exact: bool = False
    """Counted, not estimated: the band is the value itself."""

    def describe(self, digits: int = 3) -> str:
        """``6.35 GiB (5.35–7.35)``, ``167.8 MB (exact)``, or the reason there is none."""
        if self.value is None:
            return self.missing or "—"
        unit = " %" if self.unit == "%" else f" {self.unit}"
        text = f"{self.value:.{digits}g}{unit}"
        if self.exact:
            return text + " (exact)"
        if self.low is not None and self.high is not None:
            text += f" ({self.low:.{digits}g}–{self.high:.{digits}g})"
        return text


@lru_cache(maxsize=1)
def error_bands() -> Dict[str, float]:
    """The planner's stated error, median absolute % against published figures: ``single`` (one GPU), ``dist`` (per
    GPU of a multi-GPU run) and ``ratio`` (the ratio of two figures of one source: every pair of one-GPU anchors
    from the same publication, predicted ratio against published ratio)."""
    from itertools import combinations

    from harness.plan.anchors import ANCHORS, DIST_ANCHORS, evaluate, evaluate_dist

    rows = [(a.source, evaluate(a)) for a in ANCHORS if not a.component]
    ratios = [abs((x["pred_device"] / y["pred_device"]) / (x["published"] / y["published"]) - 1) * 100
              for (sx, x), (sy, y) in combinations(rows, 2) if sx == sy]
    return {"single": statistics.median(abs(r["error_pct"]) for _, r in rows + [(None, evaluate(a)) for a in ANCHORS if a.component]),
            "dist": statistics.median(abs(evaluate_dist(a)["error_pct"]) for a in DIST_ANCHORS),
            "ratio": statistics.median(ratios), "ratio_pairs": float(len(ratios))}


def prediction(typed: Any) -> Tuple[Prediction, str]:
    """The planner's CUDA prediction of a config (per GPU for a dist cell) and which band applies."""
    cell = Cell.of(typed)
    if typed.dist.enabled():
        return predict_dist(cell, DistSetting.of(typed.dist), "cuda"), "dist"
    return predict(cell, "cuda"), "single"


def _banded(value_gib: float, band: str, what: str) -> Figure:
    pct = error_bands()[band]
    return Figure(value_gib, "GiB", value_gib * (1 - pct / 100), value_gib * (1 + pct / 100),
                  source=f"planner, {what}; band ±{pct:.1f} % = its median error against published "
                         f"{'per-GPU ' if band == 'dist' else ''}figures (python -m harness.plan.anchors)")


def model_terms_gib(typed: Any) -> float:
    """Weights + adapter + optimizer states + every gradient, GiB: what a framework's overhead is measured over."""
    t = term_bytes(resolve(Cell.of(typed), "cuda"))
    return (t.fixed + t.gradients) / 2**30


def memory(typed: Any, quantity: str) -> Figure:
    """The planner's figure of ``quantity`` (peak: the device total; weights; overhead) for one config."""
    if typed.framework.backend != "hf":
        return Figure(None, "GiB", missing=f"not modelled: the planner models the hf backend, not {typed.framework.name}")
    p, band = prediction(typed)
    if quantity == "weights":
        return _banded(p.components["weights"] / GIB, band, "weights as loaded (allocated)")
    if quantity == "overhead":
        over = p.device_total_mib / GIB - model_terms_gib(typed)
        return _banded(over, band, "device total minus weights, adapter, optimizer and gradients")
    what = "device total per GPU" if band == "dist" else "device total (allocated x 1.08 slack + 0.49 GiB CUDA context)"
    return _banded(p.device_total_mib / GIB, band, what)


def fits(typed: Any, hw: Hardware) -> Tuple[bool, float]:
    """(whether the predicted device total fits the GPU's memory, that total in GiB)."""
    p, _ = prediction(typed)
    return p.device_total_mib <= hw.memory_gib * GIB, p.device_total_mib / GIB


def per_mfu(typed: Any, hw: Hardware, seq: float) -> float:
    """Tokens/s on ``hw`` per unit of MFU: its bf16 peak over the model FLOPs of one token (no recomputation)."""
    cell = Cell.of(typed)
    full = typed.peft.method == "full"
    return hw.bf16_tflops * 1e12 / flops_per_token(cell.model, seq, 0 if full else adapter_count(typed), full)


def assumed_rate(typed: Any, hw: Hardware, seq: float) -> Tuple[float, float, float, str]:
    """(tokens/s at the default MFU, at the low and high end of MFU_RANGE, the words that say so) on ``hw``."""
    cell = Cell.of(typed)
    n_adapter = 0 if typed.peft.method == "full" else adapter_count(typed)
    mfu, words = assumed_mfu(cell, DEFAULT_MFU, int(seq), n_adapter)
    scale = per_mfu(typed, hw, seq)

    def rate(base: float) -> float:
        return mfu * base / DEFAULT_MFU * scale

    return rate(DEFAULT_MFU), rate(MFU_RANGE[0]), rate(MFU_RANGE[1]), \
        f"{words} (band: MFU {MFU_RANGE[0]:.0%}–{MFU_RANGE[1]:.0%}) on {hw.name}'s {hw.bf16_tflops:g} TFLOP/s bf16 peak"


def hours(tokens: float, rate: float, low_rate: Optional[float] = None, high_rate: Optional[float] = None,
          source: str = "") -> Figure:
    """Hours for ``tokens`` at ``rate`` tokens/s (the band from the slower and faster rates, when given)."""
    h = tokens / rate / 3600
    if low_rate and high_rate:
        return Figure(h, "h", tokens / high_rate / 3600, tokens / low_rate / 3600, source=source)
    return Figure(h, "h", source=source)


def adapter_count(typed: Any) -> int:
    """Exact adapter parameters of a LoRA/DoRA config."""
    cell = Cell.of(typed)
    return adapter_params(cell.model, resolve(cell).modules, cell.lora.r, typed.peft.method == "dora")


def trainable_share(typed: Any) -> Tuple[float, int, int]:
    """(trainable %, trainable, total) counted exactly: adapter over base + adapter (a full fine-tune: 100 %)."""
    base = count_params(typed.model).total
    if typed.peft.method == "full":
        return 100.0, base, base
    n = adapter_count(typed)
    return 100.0 * n / (base + n), n, base + n


def adapter_mb(typed: Any, bytes_per_param: float = 4.0, source: str = "") -> Figure:
    """The saved adapter file's size in MB (1e6 bytes): exact count x bytes per parameter (fp32: 4)."""
    n = adapter_count(typed)
    return Figure(n * bytes_per_param / 1e6, "MB", exact=True,
                  source=source or f"{n:,} adapter parameters counted x 4 B (fp32, as peft saves them); header not counted")
