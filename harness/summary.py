"""Sweep summary: one row per cell, written as summary.csv and summary.md.

Reads only the records in the sweep folder it is given. Stays free of heavy imports:
it runs in the Hydra parent at the end of every sweep.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from harness.records import load_records, write_text_atomic

COLUMNS = [
    "cell", "status", "model", "framework", "quant", "peft", "lora_r", "trainable_params",
    "peak_mem_mib", "mem_counter", "tokens_per_s", "train_loss", "eval_loss", "perplexity",
    "examples", "trained_tokens", "wall_s", "error",
]
TRAIN_LOSS_WINDOW = 5
DEFINITIONS = {
    "peak_mem_mib": "training peak in MiB by the counter in mem_counter (cuda_peak_allocated: torch peak allocated; host_peak_rss: worker VmHWM reset before training)",
    "tokens_per_s": "loss-bearing tokens per second of optimizer-step time, warm-up steps excluded",
    "train_loss": f"mean training loss of the last {TRAIN_LOSS_WINDOW} logged optimizer steps",
    "eval_loss": "token-weighted held-out loss (nats/token) on the held-out split after training",
    "perplexity": "exp(eval_loss)",
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
    tail = [loss for _, loss in curve[-TRAIN_LOSS_WINDOW:]]
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
        "tokens_per_s": train.get("tokens_per_s"),
        "train_loss": _train_loss(train.get("loss_curve", [])),
        "eval_loss": _metric(record, "perplexity", "eval_loss"),
        "perplexity": _metric(record, "perplexity", "perplexity"),
        "examples": record.get("data", {}).get("train", {}).get("examples"),
        "trained_tokens": train.get("trained_tokens"),
        "wall_s": record.get("timings_s", {}).get("cell_wall"),
        "error": record.get("error"),
    }


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
    """Write summary.csv and summary.md for every record in ``sweep_dir``; return the rows."""
    sweep_dir = Path(sweep_dir)
    rows = [summary_row(r) for r in load_records(sweep_dir)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(sweep_dir / "summary.csv", buffer.getvalue())
    notes = "\n".join(f"- **{k}**: {v}" for k, v in DEFINITIONS.items())
    write_text_atomic(sweep_dir / "summary.md", f"# Sweep summary: {sweep_dir.name}\n\n{to_markdown(rows, COLUMNS)}\n\n{notes}\n")
    return rows
