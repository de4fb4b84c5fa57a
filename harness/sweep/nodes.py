"""Parent side of a cell whose ranks span several nodes (``dist.nodes`` > 1), under SLURM.

**Allocation.** ``conf/hydra/launcher/slurm.yaml`` sizes each SLURM job through the ``harness_slurm``
resolver (``allocation``): with ``dist=none`` one task with one GPU, as for any cell; with a strategy,
``dist.nodes`` nodes, one task per node (each node's Hydra job starts that node's ranks through torchrun)
and ``dist.processes / dist.nodes`` GPUs per node. Hydra resolves the launcher once per sweep, from the
primary config, where swept values are not applied yet: a grid that sweeps ``dist.nodes`` or
``dist.processes``, or mixes ``dist=none`` with a strategy, would submit every cell with one allocation
that fits only some, so it is refused before anything is submitted, in one line naming the key.

**Roles.** srun runs the same Hydra job once per node. Node 0 (``SLURM_NODEID`` 0) runs the cell like any
other (lock, spec, worker, record); its worker writes ``ranks/rendezvous.json`` right before it launches
its ranks (``harness.worker.ranks``), and its job writes ``ranks/nodes-done.json`` once the cell is settled,
whatever happened (``settle``). A node above 0 takes no lock and writes no record: its job starts a follower
(``python -m harness.worker.follow``) that waits for this SLURM job's rendezvous, or its done marker, and
launches that node's ranks (``follow``). The files carry the SLURM job id and restart count, so what an
earlier job (or a requeued run of this one) left in the shared cell folder is never taken for this one's.

Light: Hydra's override parser and OmegaConf; never torch, never ``harness.worker`` (it is started as a process).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from omegaconf import OmegaConf

from harness.errors import ConfigError
from harness.files import write_json_atomic

RESOLVER = "harness_slurm"
ALLOCATION_KEYS = ("nodes", "gpus_per_node", "gpus_per_task")
RANKS_DIR = "ranks"
"""The cell's rank folder (``harness.worker.ranks.RANKS_DIR``; the parent may not import the worker's rooms)."""
DONE_NAME = "nodes-done.json"
"""Node 0's done marker in ``ranks/`` (read by ``harness.worker.follow``, which names it too)."""
KILL_GRACE_S = 10.0
FOLLOW_GRACE_S = 120.0
"""Beyond run.timeout_s (the rendezvous wait) and run.timeout_s (the training), before a follower is stopped."""


def _enabled(strategy: Any) -> bool:
    return str(strategy or "none") != "none"


