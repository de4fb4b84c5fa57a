"""Parent side of a cell: its identity and folder in the store, its lock, and its worker process.

Light by design (no torch): the Hydra job calls ``run_cell`` once per grid point. Under the
cell's lock it decides what is left to do -- train and evaluate, evaluate only (a trained
cell that lacks a requested evaluation, or whose evaluation failed), or nothing -- and runs
a fresh worker interpreter (``python -m harness.worker``) in its own process group, waited
on with a timeout, in slices that redraw the progress line (``harness.store.progress``). Whatever
happens to the worker, the parent leaves a status; it trusts only what its own worker wrote
(the attempt id in the spec).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

from harness.files import read_json, write_json_atomic
from harness.store import layout, locks, progress
from harness.store.identity import cell_id, cell_identity, eval_keys
from harness.store.launch import SPAWN_TIME_ENV, WORKER_ENV
from harness.store.records import CELL_SPEC_NAME, RECORD_NAME, new_record
from harness.store.venvs import env_problem, interpreter
from harness.sweep import dist, orphans, status

LOG_NAME = "worker.log"
KILL_GRACE_S = 10.0
_SAID: set = set()


@dataclass
class CellPlan:
    """One grid point resolved to its place in the store."""

    cell_id: str
    identity: Dict[str, Any]
    config: Dict[str, Any]
    evals: Dict[str, str]
    """evaluator name -> result key, for the evaluators this command asks for."""
    cell_dir: Path
    judges: Dict[str, str] = field(default_factory=dict)
    """judged benchmark -> its judge result key (``harness.judge.keys``); judged by the parent after the cells."""
    judge: Optional[Dict[str, Any]] = None
    """The judge settings (eval.judge block and cache folder) when any benchmark is judged."""


def plan_cell(config: Dict[str, Any], run_root: Path) -> CellPlan:
    """Identity, id, evaluation keys and store folder of a resolved config."""
    from harness.judge.keys import judge_keys, judge_settings
    from harness.store.identity import device_class

    config = dist.resolve(config, device_class(config["run"]["device"]))
    identity = cell_identity(config)
    cid = cell_id(config, identity)
    evals = eval_keys(config)
    return CellPlan(cid, identity, config, evals, layout.cell_path(run_root, cid), judge_keys(config, evals), judge_settings(config))


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


def _wait(proc: subprocess.Popen, timeout_s: float, tick: Optional[Callable[[], None]]) -> int:
    """``proc.wait(timeout=timeout_s)``; with ``tick``, waited in slices of ``REDRAW_S`` with a tick
    after each (the same total timeout: ``subprocess.TimeoutExpired`` once ``timeout_s`` has passed)."""
    if tick is None:
        return proc.wait(timeout=timeout_s)
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise subprocess.TimeoutExpired(proc.args, timeout_s)
        try:
            return proc.wait(timeout=min(status.REDRAW_S, left))
        except subprocess.TimeoutExpired:
            if deadline - time.monotonic() > 0:
                tick()


def _start(cell_dir: Path, env: Dict[str, str], fds: Tuple[int, ...], log: Any, python: Path, how: str,
           say: Callable[[str], None]) -> Tuple[Any, str]:
    """The worker process, forked from the warm template (``harness.sweep.warm``) or spawned; (process, how)."""
    if how == "warm":
        from harness.sweep import warm

        try:
            return warm.start(cell_dir, {**env, WORKER_ENV: "warm"}, (log.fileno(), *fds), python), "warm"
        except warm.WarmUnavailable as exc:
            if str(exc) not in _SAID:  # once per parent: every later cell of this sweep would say the same
                _SAID.add(str(exc))
                say(f"{exc}; spawning workers instead (run.worker=spawn always does)")
    proc = subprocess.Popen(
        [str(python), "-m", "harness.worker", str(cell_dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**env, WORKER_ENV: "spawn"},
        start_new_session=True,  # own process group: a timeout kills its children too
        pass_fds=fds,
    )
    return proc, "spawn"


def spawn_worker(
    cell_dir: Path, timeout_s: float, lock_fd: Optional[int] = None, tick: Optional[Callable[[], None]] = None,
    python: Optional[Path] = None, watch: Any = None, worker: str = "spawn", started: Optional[Dict[str, Any]] = None,
) -> Tuple[Optional[int], bool]:
    """Run the worker for ``cell_dir`` with ``python`` (default: this interpreter; a framework's own
    environment otherwise, see harness/store/venvs.py); return (exit code or None, timed out).

    ``worker``: ``warm`` forks it from this environment's template (``harness.sweep.warm``; spawned instead,
    with a line, when no template can), ``spawn`` starts a fresh interpreter; ``started`` (a dict) is told
    which it was (``worker``) and whether a template died under the cell (``template_died``).
    The worker inherits the cell's lock, so the cell stays locked until the worker is gone
    even if this parent is killed first. ``tick`` is called about every ``REDRAW_S`` while
    the worker runs (the progress line). ``watch``: a ``harness.measure.memcap.Watchdog`` that watches
    the worker's resident memory while it runs (a capped CPU cell).

    Under a launcher that runs several cells at once (``harness.sweep.launch``) the worker's
    environment also sets its threads per cell and, for a CUDA cell, the one GPU it was
    leased (``CUDA_VISIBLE_DEVICES``; the lease's lock is inherited like the cell's).
    """
    from harness.sweep.launch import placement

    say = lambda line: print(f"{Path(cell_dir).name}: {line}", flush=True)  # noqa: E731
    started = {} if started is None else started
    with placement(cell_dir, say) as placed, open(cell_dir / LOG_NAME, "ab") as log:
        env = dict(os.environ, PYTHONUNBUFFERED="1", **placed.env, **{SPAWN_TIME_ENV: repr(time.time())})
        fds = tuple(fd for fd in (lock_fd, *placed.fds) if fd is not None)
        proc, started["worker"] = _start(cell_dir, env, fds, log, Path(python or sys.executable), worker, say)
        if watch is not None:
            watch.start(proc.pid)
        try:
            with orphans.tracked(proc):  # killed with its group if the sweep parent dies (harness.sweep.orphans)
                return _wait(proc, timeout_s, tick), False
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return proc.returncode, True
        except BaseException:  # Ctrl-C or a launcher stop: never leave the worker running
            _kill_group(proc)
            raise
        finally:
            started["template_died"] = bool(getattr(proc, "template_died", False))
            if watch is not None:
                watch.stop()


def _record(cell_dir: Path) -> Optional[Dict[str, Any]]:
    return read_json(cell_dir / RECORD_NAME)


def _todo(plan: CellPlan, trained: bool) -> Dict[str, str]:
    """The requested evaluations that have no ok result (all of them when the cell trains again)."""
    if not trained:
        return dict(plan.evals)
    return {name: key for name, key in plan.evals.items() if (layout.read_eval(plan.cell_dir, key) or {}).get("status") != "ok"}


def _exit_status(code: Optional[int], timed_out: bool, timeout_s: float, oom: Tuple[Optional[int], Optional[int]]) -> Tuple[str, str]:
    from harness.measure.oom import classify_exit

    return classify_exit(code, timed_out, timeout_s, *oom)


def _collect(plan: CellPlan, attempt: str, train: bool, todo: Dict[str, str], outcome: Dict[str, Any]) -> None:
    """Give every piece of work the worker did not finish a status; keep only this attempt's files."""
    record = _record(plan.cell_dir)
    ours = record is not None and record.get("attempt") == attempt
    status, error = _exit_status(outcome["code"], outcome["timed_out"], outcome["timeout_s"], outcome["oom"])
    watch = outcome.get("watch")
    if watch is not None and watch.tripped and not outcome["timed_out"]:  # the memory cap ended it: oom, never crashed
        status, error = "oom", watch.error()
    elif outcome.get("template_died") and not outcome["timed_out"]:
        status, error = "crashed", "the warm template this cell was forked from died while it ran (the cell died with it)"
    elif orphans.GONE is not None and not outcome["timed_out"]:  # stopped on purpose (harness.sweep.orphans)
        status, error = "interrupted", f"the sweep parent (pid {orphans.GONE}) died while it ran; the same command trains it again"
    tail = _log_tail(plan.cell_dir / LOG_NAME)
    if train:
        if not ours:
            record = new_record(plan.cell_id, status, plan.config, error=error, log_tail=tail, identity=plan.identity, attempt=attempt)
        from harness.measure.memcap import settle

        settle(record, watch, ours)
        record.setdefault("timings_s", {})["cell_wall"] = outcome["wall"]
        record["worker_exit_code"] = outcome["code"]
        write_json_atomic(plan.cell_dir / RECORD_NAME, record)
    if record is None or record.get("status") != "ok":
        return  # evaluations run only on a cell that trained ok
    for name, key in todo.items():
        result = layout.read_eval(plan.cell_dir, key)
        if result is None or result.get("attempt") != attempt:
            layout.write_eval(plan.cell_dir, key, {"evaluator": name, "key": key, "status": status, "error": error,
                                                  "attempt": attempt, "rows": [], "log_tail": tail})


