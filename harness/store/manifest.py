"""A sweep folder's bookkeeping: the grid written once per command, one file per job, merged on read.

    <sweep>/manifest.json        the command's grid (job number -> cell id, evals, overrides, config) and its run token
    <sweep>/jobs/run.json        the run: token, started, who runs it (host, pid), finished -- small, read by every job
    <sweep>/jobs/<num>.json      one job's own entry and outcome, stamped with the run token; written only by that job
    <sweep>/jobs/oom/<num>.json  a job of this run whose cell ended oom: what the OOM frontier reads (harness.sweep.frontier)

The sweeper writes ``manifest.json``, ``run.json`` and the cell links once per command (O(N) once); a job
writes only its own file, atomically and without a shared lock, so bookkeeping per cell stays flat however
large the sweep. ``read_manifest`` merges manifest.json with the job files of the current run; job files of
another run are ignored, so a rerun checks every frontier skip again.

Two hosts, one folder (``run.on_busy=skip``): a command whose grid is identical (same job numbers, cell ids
and overrides) to an unfinished run that another live process holds JOINS it -- keeps its token, rewrites
nothing of the other host's -- instead of starting a new one. ``finish_run`` (the end-of-sweep callback)
writes ``finished`` into run.json; a finished run, or one whose holders on this host are all dead and that
has none elsewhere, is never joined. Light: standard library and ``harness.files`` only.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

from harness.errors import CorruptFileError
from harness.files import file_lock, load_json, read_json, write_json_atomic

CELLS = "cells"
"""The store's folder of cells under run.root (``harness.store.layout`` names it too): links point at ``../cells/<id>``."""
MANIFEST = "manifest.json"
JOBS = "jobs"
RUN = "run.json"
OOM = "oom"
ENDED = "ended"
"""Entry key of a job's status once its cell ended in this run (the OOM frontier reads the oom ones)."""
OUTCOME = "outcome"
"""Merged-view key of a job's own outcome (``record_outcome``): status, host, pid, times."""
REWRITE = "rerun the sweep's command to write it again"
"""What to do about a corrupt manifest (the sweeper rewrites it before any cell runs)."""


def jobs_dir(sweep_dir: Path) -> Path:
    """The folder of the per-job files."""
    return Path(sweep_dir) / JOBS


def job_path(sweep_dir: Path, num: str) -> Path:
    """One job's own file."""
    return jobs_dir(sweep_dir) / f"{int(num)}.json"


def run_info(sweep_dir: Path) -> Optional[Dict[str, Any]]:
    """The current run (``jobs/run.json``): token, started, holders, finished; None before any sweeper wrote one."""
    info = read_json(jobs_dir(sweep_dir) / RUN)
    return info if info and isinstance(info.get("run"), str) else None


_WARNED: set = set()


def _warn(path: Path, why: str, then: str = "read as if the job had not written it yet") -> None:
    """One stderr line per bad file and process (a bad job file is read as absent)."""
    if str(path) not in _WARNED:
        _WARNED.add(str(path))
        print(f"warning: {path}: {why}; {then}", file=sys.stderr)


def _own(path: Path, token: Optional[str]) -> Optional[Dict[str, Any]]:
    """The job file at ``path`` when it belongs to run ``token``; None when absent, of another run, or corrupt."""
    try:
        data = load_json(path)
    except CorruptFileError as exc:
        _warn(path, str(exc).split(": ", 1)[-1])
        return None
    if data is None or token is None or data.get("run") != token:
        return None
    entry = data.get("entry")
    if entry is not None and not (isinstance(entry, dict) and isinstance(entry.get("cell_id"), str)):
        _warn(path, "not a job entry (no cell id)")
        return None
    return data


def read_manifest(sweep_dir: Path) -> Optional[Dict[str, Any]]:
    """The sweep's manifest merged with the job files of its current run, or None (an old-layout folder, or not a sweep).

    Each job is its own file's entry when it wrote one in this run (else the grid's), with its ``outcome`` merged
    in. A manifest that exists but is not a grid (truncated, ``{}``, a job without a cell id) is a one-line
    ``CorruptFileError`` naming the file, never a KeyError further on; a bad job file is read as absent.
    """
    path = Path(sweep_dir) / MANIFEST
    try:
        manifest = load_json(path)
        jobs = (manifest or {}).get("jobs")
        if manifest is not None and (not isinstance(jobs, dict) or not all(
                isinstance(job, dict) and isinstance(job.get("cell_id"), str) and str(num).isdigit()
                for num, job in jobs.items())):
            raise CorruptFileError(f"{path}: not a sweep manifest (no 'jobs' of numbered cells)")
    except CorruptFileError as exc:
        manifest = _from_job_files(sweep_dir, exc)
        if manifest is None:
            raise CorruptFileError(f"{exc}; {REWRITE}") from None
    if manifest is None:
        return None
    jobs = manifest["jobs"]
    token = manifest.get("run")
    info = run_info(sweep_dir) if token else None
    if info is not None and info["run"] == token and info.get("finished") is not None:
        manifest["finished"] = info["finished"]
    for num, data in _job_files(sweep_dir, token).items():
        entry = dict(data.get("entry") or jobs.get(num) or {})
        if not entry:
            continue  # an outcome of a job the grid does not have
        if data.get(OUTCOME):
            entry[OUTCOME] = data[OUTCOME]
        jobs[num] = entry
    return manifest


