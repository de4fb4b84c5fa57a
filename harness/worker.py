"""The worker: runs one cell in a fresh process and writes its record.

    python -m harness.worker CELL_DIR

Reads ``CELL_DIR/cell.json`` (written by the parent), then data -> model -> train ->
evaluate -> save, and always ends by writing ``CELL_DIR/record.json`` atomically, with
status ok, failed or oom. Anything that kills the process before that (a signal, a hard
crash, ``os._exit``) leaves no record; the parent then records it as crashed or timeout.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict

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


def classify(exc: BaseException) -> str:
    """Status for an exception: oom for device or host memory exhaustion, else failed."""
    if isinstance(exc, MemoryError):
        return "oom"
    name = type(exc).__name__
    if name == "OutOfMemoryError" or "out of memory" in str(exc).lower():
        return "oom"
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


def run_cell(cfg: Any, cell_dir: Path, record: Dict[str, Any], timings: Dict[str, float]) -> None:
    """Fill ``record`` for one cell; raises on failure (the caller records it)."""
    from harness import registry
    from harness.backends.base import CellContext
    from harness.data.prepare import prepare_data
    from harness.efficiency import DEFINITIONS as EFFICIENCY_DEFINITIONS
    from harness.efficiency import efficiency
    from harness.env import environment
    from harness.evaluators.base import EvalContext, load_evaluators
    from harness.measure import DEFINITIONS, MemoryMeter, StepMeter

    started = time.perf_counter()
    device = resolve_device(cfg.run.device)
    record["environment"] = environment(device)
    ctx = CellContext(cell_dir=cell_dir, cache_dir=Path(cfg.run.cache_dir).expanduser(), device=device)
    backend = registry.load("framework.backend", cfg.framework.backend, registry.BACKENDS)(cfg, ctx)
    memory = MemoryMeter(device)
    timings["imports"] = time.perf_counter() - started

    mark = time.perf_counter()
    tokenizer = backend.load_tokenizer()
    data = prepare_data(cfg.data, tokenizer, cfg.train.max_seq_len, cfg.train.seed, cache_dir=ctx.cache_dir)
    record["data"] = data.stats
    timings["data"] = time.perf_counter() - mark

    # Evaluators are built and prepared before the model loads, so a bad task name fails fast.
    eval_ctx = EvalContext(data=data, cell_dir=cell_dir, cache_dir=ctx.cache_dir)
    evaluators = load_evaluators(cfg, eval_ctx, timings)

    mark = time.perf_counter()
    params = backend.load_model()
    timings["load"] = time.perf_counter() - mark
    record["memory"]["after_load"] = memory.snapshot()

    baselines: Dict[str, Any] = {}
    if cfg.eval.baseline and evaluators:  # on the loaded, untrained model; cached per base (see evaluators/baseline.py)
        from harness.evaluators.baseline import score_baselines

        baselines = score_baselines(cfg, evaluators, backend.model_view(), eval_ctx, record["cell_id"], timings)
        record["baselines"] = {name: {k: v for k, v in b.items() if k != "rows"} for name, b in baselines.items()}

    meter = StepMeter(grad_accum=cfg.train.grad_accum, warmup=cfg.train.measure_warmup_steps)
    memory.reset_peak()
    mark = time.perf_counter()
    train_stats = backend.train(data, meter)
    timings["train"] = time.perf_counter() - mark
    record["memory"]["train_peak"] = memory.peak()
    record["train"] = {**params, **train_stats, **meter.summary()}
    record["efficiency"] = efficiency(cfg, record["train"], record["data"], record["environment"], timings["train"], memory.nvml)
    record["definitions"] = {**DEFINITIONS, **EFFICIENCY_DEFINITIONS}

    view = backend.model_view()
    for name, evaluator in evaluators.items():
        mark = time.perf_counter()
        rows = evaluator.evaluate(view, eval_ctx)
        timings[f"eval_{name}"] = time.perf_counter() - mark
        record["metrics"].extend(rows)
        if name in baselines:
            from harness.evaluators.baseline import compare

            record["metrics"].extend(compare(rows, baselines[name]["rows"]))

    mark = time.perf_counter()
    adapter = backend.save_adapter(cell_dir / "adapter")
    record["artifacts"] = {"adapter": str(adapter) if adapter else None}
    timings["save"] = time.perf_counter() - mark


def main(argv: list[str]) -> int:
    """Entry point; returns 0 when the cell ended ok, 1 otherwise."""
    entered = time.time()
    _die_with_parent()
    from harness.records import CELL_SPEC_NAME, RECORD_NAME, new_record, read_json, write_json_atomic

    cell_dir = Path(argv[1]).resolve()
    spec = read_json(cell_dir / CELL_SPEC_NAME)
    if spec is None:
        print(f"error: {cell_dir / CELL_SPEC_NAME} is missing or unreadable", file=sys.stderr)
        return 2
    record = new_record(spec["cell_id"], "failed", spec["config"])
    timings: Dict[str, float] = {}
    spawned = os.environ.get(SPAWN_TIME_ENV)
    if spawned:
        timings["spawn_to_main"] = entered - float(spawned)
    begun = time.perf_counter()
    try:
        run_cell(load_config(spec), cell_dir, record, timings)
        record["status"] = "ok"
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit inside a cell is a cell failure
        record["status"] = classify(exc)
        record["error"] = one_line(exc)
        record["traceback"] = traceback.format_exc()
        print(record["traceback"], file=sys.stderr)
    timings["worker_total"] = time.perf_counter() - begun
    record["timings_s"] = timings
    write_json_atomic(cell_dir / RECORD_NAME, record)
    return 0 if record["status"] == "ok" else 1


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    # The record is written and fsynced; skip interpreter teardown (~1 s of torch and
    # thread-pool shutdown per cell that nothing needs).
    os._exit(code)
