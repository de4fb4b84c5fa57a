"""Several cells at once through Hydra's launchers: how many run at once, threads per cell, a GPU per cell.

Light (no torch, no launcher imports): ``spawn_worker`` calls ``placement`` in the Hydra job
that runs a cell -- the parent's process under the basic launcher, a joblib (loky) worker, a
submitit job, a Ray task -- to decide what the cell's worker process gets in its environment:

- **cells at once** on this machine, from the launcher's own config (``hydra.launcher``), capped at the
  jobs the sweeper launched (cells stored ok are reused without a job) and at ``run.cells_at_once``
  (``machine_cap``: the setting, else what fits this machine): basic 1; joblib ``n_jobs`` (-1 = every
  core, as joblib counts); submitit_local the cap (its local executor starts every job of an array at
  once, so the sweeper hands it the jobs in batches of the cap); submitit_slurm 1 (each job is its own
  SLURM allocation, never capped); ray the cluster's CPUs / ``ray.remote.num_cpus`` (Ray schedules, uncapped).
  The sweeper passes the cap and the launched count to the jobs as ``HARNESS_CELLS_AT_ONCE`` /
  ``HARNESS_LAUNCHED``, so every job of one sweep reads the same numbers.
- **threads per cell** when more than one cell runs at once: ``run.threads_per_cell``, else
  ``cores // cells at once`` (at least 1; Ray: the task's ``num_cpus``), set as
  ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` (torch's intra-op threads
  follow ``OMP_NUM_THREADS``), so n cells on one CPU do not oversubscribe its cores.
- **a GPU per cell** for a CUDA cell when more than one runs at once: one of the GPUs this
  process may see (``CUDA_VISIBLE_DEVICES`` as SLURM, Ray or the user set it, else every GPU
  ``nvidia-smi`` lists), held through a per-GPU lock file (``fcntl.flock``) under
  ``<run.cache_dir>/gpu-locks/<host>[-slurm<job id>]/`` for the worker's whole life, and handed
  to the worker as ``CUDA_VISIBLE_DEVICES``. ``run.cells_per_gpu=k`` allows k cells on one GPU
  (slots are taken GPU by GPU first, so cells share only when every GPU is busy); such cells
  are flagged ``gpu_shared`` and stay out of planner calibration. A cell that finds every slot
  held waits for one.
- **a dist cell's GPUs** (``dist.processes / dist.nodes`` ranks on this node) when more than one cell
  runs at once: that many distinct GPUs, leased all or none (``lease_gpus``), so two dist cells, or a
  one-GPU cell beside one, never put ranks on the same GPU (keeping every visible GPU would). Alone on its
  allocation (one cell at a time, a SLURM job) nothing is leased: it keeps the allocation's GPUs, as any cell.

The worker copies what was decided (``HARNESS_LAUNCH``, JSON) into ``record["environment"]["launch"]``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence

from harness.store.launch import LAUNCH_ENV, int_value
from harness.sweep.nodes import allocation, ranks_per_node

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
GPU_LOCKS = "gpu-locks"
POLL_S = 0.5
"""How often a cell that found every GPU slot held tries again."""


def cores() -> int:
    """CPUs this process may run on (affinity mask, so taskset and SLURM bindings count), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass
class Launcher:
    """What the Hydra launcher of this job implies for one machine."""

    name: str
    """basic, joblib, submitit_local, submitit_slurm, ray, or the launcher's class name."""
    at_once: int
    """Cells of this sweep that may run at the same time on this machine."""
    settings: Dict[str, Any] = field(default_factory=dict)
    """The launcher keys that set its parallelism, as given (n_jobs, array_parallelism, num_cpus, ...)."""
    threads: Optional[int] = None
    """Threads per cell the launcher already reserved (Ray's num_cpus); None: cores // at_once."""