def _from_job_files(sweep_dir: Path, exc: CorruptFileError) -> Optional[Dict[str, Any]]:
    """A corrupt manifest.json's stand-in: the entries the jobs of the current run wrote themselves (all that is
    known until the sweeper rewrites the grid), with one warning line; None when they wrote none."""
    info = run_info(sweep_dir)
    files = _job_files(sweep_dir, info["run"]) if info else {}
    jobs = {num: dict(data["entry"]) for num, data in files.items() if data.get("entry")}
    if not jobs:
        return None
    _warn(Path(sweep_dir) / MANIFEST, str(exc).split(": ", 1)[-1],
          f"showing only the {len(jobs)} job(s) that wrote their own file; {REWRITE}")
    return {"version": 2, "run": info["run"], "started": info.get("started"), "jobs": jobs}


def _job_files(sweep_dir: Path, token: Optional[str]) -> Dict[str, Dict[str, Any]]:
    """num -> job file of run ``token`` (one listing of jobs/)."""
    if not token:
        return {}
    try:
        names = os.listdir(jobs_dir(sweep_dir))
    except OSError:
        return {}
    found: Dict[str, Dict[str, Any]] = {}
    for name in names:
        stem, dot, ext = name.partition(".")
        if ext == "json" and stem.isdigit():
            data = _own(jobs_dir(sweep_dir) / name, token)
            if data is not None:
                found[str(int(stem))] = data
    return found


