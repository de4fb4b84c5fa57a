"""Records to rows: one row per cell, its columns, the sweep's axes; the one place that reads records.

Used by the sweep summary (``harness.report.summary``) and the report (``harness.report.data``). The axes:
the config keys whose values differ across the grid's cells (``model``, ``lora_r``, ``train.seed``, ...),
found in the records' resolved configs and ordered as the command named them (manifest overrides), seeds
last; they lead every table and the rows are sorted by them in natural order (r8 before r16).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from harness.files import read_json
from harness.measure.fairness import first_step_loss
from harness.plan.calibrate import prediction_cells
from harness.report.quality import quality_cells
from harness.store.records import CELL_SPEC_NAME

COLUMNS = [
    "cell", "status", "model", "weights", "device", "gpus", "framework", "quant", "peft", "lora_r", "trainable_params",
    "peak_mem_mib", "mem_counter", "pred_mem_mib", "pred_err_pct", "tokens_per_s", "tokens_per_s_p25", "tokens_per_s_p50", "tokens_per_s_p75", "step_cv", "step_cv_flag", "mfu", "train_loss", "first_step_loss", "eval_loss", "perplexity", "ppl_delta", "seq_ppl",
    "examples", "trained_tokens", "wall_s", "error",
]
SPREAD = ("tokens_per_s_p25", "tokens_per_s_p50", "tokens_per_s_p75", "step_cv", "step_cv_flag")
"""Per-step throughput quartiles and step-time CV (record train block; n/a, i.e. empty, under 8 measured steps)."""
TRAIN_LOSS_WINDOW = 5
DEFINITIONS = {
    "axes (leading columns)": "the config keys whose values differ across the sweep's cells (model, lora_r, train.seed, ...); rows are sorted by them",
    "weights": "random (a tiny model, or model.weights=random: the real architecture with random weights; memory and speed "
               "are real, losses and scores only exercise the code path) or pretrained",
    "device": "where the worker trained: cpu or cuda",
    "gpus": "ranks that trained the cell (dist.processes: GPUs on a CUDA cell, processes on a CPU one; 1 for dist=none); "
            "peak_mem_mib is then the largest rank's and tokens_per_s the sum over ranks (per GPU: record train.tokens_per_s_per_gpu)",
    "peak_mem_mib": "training peak in MiB by the counter in mem_counter (cuda_peak_allocated: torch peak allocated; host_peak_rss: worker VmHWM reset before training)",
    "pred_mem_mib": "the capacity planner's analytic prediction of the same counter (python -m harness.plan, uncalibrated), at the largest micro-batch the cell built",
    "pred_err_pct": "(pred_mem_mib - peak_mem_mib) / peak_mem_mib x 100",
    "tokens_per_s": "loss-bearing tokens per second of optimizer-step time, warm-up steps excluded",
    "tokens_per_s_p25, _p50, _p75": "quartiles of per-step throughput (a step's loss tokens / its time) over the measured steps; empty under 8 steps",
    "step_cv, step_cv_flag": "standard deviation / mean of the measured step times, and whether it is above run.step_cv_warn (noisy throughput)",
    "mfu": "model FLOPs utilisation against the catalogue's dense bf16 peak of the matched device (record efficiency.mfu)",
    "train_loss": f"mean training loss of the last {TRAIN_LOSS_WINDOW} logged optimizer steps",
    "first_step_loss": "training loss at the first optimizer step (LoRA starts as a no-op: equal across frameworks on the same model, data and seed)",
    "eval_loss": "token-weighted held-out loss (nats/token) on the held-out split after training",
    "perplexity": "exp(eval_loss)",
    "ppl_delta": "perplexity minus the untrained base model's perplexity on the same held-out split (negative = better); no stderr: one fixed split, scored once",
    "seq_ppl": "lm-eval rolling-log-likelihood perplexity: exp(-sum log p / tokens) over every token of each held-out example",
    "<task>_<metric>": "lm-eval score of the task (acc_norm when the task reports it, else acc, else its first metric); _se its stderr; "
                       "a local MMLU folder (eval.lm_eval.mmlu_dir) is labelled mmlu_local_<folder name>, never mmlu",
    "<task>_base, <task>_delta, <task>_delta_se": "the same metric of the untrained base model, cell minus base (negative acc delta = knowledge lost), "
                                                  "and the delta's stderr sqrt(se_cell^2 + se_base^2)",
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


def weights_of(record: Dict[str, Any]) -> Optional[str]:
    """random or pretrained: the record's ``model.weights``, else derived from ``config.model.tiny`` (older records)."""
    stated = (record.get("model") or {}).get("weights")
    if stated:
        return stated
    tiny = (record.get("config") or {}).get("model", {}).get("tiny")
    return None if tiny is None else ("random" if tiny else "pretrained")


