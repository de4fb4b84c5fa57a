"""Cell records: one ``record.json`` per cell, written atomically.

A record is the whole truth about a cell: its status, the resolved config, the
environment, timings, memory, train stats and metrics as rows. Writers go through
``write_json_atomic`` so a reader never sees a half-written file; a record that does not
parse is treated as missing (the cell reruns).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from harness import SCHEMA_VERSION

RECORD_NAME = "record.json"
CELL_SPEC_NAME = "cell.json"
STATUSES = ("ok", "failed", "oom", "timeout", "crashed", "invalid", "skipped")
"""ok: trained and evaluated. failed: an exception (traceback kept). oom: out of device or
host memory. timeout: killed at run.timeout_s. crashed: the worker died (exit code or
signal) without writing a record. invalid: the config was rejected before any work.
skipped: not run (reserved for launchers that decide a cell cannot run)."""


def stable_digest(payload: Any, length: int) -> str:
    """First ``length`` hex digits of the sha256 of ``payload`` as canonical JSON (sorted keys).

    The one way identities are hashed (cell ids, cache keys), so equal settings always
    give equal keys on any machine.
    """
    blob = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file in the same folder, fsync and rename."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder, fsync and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON atomically (see ``write_text_atomic``)."""
    write_text_atomic(path, json.dumps(payload, indent=2, default=_json_default) + "\n")


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _json_default(value: Any) -> Any:
    """Serialise the few non-JSON types records carry (paths, numpy scalars)."""
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_json(path: Path) -> Optional[Dict[str, Any]]:
    """Parsed JSON object at ``path``, or None when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


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
