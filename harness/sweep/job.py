"""The Hydra job: validate one grid point, run it as a cell, report one line.

Runs in the parent process and never imports torch. It must never raise: Hydra skips
its multirun-end callback (the summary) when a job raises, so every outcome of a cell
becomes a recorded status instead.
"""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig

from harness.errors import ConfigError, HarnessError
from harness.sweep import nodes  # also registers ${harness_slurm:...} before Hydra resolves the SLURM launcher
from harness.sweep.validate import validate


@dataclass
class SweepState:
    """Outcome counters the entry point turns into an exit code."""

    invalid: int = 0
    not_ok: int = 0
    sweep_dir: Optional[Path] = None
    """The sweep folder of the running command, once known (Ctrl-C summarises it)."""
    unwritten: int = 0
    """Outputs (a record, the manifest, the summary, the report) that could not be written, each said in one line."""
    deferred: Optional[str] = None
    """run.finish=slurm: the SLURM id of the job that finishes the sweep ("none" when it could not be submitted);
    the parent's end-of-sweep callback then writes nothing (harness.sweep.slurm_finish)."""

    def exit_code(self) -> int:
        """2 for a rejected config, 1 when any cell did not end ok or an output could not be written, else 0."""
        return 2 if self.invalid else (1 if self.not_ok or self.unwritten else 0)


def cannot_write(exc: OSError, fallback: str) -> str:
    """``cannot write <file>: No space left on device`` -- the one line a failed write gets."""
    return f"cannot write {exc.filename or fallback}: {exc.strerror or exc}"


STATE = SweepState()
NUM_KEY = "HARNESS_JOB"
"""The manifest number the sweeper gives a launched job (``hydra.job.env_set``; hydra_plugins/harness_sweeper)."""


def outcome(job: "Job", fields: Dict[str, Any]) -> None:
    """Record this job's own outcome in the sweep (its file under ``jobs/``): status, cell, host, pid, SLURM job,
    times. Best effort: a store without per-job files, or a full disk, loses only this line, never the cell."""
    import os
    import socket

    try:
        from harness.store.layout import record_outcome
    except ImportError:  # the store before per-job files: the manifest entry has no outcome
        return
    slurm = os.environ.get("SLURM_ARRAY_JOB_ID")
    slurm = f"{slurm}_{os.environ.get('SLURM_ARRAY_TASK_ID')}" if slurm else os.environ.get("SLURM_JOB_ID")
    base = {"host": socket.gethostname(), "pid": os.getpid(), **({"slurm_job_id": slurm} if slurm else {})}
    try:
        record_outcome(job.sweep_dir, job.num, {**base, **fields})
    except OSError:
        pass


@dataclass
class Job:
    """Where Hydra placed this job: its sweep (or run) folder, number and overrides."""

    sweep_dir: Path
    num: str
    overrides: List[str]
    multirun: bool


def _job() -> Job:
    """This job's folder, number and overrides from Hydra's runtime config."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    overrides = list(hydra_cfg.overrides.task)
    if hydra_cfg.mode == RunMode.MULTIRUN:
        # the sweeper launches only missing work, each job under its manifest number (Hydra's counts launches)
        num = (hydra_cfg.job.get("env_set") or {}).get(NUM_KEY)
        return Job(Path(hydra_cfg.sweep.dir), str(num if num is not None else hydra_cfg.job.num), overrides, True)
    return Job(Path(hydra_cfg.run.dir), "0", overrides, False)


def check_sweep_dir(sweep_dir: Path, run_root: Path) -> None:
    """A sweep folder sits directly under run.root (its links point to ../cells) and holds no old-layout cells."""
    from harness.store.layout import CELLS, old_layout_cells

    sweep_dir, root = Path(sweep_dir), Path(run_root)
    if sweep_dir.resolve().parent != root.resolve() or sweep_dir.name == CELLS:
        raise ConfigError(f"hydra.sweep.dir={sweep_dir}: a sweep folder must be a folder directly under run.root={root}")
    old = old_layout_cells(sweep_dir)
    if old:
        raise ConfigError(
            f"{sweep_dir} holds {len(old)} cell folder(s) of the layout before the cell store; "
            f"move them into the store first: python -m harness.store migrate {root}"
        )


def manifest_entry(plan: Any, overrides: List[str]) -> Dict[str, Any]:
    """One job's line in the sweep manifest."""
    # the planned config: a cell that never started (Ctrl-C, a full disk) still shows its axis values
    entry = {"cell_id": plan.cell_id, "evals": plan.evals, "overrides": overrides, "config": plan.config}
    if plan.judges:  # judged after the cells by the parent (harness.judge.run), with these settings
        entry.update(judges=plan.judges, judge=plan.judge)
    return entry


def _describe(record: Dict[str, Any]) -> str:
    metrics = {row["metric"]: row["value"] for row in record.get("metrics", []) if row["evaluator"] == "perplexity"}
    if record["status"] != "ok":
        return record.get("error") or ""
    from harness.report.rows import lm_eval_headlines  # light: the summary module never imports torch

    parts = [f"eval_loss {metrics['eval_loss']:.4f}"] if "eval_loss" in metrics else []
    return "  ".join(parts + lm_eval_headlines(record))


