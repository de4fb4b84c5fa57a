"""``python -m harness.worker.rank CELL_DIR``: one rank of a ``dist`` cell, started by torchrun (``harness.worker.ranks``).

Every rank loads the model, trains its share of each step and measures itself; rank 0 gathers the ranks'
counters, saves the weights and writes ``record.json``. A rank that fails writes ``ranks/rank<R>.json`` with its
status before it exits, so the worker can say which rank ran out of memory.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List

from harness.worker.outcome import Diverged, classify, one_line
from harness.worker.ranks import AGENT_ENV, RANKS_DIR, die_with_parent


def _die_with_agent() -> None:
    """SIGKILL this rank when the worker (torchrun's agent, its parent) dies; exit now if it already has."""
    import signal

    die_with_parent(signal.SIGKILL)
    agent = os.environ.get(AGENT_ENV)
    if agent and os.getppid() != int(agent):  # the worker died before the prctl: no one would stop this rank
        os._exit(1)


@dataclass
class RankGroup:
    """This rank's place among the cell's ranks; ``combine`` is a collective that every rank calls."""

    rank: int
    local_rank: int
    world: int

    def combine(self, record: Dict[str, Any], nvml: Dict[str, Any]) -> Dict[str, Any]:
        """Gather every rank's counters (torch.distributed) into ``record``; return the combined NVML window."""
        import torch.distributed as dist

        from harness.measure.ranks import combine, rank_measurement

        mine = rank_measurement(self.rank, self.local_rank, socket.gethostname(), record.get("memory") or {},
                                record.get("train") or {}, nvml)
        gathered: List[Any] = [None] * self.world
        dist.all_gather_object(gathered, mine)
        return combine(record, gathered)


def _write_rank(cell_dir: Path, rank: int, attempt: Any, result: Dict[str, Any]) -> None:
    from harness.files import write_json_atomic

    write_json_atomic(cell_dir / RANKS_DIR / f"rank{rank}.json", {"rank": rank, "attempt": attempt, **result})


def run_rank(spec: Dict[str, Any], cell_dir: Path, group: RankGroup) -> None:
    """Train this rank's part of the cell; rank 0 writes the record (ok, or diverged where the loss went non-finite)."""
    from harness.files import write_json_atomic
    from harness.store.progress import ProgressWriter
    from harness.store.records import RECORD_NAME, new_record
    from harness.worker.phases import load_config, open_cell, resolve_device, train_cell

    cfg = load_config(spec)
    device = resolve_device(cfg.run.device)
    if device == "cuda":
        import torch

        torch.cuda.set_device(group.local_rank)  # before anything touches CUDA: this rank's own GPU
    record = new_record(spec["cell_id"], "failed", spec["config"], identity=spec.get("identity"), attempt=spec["attempt"])
    timings: Dict[str, float] = {}
    progress = ProgressWriter(cell_dir, spec["attempt"]) if group.rank == 0 else None
    cell = open_cell(cfg, {**spec, "evals": {}}, cell_dir, record, timings, progress)  # the worker evaluates afterwards
    cell.ranks = group
    try:
        train_cell(cfg, cell, cell_dir, record, timings)
        record.update(status="ok", error=None)
    except Diverged as exc:
        record.update(status="diverged", error=str(exc))
    record["environment"]["ranks"] = {"world": group.world, "strategy": cfg.dist.strategy, "nodes": cfg.dist.nodes}
    record["timings_s"] = dict(timings)
    if group.rank == 0:
        write_json_atomic(cell_dir / RECORD_NAME, record)


def main(argv: List[str]) -> int:
    """Entry point; 0 when this rank's part ended (ok or diverged), 1 when it failed."""
    _die_with_agent()
    from harness.files import read_json
    from harness.store.records import CELL_SPEC_NAME

    cell_dir = Path(argv[1]).resolve()
    group = RankGroup(int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"]))
    (cell_dir / RANKS_DIR / f"rank{group.rank}.pid").write_text(f"{os.getpid()}\n")
    spec = read_json(cell_dir / CELL_SPEC_NAME)
    begun = time.perf_counter()
    try:
        run_rank(spec, cell_dir, group)
    except BaseException as exc:  # noqa: BLE001 - the worker reads the status; torchrun stops the other ranks
        print(f"[rank{group.rank}] {traceback.format_exc()}", file=sys.stderr, flush=True)
        _write_rank(cell_dir, group.rank, (spec or {}).get("attempt"),
                    {"status": classify(exc), "error": one_line(exc), "traceback": traceback.format_exc()})
        return 1
    _write_rank(cell_dir, group.rank, spec["attempt"], {"status": "ok", "seconds": time.perf_counter() - begun})
    return 0


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # as the worker: skip torch's teardown once the files are written