def _interrupted(plan: CellPlan, attempt: str, train: bool, wall_s: float) -> None:
    """Leave an ``interrupted`` record for a training stopped by Ctrl-C (best effort: the disk may be why)."""
    try:
        if train and (_record(plan.cell_dir) or {}).get("attempt") != attempt:
            record = new_record(plan.cell_id, "interrupted", plan.config, identity=plan.identity, attempt=attempt,
                                error="interrupted (Ctrl-C) while it ran; the same command trains it again",
                                log_tail=_log_tail(plan.cell_dir / LOG_NAME))
            record["timings_s"] = {"cell_wall": wall_s}
            write_json_atomic(plan.cell_dir / RECORD_NAME, record)
        progress.finish(plan.cell_dir, attempt, wall_s)
    except OSError:
        pass


def _attempt(plan: CellPlan, train: bool, todo: Dict[str, str], timeout_s: float, lock_fd: int,
             sweep_dir: Optional[Path] = None, say: Callable[[str], None] = print) -> None:
    """Write the spec for one attempt, run its worker (drawing ``sweep_dir``'s progress line), and collect what it left."""
    from harness.measure.memcap import watchdog_for
    from harness.measure.oom import oom_kill_count
    from harness.sweep.warm import mode as worker_mode
    from harness.sweep.warm import uses_bitsandbytes

    attempt = uuid.uuid4().hex
    if train:  # a stale record must not outlive a rerun
        (plan.cell_dir / RECORD_NAME).unlink(missing_ok=True)
    spec = {"cell_id": plan.cell_id, "identity": plan.identity, "config": plan.config, "attempt": attempt,
            "train": train, "evals": todo}
    write_json_atomic(plan.cell_dir / CELL_SPEC_NAME, spec)
    before = oom_kill_count()
    started = time.perf_counter()
    line = status.StatusLine(sweep_dir, say) if sweep_dir is not None else None
    device = str(plan.identity.get("device", "cpu"))
    watch = watchdog_for(plan.config, device)  # run.memory_cap_gib on a CPU cell
    python = interpreter(plan.config.get("framework") or {})
    requested = str((plan.config.get("run") or {}).get("worker") or "auto")
    how = dist.worker_mode(plan.config, worker_mode(requested, device, python, uses_bitsandbytes(plan.config)))
    ran: Dict[str, Any] = {}
    try:
        code, timed_out = spawn_worker(plan.cell_dir, timeout_s, lock_fd, tick=line.tick if line else None,
                                       python=python, watch=watch, worker=how, started=ran)
    except KeyboardInterrupt:  # the worker is stopped (spawn_worker): say so, never "not run"
        _interrupted(plan, attempt, train, time.perf_counter() - started)
        raise
    finally:
        if line is not None:
            line.clear()
    outcome = {"code": code, "timed_out": timed_out, "timeout_s": timeout_s, "wall": time.perf_counter() - started,
               "oom": (before, oom_kill_count()), "watch": watch, **ran}
    _collect(plan, attempt, train, todo, outcome)
    progress.finish(plan.cell_dir, attempt, outcome["wall"])  # after the record: "done" means settled


