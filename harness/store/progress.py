"""Progress of a sweep, from files on disk: what the worker is doing, what is done, what is left.

Two parts here, both light (no torch; the parent imports this module), and the drawing in
``harness.sweep.status``:

- ``ProgressWriter`` -- the worker's side. It keeps ``<cell>/progress.json`` up to date: at
  each phase change (``start``, ``data``, ``load``, ``baseline``, ``train``, ``eval:<name>``,
  ``save``, ``done``) and, during training, at most once per ``WRITE_EVERY_S`` with the step,
  ``max_steps`` and the last logged loss. Writes are atomic (a reader never sees half a file)
  but not fsynced: the file only reports, and an fsync would cost the training it measures.
  ``finish`` is the parent's last word once the worker is gone (also after a crash): phase
  ``done`` and the cell's wall time as the parent saw it.
- ``sweep_progress`` -- pure reading: from a sweep folder's manifest, its jobs' own files
  (``jobs/<num>.json``: a frontier skip), and its cells' ``cell.json``, ``record.json``, evaluation results and ``progress.json``, the
  counts (done ok / failed / running / left), the running cell's phase, step and loss, and an
  ETA (median wall time of the cells finished in this run x cells left). Nothing here relies on
  the parent's memory, so any launcher -- or another terminal -- can draw the same line.
- ``harness.sweep.status`` (``format_progress``, ``StatusLine``) -- the parent's drawing of it while a
  worker runs.

Which cells belong to "this run": the manifest's ``started`` (set when the command wrote
its grid). A cell whose ``cell.json`` (written by the parent as each attempt starts) is newer
was worked on in this run: running until its ``progress.json`` of that attempt says ``done``,
then done ok or failed by its record and requested evaluations. Other cells are done when
stored ok (they are reused), failed when a record was written in this run without a worker
(a preflight refusal), else left.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from harness.files import read_json, write_json_atomic
from harness.store import layout
from harness.store.manifest import jobs_dir
from harness.store.records import CELL_SPEC_NAME, RECORD_NAME

PROGRESS_NAME = "progress.json"
LOG_NAME = "worker.log"
"""The worker's log in the cell folder (the same name as ``harness.sweep.cell.LOG_NAME``)."""


DONE = "done"
WRITE_EVERY_S = 1.0
"""Least time between two step updates of progress.json (phase changes are written at once)."""


CLOCK_SLACK_S = 1.0
"""File modification times come from the kernel's coarse clock, which may lag ``time.time()`` by
a few milliseconds; a file counts as written in this run up to this much before its start."""


