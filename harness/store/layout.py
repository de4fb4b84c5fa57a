"""The cell store: cells live once under the run root; a sweep folder is a view of some of them.

    run.root/
      cells/<cell_id>/                  one folder per cell, shared by every sweep that has it
        cell.json                       the latest attempt's spec: identity, config, attempt id, work
        record.json                     the training record (status, train, memory, data, environment)
        evals/<name>-<key>/result.json  one evaluator's result: its own status, metric rows, timings
        adapter/  (model/)              trained weights, kept so evaluators can run later
        worker.log  .lock
      <sweep>/manifest.json             the grid of the command that last ran into this folder
      <sweep>/jobs/<num>.json           each job's own entry and outcome (harness.store.manifest)
      <sweep>/<cell_id> -> ../cells/<cell_id>
      <sweep>/summary.csv  summary.md

A lock per cell (``flock`` on ``.lock``, or a lease file ``.lease`` where the mount makes flock
node-local: ``run.lock``, harness/store/locks.py) makes one process at a time train or evaluate a cell;
others wait for it or skip it (``run.on_busy``). A crashed holder's flock is dropped by the kernel at once
on a local disk, by an NFS server only when the node's lease ends (~90 s); a crashed lease after ``run.lock_ttl_s``. Light: the parent imports this module.

    python -m harness.store migrate ROOT    # move cells of the old per-sweep layout into the store
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

from harness.errors import CorruptFileError
from harness.files import load_json, read_json, within, write_json_atomic
from harness.store.manifest import (  # noqa: F401 - re-exported: the sweep's bookkeeping moved to its own module
    CELLS,
    MANIFEST,
    REWRITE,
    finish_run,
    read_manifest,
    record_outcome,
    refresh_links,
    update_manifest,
    write_manifest,
)
from harness.store.records import CELL_SPEC_NAME, RECORD_NAME, new_record

EVALS = "evals"
RESULT = "result.json"
LOCK = ".lock"
WEIGHTS = {"adapter": "adapter", "full": "model"}
"""Folder names of kept weights: an adapter, or a whole model (full fine-tune with run.keep_weights)."""


def cells_root(run_root: Path) -> Path:
    """The store's folder of cells under ``run.root``."""
    return Path(run_root) / CELLS


def cell_path(run_root: Path, cell_id: str) -> Path:
    """The folder of one cell, checked to stay inside the store."""
    folder = cells_root(run_root) / cell_id
    within(folder, cells_root(run_root))
    return folder


def eval_dir(cell_dir: Path, key: str) -> Path:
    """Where one evaluator's result for this cell lives (``key`` from ``identity.eval_keys``)."""
    return Path(cell_dir) / EVALS / key


def read_eval(cell_dir: Path, key: str) -> Optional[Dict[str, Any]]:
    """The evaluator result stored under ``key``, or None."""
    return read_json(eval_dir(cell_dir, key) / RESULT)


def write_eval(cell_dir: Path, key: str, result: Dict[str, Any]) -> None:
    """Store one evaluator result atomically."""
    write_json_atomic(eval_dir(cell_dir, key) / RESULT, result)


def weights_path(cell_dir: Path, record: Optional[Dict[str, Any]]) -> Optional[Path]:
    """The kept weights a trained cell can be evaluated from, or None when it kept none."""
    saved = ((record or {}).get("artifacts") or {}).get("weights")
    return Path(cell_dir) / saved if saved and (Path(cell_dir) / saved).is_dir() else None


def _holder(lock_file: Path) -> str:
    info = read_json(lock_file) or {}
    return f"pid {info.get('pid', '?')} on host {info.get('host', '?')}"


@contextmanager
def _lease_lock(cell_dir: Path, on_busy: str, say: Callable[[str], None], ttl_s: float) -> Iterator[Optional[int]]:
    """cell_lock's lease kind: wait polls every LEASE_POLL_S (a lease has no blocking wait)."""
    from harness.store import locks

    lease = locks.LeaseLock(cell_dir, ttl_s)
    if not lease.acquire():
        busy = f"{Path(cell_dir).name} is busy: {locks.holder(cell_dir) or 'another run'} is training or evaluating it"
        if on_busy == "skip":
            say(f"{busy}; skipped (run.on_busy=skip)")
            yield None
            return
        say(f"{busy}; waiting for it (run.on_busy=skip skips busy cells)")
        while not lease.acquire():
            time.sleep(LEASE_POLL_S)
    try:
        yield lease.fd
    finally:
        lease.release()
        if lease.lost:  # this process stalled past the lease (suspended, clock jump): another run may have worked here too
            say(f"{Path(cell_dir).name}: its lease was broken by another run while this one held it "
                f"(not renewed within run.lock_ttl_s={ttl_s:g}); check the cell's record")


