"""Sweep summary: one row per cell, written as summary.csv and summary.md.

Reads exactly the cells in the manifest of the sweep folder it is given (see harness/store.py),
each as its training record plus the evaluations that command asked for. Stays free of heavy imports:
it runs in the Hydra parent at the end of every sweep.

Besides the rows (``summarise``):

- the axes: the config keys whose values differ across the grid's cells (``model``,
  ``lora_r``, ``train.seed``, ...), found in the records' resolved configs and ordered as
  the command named them (manifest overrides), seeds last; they lead every table and
  the rows are sorted by them in natural order (r8 before r16);
- one ``data:`` line per distinct data set the cells trained on (records, kept, split,
  what each filter dropped);
- notes: caveats that change how the numbers read (random-weight models, CPU cells,
  bitsandbytes on CPU, lm-eval deltas inside their noise), printed under the table.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from harness.fairness import fairness_notes, first_step_loss
from harness.launch import concurrency_note
from harness.plan.calibrate import prediction_cells
from harness.records import CELL_SPEC_NAME, read_json, write_text_atomic
from harness.store import load_sweep, read_manifest
from harness.summary_quality import quality_cells, quality_definitions

COLUMNS = [
    "cell", "status", "model", "weights", "device", "framework", "quant", "peft", "lora_r", "trainable_params",
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

NOTES = {
    "random": "random-weight tiny models: losses, perplexities and deltas exercise the code path, they say nothing about recipes",
    "random_real": "model.weights=random cells are real architectures with random weights: their memory, tokens_per_s and mfu "
                   "are the real model's, their losses, perplexities and scores mean nothing",
    "cpu": "CPU cells: peak_mem_mib is the worker's host RSS and tokens_per_s is CPU throughput; neither is a GPU figure",
    "cpu_bnb": "bitsandbytes on CPU dequantizes: 4-bit cells use more host memory than bf16 here; memory figures are not GPU figures",
}


# ---- one row per record ----------------------------------------------------------------------


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


# ---- lm-eval columns -------------------------------------------------------------------------

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


# ---- axes: what the sweep varied -------------------------------------------------------------

NOT_AXES = ("run", "eval", "report", "logger")
"""Config blocks that never make a cell differ (how it runs; what scores it)."""
RUN_AXES = ("memory_cap_gib",)
"""The run keys that do make a cell differ (part of a cell's identity when set: an emulated smaller device)."""
GROUP_NAMES = {"model": "model.name", "quant": "quant.mode", "peft": "peft.method", "framework": "framework.name", "data": "data.name"}
"""Config group -> the key that names its choice; when that key varies, it stands for the whole block."""
AXIS_COLUMNS = {"model.name": "model", "quant.mode": "quant", "peft.method": "peft", "framework.name": "framework",
                "lora.r": "lora_r", "data.name": "data", "run.memory_cap_gib": "memory_cap_gib"}
"""Axis key -> the summary column that shows it (the rest are shown under their dotted key)."""
_MISSING = object()


def _flatten(tree: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _plain(value: Any) -> Any:
    """A hashable, printable form of a config value (lists as ``[a,b]``)."""
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(str(_plain(v)) for v in value) + "]"
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
    run = {k: v for k, v in (config.get("run") or {}).items() if k in RUN_AXES and v is not None}
    return {**tree, "run": run} if run else tree


def varied_axes(configs: List[Dict[str, Any]], manifest: Optional[Dict[str, Any]] = None) -> List[str]:
    """Config keys whose values differ across ``configs`` (empty configs ignored), as axis columns.

    A group whose choice varies (``model.name``) stands for its whole block (a different model
    also differs in its layer count). Ordered as the overrides name them, then in config order;
    seeds go last, so replicates of one recipe sit next to each other.
    """
    flat = [_flatten(_axis_tree(config)) for config in configs if config]
    if len(flat) < 2:
        return []
    keys: List[str] = []
    for tree in flat:
        keys += [k for k in tree if k not in keys]
    varied = [k for k in keys if len({_plain(tree.get(k, _MISSING)) if k in tree else _MISSING for tree in flat}) > 1]
    for group, name_key in GROUP_NAMES.items():
        if name_key in varied:
            varied = [k for k in varied if k == name_key or not k.startswith(group + ".")]
    ordered = [k for k in _override_keys(manifest) if k in varied]
    ordered += [k for k in varied if k not in ordered]
    ordered = [k for k in ordered if not k.endswith("seed")] + [k for k in ordered if k.endswith("seed")]
    return [AXIS_COLUMNS.get(k, k) for k in ordered]


def _axis_value(row: Dict[str, Any], config: Dict[str, Any], column: str) -> Any:
    if column in row:
        return row[column]
    key = next((k for k, c in AXIS_COLUMNS.items() if c == column), column)
    value: Any = config
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return _plain(value)


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


# ---- the data line ---------------------------------------------------------------------------

FILTER_WORDS = {
    "exact_duplicate": "exact duplicates", "near_duplicate": "near duplicates", "placeholder": "placeholders",
    "min_assistant_tokens": "under filters.min_assistant_tokens",
}
TOKENIZE_WORDS = {
    "dropped_overlong": "over train.max_seq_len", "dropped_no_trainable_tokens": "with no trainable token left",
    "dropped_template_error": "chat-template errors",
}


def _source_name(config: Dict[str, Any], stats: Dict[str, Any]) -> str:
    data = config.get("data") or {}
    source = str(stats.get("source") or data.get("hub_id") or data.get("path") or "?")
    shown = source if data.get("hub_id") else Path(source.rstrip("/")).name
    name = data.get("name")
    return f"{name} {shown}" if name and name != shown else shown


def data_line(record: Dict[str, Any]) -> Optional[str]:
    """``bundled chat.jsonl — 400 records, 311 kept: 249 train / 31 val / 31 test ...; dropped: ...``, or None."""
    stats = record.get("data") or {}
    split = stats.get("split_examples")
    if not split:
        return None
    used = {name: (stats.get(name) or {}).get("examples", split.get(name)) for name in ("train", "validation", "test")}
    train = stats.get("train") or {}
    trained = f"{used['train']} train"
    if stats.get("max_examples") is not None and train.get("available") not in (None, used["train"]):
        trained = f"{used['train']} of {train['available']} train (data.max_examples={stats['max_examples']})"
    seed = f" (split_seed {stats['split_seed']})" if stats.get("split_seed") is not None else ""
    dropped = []
    filtered = stats.get("filtered") or {}
    for key in ("exact_duplicate", "near_duplicate"):
        if key in filtered:
            dropped.append(f"{filtered[key]} {FILTER_WORDS[key]}")
    dropped += [f"{n} {FILTER_WORDS.get(k, k)}" for k, n in filtered.items() if n and k not in ("exact_duplicate", "near_duplicate")]
    invalid = sum((stats.get("invalid") or {}).values())
    dropped.append(f"{invalid} invalid" + (" (data.on_error=skip)" if invalid else ""))
    for key, words in TOKENIZE_WORDS.items():
        count = sum(((stats.get(name) or {}).get(key) or 0) for name in ("train", "validation", "test"))
        if count:
            dropped.append(f"{count} {words}")
    truncated = sum(((stats.get(name) or {}).get("truncated") or 0) for name in ("train", "validation", "test"))
    return (
        f"{_source_name(record.get('config') or {}, stats)} — {stats.get('records', '?')} records, {stats.get('kept', '?')} kept: "
        f"{trained} / {used['validation']} val / {used['test']} test{seed}; dropped: {', '.join(dropped)}"
        + (f"; {truncated} truncated to train.max_seq_len" if truncated else "")
    )


def data_lines(records: List[Dict[str, Any]], rows: List[Dict[str, Any]], axes: List[str]) -> List[str]:
    """One ``data: ...`` line per distinct data set; when cells differ, each names the axis values of its cells."""
    groups: Dict[str, List[Dict[str, Any]]] = {}
    for record, row in zip(records, rows):
        line = data_line(record)
        if line is not None:
            groups.setdefault(line, []).append(row)
    if len(groups) <= 1:
        return [f"data: {line}" for line in groups]
    out = []
    for line, members in groups.items():
        same = [a for a in axes if len({_plain(m.get(a)) for m in members}) == 1]
        label = ", ".join(f"{a}={'null' if members[0].get(a) is None else _fmt(members[0].get(a))}" for a in same) or f"{len(members)} cell{'s' * (len(members) > 1)}"
        out.append(f"data [{label}]: {line}")
    return out


# ---- caveats ---------------------------------------------------------------------------------


def real_random(config: Dict[str, Any]) -> bool:
    """True for a cell of a real architecture with random weights (``model.weights=random`` on a non-tiny model)."""
    model = config.get("model") or {}
    return model.get("weights") == "random" and not model.get("tiny")


def notes_for(rows: List[Dict[str, Any]], configs: Optional[List[Dict[str, Any]]] = None) -> List[str]:
    """Caveats that change how this table's numbers read, one line each (``configs``: the rows' configs, any order)."""
    notes = []
    real = sum(1 for config in configs or [] if real_random(config))
    if sum(1 for row in rows if row.get("weights") == "random") > real:  # tiny models among them
        notes.append(NOTES["random"])
    if real:
        notes.append(NOTES["random_real"])
    cpu = [row for row in rows if row.get("device") == "cpu" or row.get("mem_counter") == "host_peak_rss"]
    if cpu:
        notes.append(NOTES["cpu"])
    if any(row.get("quant") in ("4bit", "8bit") for row in cpu):
        notes.append(NOTES["cpu_bnb"])
    noisy = [row for row in rows if row.get("step_cv_flag")]
    if noisy:
        notes.append(f"tokens_per_s is noisy in {len(noisy)} of {len(rows)} cells (step_cv above run.step_cv_warn): "
                     "read tokens_per_s_p25..p75 in summary.csv, not one number")
    for column in sorted({c for row in rows for c in row if c.endswith("_delta_se")}):
        task = column[: -len("_delta_se")]
        pairs = [(row.get(f"{task}_delta"), row.get(column)) for row in rows]
        pairs = [(d, se) for d, se in pairs if d is not None and se is not None]
        inside = sum(1 for d, se in pairs if abs(d) < 2 * se)
        if inside:
            notes.append(f"{task}_delta is within 2 stderr of zero in {inside} of {len(pairs)} cells: no measured difference from the base there")
    return notes


# ---- output ----------------------------------------------------------------------------------


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


@dataclass
class SweepSummary:
    """What a sweep's summary shows: rows (sorted by the axes), their columns, data lines and notes."""

    rows: List[Dict[str, Any]]
    columns: List[str]
    axes: List[str] = field(default_factory=list)
    data: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


def _with_spec_config(record: Dict[str, Any], sweep_dir: Path) -> Dict[str, Any]:
    """A record that has no config (never ran) takes the one its cell spec was planned with."""
    if record.get("config") or not record.get("cell_id"):
        return record
    spec = read_json(sweep_dir / str(record["cell_id"]) / CELL_SPEC_NAME) or {}
    return {**record, "config": spec.get("config") or {}}


def summarise(sweep_dir: Path) -> SweepSummary:
    """Build the sweep's summary and write summary.csv and summary.md."""
    sweep_dir = Path(sweep_dir)
    records = [_with_spec_config(r, sweep_dir) for r in load_sweep(sweep_dir)]
    configs = [r.get("config") or {} for r in records]
    axes = varied_axes(configs, read_manifest(sweep_dir))
    rows = [summary_row(r) for r in records]
    for row, config in zip(rows, configs):
        for axis in axes:
            row[axis] = _axis_value(row, config, axis)
    data = data_lines(records, rows, axes)
    order = sorted(range(len(rows)), key=lambda i: tuple(natural_key(rows[i].get(a)) for a in axes))
    rows = [rows[i] for i in order]
    parallel = [note for note in [concurrency_note(records)] if note]  # several cells at once (harness/launch.py)
    summary = SweepSummary(rows, columns_for(rows, axes), axes, data, notes_for(rows, configs) + fairness_notes(rows, axes) + parallel)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=summary.columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(sweep_dir / "summary.csv", buffer.getvalue())
    head = "".join(f"{line}\n\n" for line in summary.data)
    caveats = "".join(f"**note**: {line}\n\n" for line in summary.notes)
    shown = {**DEFINITIONS, **quality_definitions(summary.columns)}
    definitions = "\n".join(f"- **{k}**: {v}" for k, v in shown.items())
    write_text_atomic(
        sweep_dir / "summary.md",
        f"# Sweep summary: {sweep_dir.name}\n\n{head}{to_markdown(rows, summary.columns)}\n\n{caveats}{definitions}\n",
    )
    return summary


def write_summary(sweep_dir: Path) -> List[Dict[str, Any]]:
    """Write summary.csv and summary.md for the cells of the sweep's grid; return the rows (sorted by the axes)."""
    return summarise(sweep_dir).rows
