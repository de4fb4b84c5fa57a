"""Parent side of a cell: its id, its folder, and running its worker process.

Light by design (no torch): the Hydra job calls ``run_cell`` once per grid point. The
worker is a fresh interpreter (``python -m harness.worker``) in its own process group,
waited on with a blocking timeout; whatever happens to it, the parent leaves a record.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional

from harness.records import CELL_SPEC_NAME, RECORD_NAME, new_record, read_json, stable_digest, write_json_atomic
from harness.worker import SPAWN_TIME_ENV

RUN_ONLY_KEYS = ("run",)
"""Top-level config blocks that never change a cell's result, so never its id."""
LOG_NAME = "worker.log"
KILL_GRACE_S = 10.0


def cell_id(config: Dict[str, Any]) -> str:
    """Stable id: a readable prefix and a hash of every training-relevant key.

    Same resolved config -> same id on any machine; a change to any key outside
    ``RUN_ONLY_KEYS`` gives a new id.
    """
    relevant = {key: value for key, value in config.items() if key not in RUN_ONLY_KEYS}
    digest = stable_digest(relevant, 10)
    model, peft, quant = config["model"]["name"], config["peft"]["method"], config["quant"]["mode"]
    rank = f"-r{config['lora']['r']}" if peft in ("lora", "dora") else ""
    return f"{model}-{peft}{rank}-{quant}-{config['framework']['name']}-{digest}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the worker's process group, then SIGKILL what is left after a grace period."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def spawn_worker(cell_dir: Path, timeout_s: float) -> tuple[Optional[int], bool]:
    """Run the worker for ``cell_dir``; return (exit code or None, timed out)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", **{SPAWN_TIME_ENV: repr(time.time())})
    with open(cell_dir / LOG_NAME, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness.worker", str(cell_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # own process group: a timeout kills its children too
        )
        try:
            return proc.wait(timeout=timeout_s), False
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return proc.returncode, True
        except BaseException:  # Ctrl-C or a launcher stop: never leave the worker running
            _kill_group(proc)
            raise


def _record_without_worker(cid: str, config: Dict[str, Any], code: Optional[int], timed_out: bool, cell_dir: Path, timeout_s: float) -> Dict[str, Any]:
    """The record the parent writes when the worker left none."""
    if timed_out:
        status, error = "timeout", f"killed after run.timeout_s={timeout_s:g} s"
    elif code is not None and code < 0:
        name = _signal_name(-code)
        hint = " (the kernel's OOM killer sends SIGKILL when host memory runs out)" if -code == signal.SIGKILL else ""
        status, error = "crashed", f"worker killed by {name}{hint}"
    else:
        status, error = "crashed", f"worker exited with code {code} without writing a record"
    return new_record(cid, status, config, error=error, log_tail=_log_tail(cell_dir / LOG_NAME))


def is_done(cell_dir: Path) -> bool:
    """True when the cell has a readable record whose status is ok."""
    record = read_json(cell_dir / RECORD_NAME)
    return record is not None and record.get("status") == "ok"


def _prepare_cell_dir(config: Dict[str, Any], sweep_dir: Path) -> tuple[str, Path]:
    """Create the cell folder with its spec; drop a stale record so it cannot outlive a rerun."""
    cid = cell_id(config)
    cell_dir = Path(sweep_dir) / cid
    cell_dir.mkdir(parents=True, exist_ok=True)
    (cell_dir / RECORD_NAME).unlink(missing_ok=True)
    write_json_atomic(cell_dir / CELL_SPEC_NAME, {"cell_id": cid, "config": config})
    return cid, cell_dir


def fail_cell(config: Dict[str, Any], sweep_dir: Path, error: str) -> Dict[str, Any]:
    """Record a cell as failed without starting a worker (a preflight found it cannot run)."""
    cid, cell_dir = _prepare_cell_dir(config, sweep_dir)
    record = new_record(cid, "failed", config, error=error)
    write_json_atomic(cell_dir / RECORD_NAME, record)
    return record


def run_cell(config: Dict[str, Any], sweep_dir: Path, *, timeout_s: float, force: bool) -> tuple[Dict[str, Any], bool]:
    """Run one cell (or reuse its ok record); return (record, reused)."""
    cell_dir = Path(sweep_dir) / cell_id(config)
    if not force and is_done(cell_dir):
        return read_json(cell_dir / RECORD_NAME), True
    cid, cell_dir = _prepare_cell_dir(config, sweep_dir)
    started = time.perf_counter()
    code, timed_out = spawn_worker(cell_dir, timeout_s)
    wall = time.perf_counter() - started
    record = read_json(cell_dir / RECORD_NAME) if not timed_out else None
    if record is None:
        record = _record_without_worker(cid, config, code, timed_out, cell_dir, timeout_s)
    record.setdefault("timings_s", {})["cell_wall"] = wall
    record["worker_exit_code"] = code
    write_json_atomic(cell_dir / RECORD_NAME, record)
    return record, False
