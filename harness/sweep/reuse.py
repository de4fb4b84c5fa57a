"""Which jobs of a sweep get launched: only missing work.

The sweeper writes the whole grid into the manifest, then sorts its jobs before any launcher sees one:

- **reused**: the cell is stored ok with every requested evaluation ok (``layout.cell_view``), and
  ``run.force`` is off. No job is started for it (on SLURM: no allocation); the summary shows it ok.
- **busy**: another process holds the cell's lock (``harness.store.locks.holder``), or a SLURM job of
  this sweep that the manifest records as submitted or running is still PENDING/RUNNING in ``squeue``.
  Not launched either (under ``run.on_busy=wait`` it would sit blocked on the lock, on SLURM in an
  allocation); the summary shows it ``running``.
- **launch**: the rest, in the manifest's order, under their manifest numbers.

Under ``run.on_busy=wait`` (and a parent that waits, ``run.finish=parent``) the parent itself waits for the busy
cells' holders once its own jobs ended (``wait_for``: polling the lock, no job or allocation held meanwhile), so its
summary shows them as they ended; under ``skip`` it ends at once and shows them ``running``.

Light: stdlib and the store; never torch.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

SLURM_LIVE = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED")
"""squeue states of a job that still holds (or will hold) its cell."""


@dataclass
class Triage:
    """The manifest's job numbers, sorted by what the sweeper does with each."""

    launch: List[int] = field(default_factory=list)
    reused: List[int] = field(default_factory=list)
    busy: Dict[int, str] = field(default_factory=dict)
    """job number -> who holds its cell (one line)."""


def lock_holder(cell_dir: Path) -> Optional[str]:
    """``harness.store.locks.holder`` of the cell, None when free or unreadable (a check, never a failure)."""
    from harness.store.locks import holder

    try:
        return holder(Path(cell_dir))
    except OSError:
        return None


def slurm_state(job_id: str, run: Callable[..., Any] = subprocess.run) -> Optional[str]:
    """The job's state as ``squeue -h -j ID -o %T`` prints it (PENDING, RUNNING, ...); None when squeue is missing,
    fails or no longer knows the job."""
    try:
        out = run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [line.strip() for line in (out.stdout or "").splitlines() if line.strip()] if out.returncode == 0 else []
    return lines[0].upper() if lines else None


def slurm_holder(outcome: Optional[Mapping[str, Any]], run: Callable[..., Any] = subprocess.run) -> Optional[str]:
    """``SLURM job 123_4 (running)`` when the job's recorded outcome is a submitted/running SLURM job squeue still
    lists as live; None otherwise (no squeue is asked for a job that ended or never went to SLURM)."""
    if not outcome or outcome.get("status") not in ("submitted", "running") or not outcome.get("slurm_job_id"):
        return None
    state = slurm_state(str(outcome["slurm_job_id"]), run)
    return f"SLURM job {outcome['slurm_job_id']} ({state.lower()})" if state in SLURM_LIVE else None


def triage(jobs: Sequence[Mapping[str, Any]], cell_dirs: Sequence[Path], forces: Sequence[bool],
           outcomes: Optional[Mapping[int, Mapping[str, Any]]] = None,
           run: Callable[..., Any] = subprocess.run) -> Triage:
    """Sort the manifest's jobs (``jobs[n]``: entry of job n, ``cell_dirs[n]`` its cell folder, ``forces[n]`` its
    run.force, ``outcomes[n]`` what an earlier run of this sweep recorded for it) into launch, reused and busy."""
    from harness.store.layout import cell_view

    out = Triage()
    for num, (entry, cell_dir, force) in enumerate(zip(jobs, cell_dirs, forces)):
        if not force and cell_view(Path(cell_dir), dict(entry.get("evals") or {}), entry.get("cell_id")).get("status") == "ok":
            out.reused.append(num)
            continue
        busy = lock_holder(Path(cell_dir)) or slurm_holder((outcomes or {}).get(num), run)
        if busy is not None:
            out.busy[num] = busy
        else:
            out.launch.append(num)
    return out


def say(result: Triage, jobs: Sequence[Mapping[str, Any]], line: Callable[[str], None] = print) -> None:
    """One line per job not launched: reused, or busy naming its holder."""
    for num in sorted([*result.reused, *result.busy]):
        who = result.busy.get(num)
        line(f"#{num} {jobs[num]['cell_id']}: " + (f"busy, held by {who}; no job started (the summary shows it as running)"
                                                  if who else "reused (stored ok, no job started)"))


POLL_S = 2.0
"""How often a parent waiting for cells held elsewhere looks again."""


def wait_for(result: Triage, jobs: Sequence[Mapping[str, Any]], cell_dirs: Sequence[Path],
             outcomes: Optional[Mapping[int, Mapping[str, Any]]] = None, line: Callable[[str], None] = print,
             sleep: Callable[[float], None] = time.sleep, run: Callable[..., Any] = subprocess.run) -> None:
    """Wait (one line said) until no busy cell of ``result`` is held any more (``run.on_busy=wait``)."""
    left = dict(result.busy)
    if left:
        line(f"waiting for {len(left)} cell(s) held elsewhere to end (run.on_busy=wait; run.on_busy=skip ends without them)")
    while left:
        left = {num: who for num, who in left.items()
                if lock_holder(Path(cell_dirs[num])) or slurm_holder((outcomes or {}).get(num), run)}
        if left:
            sleep(POLL_S)
