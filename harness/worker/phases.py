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

import math
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from harness.worker.outcome import Diverged, classify, one_line


def load_config(spec: Dict[str, Any]):
    """The validated HarnessConfig from a cell spec's resolved config."""
    from omegaconf import OmegaConf

    from harness.config.schema import HarnessConfig

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
    """The attempt's ``harness.store.progress.ProgressWriter`` (phases and training steps to progress.json)."""
    ranks: Any = None
    """A ``harness.worker.rank.RankGroup`` when this process is one rank of a dist cell; None for one process."""


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
    from harness.measure.memcap import apply_in_worker

    block = apply_in_worker(cfg.run.memory_cap_gib, device, runner=cfg.framework.name if cfg.framework.runner else None)
    if block is not None and spec["train"]:
        record["memory_cap"] = block


def open_cell(cfg: Any, spec: Dict[str, Any], cell_dir: Path, record: Dict[str, Any], timings: Dict[str, float],
              progress: Any = None) -> Opened:
    """Resolve the device, build the backend, load tokenizer and data, prepare the requested evaluators."""
    from harness.config import registry
    from harness.data.prepare import prepare_data
    from harness.evaluators.base import EvalContext, load_evaluators
    from harness.measure.meters import MemoryMeter
    from harness.seams import CellContext
    from harness.store.environment import environment

    started = time.perf_counter()
    device = resolve_device(cfg.run.device)
    check_device_class(spec.get("identity", {}), device)
    _memory_cap(cfg, spec, record, device)
    record["environment"] = environment(device)
    if cfg.framework.runner:  # it trains in its own environment: its versions beside the worker's
        import dataclasses

        from harness.store.venvs import env_versions

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
    from harness.measure.divergence import divergence
    from harness.measure.efficiency import DEFINITIONS as EFFICIENCY_DEFINITIONS
    from harness.measure.efficiency import efficiency
    from harness.measure.meters import DEFINITIONS, StepMeter

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
    devices = 1
    if cell.ranks is not None:  # one of several ranks: every rank's counters, gathered (a collective: all ranks call it)
        from harness.measure.ranks import DEFINITIONS as RANK_DEFINITIONS

        nvml, devices = cell.ranks.combine(record, nvml), cell.ranks.world
        record["definitions_ranks"] = RANK_DEFINITIONS
    from harness.measure.fairness import fairness_block

    record["fairness"] = fairness_block(record.get("config") or {}, record["train"])
    record["efficiency"] = efficiency(cfg, record["train"], record["data"], record["environment"],
                                      timings.get("train_loop", timings["train"]), nvml, devices=devices)
    record["definitions"] = {**DEFINITIONS, **EFFICIENCY_DEFINITIONS, **record.pop("definitions_ranks", {})}
    point = divergence(record["train"])
    if point is not None:
        record["train"]["diverged"] = point
        raise Diverged(f"training diverged: {point['metric']} became {point['value']} at step {point['step']}; the cell stopped there")

    _phase(cell, "save")
    mark = time.perf_counter()
    weights = cell.backend.save_weights(cell_dir)
    record["artifacts"] = saved_artifacts(weights)
    record["definitions"].update(ARTIFACT_DEFINITIONS)
    timings["save"] = time.perf_counter() - mark
    return baselines


ARTIFACT_DEFINITIONS = {
    "artifacts.weights": "the saved weights' folder (or file) name in the cell folder: adapter, or model for a kept "
                         "full fine-tune; None when nothing was saved",
    "artifacts.bytes": "size of every regular file under the saved weights (its path relative to them, e.g. "
                       "adapter_model.safetensors, adapter_config.json), bytes; None when nothing was saved",
    "artifacts.total_bytes": "sum of artifacts.bytes, bytes; None when nothing was saved",
}
"""Definitions of ``record["artifacts"]`` (merged into ``record["definitions"]``)."""