def grid_problem(overrides: Sequence[str]) -> Tuple[Optional[str], Optional[bool]]:
    """(one line naming the override that sweeps the allocation's shape, or None; the strategy a swept
    ``dist`` group implies: True when every swept value is a strategy, None when the group is not swept).

    ``overrides``: the command line's task overrides and a named sweep's ``hydra.sweeper.params`` as
    ``key=value``; they are already validated (preflight), so an unparsable one is left to Hydra.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException:
        return None, None
    enabled: Optional[bool] = None
    for override in parsed:
        key = override.key_or_group
        if key not in ("dist", "dist.strategy", "dist.nodes", "dist.processes") or not override.is_sweep_override():
            continue
        try:
            values = sorted(set(override.sweep_string_iterator()))
        except HydraException:  # glob(...) or interval(...): which values it takes is not known here
            values = ["?", "??"]
        if key in ("dist.nodes", "dist.processes") and len(values) > 1:
            return (f"{override.input_line}: hydra/launcher=slurm sizes one allocation per grid from dist.nodes and "
                    "dist.processes, so a SLURM grid cannot sweep them; run one command per value"), None
        if key in ("dist", "dist.strategy"):
            kinds = {_enabled(value) for value in values}
            if len(kinds) > 1 or "?" in values:
                return (f"{override.input_line}: hydra/launcher=slurm sizes one allocation per grid, one GPU for "
                        "dist=none and dist.processes / dist.nodes per node for a strategy; run them as two commands"), None
            enabled = kinds.pop()
    return None, enabled


def allocation(dist: Mapping[str, Any], overrides: Sequence[str] = ()) -> Dict[str, Any]:
    """The SLURM job's shape for a cell with this dist block: ``nodes``, ``gpus_per_node``, ``gpus_per_task``.

    dist off: one node, one GPU for the one task (SLURM binds it; the harness keeps it). dist on: one task
    per node and ``processes / nodes`` GPUs per node, no ``gpus_per_task`` (it would bind the node's one
    task to one GPU). ``overrides`` are checked for a swept shape (``grid_problem``); ConfigError, one line.
    """
    problem, swept = grid_problem(overrides)
    if problem:
        raise ConfigError(problem)
    nodes = int(dist.get("nodes") or 1)
    if not (swept if swept is not None else _enabled(dist.get("strategy"))):
        return {"nodes": 1, "gpus_per_node": None, "gpus_per_task": 1}
    processes = dist.get("processes")
    per_node: Optional[int] = None
    if processes is not None:
        if int(processes) % nodes:
            raise ConfigError(f"dist.processes={processes}: must be a multiple of dist.nodes={nodes} "
                              "(the same number of ranks on every node)")
        per_node = int(processes) // nodes
    return {"nodes": nodes, "gpus_per_node": per_node, "gpus_per_task": None}


def _resolve(key: str, _root_: Any) -> Any:
    """``${harness_slurm:KEY}``: one value of ``allocation`` for the config being resolved."""
    if key not in ALLOCATION_KEYS:
        raise ConfigError(f"${{{RESOLVER}:{key}}}: unknown key; choose one of {', '.join(ALLOCATION_KEYS)}")
    if "dist" not in _root_:  # a hydra-only view (HydraConfig in a job): no cell to size; as if dist=none
        return allocation({})[key]
    dist = OmegaConf.to_container(_root_.dist, resolve=True)
    task = list(OmegaConf.select(_root_, "hydra.overrides.task", default=None) or [])
    params = OmegaConf.select(_root_, "hydra.sweeper.params", default=None) or {}
    try:
        shape = allocation(dist, task + [f"{name}={value}" for name, value in params.items()])
    except ConfigError as exc:
        # Hydra resolves the launcher while it sets up the sweep, where an exception becomes a screen of
        # its own text: say it in one line and stop, as the sweeper does for a bad grid point
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    if key == "gpus_per_node" and shape["gpus_per_task"] is None and shape["gpus_per_node"] is None:
        print("error: dist.processes=null: hydra/launcher=slurm sizes the allocation from it (dist.processes / "
              "dist.nodes GPUs per node); set dist.processes=K or hydra.launcher.gpus_per_node=G", file=sys.stderr, flush=True)
        raise SystemExit(2)
    return shape[key]


def register_resolver() -> None:
    """Register ``${harness_slurm:KEY}`` (conf/hydra/launcher/slurm.yaml)."""
    OmegaConf.register_new_resolver(RESOLVER, _resolve, replace=True)


# At import: harness.sweep.job imports this module, and both ``python -m harness`` (before hydra.main)
# and a submitit job (unpickling the task function) import that before the launcher config is resolved.
register_resolver()


def ranks_per_node(config: Mapping[str, Any]) -> int:
    """A dist cell's ranks on each of its nodes (``dist.processes / dist.nodes``), each on a GPU of its own; 1 otherwise."""
    dist = config.get("dist") or {}
    if not _enabled(dist.get("strategy")) or not dist.get("processes"):
        return 1
    return max(1, int(dist["processes"]) // max(1, int(dist.get("nodes") or 1)))


def slurm_job(environ: Mapping[str, str]) -> Dict[str, Any]:
    """This SLURM job as the node files name it: its id and restart count (a requeued job keeps its id)."""
    return {"job": environ.get("SLURM_JOB_ID"), "restart": int(environ.get("SLURM_RESTART_COUNT") or 0)}


def _multi_node(config: Mapping[str, Any]) -> int:
    """``dist.nodes`` of a dist cell that spans nodes, else 0."""
    dist = config.get("dist") or {}
    nodes = int(dist.get("nodes") or 1)
    return nodes if _enabled(dist.get("strategy")) and nodes > 1 else 0


def node_rank(config: Mapping[str, Any], environ: Optional[Mapping[str, str]] = None) -> int:
    """This node's place in a multi-node cell: ``SLURM_NODEID`` when the cell spans nodes inside a SLURM job, else 0."""
    env = os.environ if environ is None else environ
    return int(env.get("SLURM_NODEID") or 0) if _multi_node(config) and env.get("SLURM_JOB_ID") else 0


def problem(config: Mapping[str, Any], environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """One line saying why this job cannot run a multi-node cell (its ranks would wait for nodes that never
    come), or None: node 0 records it as the cell's failure before any worker starts."""
    env = os.environ if environ is None else environ
    count = _multi_node(config)
    if not count:
        return None
    if not env.get("SLURM_JOB_ID"):
        return (f"dist.nodes={count}: a cell across nodes runs as a SLURM job, one task per node: add -m and "
                "hydra/launcher=slurm (README \"Across nodes (SLURM)\")")
    have, tasks = int(env.get("SLURM_JOB_NUM_NODES") or count), int(env.get("SLURM_NTASKS") or count)
    if (have, tasks) != (count, count):
        return (f"dist.nodes={count}: this SLURM job has {have} node(s) and {tasks} task(s), and needs {count} of "
                f"each (one per node); hydra/launcher=slurm sizes it from dist.nodes")
    return None


def settle(config: Mapping[str, Any], cell_dir: Path, environ: Optional[Mapping[str, str]] = None) -> None:
    """Node 0 of a multi-node cell: write the done marker (the followers stop waiting, or stop their ranks).

    Called once the cell is settled, whatever happened; a no-op for any other cell and on the other nodes,
    and it never raises (the Hydra job must not).
    """
    env = os.environ if environ is None else environ
    if not _multi_node(config) or not env.get("SLURM_JOB_ID") or node_rank(config, env) != 0:
        return
    with contextlib.suppress(OSError):
        (Path(cell_dir) / RANKS_DIR).mkdir(parents=True, exist_ok=True)
        write_json_atomic(Path(cell_dir) / RANKS_DIR / DONE_NAME, {**slurm_job(env), "done": True})


def follower_command(python: Path, cell_dir: Path, wait_s: float) -> List[str]:
    """The follower process of a node above 0 (``harness.worker.follow``)."""
    return [str(python), "-m", "harness.worker.follow", str(cell_dir), "--wait-s", f"{wait_s:g}"]


def follow(plan: Any, timeout_s: float, say: Callable[[str], None], *, python: Optional[Path] = None,
           environ: Optional[Mapping[str, str]] = None) -> int:
    """Run this node's follower for ``plan``'s cell and wait for it; return its exit code.

    The follower waits up to ``timeout_s`` (run.timeout_s) for node 0's rendezvous, then trains for up to
    as long as node 0's worker may; past both, and a grace, its process group is stopped (its ranks die
    with it). Nothing here writes a record: node 0's job does.
    """
    from harness.store.venvs import interpreter

    env = dict(os.environ if environ is None else environ, PYTHONUNBUFFERED="1")
    python = python or interpreter(plan.config.get("framework") or {})
    rank = node_rank(plan.config, env)
    say(f"{plan.cell_id}: node {rank} of {plan.config['dist']['nodes']}: following node 0 (SLURM job "
        f"{env.get('SLURM_JOB_ID')}), waiting for its rendezvous in {Path(plan.cell_dir) / RANKS_DIR}")
    proc = subprocess.Popen(follower_command(python, plan.cell_dir, timeout_s), env=env, stdin=subprocess.DEVNULL,
                            start_new_session=True)  # own group: stopping it stops what it started
    try:
        return proc.wait(timeout=2 * timeout_s + FOLLOW_GRACE_S)
    except subprocess.TimeoutExpired:
        say(f"{plan.cell_id}: node {rank}: the follower outlived run.timeout_s twice over; stopped")
        return _stop(proc)
    except BaseException:  # Ctrl-C or SLURM's stop: never leave this node's ranks running
        _stop(proc)
        raise


def _stop(proc: subprocess.Popen) -> int:
    """SIGTERM the follower's group, SIGKILL what is left after a grace; its exit code."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            return proc.wait(timeout=KILL_GRACE_S)
    return proc.wait()