def gpus_of(record: Dict[str, Any]) -> Optional[int]:
    """The ranks that trained the cell: the record's count, else its config's (1 for dist=none; None when unknown)."""
    ranks = (record.get("train") or {}).get("ranks")
    if ranks:
        return int(ranks)
    dist = (record.get("config") or {}).get("dist") or {}
    if dist.get("strategy", "none") == "none":
        return 1
    return dist.get("processes")


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
        "weights": weights_of(record),
        "device": (record.get("environment") or {}).get("device"),
        "gpus": gpus_of(record),
        "framework": config.get("framework", {}).get("name"),
        "quant": config.get("quant", {}).get("mode"),
        "peft": peft,
        "lora_r": config.get("lora", {}).get("r") if peft in ("lora", "dora") else None,
        "trainable_params": train.get("trainable_params"),
        "peak_mem_mib": peak.get("peak_mib"),
        "mem_counter": peak.get("counter"),
        **prediction_cells(record),
        "tokens_per_s": train.get("tokens_per_s"),
        **{key: train.get(key) for key in SPREAD},
        "mfu": record.get("efficiency", {}).get("mfu"),
        "train_loss": _train_loss(train.get("loss_curve", [])),
        "first_step_loss": first_step_loss(train),
        "eval_loss": _metric(record, "perplexity", "eval_loss"),
        "perplexity": _metric(record, "perplexity", "perplexity"),
        "ppl_delta": _metric(record, "perplexity", "perplexity_delta"),
        "seq_ppl": _metric(record, "perplexity", "seq_perplexity"),
        **lm_eval_cells(record),
        **quality_cells(record),
        "examples": record.get("data", {}).get("train", {}).get("examples"),
        "trained_tokens": train.get("trained_tokens"),
        "wall_s": record.get("timings_s", {}).get("cell_wall"),
        "error": record.get("error"),
    }


PRIMARY_METRICS = ("acc_norm", "acc", "exact_match", "f1")
"""Which lm-eval metric a summary column shows, in order of preference (leaderboard practice)."""
LOCAL_MMLU = "mmlu_local_"
"""Label prefix of a task scored from a local MMLU folder (its rows carry ``mmlu_dir``)."""


def _primary(metrics: List[str]) -> Optional[str]:
    """The metric to show for a task: the first of PRIMARY_METRICS it reports, else its first metric."""
    plain = [m for m in metrics if not m.endswith(("_base", "_delta"))]
    return next((m for m in PRIMARY_METRICS if m in plain), plain[0] if plain else None)


def task_label(task: str, row: Dict[str, Any]) -> str:
    """The task as the summary names it: ``mmlu_local_<folder name>`` for a local MMLU folder, else the task."""
    folder = row.get("mmlu_dir")
    if not folder:
        return task
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(folder).rstrip("/")).name).strip("_") or "dir"
    return LOCAL_MMLU + name


def _lm_eval_primary(record: Dict[str, Any]) -> Dict[str, tuple]:
    """label -> (shown metric, that task's rows by metric name) for the record's lm-eval rows."""
    by_task: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for row in record.get("metrics", []):
        if row.get("evaluator") == "lm_eval":
            by_task.setdefault(row["task"], {})[row["metric"]] = row
    out = {}
    for task, rows in by_task.items():
        metric = _primary(list(rows))
        if metric:
            out[task_label(task, rows[metric])] = (metric, rows)
    return out


def lm_eval_cells(record: Dict[str, Any]) -> Dict[str, Any]:
    """``<task>_<metric>``, ``_se``, ``<task>_base``, ``<task>_delta``, ``<task>_delta_se`` for each lm-eval task."""
    cells: Dict[str, Any] = {}
    for task, (metric, rows) in _lm_eval_primary(record).items():
        delta = rows.get(f"{metric}_delta", {})
        cells[f"{task}_{metric}"] = rows[metric]["value"]
        cells[f"{task}_{metric}_se"] = rows[metric]["stderr"]
        cells[f"{task}_base"] = rows.get(f"{metric}_base", {}).get("value")
        cells[f"{task}_delta"] = delta.get("value")
        cells[f"{task}_delta_se"] = delta.get("stderr")
    return cells


def _pm(value: float, stderr: Optional[float], sign: bool = False) -> str:
    text = f"{value:+.3f}" if sign else f"{value:.3f}"
    return text + (f"±{stderr:.3f}" if stderr is not None else "")


def lm_eval_headlines(record: Dict[str, Any]) -> List[str]:
    """``mmlu acc 0.412±0.012 (-0.008±0.017 vs base)`` per lm-eval task, for the line a cell prints."""
    out = []
    for task, (metric, rows) in _lm_eval_primary(record).items():
        row, delta = rows[metric], rows.get(f"{metric}_delta")
        text = f"{task} {metric} {_pm(row['value'], row['stderr'])}"
        out.append(text + (f" ({_pm(delta['value'], delta['stderr'], sign=True)} vs base)" if delta else ""))
    return out


def columns_for(rows: List[Dict[str, Any]], axes: Iterable[str] = ()) -> List[str]:
    """The axes, then COLUMNS (less the axes) with the lm-eval columns these rows carry after the perplexity columns."""
    axes = list(axes)
    extra: List[str] = []
    for row in rows:
        extra += [key for key in row if key not in COLUMNS and key not in extra and key not in axes]
    at = COLUMNS.index("examples")
    return axes + [c for c in COLUMNS[:at] + extra + COLUMNS[at:] if c not in axes]


