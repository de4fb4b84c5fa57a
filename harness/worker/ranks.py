"""The worker as a launcher: a ``dist`` cell's training runs on k ranks started through accelerate.

The worker (``python -m harness.worker CELL_DIR``) calls ``accelerate launch --multi_gpu`` in its own process, so
torchrun's elastic agent is the worker itself and every rank (``python -m harness.worker.rank CELL_DIR``) is its
child. torchrun gives each rank a session of its own, so the parent's killpg of the worker's group does not
reach them; instead a rank asks Linux to SIGKILL it when the worker dies (PR_SET_PDEATHSIG), which covers a
timeout, a Ctrl-C and a ``kill -9`` of the worker alike. The parent starts dist cells spawned, never warm.

Ranks train; rank 0 gathers every rank's counters and writes ``record.json``. A rank that fails leaves
``ranks/rank<R>.json`` (status, error); a rank killed by a signal leaves nothing, and torchrun names it. The
worker turns that into the cell's status: ``oom`` naming the rank, ``crashed`` for a signal, else the rank's own.
Evaluation then runs in the worker itself on the saved weights, as an evaluation-only attempt does.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional

from harness.files import read_json

RANKS_DIR = "ranks"
AGENT_ENV = "HARNESS_RANK_AGENT"
"""The worker's pid, given to its ranks: a rank whose parent is no longer it (the worker died before the rank
asked for PDEATHSIG) exits at once."""
SLURM_PORT_BASE = 20000


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (PR_SET_PDEATHSIG), so no orphan keeps a
    GPU busy: the worker (SIGTERM, its parent the harness), a rank (SIGKILL, its parent the worker), a follower."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class RankFailure(Exception):
    """A rank ended the cell: ``status`` (oom, crashed, failed, ...) and one line naming the rank."""

    def __init__(self, status: str, error: str) -> None:
        super().__init__(error)
        self.status = status


def free_port() -> int:
    """A TCP port free on this host now (rank 0's rendezvous on one node)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def slurm_hosts(nodelist: str) -> List[str]:
    """SLURM's compressed node list (``gpu[01-02]``) as host names, by ``scontrol show hostnames``."""
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=30)
    hosts = out.stdout.split()
    if out.returncode != 0 or not hosts:
        raise RuntimeError(f"scontrol show hostnames {nodelist} failed: {out.stderr.strip() or out.returncode}")
    return hosts