def run_cell(
    plan: CellPlan, *, timeout_s: float, force: bool, on_busy: str, say: Callable[[str], None],
    preflight: Optional[Callable[[], Optional[str]]] = None, sweep_dir: Optional[Path] = None,
) -> Tuple[Dict[str, Any], str]:
    """Train and evaluate what is missing (or reuse what is stored); return (cell view, note).

    ``preflight`` says in one line why the cell cannot run here (a hub model offline); it is
    asked only when there is work to do, so a stored cell is never overwritten by it.
    ``sweep_dir``: the sweep this cell belongs to, whose progress line is drawn while the
    worker runs (``harness.store.progress``); none without it.
    """
    run = plan.config.get("run") or {}
    kind = locks.choose(plan.cell_dir.parent.parent, str(run.get("lock") or "auto"))  # run.root: <root>/cells/<id>
    with layout.cell_lock(plan.cell_dir, on_busy, say, kind=kind, ttl_s=float(run.get("lock_ttl_s") or 60.0)) as lock_fd:
        if lock_fd is None:
            view = layout.cell_view(plan.cell_dir, plan.evals, plan.cell_id)
            return {**view, "status": "skipped", "error": "busy: another run holds this cell (run.on_busy=skip)"}, "busy"
        record = _record(plan.cell_dir)
        trained = not force and record is not None and record.get("status") == "ok"
        todo = _todo(plan, trained)
        if trained and not todo:
            return layout.cell_view(plan.cell_dir, plan.evals), "reused stored cell (run.force=true reruns)"
        unsupported = env_problem(plan.config.get("framework") or {}) or dist.problem(plan.config, str(plan.identity.get("device")))
        if unsupported is not None and not trained:  # not a failure: this machine lacks the framework's environment
            record = new_record(plan.cell_id, "unsupported", plan.config, error=unsupported, identity=plan.identity)
            write_json_atomic(plan.cell_dir / RECORD_NAME, record)
            return layout.cell_view(plan.cell_dir, plan.evals), ""
        problem = unsupported or (preflight() if preflight is not None else None)
        if trained and problem is None and layout.weights_path(plan.cell_dir, record) is None:
            problem = (f"cannot evaluate {', '.join(todo)} later: the cell kept no weights (a full fine-tune keeps them "
                       "only with run.keep_weights=true; run.force=true trains it again)")
        if problem is not None:
            if not trained:
                record = new_record(plan.cell_id, "failed", plan.config, error=problem, identity=plan.identity)
                write_json_atomic(plan.cell_dir / RECORD_NAME, record)
            return {**layout.cell_view(plan.cell_dir, plan.evals), "status": "failed", "error": problem}, ""
        work = f"evaluating {', '.join(todo)}" if trained else "training"
        say(f"{plan.cell_id}: {work}  (log: {plan.cell_dir / LOG_NAME})")
        _attempt(plan, not trained, todo, timeout_s, lock_fd, sweep_dir, say)
        note = f"evaluated {', '.join(todo)} on the stored cell, no training" if trained else ""
        return layout.cell_view(plan.cell_dir, plan.evals), note