NOT_AXES = ("run", "eval", "report", "logger")
"""Config blocks that never make a cell differ (how it runs; what scores it)."""
RUN_AXES = ("memory_cap_gib",)
"""The run keys that do make a cell differ (part of a cell's identity when set: an emulated smaller device)."""
GROUP_NAMES = {"model": "model.name", "quant": "quant.mode", "peft": "peft.method", "framework": "framework.name", "data": "data.name"}
"""Config group -> the key that names its choice; when that key varies, it stands for the whole block."""
AXIS_COLUMNS = {"model.name": "model", "quant.mode": "quant", "peft.method": "peft", "framework.name": "framework",
                "lora.r": "lora_r", "data.name": "data", "run.memory_cap_gib": "memory_cap_gib", "dist.processes": "gpus"}
"""Axis key -> the summary column that shows it (the rest are shown under their dotted key)."""
_MISSING = object()


def flatten(tree: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """A nested dict as dotted keys (``{"lora": {"r": 8}}`` -> ``{"lora.r": 8}``); empty dicts stay values."""
    out: Dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def plain_value(value: Any) -> Any:
    """A hashable, printable form of a config value (lists as ``[a,b]``)."""
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(str(plain_value(v)) for v in value) + "]"
    if isinstance(value, dict):
        return str(value)
    return value


def _override_keys(manifest: Optional[Dict[str, Any]]) -> List[str]:
    """Config keys the command's overrides name, in the order typed (group names mapped to their name key)."""
    keys: List[str] = []
    jobs = (manifest or {}).get("jobs", {})
    for _, job in sorted(jobs.items(), key=lambda item: int(item[0]) if str(item[0]).isdigit() else 0):
        for override in job.get("overrides") or []:
            key = override.split("=", 1)[0].lstrip("+~")
            key = GROUP_NAMES.get(key, key)
            if key not in keys:
                keys.append(key)
    return keys


def _axis_tree(config: Dict[str, Any]) -> Dict[str, Any]:
    """The part of a config that can vary as an axis: every block but NOT_AXES, plus RUN_AXES that are set."""
    tree = {k: v for k, v in config.items() if k not in NOT_AXES}
    if isinstance(tree.get("dist"), dict) and tree["dist"].get("strategy", "none") == "none":
        tree["dist"] = {**tree["dist"], "processes": 1}  # one process, whatever an unused dist.processes says: gpus=1
    run = {k: v for k, v in (config.get("run") or {}).items() if k in RUN_AXES and v is not None}
    return {**tree, "run": run} if run else tree


def varied_axes(configs: List[Dict[str, Any]], manifest: Optional[Dict[str, Any]] = None) -> List[str]:
    """Config keys whose values differ across ``configs`` (empty configs ignored), as axis columns.

    A group whose choice varies (``model.name``) stands for its whole block (a different model
    also differs in its layer count). Ordered as the overrides name them, then in config order;
    seeds go last, so replicates of one recipe sit next to each other.
    """
    flat = [flatten(_axis_tree(config)) for config in configs if config]
    if len(flat) < 2:
        return []
    keys: List[str] = []
    for tree in flat:
        keys += [k for k in tree if k not in keys]
    varied = [k for k in keys if len({plain_value(tree.get(k, _MISSING)) if k in tree else _MISSING for tree in flat}) > 1]
    for group, name_key in GROUP_NAMES.items():
        if name_key in varied:
            varied = [k for k in varied if k == name_key or not k.startswith(group + ".")]
    ordered = [k for k in _override_keys(manifest) if k in varied]
    ordered += [k for k in varied if k not in ordered]
    ordered = [k for k in ordered if not k.endswith("seed")] + [k for k in ordered if k.endswith("seed")]
    return [AXIS_COLUMNS.get(k, k) for k in ordered]


def axis_value(row: Dict[str, Any], config: Dict[str, Any], column: str) -> Any:
    """A cell's value on an axis: the row's column if it has one, else the dotted key in its resolved config."""
    if column in row:
        return row[column]
    key = next((k for k, c in AXIS_COLUMNS.items() if c == column), column)
    value: Any = config
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return plain_value(value)


def natural_key(value: Any) -> Tuple:
    """Sort key: numbers by value, strings with their digit runs as numbers (r8 < r16), None last."""
    if value is None or value == "":
        return (2,)
    if isinstance(value, bool):
        return (0, float(value))
    if isinstance(value, (int, float)):
        return (0, float(value)) if not math.isnan(value) else (1, ())
    parts = re.split(r"(\d+(?:\.\d+)?)", str(value))
    return (1, tuple((0, float(p), "") if i % 2 else (1, 0.0, p) for i, p in enumerate(parts) if p))


def with_spec_config(record: Dict[str, Any], sweep_dir: Path) -> Dict[str, Any]:
    """A record that has no config (never ran) takes the one its cell spec was planned with."""
    if record.get("config") or not record.get("cell_id"):
        return record
    spec = read_json(sweep_dir / str(record["cell_id"]) / CELL_SPEC_NAME) or {}
    return {**record, "config": spec.get("config") or {}}
