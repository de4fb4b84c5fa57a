"""``python -m harness.worker.follow CELL_DIR [--wait-s S]``: a node above 0 of a multi-node ``dist`` cell.

srun runs the cell's Hydra job once per node of its SLURM job. Node 0 runs the cell as any other (lock,
spec, worker, record); a node above 0 starts this follower instead (``harness.sweep.nodes``). It waits for
node 0's worker to write ``ranks/rendezvous.json`` for this SLURM job (``harness.worker.ranks.train_ranks``
does, right before it launches), then starts this node's ranks with the same accelerate launch and its own
machine rank (``SLURM_NODEID``). It never writes the record: rank 0, on node 0, does.

- Node 0's done marker (``ranks/nodes-done.json``, written by its Hydra job once the cell is settled)
  before any rendezvous: nothing to train here (a stored cell reused, a failure before the launch): exit 0.
- Neither within ``--wait-s`` (run.timeout_s): one line, exit 1.
- The done marker while this node's ranks still run, for longer than ``ABANDON_S``: node 0's worker has
  ended (failed, stopped, timed out) and these ranks would wait on their collectives until NCCL's own
  timeout, holding the allocation: the follower exits, and its ranks die with it (PR_SET_PDEATHSIG,
  ``harness.worker.rank``).

Both files name the SLURM job id and restart count, so what an earlier job left in the shared cell folder
never counts. Light until the launch: accelerate and torch are imported only to start the ranks.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

from harness.files import read_json
from harness.worker.ranks import AGENT_ENV, RANKS_DIR, die_with_parent, launch_args

RENDEZVOUS_NAME = "rendezvous.json"
"""Node 0's rendezvous, written by ``harness.worker.ranks.train_ranks`` right before it launches (inline there:
that module importing this one, which imports it, would be an import cycle)."""
DONE_NAME = "nodes-done.json"
"""Node 0's done marker (``harness.sweep.nodes.DONE_NAME``: the parent cannot import this room)."""
POLL_S = 1.0
ABANDON_S = 60.0
"""How long this node's ranks may outlive node 0's done marker (a finished run ends them within seconds)."""
WAIT_S = 3600.0


class FollowTimeout(Exception):
    """Node 0 wrote neither a rendezvous nor a done marker for this SLURM job in time; one line."""


def slurm_job(environ: Mapping[str, str]) -> Dict[str, Any]:
    """This SLURM job as the node files name it: its id and restart count (a requeued job keeps its id)."""
    return {"job": environ.get("SLURM_JOB_ID"), "restart": int(environ.get("SLURM_RESTART_COUNT") or 0)}


def _ours(found: Optional[Dict[str, Any]], job: Mapping[str, Any]) -> bool:
    return bool(found) and str(found.get("job")) == str(job["job"]) and int(found.get("restart") or 0) == job["restart"]


def wait_for_node0(cell_dir: Path, job: Mapping[str, Any], wait_s: float, *, poll_s: float = POLL_S,
                   clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
                   ) -> Optional[Dict[str, Any]]:
    """Node 0's rendezvous for ``job``, with the cell spec it goes with (``spec``); None when node 0 settled
    the cell without one (its done marker). ``FollowTimeout`` after ``wait_s``."""
    from harness.store.records import CELL_SPEC_NAME

    folder = Path(cell_dir) / RANKS_DIR
    deadline = clock() + wait_s
    while True:
        if _ours(read_json(folder / DONE_NAME), job):  # first: a rendezvous beside it is one node 0 is done with
            return None
        meet = read_json(folder / RENDEZVOUS_NAME)
        if _ours(meet, job):
            spec = read_json(Path(cell_dir) / CELL_SPEC_NAME) or {}
            if spec.get("attempt") == meet.get("attempt"):  # the spec is written before the rendezvous
                return {**meet, "spec": spec}
        if clock() >= deadline:
            raise FollowTimeout(
                f"no rendezvous from node 0 of SLURM job {job['job']} in {folder} after {wait_s:g} s (run.timeout_s): "
                "node 0 has not launched its ranks (still waiting for the cell's lock, or run.root is not on a "
                "file system every node shares)")
        sleep(poll_s)


def follower_args(meet: Mapping[str, Any], cell_dir: Path, environ: Mapping[str, str]) -> List[str]:
    """The accelerate launch arguments of this node's ranks: node 0's rendezvous, this node's SLURM_NODEID."""
    dist = meet["spec"]["config"]["dist"]
    here = {"host": meet["host"], "port": meet["port"], "nodes": meet["nodes"],
            "machine_rank": int(environ["SLURM_NODEID"])}
    return launch_args(dist, here, Path(cell_dir))


def _abandon_when_done(folder: Path, job: Mapping[str, Any], say: Callable[[str], None], ended: threading.Event) -> None:
    """While the ranks run: once node 0's done marker is ``ABANDON_S`` old, stop this process (and its ranks)."""
    seen: Optional[float] = None
    while not ended.wait(POLL_S):
        if seen is None and _ours(read_json(folder / DONE_NAME), job):
            seen = time.monotonic()
        if seen is not None and time.monotonic() - seen > ABANDON_S:
            say(f"node 0 settled the cell {ABANDON_S:g} s ago and this node's ranks still run; stopping them")
            os._exit(1)


def launch(args: List[str]) -> int:
    """Run ``accelerate launch ARGS`` in this process (torchrun's agent); 0 when this node's ranks all ended 0."""
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    try:
        launch_command(launch_command_parser().parse_args(args))
    except ChildFailedError as exc:
        failed = sorted(int(rank) for rank in getattr(exc, "failures", {}))
        print(f"error: rank(s) {', '.join(map(str, failed))} of this node failed; node 0 records the cell", flush=True)
        return 1
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def main(argv: List[str], environ: Optional[Mapping[str, str]] = None,
         start: Callable[[List[str]], int] = launch) -> int:
    """Entry point: 0 when node 0 needed nothing of this node or its ranks ended 0; 1 otherwise."""
    env = os.environ if environ is None else environ
    cell_dir = Path(argv[1]).resolve()
    wait_s = float(argv[argv.index("--wait-s") + 1]) if "--wait-s" in argv else WAIT_S
    job = slurm_job(env)
    node = env.get("SLURM_NODEID", "?")
    say = lambda line: print(f"node {node}: {line}", flush=True)  # noqa: E731
    if not job["job"] or "SLURM_NODEID" not in env:
        say("error: a follower runs inside a SLURM job (SLURM_JOB_ID and SLURM_NODEID are not set)")
        return 2
    try:
        meet = wait_for_node0(cell_dir, job, wait_s)
    except FollowTimeout as exc:
        say(f"error: {exc}")
        return 1
    if meet is None:
        say("node 0 has settled the cell (a stored cell reused, skipped, or ended before its ranks met these); nothing to do")
        return 0
    args = follower_args(meet, cell_dir, env)
    say(f"{meet['spec']['config']['dist']['processes']} ranks on {meet['nodes']} nodes, rendezvous "
        f"{meet['host']}:{meet['port']}; starting this node's ranks")
    os.environ[AGENT_ENV] = str(os.getpid())  # the ranks die with this process, as with node 0's worker
    ended = threading.Event()
    threading.Thread(target=_abandon_when_done, args=(cell_dir / RANKS_DIR, job, say, ended), daemon=True).start()
    try:
        return start(args)
    finally:
        ended.set()


if __name__ == "__main__":
    die_with_parent()  # its Hydra job died: torchrun then stops the ranks
    code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # as the worker: skip torch's teardown