def _inferred_oom(job: Job, plan: Any, entry: Dict[str, Any]) -> bool:
    """Skip the cell when a cell of this run that it needs no less memory than ran out of it (harness.sweep.frontier):
    the skip goes into the sweep's manifest, never into the cell store; True when skipped."""
    from harness.store.layout import MARK, update_manifest
    from harness.sweep.frontier import inferred_skip

    mark = inferred_skip(job.sweep_dir, job.num, plan)  # this run's oom index only, never the whole grid
    if mark is None:
        return False
    update_manifest(job.sweep_dir, job.num, {**entry, MARK: mark})
    print(f"#{job.num} {plan.cell_id}: skipped  {mark['error']}", flush=True)
    return True


def _say_stored(plan: Any) -> None:
    """The cell's status line as the store has it, after a write of the parent failed (the worker may have finished)."""
    if plan is None:
        return
    from harness.store.layout import cell_view

    try:
        view = cell_view(plan.cell_dir, plan.evals, plan.cell_id)
        num = _job().num
    except Exception:  # noqa: BLE001 - the error line is already out; this line only adds what is known
        return
    print(f"#{num} {plan.cell_id}: {view['status']}  {view.get('error') or ''}".rstrip(), flush=True)


def task(cfg: DictConfig) -> None:
    """Hydra task function: one cell."""
    from harness.models.hub import hub_problem
    from harness.store.layout import update_manifest, write_manifest
    from harness.sweep.cell import plan_cell, run_cell

    plan = None
    try:
        job = _job()
        if job.multirun:  # in a launcher's own process (joblib, submitit local): end with the sweep parent
            from harness.sweep.orphans import guard

            guard()
        label = f"#{job.num}"
        try:
            typed, plain = validate(cfg)
            check_sweep_dir(job.sweep_dir, Path(typed.run.root))
        except ConfigError as exc:
            STATE.invalid += 1
            print(f"error: {exc}", file=sys.stderr)
            return
        STATE.sweep_dir = job.sweep_dir
        plan = plan_cell(plain, Path(typed.run.root))
        if nodes.node_rank(plan.config) > 0:  # a node above 0 of a multi-node cell: its ranks only, no lock, no record
            code = nodes.follow(plan, typed.run.timeout_s, say=lambda line: print(f"{label} {line}", flush=True))
            print(f"{label} {plan.cell_id}: this node's part ended (follower exit {code}); node 0 writes the record", flush=True)
            return
        entry = manifest_entry(plan, job.overrides)
        # a multirun's sweeper wrote the whole grid; a job only corrects its own line (data edited meanwhile)
        update_manifest(job.sweep_dir, job.num, entry) if job.multirun else write_manifest(job.sweep_dir, {job.num: entry})
        started = time.time()
        if job.multirun:
            outcome(job, {"status": "running", "cell_id": plan.cell_id, "started": started})
        frontier = job.multirun and typed.run.oom_frontier
        if frontier and _inferred_oom(job, plan, entry):
            STATE.not_ok += 1
            outcome(job, {"status": "skipped", "cell_id": plan.cell_id, "started": started, "ended": time.time()})
            return
        say = lambda line: print(f"{label} {line}", flush=True)  # noqa: E731
        record, note = run_cell(
            plan, timeout_s=typed.run.timeout_s, force=typed.run.force, on_busy=typed.run.on_busy, say=say,
            preflight=lambda: nodes.problem(plan.config) or hub_problem(typed.model), sweep_dir=job.sweep_dir,
        )
        wall = record.get("timings_s", {}).get("cell_wall")
        note = note or (f"{wall:.1f} s" if wall else "")
        # the status line first: a manifest write that fails below (a full disk) must not hide how the cell ended
        print(f"{label} {plan.cell_id}: {record['status']}  {note}  {_describe(record)}".rstrip(), flush=True)
        if record["status"] != "ok":
            STATE.not_ok += 1
        if job.multirun:
            outcome(job, {"status": record["status"], "cell_id": plan.cell_id, "started": started, "ended": time.time()})
        if frontier:  # what the OOM frontier of the jobs still to come reads (harness.sweep.frontier)
            from harness.sweep.frontier import ENDED

            update_manifest(job.sweep_dir, job.num, {**entry, ENDED: record["status"]})
    except KeyboardInterrupt:
        raise
    except HarnessError as exc:
        STATE.not_ok += 1
        print(f"error: {exc}", file=sys.stderr)
    except OSError as exc:  # a full or read-only disk under run.root: one line, the sweep goes on
        STATE.not_ok += 1
        STATE.unwritten += 1
        print(f"error: {cannot_write(exc, 'under run.root')}", file=sys.stderr)
        _say_stored(plan)
    except Exception:  # noqa: BLE001 - a harness bug must not take the sweep down either
        STATE.not_ok += 1
        print(f"error: internal error in the harness parent:\n{traceback.format_exc()}", file=sys.stderr)
    finally:
        if plan is not None:  # node 0 of a multi-node cell: the followers stop waiting, whatever happened
            nodes.settle(plan.config, plan.cell_dir)
