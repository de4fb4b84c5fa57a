"""Sweep summary: one row per cell, written as summary.csv and summary.md.

Reads exactly the cells in the manifest of the sweep folder it is given (see harness/store/layout.py),
each as its training record plus the evaluations that command asked for. Stays free of heavy imports:
it runs in the Hydra parent at the end of every sweep.

The rows and the axes they are sorted by come from ``harness.report.rows``; this module adds (``summarise``):

- one ``data:`` line per distinct data set the cells trained on (records, kept, split,
  what each filter dropped);
- notes: caveats that change how the numbers read (random-weight models, CPU cells,
  bitsandbytes on CPU, lm-eval deltas inside their noise), printed under the table.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from harness.files import write_text_atomic
from harness.measure.fairness import fairness_notes
from harness.report.quality import quality_definitions
from harness.report.rows import (
    DEFINITIONS,
    axis_value,
    columns_for,
    natural_key,
    plain_value,
    summary_row,
    varied_axes,
    with_spec_config,
)
from harness.store.launch import concurrency_note
from harness.store.layout import load_sweep, read_manifest
from harness.text import format_cell, to_markdown

NOTES = {
    "random": "random-weight tiny models: losses, perplexities and deltas exercise the code path, they say nothing about recipes",
    "random_real": "model.weights=random cells are real architectures with random weights: their memory, tokens_per_s and mfu "
                   "are the real model's, their losses, perplexities and scores mean nothing",
    "cpu": "CPU cells: peak_mem_mib is the worker's host RSS and tokens_per_s is CPU throughput; neither is a GPU figure",
    "cpu_bnb": "bitsandbytes on CPU dequantizes: 4-bit cells use more host memory than bf16 here; memory figures are not GPU figures",
}


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
    if name == "bundled" and (data.get("path") or data.get("hub_id")):
        return source  # the group's name, kept when only data.path was set: the user's file is not the bundled set
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
        same = [a for a in axes if len({plain_value(m.get(a)) for m in members}) == 1]
        label = ", ".join(f"{a}={'null' if members[0].get(a) is None else format_cell(members[0].get(a))}" for a in same) or f"{len(members)} cell{'s' * (len(members) > 1)}"
        out.append(f"data [{label}]: {line}")
    return out


def real_random(config: Dict[str, Any]) -> bool:
    """True for a cell of a real architecture with random weights (``model.weights=random`` on a non-tiny model)."""
    model = config.get("model") or {}
    return model.get("weights") == "random" and not model.get("tiny")


def is_cpu(row: Dict[str, Any]) -> bool:
    """A summary row of a CPU cell: its memory is host RSS and its throughput a CPU's."""
    return row.get("device") == "cpu" or row.get("mem_counter") == "host_peak_rss"


def notes_for(rows: List[Dict[str, Any]], configs: Optional[List[Dict[str, Any]]] = None) -> List[str]:
    """Caveats that change how this table's numbers read, one line each (``configs``: the rows' configs, any order)."""
    notes = []
    real = sum(1 for config in configs or [] if real_random(config))
    if sum(1 for row in rows if row.get("weights") == "random") > real:  # tiny models among them
        notes.append(NOTES["random"])
    if real:
        notes.append(NOTES["random_real"])
    cpu = [row for row in rows if is_cpu(row)]
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


@dataclass
class SweepSummary:
    """What a sweep's summary shows: rows (sorted by the axes), their columns, data lines and notes."""

    rows: List[Dict[str, Any]]
    columns: List[str]
    axes: List[str] = field(default_factory=list)
    data: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


def summarise(sweep_dir: Path) -> SweepSummary:
    """Build the sweep's summary and write summary.csv and summary.md."""
    sweep_dir = Path(sweep_dir)
    records = [with_spec_config(r, sweep_dir) for r in load_sweep(sweep_dir)]
    configs = [r.get("config") or {} for r in records]
    axes = varied_axes(configs, read_manifest(sweep_dir))
    rows = [summary_row(r) for r in records]
    for row, config in zip(rows, configs):
        for axis in axes:
            row[axis] = axis_value(row, config, axis)
    data = data_lines(records, rows, axes)
    order = sorted(range(len(rows)), key=lambda i: tuple(natural_key(rows[i].get(a)) for a in axes))
    rows = [rows[i] for i in order]
    parallel = [note for note in [concurrency_note(records)] if note]  # several cells at once (harness/sweep/launch.py)
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