LEASE_POLL_S = 0.5
"""How often a run waiting on a leased cell (run.lock=lease, run.on_busy=wait) tries again."""


@contextmanager
def cell_lock(cell_dir: Path, on_busy: str, say: Callable[[str], None], kind: str = "flock",
              ttl_s: float = 60.0) -> Iterator[Optional[int]]:
    """Hold the cell's lock for the block; yields the lock's file descriptor, or None when skipped.

    A second process that meets a held lock prints one line naming the holder, then waits
    (``on_busy=wait``) or yields None (``skip``). The descriptor can be handed to the worker
    (``pass_fds``), so the lock outlives a parent killed while its worker still runs.
    ``kind``: flock, or lease (``harness.store.locks.LeaseLock``, renewed every ``ttl_s / 3`` by this
    process; the descriptor yielded is the lease file's, so passing it on changes nothing).
    """
    Path(cell_dir).mkdir(parents=True, exist_ok=True)
    if kind == "lease":
        with _lease_lock(cell_dir, on_busy, say, ttl_s) as fd:
            yield fd
        return
    lock_file = Path(cell_dir) / LOCK
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # another user's lock file: flock works on a read-only descriptor too
        fd = os.open(lock_file, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            busy = f"{Path(cell_dir).name} is busy: {_holder(lock_file)} is training or evaluating it"
            if on_busy == "skip":
                say(f"{busy}; skipped (run.on_busy=skip)")
                yield None
                return
            say(f"{busy}; waiting for it (run.on_busy=skip skips busy cells)")
            fcntl.flock(fd, fcntl.LOCK_EX)
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, info, 0)
        except OSError:  # read-only descriptor: the holder stays anonymous
            pass
        try:
            yield fd
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def old_layout_cells(sweep_dir: Path) -> List[Path]:
    """Cell folders stored inside a sweep folder by the layout before the store (to migrate)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        return []
    return sorted(p.parent for p in sweep_dir.glob(f"*/{CELL_SPEC_NAME}") if not p.parent.is_symlink())


JUDGE_FACTS = "judge_facts"
"""View key: judged benchmark -> {"judge": the result's judge block, "caveats": [...]}: who judged, not who was asked."""


def _eval_view(cell_dir: Path, evals: Dict[str, str],
               facts: Optional[Dict[str, Any]] = None) -> tuple[List[Dict[str, Any]], Dict[str, Any], Dict[str, float], List[str]]:
    """(metric rows, baselines, timings as eval_<name>, problems) of the requested evaluator results.

    ``facts``, when given, gets each ok judge result's judge block and caveats under its benchmark's name.
    """
    rows: List[Dict[str, Any]] = []
    baselines: Dict[str, Any] = {}
    timings: Dict[str, float] = {}
    problems: List[str] = []
    for name, key in evals.items():
        try:
            result = load_json(eval_dir(cell_dir, key) / RESULT, _shown(eval_dir(cell_dir, key) / RESULT))
        except CorruptFileError as exc:
            problems.append(f"corrupt: eval {name}: {exc}; {RERUN}")
            continue
        if result is None:
            problems.append(f"skipped: eval {name} not run yet")
        elif result.get("status") != "ok":
            problems.append(f"{result.get('status')}: eval {name}: {result.get('error')}")
        else:
            rows.extend(result.get("rows", []))
            timings.update(result.get("timings_s", {}))
            if facts is not None and isinstance(result.get("judge"), dict):
                facts[name.split(":")[0]] = {"judge": result["judge"], "caveats": list(result.get("caveats") or [])}
            if result.get("baseline"):
                baselines[name] = result["baseline"]
    return rows, baselines, timings, problems


RERUN = "rerun the sweep to train the cell again, or delete the cell folder"
"""What to do about a corrupt cell file: the sweep treats an unreadable record as missing and retrains."""


def _shown(path: Path) -> str:
    """A cell file as a message names it: ``cells/<id>/record.json`` (the store's own path, whatever link led there)."""
    resolved = Path(path).resolve()
    parts = resolved.parts
    at = max((i for i, part in enumerate(parts) if part == CELLS), default=None)
    return str(Path(*parts[at:])) if at is not None else str(path)


def cell_view(cell_dir: Path, evals: Dict[str, str], cell_id: Optional[str] = None) -> Dict[str, Any]:
    """One cell as the summary reads it: the training record plus the requested evaluations.

    ``status`` is ok only when training and every requested evaluation ended ok; otherwise it
    is the training status or, after a good training, the first failed evaluation's status.
    """
    path = Path(cell_dir) / RECORD_NAME
    try:
        record = load_json(path, _shown(path))
    except CorruptFileError as exc:  # the cell ran (a record was written) but it cannot be read: never "not run"
        return new_record(cell_id or Path(cell_dir).name, "corrupt", {}, error=f"{exc}; {RERUN}", evals=dict(evals))
    if record is None:
        busy = _live_holder(cell_dir)
        if busy is not None:  # a sweep that has not ended: training now (no record until it ends)
            return new_record(cell_id or Path(cell_dir).name, "running", {}, error=f"running: {busy}")
        return new_record(cell_id or Path(cell_dir).name, "skipped", {}, error="not run: no record yet")
    view = dict(record)
    facts: Dict[str, Any] = {}
    rows, baselines, timings, problems = _eval_view(Path(cell_dir), evals, facts)
    view["metrics"] = list(record.get("metrics", [])) + rows
    if facts:
        view[JUDGE_FACTS] = facts
    view["baselines"] = {**record.get("baselines", {}), **baselines}
    view["timings_s"] = {**record.get("timings_s", {}), **timings}
    view["evals"] = dict(evals)
    if record.get("status") == "ok" and problems:
        status, _, error = problems[0].partition(": ")
        busy = _live_holder(cell_dir) if status == "skipped" else None
        view["status"], view["error"] = ("running", f"running: {busy}") if busy else (status, error)
    return view


def _live_holder(cell_dir: Path) -> Optional[str]:
    """Who holds the cell's lock now (``harness.store.locks.holder``), None when free (or unreadable)."""
    try:
        from harness.store.locks import holder

        return holder(Path(cell_dir))
    except (ImportError, OSError):
        return None


def requested(job: Dict[str, Any]) -> Dict[str, str]:
    """A manifest job's results as the summary reads them: its evaluations, then its judge results (``<name>:judge``)."""
    judges = {f"{name}:judge": key for name, key in (job.get("judges") or {}).items()}
    return {**job.get("evals", {}), **judges}


def load_sweep(sweep_dir: Path) -> List[Dict[str, Any]]:
    """The cells of exactly the grid in the sweep's manifest, in job order, each once."""
    manifest = read_manifest(sweep_dir)
    if manifest is None:
        from harness.store.records import load_records

        return load_records(sweep_dir)  # a folder of the old layout, not migrated yet
    seen, views = set(), []
    for _, job in sorted(manifest["jobs"].items(), key=lambda item: int(item[0])):
        if job["cell_id"] in seen:
            continue
        seen.add(job["cell_id"])
        view = cell_view(Path(sweep_dir) / job["cell_id"], requested(job), job["cell_id"])
        if not view.get("config") and isinstance(job.get("config"), dict):  # never started: its planned config
            view["config"] = job["config"]
        if job.get("frontier") and view.get("status") != "ok":  # ruled out by the OOM frontier: kept in the manifest only
            from harness.store.layout import skipped_view

            view = skipped_view(job)
        views.append(view)
    return views


MARK = "frontier"
"""Manifest key of a job the frontier skipped."""


def skipped_view(job: Dict[str, Any]) -> Dict[str, Any]:
    """A skipped job as the summary and the report read it: status skipped, the inference as its error."""
    mark = job[MARK]
    return new_record(job["cell_id"], "skipped", mark.get("config") or {}, error=mark.get("error"),
                      evals=dict(job.get("evals") or {}), frontier={"inferred_from": mark.get("inferred_from")})


def inferred(view: Dict[str, Any]) -> bool:
    """True for a cell the frontier skipped (its error says so)."""
    return view.get("status") == "skipped" and str(view.get("error") or "").startswith("does not fit (inferred")
