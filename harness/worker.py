"""The worker: trains and/or evaluates one cell in a fresh process and writes what it did.

    python -m harness.worker CELL_DIR

Reads ``CELL_DIR/cell.json`` (written by the parent under the cell's lock): the config, the
attempt id and the work -- ``train`` (data -> model -> train -> save weights, then
``record.json``) and ``evals`` (each evaluator's result in ``evals/<key>/result.json``,
with its own status). Without training it loads the stored weights and only evaluates.
Statuses: ok, failed, oom, diverged (a non-finite loss). Anything that kills the process
first (a signal, a hard crash, ``os._exit``) leaves no file of this attempt; the parent
then records crashed, oom or timeout.
"""

from __future__ import annotations

import errno
import math
import os
import re
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

SPAWN_TIME_ENV = "HARNESS_SPAWN_TIME"


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this worker if the parent dies, so no orphan keeps a GPU busy."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def load_config(spec: Dict[str, Any]):
    """The validated HarnessConfig from a cell spec's resolved config."""
    from omegaconf import OmegaConf

    from harness.config import HarnessConfig

    merged = OmegaConf.merge(OmegaConf.structured(HarnessConfig), spec["config"])
    return OmegaConf.to_object(merged)


def resolve_device(requested: str) -> str:
    """cpu or cuda; auto takes cuda when torch sees a GPU."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        from harness.errors import ConfigError

        raise ConfigError("run.device=cuda: torch sees no CUDA device on this machine")
    return requested


# Allocator messages that mean memory ran out, and nothing else: a bare "memory" in a
# message (a config error about memory, a planner warning) must not read as an OOM.
_OOM_MESSAGE = re.compile(
    r"DefaultCPUAllocator: (?:can't allocate memory|not enough memory)"  # torch host allocator (Linux, Windows)
    r"|\b(?:CUDA|HIP|XPU|MPS backend) out of memory"  # torch device caching allocators
    r"|\bCUDA error: out of memory"  # a raw cudaMalloc outside the caching allocator (cuDNN, NCCL)
    r"|\b(?:CUBLAS|CUDNN)_STATUS_ALLOC_FAILED"  # handle/workspace allocation inside the library
    r"|\bCUDA_ERROR_OUT_OF_MEMORY",  # driver API (bitsandbytes, triton)
    re.IGNORECASE,
)
_CHAIN_LIMIT = 16


def _is_oom(exc: BaseException) -> bool:
    """True when this one exception (not its chain) reports exhausted device or host memory."""
    if isinstance(exc, MemoryError):  # also numpy's _ArrayMemoryError
        return True
    if isinstance(exc, OSError) and exc.errno == errno.ENOMEM:  # mmap / fork refused by the kernel
        return True
    # torch.OutOfMemoryError (= torch.cuda.OutOfMemoryError) by name: classify must not import torch
    if any(cls.__name__ == "OutOfMemoryError" for cls in type(exc).__mro__):
        return True
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not turn the cell's error handler into a crash
        return False
    return bool(_OOM_MESSAGE.search(text))


def classify(exc: BaseException) -> str:
    """Status for an exception: oom for device or host memory exhaustion, unsupported for a setting the
    framework cannot honour (``UnsupportedError``), else failed.

    Follows the exception's cause chain, so a library that wraps an allocator failure in
    its own exception (``raise X from oom``, or raising while handling one) still reads as oom.
    """
    from harness.errors import UnsupportedError

    seen: set[int] = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen and len(seen) < _CHAIN_LIMIT:
        if _is_oom(current):
            return "oom"
        if isinstance(current, UnsupportedError):
            return "unsupported"
        seen.add(id(current))
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return "failed"


def one_line(exc: BaseException) -> str:
    """The error as one line: the harness's own message, or Type: first line."""
    from harness.errors import HarnessError

    if isinstance(exc, SystemExit):
        return f"the cell called sys.exit({exc.code!r})"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, HarnessError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Diverged(Exception):
    """Training produced a non-finite loss; the cell ends ``diverged`` and is never evaluated."""


@dataclass
class Opened:
    """What both kinds of work on a cell share: device, backend, data and evaluators."""

    device: str
    backend: Any
    data: Any
    eval_ctx: Any
    evaluators: Dict[str, Any]
    memory: Any
    progress: Any = None
    """The attempt's ``harness.progress.ProgressWriter`` (phases and training steps to progress.json)."""


def _phase(cell: Opened, name: str) -> None:
    """Tell progress.json the worker entered phase ``name``."""
    if cell.progress is not None:
        cell.progress.phase(name)


def check_device_class(identity: Dict[str, Any], device: str) -> None:
    """Refuse to run where the cell's identity says another device class (a CPU cell is no GPU result)."""
    expected = str(identity.get("device", device)).split(":")[0]
    if expected != device:
        from harness.errors import ConfigError

        raise ConfigError(f"run.device: this cell is identified as a {expected} cell but the worker runs on {device}; "
                          "set run.device=cpu or run.device=cuda explicitly")


