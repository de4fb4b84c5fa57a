"""Sweep summary: one row per cell, written as summary.csv and summary.md.

Reads exactly the cells in the manifest of the sweep folder it is given (see harness/store.py),
each as its training record plus the evaluations that command asked for. Stays free of heavy imports:
it runs in the Hydra parent at the end of every sweep.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from harness.plan.calibrate import prediction_cells
from harness.records import write_text_atomic
from harness.store import load_sweep

COLUMNS = [
    "cell", "status", "model", "framework", "quant", "peft", "lora_r", "trainable_params",
    "peak_mem_mib", "mem_counter", "pred_mem_mib", "pred_err_pct", "tokens_per_s", "mfu", "train_loss", "eval_loss", "perplexity", "ppl_delta", "seq_ppl",
    "examples", "trained_tokens", "wall_s", "error",
]
TRAIN_LOSS_WINDOW = 5
DEFINITIONS = {
    "peak_mem_mib": "training peak in MiB by the counter in mem_counter (cuda_peak_allocated: torch peak allocated; host_peak_rss: worker VmHWM reset before training)",
    "pred_mem_mib": "the capacity planner's analytic prediction of the same counter (python -m harness.plan, uncalibrated), at the largest micro-batch the cell built",
    "pred_err_pct": "(pred_mem_mib - peak_mem_mib) / peak_mem_mib x 100",
    "tokens_per_s": "loss-bearing tokens per second of optimizer-step time, warm-up steps excluded",
    "mfu": "model FLOPs utilisation against the catalogue's dense bf16 peak of the matched device (record efficiency.mfu)",
    "train_loss": f"mean training loss of the last {TRAIN_LOSS_WINDOW} logged optimizer steps",
    "eval_loss": "token-weighted held-out loss (nats/token) on the held-out split after training",
    "perplexity": "exp(eval_loss)",
    "ppl_delta": "perplexity minus the untrained base model's perplexity on the same held-out split (negative = better)",
    "seq_ppl": "lm-eval rolling-log-likelihood perplexity: exp(-sum log p / tokens) over every token of each held-out example",
    "<task>_<metric>": "lm-eval score of the task (acc_norm when the task reports it, else acc, else its first metric); _se its stderr",
    "<task>_base, <task>_delta": "the same metric of the untrained base model, and cell minus base (negative acc delta = knowledge lost)",
    "examples": "training examples after filtering and max_examples",
    "trained_tokens": "loss-bearing tokens the optimizer steps consumed",
    "wall_s": "cell wall time seen by the parent: worker start, imports, data, load, train, eval, save",
}


def _metric(record: Dict[str, Any], evaluator: str, metric: str) -> Optional[float]:
    for row in record.get("metrics", []):
        if row.get("evaluator") == evaluator and row.get("metric") == metric:
            return row.get("value")
    return None


def _train_loss(curve: List[List[float]]) -> Optional[float]:
    tail = [loss for _, loss in curve[-TRAIN_LOSS_WINDOW:] if loss is not None]  # null: a non-finite loss (diverged)
    return sum(tail) / len(tail) if tail else None


def summary_row(record: Dict[str, Any]) -> Dict[str, Any]:
    """The summary columns for one record (missing figures are None)."""
    config = record.get("config", {})
    train = record.get("train", {})
    peak = record.get("memory", {}).get("train_peak", {})
    peft = config.get("peft", {}).get("method")
    return {
        "cell": record.get("cell_id"),
        "status": record.get("status"),
        "model": config.get("model", {}).get("name"),
        "framework": config.get("framework", {}).get("name"),
        "quant": config.get("quant", {}).get("mode"),
        "peft": peft,
        "lora_r": config.get("lora", {}).get("r") if peft in ("lora", "dora") else None,
        "trainable_params": train.get("trainable_params"),
        "peak_mem_mib": peak.get("peak_mib"),
        "mem_counter": peak.get("counter"),
        **prediction_cells(record),
        "tokens_per_s": train.get("tokens_per_s"),
        "mfu": record.get("efficiency", {}).get("mfu"),
        "train_loss": _train_loss(train.get("loss_curve", [])),
        "eval_loss": _metric(record, "perplexity", "eval_loss"),
        "perplexity": _metric(record, "perplexity", "perplexity"),
        "ppl_delta": _metric(record, "perplexity", "perplexity_delta"),
        "seq_ppl": _metric(record, "perplexity", "seq_perplexity"),
        **lm_eval_cells(record),
        "examples": record.get("data", {}).get("train", {}).get("examples"),
        "trained_tokens": train.get("trained_tokens"),
        "wall_s": record.get("timings_s", {}).get("cell_wall"),
        "error": record.get("error"),
    }


PRIMARY_METRICS = ("acc_norm", "acc", "exact_match", "f1")
"""Which lm-eval metric a summary column shows, in order of preference (leaderboard practice)."""


def _primary(metrics: List[str]) -> Optional[str]:
    """The metric to show for a task: the first of PRIMARY_METRICS it reports, else its first metric."""
    plain = [m for m in metrics if not m.endswith(("_base", "_delta"))]
    return next((m for m in PRIMARY_METRICS if m in plain), plain[0] if plain else None)


def _lm_eval_primary(record: Dict[str, Any]) -> Dict[str, tuple]:
    """task -> (shown metric, that task's rows by metric name) for the record's lm-eval rows."""
    by_task: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for row in record.get("metrics", []):
        if row.get("evaluator") == "lm_eval":
            by_task.setdefault(row["task"], {})[row["metric"]] = row
    return {task: (_primary(list(rows)), rows) for task, rows in by_task.items() if _primary(list(rows))}


def lm_eval_cells(record: Dict[str, Any]) -> Dict[str, Any]:
    """``<task>_<metric>``, ``<task>_<metric>_se``, ``<task>_base``, ``<task>_delta`` for each lm-eval task."""
    cells: Dict[str, Any] = {}
    for task, (metric, rows) in _lm_eval_primary(record).items():
        cells[f"{task}_{metric}"] = rows[metric]["value"]
        cells[f"{task}_{metric}_se"] = rows[metric]["stderr"]
        cells[f"{task}_base"] = rows.get(f"{metric}_base", {}).get("value")
        cells[f"{task}_delta"] = rows.get(f"{metric}_delta", {}).get("value")
    return cells


def lm_eval_headlines(record: Dict[str, Any]) -> List[str]:
    """``mmlu acc 0.412±0.012 (-0.008 vs base)`` per lm-eval task, for the line a cell prints."""
    out = []
    for task, (metric, rows) in _lm_eval_primary(record).items():
        row, delta = rows[metric], rows.get(f"{metric}_delta")
        text = f"{task} {metric} {row['value']:.3f}" + (f"±{row['stderr']:.3f}" if row["stderr"] is not None else "")
        out.append(text + (f" ({delta['value']:+.3f} vs base)" if delta else ""))
    return out


def columns_for(rows: List[Dict[str, Any]]) -> List[str]:
    """COLUMNS plus the lm-eval columns these rows carry, placed after the perplexity columns."""
    extra: List[str] = []
    for row in rows:
        extra += [key for key in row if key not in COLUMNS and key not in extra]
    at = COLUMNS.index("examples") if "examples" in COLUMNS else len(COLUMNS)
    return COLUMNS[:at] + extra + COLUMNS[at:]


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def to_markdown(rows: Iterable[Dict[str, Any]], columns: List[str]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c)).replace("|", "\\|") for c in columns) + " |")
    return "\n".join(lines)


def write_summary(sweep_dir: Path) -> List[Dict[str, Any]]:
    """Write summary.csv and summary.md for the cells of the sweep's grid; return the rows."""
    sweep_dir = Path(sweep_dir)
    rows = [summary_row(r) for r in load_sweep(sweep_dir)]
    columns = columns_for(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(sweep_dir / "summary.csv", buffer.getvalue())
    notes = "\n".join(f"- **{k}**: {v}" for k, v in DEFINITIONS.items())
    write_text_atomic(sweep_dir / "summary.md", f"# Sweep summary: {sweep_dir.name}\n\n{to_markdown(rows, columns)}\n\n{notes}\n")
    return rows