def rendezvous(dist: Dict[str, Any], environ: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """Where the ranks meet: host, port, this node's rank and the node count.

    One node: 127.0.0.1 and ``dist.port`` or a free port. Several: SLURM's variables, which every node of the
    job sees alike: the first host of ``SLURM_JOB_NODELIST``, this node's ``SLURM_NODEID``, and ``dist.port`` or
    a port derived from ``SLURM_JOB_ID`` (the same on every node without asking one another).
    """
    env = os.environ if environ is None else environ
    nodes = int(dist.get("nodes") or 1)
    if nodes == 1:
        return {"host": "127.0.0.1", "port": int(dist.get("port") or free_port()), "machine_rank": 0, "nodes": 1}
    missing = [key for key in ("SLURM_JOB_ID", "SLURM_JOB_NODELIST", "SLURM_NODEID") if not env.get(key)]
    if missing:
        from harness.errors import ConfigError

        raise ConfigError(f"dist.nodes={nodes}: runs under SLURM (hydra/launcher=submitit_slurm); {', '.join(missing)} not set")
    host = env.get("HARNESS_RDZV_HOST") or slurm_hosts(env["SLURM_JOB_NODELIST"])[0]
    port = int(dist.get("port") or SLURM_PORT_BASE + int(env["SLURM_JOB_ID"]) % 20000)
    return {"host": host, "port": port, "machine_rank": int(env["SLURM_NODEID"]), "nodes": nodes}


def launch_args(dist: Dict[str, Any], meet: Dict[str, Any], cell_dir: Path) -> List[str]:
    """``accelerate launch`` arguments that start this node's ranks of the cell (torchrun underneath)."""
    return ["--multi_gpu", "--num_processes", str(dist["processes"]), "--num_machines", str(meet["nodes"]),
            "--machine_rank", str(meet["machine_rank"]), "--main_process_ip", str(meet["host"]),
            "--main_process_port", str(meet["port"]), "--mixed_precision", "no", "--dynamo_backend", "no",
            "--monitor_interval", "0.5", "--module", "harness.worker.rank", str(cell_dir)]


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def rank_results(cell_dir: Path, attempt: Optional[str] = None) -> Dict[int, Dict[str, Any]]:
    """Global rank -> the result file it left (``ranks/rank<R>.json``), of every node, of this attempt when given."""
    out = {}
    for path in (cell_dir / RANKS_DIR).glob("rank*.json"):
        left = read_json(path) or {}
        if "rank" in left and (attempt is None or left.get("attempt") == attempt):
            out[int(left["rank"])] = left
    return out


def rank_failure(cell_dir: Path, failures: Dict[int, Any], attempt: Optional[str] = None,
                 oom_killed: bool = False) -> RankFailure:
    """The cell's status from the failed ranks this node's torchrun saw (global rank -> exit code), the files every
    rank left (a rank of another node included) and whether the kernel OOM-killed a process meanwhile."""
    written = rank_results(cell_dir, attempt)
    failed = {rank: left for rank, left in written.items() if left.get("status") not in (None, "ok")}
    for rank, left in sorted(failed.items()):
        if left.get("status") == "oom":
            return RankFailure("oom", f"rank {rank}: {left.get('error')}")
    # torchrun SIGTERMs the ranks still running once one fails: those are not what ended the cell
    for rank, code in sorted(failures.items(), key=lambda item: (item[1] == -signal.SIGTERM, item[0])):
        if code == -signal.SIGKILL and oom_killed:
            return RankFailure("oom", f"rank {rank} was killed by the kernel's OOM killer (host memory ran out)")
        if code < 0:
            return RankFailure("crashed", f"rank {rank} was killed by {_signal_name(code)}; torchrun stopped the other ranks")
    if failed:
        rank, left = sorted(failed.items())[0]
        return RankFailure(str(left["status"]), f"rank {rank}: {left.get('error')}")
    rank = min(failures) if failures else 0
    return RankFailure("crashed", f"rank {rank} exited with code {failures.get(rank)} and left no result")


def _watch_other_nodes(cell_dir: Path, attempt: str, seen: threading.Event, ended: threading.Event) -> None:
    """Several nodes: a rank of another node that failed leaves its file but this node's ranks would wait for it in
    their collectives until NCCL's timeout; stop this node's agent (SIGTERM: torchrun stops its ranks) and say why."""
    while not ended.wait(1.0):
        if any(left.get("status") != "ok" for left in rank_results(cell_dir, attempt).values()):
            seen.set()
            os.kill(os.getpid(), signal.SIGTERM)
            return


def _exit_codes(error: BaseException) -> Dict[int, int]:
    """Global rank -> exit code of torchrun's ChildFailedError."""
    return {int(rank): int(getattr(failure, "exitcode", 1)) for rank, failure in getattr(error, "failures", {}).items()}


def train_ranks(spec: Dict[str, Any], cell_dir: Path, environ: Optional[Dict[str, str]] = None) -> None:
    """Start this node's ranks of the cell and wait for them; raise ``RankFailure`` when a rank ended it.

    A stop by signal (the parent's timeout or Ctrl-C reached the worker, torchrun stopped the ranks) ends the
    worker at once with 128 + the signal and no record, as a killed single-process worker leaves none.
    """
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    dist = spec["config"]["dist"]
    folder = cell_dir / RANKS_DIR
    folder.mkdir(exist_ok=True)
    for stale in folder.glob("rank*"):
        stale.unlink()
    meet = rendezvous(dist, environ)
    if meet["nodes"] > 1 and meet["machine_rank"] == 0:  # the other nodes start their ranks from it (worker.follow)
        from harness.files import write_json_atomic

        env = os.environ if environ is None else environ
        write_json_atomic(folder / "rendezvous.json", {
            "job": env.get("SLURM_JOB_ID"), "restart": int(env.get("SLURM_RESTART_COUNT") or 0),
            "attempt": spec["attempt"], "host": meet["host"], "port": meet["port"], "nodes": meet["nodes"]})
    os.environ[AGENT_ENV] = str(os.getpid())
    print(f"dist={dist['strategy']}: {dist['processes']} ranks on {meet['nodes']} node(s), rendezvous "
          f"{meet['host']}:{meet['port']} (this is node {meet['machine_rank']})", flush=True)
    args = launch_command_parser().parse_args(launch_args(dist, meet, cell_dir))
    from harness.measure.oom import oom_kill_count

    before, remote, ended = oom_kill_count(), threading.Event(), threading.Event()
    if meet["nodes"] > 1:
        threading.Thread(target=_watch_other_nodes, args=(cell_dir, spec["attempt"], remote, ended), daemon=True).start()
    try:
        launch_command(args)
    except ChildFailedError as exc:
        after = oom_kill_count()
        raise rank_failure(cell_dir, _exit_codes(exc), spec["attempt"],
                           before is not None and after is not None and after > before) from None
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        if remote.is_set():  # stopped because a rank of another node failed: that rank's status is the cell's
            raise rank_failure(cell_dir, {}, spec["attempt"]) from None
        if code >= 128:
            os._exit(code)
        raise
    finally:
        ended.set()