def _memory_cap(cfg: Any, spec: Dict[str, Any], record: Dict[str, Any], device: str) -> None:
    """run.memory_cap_gib before the model loads: the CUDA memory fraction here; on CPU the parent's watchdog."""
    from harness.memcap import apply_in_worker

    block = apply_in_worker(cfg.run.memory_cap_gib, device, runner=cfg.framework.name if cfg.framework.runner else None)
    if block is not None and spec["train"]:
        record["memory_cap"] = block


def open_cell(cfg: Any, spec: Dict[str, Any], cell_dir: Path, record: Dict[str, Any], timings: Dict[str, float],
              progress: Any = None) -> Opened:
    """Resolve the device, build the backend, load tokenizer and data, prepare the requested evaluators."""
    from harness import registry
    from harness.data.prepare import prepare_data
    from harness.env import environment
    from harness.evaluators.base import EvalContext, load_evaluators
    from harness.measure import MemoryMeter
    from harness.seams import CellContext

    started = time.perf_counter()
    device = resolve_device(cfg.run.device)
    check_device_class(spec.get("identity", {}), device)
    _memory_cap(cfg, spec, record, device)
    record["environment"] = environment(device)
    if cfg.framework.runner:  # it trains in its own environment: its versions beside the worker's
        import dataclasses

        from harness.envs import env_versions

        record["environment"]["runner"] = env_versions(dataclasses.asdict(cfg.framework))
    record["model"] = {"weights": cfg.model.effective_weights()}  # random: tiny or model.weights=random; quality means nothing
    ctx = CellContext(cell_dir=cell_dir, cache_dir=Path(cfg.run.cache_dir).expanduser(), device=device, progress=progress)
    backend = registry.load("framework.backend", cfg.framework.backend, registry.BACKENDS)(cfg, ctx)
    memory = MemoryMeter(device)
    timings["imports"] = time.perf_counter() - started

    if progress is not None:
        progress.phase("data")
    mark = time.perf_counter()
    tokenizer = backend.load_tokenizer()
    data = prepare_data(cfg.data, tokenizer, cfg.train.max_seq_len, cfg.data.split_seed, cache_dir=ctx.cache_dir)
    timings["data"] = time.perf_counter() - mark
    # Evaluators are built and prepared before the model loads, so a bad task name fails fast.
    eval_ctx = EvalContext(data=data, cell_dir=cell_dir, cache_dir=ctx.cache_dir)
    evaluators = {name: ev for name, ev in load_evaluators(cfg, eval_ctx, timings).items() if name in spec["evals"]}
    return Opened(device, backend, data, eval_ctx, evaluators, memory, progress)


def train_cell(cfg: Any, cell: Opened, cell_dir: Path, record: Dict[str, Any], timings: Dict[str, float]) -> Dict[str, Any]:
    """Load, train and save the cell's weights (filling ``record``); return the untrained baselines scored on the way."""
    from harness.divergence import divergence
    from harness.efficiency import DEFINITIONS as EFFICIENCY_DEFINITIONS
    from harness.efficiency import efficiency
    from harness.measure import DEFINITIONS, StepMeter

    record["data"] = cell.data.stats
    _phase(cell, "load")
    mark = time.perf_counter()
    params = cell.backend.load_model()
    timings["load"] = time.perf_counter() - mark
    record["memory"]["after_load"] = cell.memory.snapshot()
    baselines = _baselines(cfg, cell, record["cell_id"], timings, may_compute=True)

    meter = StepMeter(grad_accum=cfg.train.grad_accum, warmup=cfg.train.measure_warmup_steps, cv_warn=cfg.run.step_cv_warn)
    _phase(cell, "train")
    cell.memory.reset_peak()
    mark = time.perf_counter()
    train_stats = cell.backend.train(cell.data, meter)
    timings["train"] = time.perf_counter() - mark
    record["memory"]["train_peak"] = cell.memory.peak()
    nvml, summary = cell.memory.nvml, meter.summary()
    elsewhere = train_stats.pop("measured", None)
    if elsewhere:  # trained in its own process (LitGPT's runner), measured there with these same meters
        record["memory"].update(after_load=elsewhere["after_load"], train_peak=elsewhere["train_peak"])
        nvml, summary, timings["train_loop"] = elsewhere["nvml"], elsewhere["meter"], elsewhere["train_s"]
    record["train"] = {**params, **train_stats, **summary}
    from harness.fairness import fairness_block

    record["fairness"] = fairness_block(record.get("config") or {}, record["train"])
    record["efficiency"] = efficiency(cfg, record["train"], record["data"], record["environment"],
                                      timings.get("train_loop", timings["train"]), nvml)
    record["definitions"] = {**DEFINITIONS, **EFFICIENCY_DEFINITIONS}
    point = divergence(record["train"])
    if point is not None:
        record["train"]["diverged"] = point
        raise Diverged(f"training diverged: {point['metric']} became {point['value']} at step {point['step']}; the cell stopped there")

    _phase(cell, "save")
    mark = time.perf_counter()
    weights = cell.backend.save_weights(cell_dir)
    record["artifacts"] = {"weights": weights.name if weights else None}
    timings["save"] = time.perf_counter() - mark
    return baselines