def launcher_name(target: str) -> str:
    """basic, joblib, submitit_local, submitit_slurm, ray for a launcher's ``_target_`` (else its class name)."""
    cls = target.rsplit(".", 1)[-1]
    return {"BasicLauncher": "basic", "JoblibLauncher": "joblib", "LocalLauncher": "submitit_local",
            "SlurmLauncher": "submitit_slurm", "RayLauncher": "ray"}.get(cls, cls or "unknown")


CAP_ENV = "HARNESS_CELLS_AT_ONCE"
LAUNCHED_ENV = "HARNESS_LAUNCHED"
CELL_GIB = 1.0
"""Host memory a cell is assumed to take when ``run.cells_at_once`` is null: ~1 GiB, a tiny CPU cell's worker
(measured ~750 MB peak RSS); larger models need the setting (or a GPU count, which caps them anyway)."""


def available_gib(meminfo: str = "/proc/meminfo") -> Optional[float]:
    """MemAvailable in GiB (None when unknown: not Linux)."""
    try:
        for line in Path(meminfo).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    return None


def _gpu_count(environ: Mapping[str, str]) -> int:
    """GPUs this machine offers cells, cheaply (CUDA_VISIBLE_DEVICES, else /proc/driver/nvidia; no nvidia-smi)."""
    listed = parse_visible(environ.get("CUDA_VISIBLE_DEVICES"))
    if listed is not None:
        return len(listed)
    try:
        return len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return 0


