"""``run``: run-only settings (timeouts, folders, devices, launch); they never change a cell's identity,
except ``run.memory_cap_gib``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from harness.config.names import (
    RESERVED_SWEEPS,
    check_run_root_name,
    one_of,
    path_segment,
    require,
)


@dataclass
class RunConfig:
    """How a cell is run; none of these keys changes a cell's result or its id."""

    timeout_s: float = 3600.0
    """Wall-clock limit per cell; the worker is killed and the cell recorded as timeout."""
    force: bool = False
    """Train cells again (under the same id) even when the store has them ok."""
    cache_dir: str = "${oc.env:HARNESS_CACHE,'~/.cache/harness'}"
    """Where tiny models, tokenized data and baselines are cached between cells, sweeps and clones: one per user,
    for make and direct commands alike ($HARNESS_CACHE, else ~/.cache/harness; the Makefile sets none)."""
    root: str = "runs"
    """Folder that holds the cell store (``cells/``) and the sweep folders that view it."""
    sweep: Optional[str] = None
    """Name of the sweep folder; None derives it from the command-line overrides."""
    device: str = "auto"
    """auto (cuda when available, else cpu), cpu or cuda; the device class (cpu, cuda:<name>) is part of a cell's id."""
    on_busy: str = "wait"
    """When another run holds a cell (same cell, another sweep or copy): wait for it, or skip it."""
    lock: str = "auto"
    """The cell lock: flock, lease (a heartbeat file under the cell, harness/store/locks.py), or auto: flock where the
    file system under run.root makes it hold across nodes (local, NFS, GPFS, Lustre -o flock), a lease elsewhere
    (Lustre without -o flock, BeeGFS, FUSE). flock where it is node-local is refused with the mount option to set."""
    lock_ttl_s: float = 60.0
    """A lease's lifetime without renewal (renewed every third of it): a crashed holder's cell is taken this long
    after its last renewal, or at once when it ran on the same host."""
    keep_weights: bool = False
    """Keep a full fine-tune's weights (the whole model) in the cell, so evaluators can be added later;
    adapters are always kept."""
    step_cv_warn: float = 0.25
    """Flag cells whose step-time CV (stdev / mean of measured step times) is above this; noisy throughput."""
    memory_cap_gib: Optional[float] = None
    """Emulate a smaller device (GiB): on CUDA a per-process memory fraction of (cap - CUDA context) / total, on
    CPU a watchdog on the worker's resident memory; past it the cell ends oom (reason memory_cap). Unlike the other
    run keys it is part of a capped cell's identity: a result under a cap is not one without it (harness/measure/memcap.py)."""
    oom_frontier: bool = True
    """Run a sweep's cells in ascending predicted memory and skip a cell as "does not fit (inferred)" once a cell it
    dominates (same everything but train.batch_size, train.max_seq_len, lora.r, each <=) ran out of memory
    (harness/sweep/frontier.py); the skips live in the sweep's manifest, and a rerun checks them again."""
    threads_per_cell: Optional[int] = None
    """CPU threads of each worker (OMP_NUM_THREADS, MKL_NUM_THREADS, torch) when a launcher runs several cells at
    once; None: the cores // cells at once (at least 1); one cell at a time keeps the environment's (harness/sweep/launch.py)."""
    worker: str = "auto"
    """How a cell's worker process starts: spawn (a fresh interpreter that imports the training stack), warm (forked
    from a template process of this environment that imported it once: harness/sweep/warm.py), or auto: warm for
    a CPU cell in the harness's own environment, spawn for a CUDA cell (not yet measured warm) and a framework's
    own environment. Records say which (environment.worker)."""
    cells_at_once: Optional[int] = None
    """At most this many cells of a sweep run at once on this machine (joblib's n_jobs is capped to it, submitit_local
    gets its jobs in batches of it); None: what fits the machine, min(cores, available memory / 1 GiB per cell) and
    on a GPU machine at most GPUs x run.cells_per_gpu (harness/sweep/launch.py machine_cap). SLURM and Ray schedule
    their own cells and are not capped."""
    finish: str = "parent"
    """Who ends a sweep (judge pending, summary, report): parent (this command, after every cell) or, under
    hydra/launcher=submitit_slurm (or slurm), slurm: one more SLURM job with --dependency=afterany on the cells' array
    runs python -m harness.sweep.finish SWEEP and this command exits once both are submitted (harness/sweep/slurm_finish.py)."""
    cells_per_gpu: int = 1
    """Cells that may share one GPU when a launcher runs several at once; above 1 such cells are flagged gpu_shared
    and stay out of planner calibration (their peaks are not their own)."""

    def __post_init__(self) -> None:
        require(self.timeout_s > 0, "run.timeout_s", self.timeout_s, "must be > 0")
        require(self.threads_per_cell is None or self.threads_per_cell >= 1, "run.threads_per_cell", self.threads_per_cell,
                 "must be a positive integer (or null: cores // cells at once)")
        require(self.cells_at_once is None or self.cells_at_once >= 1, "run.cells_at_once", self.cells_at_once,
                 "must be a positive integer (or null: what fits this machine)")
        require(self.cells_per_gpu >= 1, "run.cells_per_gpu", self.cells_per_gpu, "must be a positive integer")
        require(self.step_cv_warn > 0, "run.step_cv_warn", self.step_cv_warn, "must be > 0")
        one_of("run.device", self.device, ("auto", "cpu", "cuda"))
        if self.sweep is not None:
            path_segment("run.sweep", self.sweep)
            require(self.sweep.lower() not in RESERVED_SWEEPS, "run.sweep", self.sweep, "is reserved (run.root/cells holds the cell store)")
        check_run_root_name(self.root)
        one_of("run.on_busy", self.on_busy, ("wait", "skip"))
        one_of("run.finish", self.finish, ("parent", "slurm"))
        one_of("run.lock", self.lock, ("auto", "flock", "lease"))
        require(self.lock_ttl_s > 0, "run.lock_ttl_s", self.lock_ttl_s, "must be > 0 seconds")
        one_of("run.worker", self.worker, ("auto", "warm", "spawn"))
        if self.memory_cap_gib is not None:
            cap = self.memory_cap_gib
            require(isinstance(cap, (int, float)) and not isinstance(cap, bool) and 0 < cap < float("inf"),
                     "run.memory_cap_gib", cap, "must be a positive number of GiB (or null for no cap)")