def _baselines(cfg: Any, cell: Opened, cell_id: str, timings: Dict[str, float], may_compute: bool) -> Dict[str, Any]:
    """Untrained-base scores of the requested evaluators (cached per base; see evaluators/baseline.py)."""
    if not (cfg.eval.baseline and cell.evaluators):
        return {}
    from harness.evaluators.baseline import score_baselines

    _phase(cell, "baseline")
    return score_baselines(cfg, cell.evaluators, cell.backend.model_view(), cell.eval_ctx, cell_id, timings, may_compute=may_compute)


def _non_finite(rows: List[Dict[str, Any]]) -> List[str]:
    return [row["metric"] for row in rows if isinstance(row.get("value"), float) and not math.isfinite(row["value"])]


def evaluate_cell(
    spec: Dict[str, Any], cell: Opened, cell_dir: Path, baselines: Dict[str, Any], timings: Dict[str, float]
) -> Optional[str]:
    """Run each requested evaluator into its own result file; return why the cell diverged, if it did."""
    from harness.store import eval_dir, write_eval

    view, diverged = cell.backend.model_view(), None
    for name, evaluator in cell.evaluators.items():
        key = spec["evals"][name]
        _phase(cell, f"eval:{name}")
        result: Dict[str, Any] = {"evaluator": name, "key": key, "attempt": spec["attempt"], "status": "failed",
                                  "error": None, "rows": [], "config": spec["config"]["eval"].get(name)}
        mark = time.perf_counter()
        cell.eval_ctx.cell_dir = eval_dir(cell_dir, key)  # raw output (lm-eval's files) next to the result
        try:
            rows = evaluator.evaluate(view, cell.eval_ctx)
            bad = _non_finite(rows)
            if name in baselines:
                from harness.evaluators.baseline import compare

                rows = rows + compare(rows, baselines[name]["rows"])
                result["baseline"] = {k: v for k, v in baselines[name].items() if k != "rows"}
            result.update(rows=rows, status="ok" if not bad else "failed",
                          error=f"non-finite {', '.join(bad)}" if bad else None)
            if "eval_loss" in bad:
                diverged = f"held-out eval_loss is not finite after training ({name} evaluator)"
        except Exception as exc:  # noqa: BLE001 - one evaluator failing must not lose the others
            result.update(status=classify(exc), error=one_line(exc), traceback=traceback.format_exc())
            print(result["traceback"], file=sys.stderr)
        done = {f"eval_{name}": time.perf_counter() - mark}
        result["timings_s"] = {**{k: v for k, v in timings.items() if k in (f"eval_{name}_prepare", f"baseline_{name}")}, **done}
        write_eval(cell_dir, key, result)
    return diverged


def work(spec: Dict[str, Any], cell_dir: Path, record: Dict[str, Any], timings: Dict[str, float], progress: Any = None) -> None:
    """Train (when asked) then evaluate; the training record is written before evaluation starts."""
    from harness.records import RECORD_NAME, write_json_atomic

    cfg = load_config(spec)
    cell = open_cell(cfg, spec, cell_dir, record, timings, progress)
    if spec["train"]:
        baselines = train_cell(cfg, cell, cell_dir, record, timings)
        record["status"] = "ok"
        record["timings_s"] = dict(timings)
        write_json_atomic(cell_dir / RECORD_NAME, record)  # training is safe before any evaluator runs
    else:
        from harness.store import weights_path

        _phase(cell, "load")
        mark = time.perf_counter()
        cell.backend.load_model(weights=weights_path(cell_dir, record))
        timings["load"] = time.perf_counter() - mark
        baselines = _baselines(cfg, cell, record["cell_id"], timings, may_compute=cfg.adapter())
    diverged = evaluate_cell(spec, cell, cell_dir, baselines, timings)
    if diverged:
        raise Diverged(diverged)


def _fail_unfinished(spec: Dict[str, Any], cell_dir: Path, status: str, error: str, trace: str) -> None:
    """Give each requested evaluation this attempt did not finish the error that stopped it."""
    from harness.store import read_eval, write_eval

    for name, key in spec["evals"].items():
        if (read_eval(cell_dir, key) or {}).get("attempt") != spec["attempt"]:
            write_eval(cell_dir, key, {"evaluator": name, "key": key, "attempt": spec["attempt"], "status": status,
                                       "error": error, "rows": [], "traceback": trace})


def main(argv: list[str]) -> int:
    """Entry point; returns 0 when the work ended ok, 1 otherwise."""
    entered = time.time()
    _die_with_parent()
    from harness.records import CELL_SPEC_NAME, RECORD_NAME, new_record, read_json, write_json_atomic

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
    from harness.progress import DONE, ProgressWriter

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
    except BaseException as exc:  # noqa: BLE001 - SystemExit inside a cell is a cell failure
        status, error = classify(exc), one_line(exc)
        if status == "oom" and spec["train"]:
            from harness.memcap import on_oom

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