class ProgressWriter:
    """Keeps ``cell_dir/progress.json`` of one attempt; with ``cell_dir=None`` it writes nothing.

    Fields: attempt, phase, step, max_steps, loss, started (the worker's spawn time, epoch
    seconds), updated (epoch seconds of this write). A failed write (a full disk) is ignored:
    progress must never fail the cell.
    """

    def __init__(self, cell_dir: Optional[Path], attempt: Optional[str], *, started: Optional[float] = None,
                 every_s: float = WRITE_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = None if cell_dir is None else Path(cell_dir) / PROGRESS_NAME
        self.every_s = every_s
        self.clock = clock
        self.state: Dict[str, Any] = {"attempt": attempt, "phase": "start", "step": None, "max_steps": None,
                                      "loss": None, "started": started if started is not None else time.time(),
                                      "updated": None}
        self._last: Optional[float] = None

    def phase(self, name: str) -> None:
        """Enter a phase and write at once."""
        self.state["phase"] = name
        self.write()

    def step(self, step: Optional[int], max_steps: Optional[int] = None, loss: Optional[float] = None,
             force: bool = False) -> bool:
        """Note the training position; write when ``every_s`` has passed since the last write (or ``force``).
        True when written."""
        self.state["step"] = step
        if max_steps is not None:
            self.state["max_steps"] = max_steps
        if loss is not None:
            self.state["loss"] = loss
        if not force and self._last is not None and self.clock() - self._last < self.every_s:
            return False
        self.write()
        return True

    def write(self) -> None:
        """Write the current state now (atomic rename, no fsync)."""
        self._last = self.clock()
        if self.path is None:
            return
        self.state["updated"] = time.time()
        try:
            write_json_atomic(self.path, self.state, durable=False)
        except (OSError, ValueError, TypeError):
            pass


def finish(cell_dir: Path, attempt: str, wall_s: float, now: Optional[float] = None) -> None:
    """The parent's entry once the worker is gone: phase ``done`` and the cell's wall time (``wall_s``).

    Written whatever became of the worker, so a crashed or killed one does not stay "running".
    """
    now = time.time() if now is None else now
    path = Path(cell_dir) / PROGRESS_NAME
    state = read_json(path) or {}
    if state.get("attempt") != attempt:
        state = {"attempt": attempt, "step": None, "max_steps": None, "loss": None, "started": now - wall_s}
    state.update(phase=DONE, wall_s=wall_s, updated=now)
    try:
        write_json_atomic(path, state, durable=False)
    except (OSError, ValueError, TypeError):
        pass


class Files:
    """How ``sweep_progress`` reads the disk: JSON objects and modification times."""

    def json(self, path: Path) -> Optional[Dict[str, Any]]:
        return read_json(path)

    def mtime(self, path: Path) -> Optional[float]:
        try:
            return os.stat(path).st_mtime
        except OSError:
            return None


class CachedFiles(Files):
    """Parses a file again only when it changed (inode, size, mtime): records can be large and the
    line is redrawn every second, on a machine whose CPU may be training.

    Keeps only what ``sweep_progress`` reads -- top-level scalars, and a manifest's ``jobs`` -- so
    a long sweep's records (per-step times, loss curves) do not stay in the parent's memory.
    """

    def __init__(self) -> None:
        self._cache: Dict[Path, Tuple[Tuple[int, int, int], Optional[Dict[str, Any]]]] = {}

    def json(self, path: Path) -> Optional[Dict[str, Any]]:
        try:
            st = os.stat(path)
        except OSError:
            self._cache.pop(path, None)
            return None
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        hit = self._cache.get(path)
        if hit is not None and hit[0] == key:
            return hit[1]
        data = read_json(path)
        if data is not None:
            entry = data.get("entry")
            data = {k: v for k, v in data.items() if k == "jobs" or not isinstance(v, (dict, list))}
            if isinstance(entry, dict):  # a job file (harness.store.manifest): its cell and whether the frontier skipped it
                data["entry"] = {"cell_id": entry.get("cell_id"), layout.MARK: bool(entry.get(layout.MARK))}
        self._cache[path] = (key, data)
        return data


SHARED_FILES = CachedFiles()
"""The parent's cache, shared by the status lines of all its cells."""


@dataclass
class RunningCell:
    """A cell a worker is on right now, as its files say."""

    cell_id: str
    log: Path
    phase: str
    """The worker's phase; ``starting`` before its first progress.json."""
    step: Optional[int] = None
    max_steps: Optional[int] = None
    loss: Optional[float] = None
    elapsed_s: Optional[float] = None


@dataclass
class SweepProgress:
    """Where a sweep run stands. Every cell of the grid is in exactly one of ok, failed, running, left."""

    total: int
    ok: int = 0
    failed: int = 0
    """Finished not ok (any status but ok), in this run."""
    running: List[RunningCell] = field(default_factory=list)
    left: int = 0
    walls_s: List[float] = field(default_factory=list)
    """Wall times of the cells a worker finished in this run."""
    eta_s: Optional[float] = None
    """None until a cell finished in this run (nothing measured yet)."""


def _status(cell_dir: Path, evals: Dict[str, str], files: Files) -> Optional[str]:
    """ok when the training record and every requested evaluation are ok, else the first bad status; None: no record."""
    record = files.json(cell_dir / RECORD_NAME)
    if record is None:
        return None
    if record.get("status") != "ok":
        return str(record.get("status") or "failed")
    for key in evals.values():
        result = files.json(layout.eval_dir(cell_dir, key) / layout.RESULT)
        if result is None:
            return "skipped"  # not evaluated yet
        if result.get("status") != "ok":
            return str(result.get("status") or "failed")
    return "ok"


def _number(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _job_entries(sweep_dir: Path, token: Any, files: Files) -> Dict[str, Dict[str, Any]]:
    """num -> {cell_id, frontier} of the job files of run ``token`` (one listing of ``jobs/``; with ``CachedFiles``
    a file is parsed again only when it changed). A job file of another run, or a bad one, counts as absent."""
    if not token:
        return {}
    folder = jobs_dir(sweep_dir)
    try:
        names = os.listdir(folder)
    except OSError:
        return {}
    found: Dict[str, Dict[str, Any]] = {}
    for name in names:
        stem, _, ext = name.partition(".")
        data = files.json(folder / name) if ext == "json" and stem.isdigit() else None
        entry = (data or {}).get("entry")
        if data and data.get("run") == token and isinstance(entry, dict) and isinstance(entry.get("cell_id"), str):
            found[str(int(stem))] = {"cell_id": entry["cell_id"], layout.MARK: bool(entry.get(layout.MARK))}
    return found


def sweep_progress(sweep_dir: Path, *, now: Optional[float] = None, files: Optional[Files] = None) -> Optional[SweepProgress]:
    """Where the run of ``sweep_dir`` stands, from its files alone; None when it has no manifest."""
    files = files or Files()
    now = time.time() if now is None else now
    sweep_dir = Path(sweep_dir)
    manifest = files.json(sweep_dir / layout.MANIFEST)
    if manifest is None:
        return None
    since = _number(manifest.get("started", manifest.get("written"))) or 0.0
    cells: Dict[str, Dict[str, str]] = {}
    inferred = set()  # skipped by the OOM frontier in this run (harness.sweep.frontier): finished, not ok
    own = _job_entries(sweep_dir, manifest.get("run"), files)
    for num, job in sorted((manifest.get("jobs") or {}).items(), key=lambda item: int(item[0])):
        job = {**job, **own.get(str(num), {})}
        cells.setdefault(job["cell_id"], job.get("evals") or {})
        if job.get(layout.MARK):
            inferred.add(job["cell_id"])
    out = SweepProgress(total=len(cells))
    for cid, evals in cells.items():
        if cid in inferred:
            out.failed += 1
            continue
        cell_dir = sweep_dir / cid
        spec_at = files.mtime(cell_dir / CELL_SPEC_NAME)
        spec = files.json(cell_dir / CELL_SPEC_NAME) if spec_at is not None and spec_at >= since - CLOCK_SLACK_S else None
        progress = files.json(cell_dir / PROGRESS_NAME)
        ours = progress if progress and spec and progress.get("attempt") == spec.get("attempt") else None
        if spec is not None and (ours is None or ours.get("phase") != DONE):
            started = _number((ours or {}).get("started")) or spec_at
            out.running.append(RunningCell(
                cell_id=cid,
                log=layout.cells_root(sweep_dir.parent) / cid / LOG_NAME,
                phase=str(ours.get("phase")) if ours else "starting",
                step=(ours or {}).get("step"),
                max_steps=(ours or {}).get("max_steps"),
                loss=_number((ours or {}).get("loss")),
                elapsed_s=max(0.0, now - started) if started is not None else None,
            ))
            continue
        status = _status(cell_dir, evals, files)
        if spec is not None:  # a worker of this run finished it
            out.ok += status == "ok"
            out.failed += status != "ok"
            wall = _number(ours.get("wall_s"))
            if wall is None and _number(ours.get("updated")) is not None and _number(ours.get("started")) is not None:
                wall = ours["updated"] - ours["started"]  # the worker's own "done", before the parent's
            if wall is not None:
                out.walls_s.append(wall)
        elif status == "ok":
            out.ok += 1  # stored ok: reused without work
        elif status is not None and (files.mtime(cell_dir / RECORD_NAME) or 0.0) >= since - CLOCK_SLACK_S:
            out.failed += 1  # refused in this run before any worker (e.g. a hub model offline)
        else:
            out.left += 1
    out.eta_s = eta_s(out.walls_s, out.left, [r.elapsed_s for r in out.running])
    return out


def eta_s(walls_s: List[float], left: int, running_elapsed: List[Optional[float]]) -> Optional[float]:
    """Median measured cell wall x cells left, plus what the running cells have left of a median; None before any wall."""
    if not walls_s:
        return None
    median = statistics.median(walls_s)
    return median * left + sum(max(0.0, median - (elapsed or 0.0)) for elapsed in running_elapsed)
