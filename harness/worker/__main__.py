"""``python -m harness.worker CELL_DIR``: the worker process of one cell.

Reads ``CELL_DIR/cell.json`` and runs its work (``harness.worker.phases``); a parent that dies takes the
worker with it.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict

from harness.store.launch import SPAWN_TIME_ENV
from harness.worker.outcome import Diverged, classify, one_line
from harness.worker.phases import EvaluationUnstarted, work
from harness.worker.ranks import RankFailure, die_with_parent


def _fail_unfinished(spec: Dict[str, Any], cell_dir: Path, status: str, error: str, trace: str) -> None:
    """Give each requested evaluation this attempt did not finish the error that stopped it."""
    from harness.store.layout import read_eval, write_eval

    for name, key in spec["evals"].items():
        if (read_eval(cell_dir, key) or {}).get("attempt") != spec["attempt"]:
            write_eval(cell_dir, key, {"evaluator": name, "key": key, "attempt": spec["attempt"], "status": status,
                                       "error": error, "rows": [], "traceback": trace})


def main(argv: list[str]) -> int:
    """Entry point; returns 0 when the work ended ok, 1 otherwise."""
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        # Internal: the parent starts it; --help still answers, as every entry point does.
        print("usage: python -m harness.worker CELL_DIR\n\n" + (__doc__ or "").strip())
        return 0 if len(argv) == 2 else 2
    entered = time.time()
    die_with_parent()  # so no orphan keeps a GPU busy
    from harness.files import read_json, write_json_atomic
    from harness.store.records import CELL_SPEC_NAME, RECORD_NAME, new_record

    cell_dir = Path(argv[1]).resolve()
    spec = read_json(cell_dir / CELL_SPEC_NAME)
    if spec is None:
        print(f"error: {cell_dir / CELL_SPEC_NAME} is missing or unreadable", file=sys.stderr)
        return 2
    stored = None if spec["train"] else read_json(cell_dir / RECORD_NAME)
    record = stored or new_record(spec["cell_id"], "failed", spec["config"], identity=spec.get("identity"), attempt=spec["attempt"])
    timings: Dict[str, float] = {}
    spawned = os.environ.get(SPAWN_TIME_ENV)
    if spawned:
        timings["spawn_to_main"] = entered - float(spawned)
    from harness.store.progress import DONE, ProgressWriter

    progress = ProgressWriter(cell_dir, spec["attempt"], started=float(spawned) if spawned else entered)
    progress.phase("start")
    begun = time.perf_counter()
    status, error = "ok", None
    try:
        work(spec, cell_dir, record, timings, progress)
    except KeyboardInterrupt:
        raise
    except Diverged as exc:
        status, error = "diverged", str(exc)
    except RankFailure as exc:  # a dist cell's rank ended it (harness.worker.ranks); its traceback is in the log
        status, error = exc.status, str(exc)
    except EvaluationUnstarted as exc:  # a dist cell trained ok; only its evaluations failed
        cause = exc.__cause__ or exc
        trace = traceback.format_exc()
        print(trace, file=sys.stderr)
        _fail_unfinished(spec, cell_dir, classify(cause), one_line(cause), trace)
        status, error = str(record.get("status", "ok")), record.get("error")
    except BaseException as exc:  # noqa: BLE001 - SystemExit inside a cell is a cell failure
        status, error = classify(exc), one_line(exc)
        if status == "oom" and spec["train"]:
            from harness.measure.memcap import on_oom

            on_oom(record, exc)
        record["traceback"] = traceback.format_exc()
        print(record["traceback"], file=sys.stderr)
        if not spec["train"]:
            _fail_unfinished(spec, cell_dir, status, error, record.pop("traceback"))
    if spec["train"] or status == "diverged":  # an evaluation-only failure lives in its own result
        timings["worker_total"] = time.perf_counter() - begun
        record.update(status=status, error=error, attempt=spec["attempt"] if spec["train"] else record.get("attempt"))
        record["timings_s"] = {**record.get("timings_s", {}), **timings} if not spec["train"] else timings
        write_json_atomic(cell_dir / RECORD_NAME, record)
    progress.phase(DONE)
    return 0 if status == "ok" else 1


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    # The record is written and fsynced; skip interpreter teardown (~1 s of torch and
    # thread-pool shutdown per cell that nothing needs).
    os._exit(code)