def _grid(jobs: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """What must be equal for a second command to join a run: each job's cell id and overrides."""
    return {str(num): [job.get("cell_id"), list(job.get("overrides") or [])] for num, job in jobs.items()}


def _alive(holder: Dict[str, Any], host: str) -> bool:
    """A holder of a run may still be running it: this host's pid is alive, or another host's (unknowable: yes)."""
    if holder.get("host") != host:
        return True
    try:
        os.kill(int(holder.get("pid")), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _joinable(sweep_dir: Path, jobs: Dict[str, Dict[str, Any]], me: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The run this command joins (an identical grid that another live process is running), or None."""
    info = run_info(sweep_dir)
    if info is None or info.get("finished") is not None:
        return None
    others = [h for h in info.get("holders") or [] if isinstance(h, dict)
              and (h.get("host"), h.get("pid")) != (me["host"], me["pid"])]
    if not any(_alive(h, me["host"]) for h in others):
        return None  # a crashed or finished command on this host, or this very process again: a new run
    old = read_json(Path(sweep_dir) / MANIFEST) or {}
    if old.get("run") != info["run"] or _grid(old.get("jobs") or {}) != _grid(jobs):
        return None
    return info


def write_manifest(sweep_dir: Path, jobs: Dict[str, Dict[str, Any]]) -> bool:
    """Write this command's grid (job number -> cell id, evals, overrides, config) and link its cells; True when it
    joined a run another live process holds (an identical grid, unfinished) instead of starting a new one.

    A new run gets a fresh token and ``started`` (the progress line counts only what was worked on since), and the
    job files of earlier runs are removed. Once per command: O(N) here keeps every job's bookkeeping O(1).
    """
    sweep_dir = Path(sweep_dir)
    me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
    with file_lock(sweep_dir / ".manifest.lock"):
        joined = _joinable(sweep_dir, jobs, me)
        if joined is not None:
            joined["holders"] = list(joined.get("holders") or []) + [me]
            write_json_atomic(jobs_dir(sweep_dir) / RUN, joined)
            refresh_links(sweep_dir, [job["cell_id"] for job in jobs.values()])
            return True
        token, now = uuid.uuid4().hex, time.time()
        _clear_jobs(sweep_dir)
        write_json_atomic(sweep_dir / MANIFEST, {"version": 2, "run": token, "started": now, "written": now, "jobs": jobs})
        write_json_atomic(jobs_dir(sweep_dir) / RUN, {"run": token, "started": now, "holders": [me]})
        refresh_links(sweep_dir, [job["cell_id"] for job in jobs.values()])
    return False


def _clear_jobs(sweep_dir: Path) -> None:
    """Remove the job files of earlier runs (they would be ignored anyway; a new run starts with none)."""
    for folder in (jobs_dir(sweep_dir), jobs_dir(sweep_dir) / OOM):
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if name.endswith(".json") and name.partition(".")[0].isdigit():
                (folder / name).unlink(missing_ok=True)


def _token(sweep_dir: Path) -> str:
    """The current run's token; a folder no sweeper of this layout wrote gets one now (once, under the lock)."""
    info = run_info(sweep_dir)
    if info is not None:
        return info["run"]
    with file_lock(Path(sweep_dir) / ".manifest.lock"):
        info = run_info(sweep_dir)
        if info is not None:
            return info["run"]
        try:
            old = read_manifest(sweep_dir)
        except CorruptFileError:  # the job's own line is all it knows; the sweeper rewrites the whole grid next time
            old = None
        token, now = uuid.uuid4().hex, time.time()
        manifest = {**(old or {}), "version": 2, "run": token, "written": now, "jobs": (old or {}).get("jobs") or {}}
        manifest.setdefault("started", now)
        write_json_atomic(Path(sweep_dir) / MANIFEST, manifest)
        write_json_atomic(jobs_dir(sweep_dir) / RUN, {"run": token, "started": manifest["started"], "holders": []})
        return token


def _write_job(sweep_dir: Path, num: str, entry: Optional[Dict[str, Any]], outcome: Optional[Dict[str, Any]]) -> None:
    """Read-modify-write of job ``num``'s own file (only this job writes it: no lock)."""
    token = _token(sweep_dir)
    path = job_path(sweep_dir, num)
    data = _own(path, token) or {"run": token, "num": str(num)}
    if entry is not None:
        data["entry"] = {k: v for k, v in entry.items() if k != OUTCOME}
    if outcome:
        data[OUTCOME] = {**(data.get(OUTCOME) or {}), **outcome}
    write_json_atomic(path, data)
    if entry is not None:
        _index_oom(sweep_dir, num, token, data["entry"])


def _index_oom(sweep_dir: Path, num: str, token: str, entry: Dict[str, Any]) -> None:
    """Keep ``jobs/oom/<num>.json`` in step with the entry's ``ended``: the frontier lists only these."""
    path = jobs_dir(sweep_dir) / OOM / f"{int(num)}.json"
    if entry.get(ENDED) == "oom":
        write_json_atomic(path, {"run": token, "cell_id": entry["cell_id"]})
    elif path.exists():
        path.unlink(missing_ok=True)


def update_manifest(sweep_dir: Path, job: str, entry: Dict[str, Any]) -> None:
    """Set one job's entry in its own file (its cell id can change when data is edited during a sweep), and link
    its cell into the sweep folder; O(1): the grid and the other jobs' files are not read."""
    _write_job(sweep_dir, job, entry, None)
    _link(Path(sweep_dir), entry["cell_id"])


def record_outcome(sweep_dir: Path, num: str, fields: Dict[str, Any]) -> None:
    """Merge ``fields`` (status, cell_id, host, pid, slurm job id, started/ended times) into job ``num``'s outcome;
    ``read_manifest`` shows them under the job's ``"outcome"``."""
    _write_job(sweep_dir, num, None, fields)


def finish_run(sweep_dir: Path) -> None:
    """Mark the current run finished (the end-of-sweep callback): the next command with this grid starts a new run."""
    with file_lock(Path(sweep_dir) / ".manifest.lock"):
        info = run_info(sweep_dir)
        if info is not None and info.get("finished") is None:
            write_json_atomic(jobs_dir(sweep_dir) / RUN, {**info, "finished": time.time()})


def oom_jobs(sweep_dir: Path) -> Dict[str, str]:
    """num -> cell id of the jobs of the current run whose cell ended oom (one small listing, not the grid)."""
    info = run_info(sweep_dir)
    folder = jobs_dir(sweep_dir) / OOM
    try:
        names = os.listdir(folder) if info is not None else []
    except OSError:
        return {}
    found: Dict[str, str] = {}
    for name in names:
        stem, _, ext = name.partition(".")
        mark = read_json(folder / name) if ext == "json" and stem.isdigit() else None
        if mark and mark.get("run") == info["run"] and isinstance(mark.get("cell_id"), str):
            found[str(int(stem))] = mark["cell_id"]
    return found


def _link(sweep_dir: Path, cell_id: str) -> None:
    """Link one cell into the sweep folder when it is not there yet (relative: the run root can move)."""
    link = sweep_dir / cell_id
    if not (link.is_symlink() or link.exists()):
        try:
            link.symlink_to(Path("..") / CELLS / cell_id, target_is_directory=True)
        except FileExistsError:  # another host's job linked it meanwhile
            pass


def refresh_links(sweep_dir: Path, cell_ids: List[str]) -> None:
    """Link each cell of the grid into the sweep folder; drop links to cells no longer in it.

    Links are relative (``../cells/<id>``), so a run root can be moved or mounted elsewhere.
    Only links are ever removed: a real folder is never touched.
    """
    sweep_dir = Path(sweep_dir)
    wanted = set(cell_ids)
    for entry in sweep_dir.iterdir():
        if entry.is_symlink() and entry.name not in wanted:
            entry.unlink()
    for cid in wanted:
        _link(sweep_dir, cid)