def saved_artifacts(weights: Optional[Path]) -> Dict[str, Any]:
    """``record["artifacts"]``: the saved weights' name and the size of each of its files (a folder's regular files,
    by path relative to it, or the one file), and their total; None values when nothing was saved."""
    if not weights:
        return {"weights": None, "bytes": None, "total_bytes": None}
    weights = Path(weights)
    if weights.is_file():
        files = {weights.name: weights.stat().st_size}
    elif weights.is_dir():
        files = {path.relative_to(weights).as_posix(): path.stat().st_size for path in sorted(weights.rglob("*"))
                 if path.is_file() and not path.is_symlink()}
    else:  # named but not here (a rank other than 0 of a dist cell: rank 0 wrote it)
        files = None
    return {"weights": weights.name, "bytes": files, "total_bytes": sum(files.values()) if files is not None else None}


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
    from harness.store.layout import eval_dir, write_eval

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
    from harness.files import write_json_atomic
    from harness.store.records import RECORD_NAME

    cfg = load_config(spec)
    if spec["train"] and cfg.dist.enabled():  # trained by k ranks (harness.worker.ranks), evaluated here afterwards
        _train_on_ranks(spec, cell_dir, record, timings, progress)
        if not spec["evals"]:
            return
        after: Dict[str, float] = {}  # the worker's own load and evaluation, beside rank 0's timings
        try:  # on one device, after the ranks: a model too big for it fails its evaluations, never the training
            cell = open_cell(cfg, spec, cell_dir, {}, after, progress)  # a scratch record: rank 0's stays as written
            baselines = _load_trained(cfg, cell, cell_dir, record, after)
        except Exception as exc:  # noqa: BLE001 - classified by the worker's main
            raise EvaluationUnstarted(exc) from exc
        diverged = evaluate_cell(spec, cell, cell_dir, baselines, after)
        timings.update({(f"eval_{key}" if key in ("imports", "data", "load") else key): value for key, value in after.items()})
        if diverged:
            raise Diverged(diverged)
        return
    elif spec["train"]:
        cell = open_cell(cfg, spec, cell_dir, record, timings, progress)
        baselines = train_cell(cfg, cell, cell_dir, record, timings)
        record["status"] = "ok"
        record["timings_s"] = dict(timings)
        write_json_atomic(cell_dir / RECORD_NAME, record)  # training is safe before any evaluator runs
    else:
        cell = open_cell(cfg, spec, cell_dir, record, timings, progress)
        baselines = _load_trained(cfg, cell, cell_dir, record, timings)
    diverged = evaluate_cell(spec, cell, cell_dir, baselines, timings)
    if diverged:
        raise Diverged(diverged)


class EvaluationUnstarted(Exception):
    """A dist cell trained ok but its evaluation could not start (the weights do not load on one device): the
    requested evaluations end with the cause's status, the training record stays ok."""


def _load_trained(cfg: Any, cell: Opened, cell_dir: Path, record: Dict[str, Any], timings: Dict[str, float]) -> Dict[str, Any]:
    """Load a trained cell's saved weights for evaluation; return the untrained baselines (adapters only)."""
    from harness.store.layout import weights_path

    _phase(cell, "load")
    mark = time.perf_counter()
    cell.backend.load_model(weights=weights_path(cell_dir, record))
    timings["load"] = time.perf_counter() - mark
    return _baselines(cfg, cell, record["cell_id"], timings, may_compute=cfg.adapter())


def _train_on_ranks(spec: Dict[str, Any], cell_dir: Path, record: Dict[str, Any], timings: Dict[str, float],
                    progress: Any) -> None:
    """Train a dist cell on its ranks and take rank 0's record as this attempt's (raises when it did not end ok)."""
    from harness.files import read_json
    from harness.store.records import RECORD_NAME
    from harness.worker.ranks import RankFailure, train_ranks

    if progress is not None:
        progress.phase("ranks")
    mark = time.perf_counter()
    train_ranks(spec, cell_dir)
    timings["ranks"] = time.perf_counter() - mark
    written = read_json(cell_dir / RECORD_NAME)
    if not written or written.get("attempt") != spec["attempt"]:
        raise RankFailure("crashed", "the ranks ended without an error but rank 0 wrote no record")
    record.clear()
    record.update(written)
    timings.update({k: v for k, v in (written.get("timings_s") or {}).items() if k not in timings})
    if record.get("status") == "diverged":
        raise Diverged(str(record.get("error")))
