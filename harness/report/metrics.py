"""What each report column is: its unit, whether higher is better, a label.

Summary columns are listed once here; a metric an evaluator adds later is described by
its own rows (``unit``, ``higher_is_better`` in the record), so new evaluators need no
change here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

import pandas as pd


@dataclass(frozen=True)
class MetricSpec:
    """How to read one column."""

    unit: Optional[str]
    """e.g. MiB, tokens/s, %, nats/token; None for a plain number."""
    higher_is_better: Optional[bool]
    """None: not a score (a count, a setting): never marked best."""
    label: str
    """Human label for axes and headers."""


KNOWN: Dict[str, MetricSpec] = {
    "peak_mem_mib": MetricSpec("MiB", False, "peak memory"),
    "pred_mem_mib": MetricSpec("MiB", False, "predicted peak memory"),
    "pred_err_pct": MetricSpec("%", None, "prediction error"),
    "tokens_per_s": MetricSpec("tokens/s", True, "throughput"),
    "tokens_per_s_p25": MetricSpec("tokens/s", True, "throughput p25"),
    "tokens_per_s_p50": MetricSpec("tokens/s", True, "throughput p50"),
    "tokens_per_s_p75": MetricSpec("tokens/s", True, "throughput p75"),
    "step_cv": MetricSpec(None, False, "step-time CV"),
    "mfu": MetricSpec(None, True, "MFU"),
    "train_loss": MetricSpec("nats/token", False, "train loss"),
    "first_step_loss": MetricSpec("nats/token", None, "first-step loss"),
    "eval_loss": MetricSpec("nats/token", False, "eval loss"),
    "perplexity": MetricSpec(None, False, "perplexity"),
    "ppl_delta": MetricSpec(None, False, "perplexity vs base"),
    "seq_ppl": MetricSpec(None, False, "sequence perplexity"),
    "trainable_params": MetricSpec("params", None, "trainable parameters"),
    "examples": MetricSpec("examples", None, "training examples"),
    "trained_tokens": MetricSpec("tokens", None, "trained tokens"),
    "wall_s": MetricSpec("s", False, "wall time"),
    "train_cost_usd": MetricSpec("USD", False, "training cost"),
    "mt_bench": MetricSpec("score (1-10)", True, "MT-Bench"),
    "mt_bench_turn1": MetricSpec("score (1-10)", True, "MT-Bench turn 1"),
    "mt_bench_turn2": MetricSpec("score (1-10)", True, "MT-Bench turn 2"),
    "mt_bench_delta": MetricSpec("score (1-10)", True, "MT-Bench vs base"),
    "alpaca_wr": MetricSpec("%", True, "AlpacaEval win rate"),
    "alpaca_lc_wr": MetricSpec("%", True, "AlpacaEval LC win rate"),
    "alpaca_lc_wr_minimal": MetricSpec("%", True, "AlpacaEval LC win rate (minimal GLM)"),
    "alpaca_wr_delta": MetricSpec("%", True, "AlpacaEval win rate vs base"),
}
"""The summary's columns and the judged headlines."""
COUNT_SUFFIXES = ("_judged", "_failed", "_cached", "_unparseable", "_flagged", "_out_of_range", "_fallback", "_wins", "_losses", "_ties",
                  "_position_first_won", "_answers_cut_off", "_cut_off", "_answer_tokens", "_answer_chars")


def spec_for(column: str, tidy: Optional[pd.DataFrame] = None) -> MetricSpec:
    """The column's spec: the table above, else the metric rows it came from, else an unknown direction."""
    if column in KNOWN:
        return KNOWN[column]
    if column.endswith("_se"):
        base = spec_for(column[:-3], tidy)
        return MetricSpec(base.unit, None, f"{base.label} stderr")
    if column.endswith(COUNT_SUFFIXES):
        return MetricSpec("count", None, column.replace("_", " "))
    if tidy is not None and not tidy.empty:
        rows = tidy[(tidy["metric"] == column) | (tidy["task"].astype(str) + "_" + tidy["metric"] == column)]
        if not rows.empty:
            first: Dict[str, Any] = rows.iloc[0].to_dict()
            hib = first.get("higher_is_better")
            unit = first.get("unit")
            return MetricSpec(unit if isinstance(unit, str) else None, bool(hib) if isinstance(hib, (bool, int)) else None,
                              column.replace("_", " "))
    return MetricSpec(None, None, column.replace("_", " "))