def machine_cap(run: Mapping[str, Any], ncores: int, environ: Mapping[str, str] = os.environ,
                mem_gib: Optional[float] = None, gpus: Optional[int] = None) -> int:
    """Cells that may run at once on this machine: ``run.cells_at_once`` when set, else min(cores, available memory /
    ``CELL_GIB``) and, on a machine with GPUs, at most GPUs x ``run.cells_per_gpu``; at least 1."""
    given = int_value(run.get("cells_at_once"))
    if given is not None:
        return max(1, given)
    mem = available_gib() if mem_gib is None else mem_gib
    cap = min(ncores, int(mem // CELL_GIB)) if mem is not None else ncores
    count = _gpu_count(environ) if gpus is None else gpus
    if count:
        cap = min(cap, count * max(1, int_value(run.get("cells_per_gpu")) or 1))
    return max(1, cap)


def launcher_of(node: Mapping[str, Any], n_cells: int, ncores: int,
                ray_cpus: Optional[Callable[[], Optional[float]]] = None, cap: Optional[int] = None) -> Launcher:
    """The launcher a ``hydra.launcher`` node describes, for ``n_cells`` launched jobs on ``ncores`` CPUs, at most
    ``cap`` at once on this machine (``machine_cap``; None: no cap) except under SLURM and Ray."""
    jobs = max(1, n_cells)  # Ray's own scheduling and SLURM's are left uncapped
    n_cells = jobs if cap is None else min(jobs, max(1, cap))
    name = launcher_name(str(node.get("_target_") or ""))
    if name == "joblib":
        n_jobs = int_value(node.get("n_jobs"))
        if n_jobs is None or n_jobs == 0:
            slots = 1
        elif n_jobs < 0:  # joblib: -1 every CPU, -2 all but one, ...
            slots = max(1, ncores + 1 + n_jobs)
        else:
            slots = n_jobs
        return Launcher(name, min(slots, n_cells), {"n_jobs": node.get("n_jobs")})
    if name == "submitit_local":  # every job of a batch at once; the sweeper's batches are at most the cap
        return Launcher(name, n_cells, {"cpus_per_task": node.get("cpus_per_task"), "gpus_per_node": node.get("gpus_per_node")})
    if name == "submitit_slurm":  # every job its own allocation: one cell per allocation
        keys = ("array_parallelism", "cpus_per_task", "gpus_per_task", "gpus_per_node", "nodes")
        # read unresolved: the preset's ${harness_slurm:...} shape is left out here, filled in by placement
        return Launcher(name, 1, {key: None if str(node.get(key)).startswith("${") else node.get(key) for key in keys})
    if name == "ray":
        remote = (node.get("ray") or {}).get("remote") or {}
        per_task = float(remote.get("num_cpus") or 1)
        total = ray_cpus() if ray_cpus is not None else None
        slots = int(total // per_task) if total else jobs
        return Launcher(name, max(1, min(slots, jobs)), {"num_cpus": remote.get("num_cpus"), "num_gpus": remote.get("num_gpus"),
                                                            "cluster_cpus": total}, threads=max(1, int(per_task)))
    return Launcher(name, 1)


def _ray_cpus() -> Optional[float]:
    """The Ray cluster's CPUs, asked from inside a Ray task (None outside Ray or on any failure)."""
    try:
        import ray

        if not ray.is_initialized():
            return None
        return float(ray.cluster_resources().get("CPU") or 0) or None
    except Exception:  # noqa: BLE001 - only a hint for the record and the thread count
        return None


def current_launcher(ncores: int, run: Optional[Mapping[str, Any]] = None) -> Launcher:
    """The launcher of the running Hydra job (basic when there is no Hydra job, e.g. ``harness.evaluate``); the cap
    and the launched count as the sweeper set them (``CAP_ENV``, ``LAUNCHED_ENV``), else from ``run`` and the grid."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
        from omegaconf import OmegaConf

        if not HydraConfig.initialized():
            return Launcher("basic", 1)
        hydra_cfg = HydraConfig.get()
        node = OmegaConf.to_container(hydra_cfg.launcher, resolve=False) if "launcher" in hydra_cfg else {}
        multirun = hydra_cfg.mode == RunMode.MULTIRUN
        launched = int_value(os.environ.get(LAUNCHED_ENV))
        n_cells = (launched or _grid_size(Path(str(hydra_cfg.sweep.dir)))) if multirun else 1
        cap = int_value(os.environ.get(CAP_ENV)) or machine_cap(run or {}, ncores)
    except Exception:  # noqa: BLE001 - placement must never fail a cell: assume one at a time
        return Launcher("basic", 1)
    return launcher_of(node or {}, n_cells, ncores, _ray_cpus, cap=cap)


def _grid_size(sweep_dir: Path) -> int:
    from harness.store.layout import read_manifest

    return max(1, len((read_manifest(sweep_dir) or {}).get("jobs") or {}))


def parse_visible(value: Optional[str]) -> Optional[List[str]]:
    """``CUDA_VISIBLE_DEVICES`` as a list of its entries (indices, GPU-/MIG- UUIDs); None when unset.

    As CUDA reads it: entries up to the first invalid one ("-1" hides every GPU).
    """
    if value is None:
        return None
    out: List[str] = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry or entry.startswith("-"):
            break
        out.append(entry)
    return out


def probe_gpus(run: Callable[..., Any] = subprocess.run) -> List[str]:
    """Indices of this machine's GPUs (``nvidia-smi``, else ``/proc/driver/nvidia/gpus``); empty without any."""
    try:
        out = run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        if out.returncode == 0:
            found = [line.strip() for line in out.stdout.splitlines() if line.strip().isdigit()]
            if found:
                return found
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return [str(i) for i in range(len(os.listdir("/proc/driver/nvidia/gpus")))]
    except OSError:
        return []


def visible_gpus(environ: Mapping[str, str], probe: Callable[[], List[str]] = probe_gpus) -> List[str]:
    """The GPUs a cell may be given: ``CUDA_VISIBLE_DEVICES`` when set (SLURM, Ray, the user), else every GPU."""
    listed = parse_visible(environ.get("CUDA_VISIBLE_DEVICES"))
    return listed if listed is not None else probe()


def lock_namespace(environ: Mapping[str, str], host: Optional[str] = None) -> str:
    """Folder of this machine's GPU locks: the host, and the SLURM job when inside one (another job's
    ``0`` on the same node is another GPU, its own cgroup's)."""
    name = host or socket.gethostname() or "localhost"
    job = environ.get("SLURM_JOB_ID")
    return _safe(f"{name}-slurm{job}" if job else name)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


@dataclass
class Lease:
    """A GPU slot held through its lock file; ``fd`` is inherited by the worker."""

    gpu: str
    slot: int
    fd: int
    path: Path
    waited_s: float = 0.0


def _lock_slot(gpu: str, slot: int, lock_dir: Path) -> Optional[Lease]:
    path = lock_dir / f"gpu-{_safe(gpu)}.{slot}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode()
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, info, 0)
    return Lease(gpu, slot, fd, path)


def try_leases(gpus: Sequence[str], lock_dir: Path, count: int = 1, per_gpu: int = 1) -> Optional[List[Lease]]:
    """Free slots on ``count`` distinct GPUs, GPU by GPU for slot 0, then slot 1, ...; all of them or None.

    Distinct: two ranks of one cell never share a GPU (NCCL refuses it). All or none: a cell never holds
    some GPUs while it waits for more, so two dist cells cannot each hold half of what the other needs.
    """
    lock_dir.mkdir(parents=True, exist_ok=True)
    held: List[Lease] = []
    for slot in range(max(1, per_gpu)):
        for gpu in gpus:
            if len(held) < count and gpu not in {lease.gpu for lease in held}:
                lease = _lock_slot(gpu, slot, lock_dir)
                held += [lease] if lease is not None else []
    if len(held) == count:
        return held
    for lease in held:
        release(lease)
    return None


def try_lease(gpus: Sequence[str], lock_dir: Path, per_gpu: int = 1) -> Optional[Lease]:
    """The first free slot, GPU by GPU for slot 0, then slot 1, ... (cells share a GPU only when all are busy)."""
    found = try_leases(gpus, lock_dir, 1, per_gpu)
    return found[0] if found else None


def lease_gpus(gpus: Sequence[str], lock_dir: Path, count: int = 1, per_gpu: int = 1, *,
               say: Callable[[str], None] = print, poll_s: float = POLL_S, clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> List[Lease]:
    """``count`` free GPU slots on distinct GPUs (``try_leases``), waiting (one line said) while other cells hold them."""
    started = clock()
    said = False
    while True:
        leases = try_leases(gpus, lock_dir, count, per_gpu)
        if leases is not None:
            for lease in leases:
                lease.waited_s = clock() - started
            return leases
        if not said:
            held = "are held" if count == 1 else f"leave fewer than {count} distinct GPUs free"
            say(f"waiting for {'a free GPU' if count == 1 else f'{count} free GPUs'}: the {len(gpus)} x {per_gpu} "
                f"slot(s) under {lock_dir} {held} by other cells")
            said = True
        sleep(poll_s)


def lease_gpu(gpus: Sequence[str], lock_dir: Path, per_gpu: int = 1, **wait: Any) -> Lease:
    """A free GPU slot, waiting (one line said) while every slot is held by other cells."""
    return lease_gpus(gpus, lock_dir, 1, per_gpu, **wait)[0]


def release(lease: Optional[Lease]) -> None:
    """Give a GPU lease back (unlock and close its lock file); None is a no-op."""
    if lease is None:
        return
    with contextlib.suppress(OSError):
        fcntl.flock(lease.fd, fcntl.LOCK_UN)
    with contextlib.suppress(OSError):
        os.close(lease.fd)


@dataclass
class Placement:
    """What one worker gets: environment variables, an inherited lock descriptor, and the record's launch block."""

    env: Dict[str, str] = field(default_factory=dict)
    fds: tuple = ()
    info: Dict[str, Any] = field(default_factory=dict)


def plan_placement(launcher: Launcher, *, device: str, run: Mapping[str, Any], environ: Mapping[str, str], ncores: int,
                   gpus: Callable[[], List[str]] = lambda: visible_gpus(os.environ)) -> Dict[str, Any]:
    """The launch block (no side effects): cells at once, threads per cell, whether a GPU is to be leased."""
    at_once = launcher.at_once
    threads = int_value(run.get("threads_per_cell"))
    if threads is None and at_once > 1:
        threads = launcher.threads or max(1, ncores // at_once)
    per_gpu = max(1, int_value(run.get("cells_per_gpu")) or 1)
    cuda = device.startswith("cuda")
    info: Dict[str, Any] = {
        "launcher": launcher.name, **{k: v for k, v in launcher.settings.items() if v is not None},
        "cells_at_once": at_once, "cores": ncores, "threads_per_cell": threads,
    }
    if cuda:
        info["cuda_visible_devices"] = environ.get("CUDA_VISIBLE_DEVICES")
        info["cells_per_gpu"] = per_gpu
        # one at a time, or one allocation per job (SLURM): the GPUs are the cell's alone, nothing to hand out
        info["assign_gpu"] = at_once > 1
        info["gpu_shared"] = at_once > 1 and per_gpu > 1
    return info


@contextlib.contextmanager
def placement(cell_dir: Path, say: Callable[[str], None] = print, *, environ: Optional[Mapping[str, str]] = None,
              launcher: Optional[Launcher] = None, gpus: Optional[Callable[[], List[str]]] = None,
              host: Optional[str] = None) -> Iterator[Placement]:
    """Decide the worker's placement from its cell spec (written just before) and the running Hydra job; GPU
    slots, when leased (one, or one per rank of a dist cell), are held until the block ends (and by the
    worker, which inherits their descriptors)."""
    from harness.files import read_json
    from harness.store.records import CELL_SPEC_NAME

    environ = os.environ if environ is None else environ
    spec = read_json(Path(cell_dir) / CELL_SPEC_NAME) or {}
    config = spec.get("config") or {}
    run = config.get("run") or {}
    device = str((spec.get("identity") or {}).get("device") or run.get("device") or "cpu")
    ncores = cores()
    launcher = launcher or current_launcher(ncores, run)
    if launcher.name == "submitit_slurm":  # the preset's ${harness_slurm:...} values, as they resolved for this cell
        shape = allocation(config.get("dist") or {})
        launcher.settings.update({k: v for k, v in shape.items() if launcher.settings.get(k) is None and v is not None})
    info = plan_placement(launcher, device=device, run=run, environ=environ, ncores=ncores)
    out = Placement(info=info)
    if info.get("threads_per_cell"):
        out.env.update({var: str(info["threads_per_cell"]) for var in THREAD_VARS})
    leases: List[Lease] = []
    try:
        if info.pop("assign_gpu", False):
            found = (gpus or (lambda: visible_gpus(environ)))()
            need = ranks_per_node(config)  # a dist cell: a GPU for each of its ranks here, none shared
            if found and need > len(found):
                say(f"this dist cell needs {need} GPUs on this node and {len(found)} are visible; it sees every visible GPU")
                found = []
            if found:
                cache = Path(os.path.expanduser(str(run.get("cache_dir") or run.get("root") or "runs")))
                folder = cache / GPU_LOCKS / lock_namespace(environ, host)
                try:
                    leases = lease_gpus(found, folder, need, info["cells_per_gpu"], say=say)
                except OSError as exc:  # an unwritable cache: the cell still runs, on whatever GPU it sees
                    say(f"cannot hand out a GPU (lock files under {folder}: {exc.strerror or exc}); "
                        "this cell sees every visible GPU")
            if leases:
                out.env["CUDA_VISIBLE_DEVICES"] = ",".join(lease.gpu for lease in leases)
                out.fds = tuple(lease.fd for lease in leases)
                info.update(gpu=out.env["CUDA_VISIBLE_DEVICES"], gpu_slot=max(lease.slot for lease in leases),
                            gpu_wait_s=round(leases[0].waited_s, 3))
            else:  # nothing to hand out: every cell sees the same device(s)
                info.update(gpu=None, gpu_shared=True)
        out.env[LAUNCH_ENV] = json.dumps(info, sort_keys=True)
        yield out
    finally:
        for lease in leases:
            release(lease)
