"""Cell records: one ``record.json`` per cell, written atomically.

A record is the whole truth about a cell: its status, the resolved config, the
environment, timings, memory, train stats and metrics as rows. Writers go through
``harness.files.write_json_atomic`` so a reader never sees a half-written file; a record that does not
parse is treated as missing by the sweep (the cell reruns) and shown as ``corrupt`` by the summary and
the report (``harness.store.layout.cell_view``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from harness import SCHEMA_VERSION
from harness.files import read_json

RECORD_NAME = "record.json"
CELL_SPEC_NAME = "cell.json"
STATUSES = ("ok", "failed", "oom", "timeout", "crashed", "diverged", "invalid", "skipped", "unsupported",
            "interrupted", "corrupt", "running")
"""ok: trained (and, for an evaluator result, scored) with finite numbers. failed: an exception
(traceback kept). oom: out of device or host memory (an allocator error, or the kernel's OOM
killer seen in the cgroup's counter). timeout: killed at run.timeout_s. crashed: the worker
died (exit code or signal) without writing a record, cause unknown. diverged: the training or
held-out loss became NaN or infinite; training stopped there. invalid: the config was rejected
before any work. skipped: not run this time (another process held the cell with
run.on_busy=skip, or a launcher decided so). unsupported: the framework cannot run this
combination (a method, quantization or device it lacks); a result, not an error. interrupted: stopped by
Ctrl-C (or a launcher's stop) while it ran; the next run trains it again. corrupt: a file of the cell
(record.json, an evaluation's result.json) exists but does not parse -- shown by readers, never written. running:
no record yet (or an evaluation missing) while a live process holds the cell's lock -- shown by readers of a sweep
that has not ended (harness.report, harness.judge, a rerun), never written."""


def new_record(cell_id: str, status: str, config: Dict[str, Any], **fields: Any) -> Dict[str, Any]:
    """A record skeleton with every top-level key present, so readers need no guards."""
    assert status in STATUSES, status
    record: Dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "cell_id": cell_id,
        "status": status,
        "error": None,
        "config": config,
        "environment": {},
        "timings_s": {},
        "train": {},
        "memory": {},
        "data": {},
        "metrics": [],
    }
    record.update(fields)
    return record


def metric_row(
    evaluator: str,
    task: str,
    metric: str,
    value: float,
    *,
    stderr: Optional[float] = None,
    n: Optional[int] = None,
    higher_is_better: bool,
    unit: Optional[str] = None,
) -> Dict[str, Any]:
    """One metric as a row: evaluator, task, metric, value, stderr, n, higher_is_better."""
    return {
        "evaluator": evaluator,
        "task": task,
        "metric": metric,
        "value": value,
        "stderr": stderr,
        "n": n,
        "higher_is_better": higher_is_better,
        "unit": unit,
    }


def cell_dirs(sweep_dir: Path) -> Iterator[Path]:
    """Cell folders in a sweep folder (those holding a cell spec), sorted by name."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        return iter(())
    return iter(sorted(p.parent for p in sweep_dir.glob(f"*/{CELL_SPEC_NAME}")))


def load_records(sweep_dir: Path) -> List[Dict[str, Any]]:
    """Every readable record in a sweep folder; cells without one are left out."""
    records = []
    for folder in cell_dirs(sweep_dir):
        record = read_json(folder / RECORD_NAME)
        if record is not None:
            records.append(record)
    return records
