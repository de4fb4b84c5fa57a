"""Harness overhead on training throughput, measured two ways, each with its spread.

    python tests/bench/overhead.py --rounds 15 --steps 40     # prints both figures

1. Per-step added work, timed directly: what the harness runs per optimizer step that a
   plain trl SFTTrainer does not -- ``CountingCollator.__call__`` beyond its inner collator
   (once per micro-batch) and every callback ``harness.backends.hf._callbacks`` returns,
   called with the events the Trainer fires each step (on_step_begin, on_substep_end per
   extra micro-batch, on_pre_optimizer_step, on_optimizer_step, on_step_end, on_log with
   logging_steps=1) and the arguments it passes. Reported in µs and as a fraction of the
   median optimizer-step time of the tiny model (steps timed by the harness's own meter).
   This is the precise figure: it does not drown in the machine's step-to-step noise. It is a
   CPU figure: on CUDA the meter also synchronises the device at each step boundary, a cost
   this bench does not see.
2. End to end: ``HFBackend.train`` (A) against the SFTTrainer a user would write (B), same
   cached tiny model, same tokenized rows, same SFTConfig, in this one process, interleaved
   A B, B A, A B, ... so drift and load hit both alike. Each side's wall time covers building
   the trainer and training the same steps on the same batches, so per round
   tokens/s ratio = B time / A time. Reported as the median (and mean) over rounds with a
   bootstrap 95 % interval (10,000 resamples of the rounds, fixed seed).
   The target is a harness cost <= 3 %.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 20240601
# Trainer events fired once per optimizer step (on_substep_end: once per extra micro-batch)
STEP_EVENTS = ("on_step_begin", "on_pre_optimizer_step", "on_optimizer_step", "on_step_end")


def _config(steps: int, batch: int, cache_dir: Path, grad_accum: int = 1):
    from harness.config.eval import EvalConfig
    from harness.config.run import RunConfig
    from harness.config.schema import HarnessConfig
    from harness.config.train import TrainConfig

    train = TrainConfig(
        max_steps=steps, batch_size=batch, grad_accum=grad_accum, eval_every=0, early_stopping_patience=0,
        measure_warmup_steps=1,
    )
    return HarnessConfig(train=train, eval=EvalConfig(baseline=False), run=RunConfig(cache_dir=str(cache_dir)))


def _cache(cache_dir: Path | None) -> Path:
    return Path(cache_dir or os.environ.get("HARNESS_CACHE", REPO / ".cache" / "harness")).expanduser()


@contextlib.contextmanager
def _quiet():
    """Send the Trainer's per-step log lines (PrinterCallback, on both sides alike) to /dev/null."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


def _progress_writer(folder: Path) -> Any:
    """The progress.json writer a worker hands its backend, or None in a tree without one."""
    try:
        from harness.store.progress import ProgressWriter
    except ImportError:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    return ProgressWriter(folder, "bench")


def _log_sink() -> Callable[[str], None]:
    """Where the worker's per-step log lines go in the bench: /dev/null, one write per line (as PYTHONUNBUFFERED)."""
    sink = open(os.devnull, "w", buffering=1)
    return lambda line: print(line, file=sink)


def _prepare(cfg, folder: Path):
    import dataclasses

    from harness.backends.base import CellContext
    from harness.backends.hf import HFBackend
    from harness.data.prepare import prepare_data

    ctx = dict(cell_dir=folder, cache_dir=Path(cfg.run.cache_dir), device="cpu")
    if "progress" in {f.name for f in dataclasses.fields(CellContext)}:
        ctx["progress"] = _progress_writer(folder)  # the backend reports steps to it, as in a worker
    backend = HFBackend(cfg, CellContext(**ctx))
    tokenizer = backend.load_tokenizer()
    data = prepare_data(cfg.data, tokenizer, cfg.train.max_seq_len, cfg.train.seed, cache_dir=Path(cfg.run.cache_dir))
    return backend, data


def harness_callbacks(cfg, meter, folder: Path) -> list:
    """``harness.backends.hf._callbacks`` as a worker's backend gets them.

    Beyond (cfg, meter), a ``progress`` parameter gets a real ProgressWriter on ``folder`` and a
    ``log`` parameter a line sink (/dev/null), so per-step progress work is timed too; any other
    required parameter stops the bench with a message rather than being guessed.
    """
    import inspect

    from harness.backends import hf

    extra: Dict[str, Any] = {}
    for param in list(inspect.signature(hf._callbacks).parameters.values())[2:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if "progress" in param.name:
            extra[param.name] = _progress_writer(folder)
        elif param.name == "log":
            extra[param.name] = _log_sink()
        elif param.default is inspect.Parameter.empty:
            raise TypeError(f"_callbacks needs {param.name}=...; teach tests/bench/overhead.py to supply it")
    return hf._callbacks(cfg, meter, **extra)


# --------------------------------------------------------------------------------------
# 1. per-step added work, timed directly


def per_step_work(cfg, folder: Path) -> Tuple[Callable[[], None], Dict[str, Any]]:
    """A no-argument function doing one optimizer step's worth of harness-only work, and what it covers.

    The collator wrapper gets an inner collator that returns a batch built beforehand by trl's
    own collator, so only the wrapper's counting (and the meter's ``on_batch``) is timed.
    """
    from transformers import TrainerControl, TrainerState
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from harness.backends import hf
    from harness.measure.meters import BatchCount, StepMeter

    backend, data = _prepare(cfg, folder)
    grad_accum = cfg.train.grad_accum
    rows = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in data.train[: cfg.train.batch_size]]
    batch = DataCollatorForLanguageModeling(pad_token_id=backend.tokenizer.pad_token_id)(rows)
    meter = StepMeter(grad_accum=grad_accum, warmup=cfg.train.measure_warmup_steps, cv_warn=cfg.run.step_cv_warn)
    collator = hf.CountingCollator(lambda _examples: batch, meter)
    callbacks = harness_callbacks(cfg, meter, folder)
    args = backend._sft_config()
    state = TrainerState(max_steps=cfg.train.max_steps, logging_steps=1, num_train_epochs=1)
    state.epoch = 0.0
    control = TrainerControl()
    # what CallbackHandler.call_event passes besides args, state, control
    context = dict(model=None, processing_class=backend.tokenizer, optimizer=None, lr_scheduler=None,
                   train_dataloader=None, eval_dataloader=None)
    for callback in callbacks:
        callback.on_train_begin(args, state, control, **context)
    events: List[Callable[..., Any]] = []
    for name in STEP_EVENTS:
        if name == "on_pre_optimizer_step":
            events += [cb.on_substep_end for cb in callbacks] * (grad_accum - 1)
        events += [getattr(cb, name) for cb in callbacks]
    on_step_end_at = len(events) - len(callbacks)
    before, after = events[:on_step_end_at], events[on_step_end_at:]
    on_log = [cb.on_log for cb in callbacks]

    counted = BatchCount(len(rows), int(batch["attention_mask"].sum()), 1, int(batch["input_ids"].numel()),
                         int(batch["input_ids"].shape[1]))

    def step_of(count: bool, before: List[Callable], after: List[Callable], on_log: List[Callable]) -> Callable[[], None]:
        def one_step() -> None:
            for _ in range(grad_accum):
                if count:
                    collator(rows)
                else:  # the meter's step_end takes the step's batches off its queue: keep it fed
                    meter.pending.append(counted)
            for event in before:
                event(args, state, control, **context)
            state.global_step += 1
            control.should_log = True  # DefaultFlowCallback's doing (first in both trainers) with logging_steps=1
            for event in after:
                event(args, state, control, **context)
            logs = {"loss": 2.5, "grad_norm": 1.25, "learning_rate": 2e-4, "epoch": state.global_step / 1000}
            state.log_history.append({**logs, "step": state.global_step})
            for event in on_log:
                event(args, state, control, logs=logs, **context)
            control.should_log = False  # the Trainer resets it once it has logged
            if len(state.log_history) > 10_000:  # a long benchmark must not grow the history without bound
                state.log_history.clear()
                meter.step_times.clear()
                meter.step_counts.clear()
                meter.pending.clear()

        return one_step

    one_step = step_of(True, before, after, on_log)
    # the same work split by component (collator; each callback alone), for the breakdown
    def collator_only() -> None:
        for _ in range(grad_accum):
            collator(rows)
        meter.pending.clear()

    parts = {"CountingCollator": collator_only}
    for cb in callbacks:
        mine = [[e for e in events if getattr(e, "__self__", None) is cb] for events in (before, after, on_log)]
        parts[type(cb).__name__] = step_of(False, *mine)

    covers = {
        "callbacks": [type(cb).__name__ for cb in callbacks],
        "collator_calls_per_step": grad_accum,
        "batch_shape": list(batch["input_ids"].shape),
        "events_per_step": len(events) + len(on_log),
        "parts": parts,
    }
    return one_step, covers


def time_per_step_work(one_step: Callable[[], None], repeats: int = 7, target_s: float = 0.2) -> Dict[str, float]:
    """Median and spread of one_step's time over ``repeats`` timed loops (CLI stand-in for pytest-benchmark)."""
    for _ in range(50):
        one_step()
    loops = 1
    while True:  # size the loop to ~target_s, as timeit does
        start = time.perf_counter()
        for _ in range(loops):
            one_step()
        if time.perf_counter() - start >= target_s / 4 or loops >= 1 << 20:
            break
        loops *= 2
    loops = max(1, int(loops * target_s / max(time.perf_counter() - start, 1e-9)))
    per_call = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(loops):
            one_step()
        per_call.append((time.perf_counter() - start) / loops)
    return {"median_s": statistics.median(per_call), "min_s": min(per_call), "max_s": max(per_call), "loops": loops}


# --------------------------------------------------------------------------------------
# 2. end to end, ABBA rounds


def harness_side(cfg, folder: Path) -> Tuple[float, List[float]]:
    """Wall time of ``HFBackend.train`` (trainer build + training), and the meter's step times."""
    from harness.measure.meters import StepMeter

    backend, data = _prepare(cfg, folder)
    backend.load_model()
    meter = StepMeter(grad_accum=cfg.train.grad_accum, warmup=cfg.train.measure_warmup_steps, cv_warn=cfg.run.step_cv_warn)
    with _quiet():
        start = time.perf_counter()
        backend.train(data, meter)
        wall = time.perf_counter() - start
    return wall, list(meter.step_times)


def plain_side(cfg, folder: Path) -> float:
    """Wall time of a plain SFTTrainer (trainer build + training) on the same model, batches and SFTConfig."""
    from datasets import Dataset
    from trl import SFTTrainer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    backend, data = _prepare(cfg, folder)
    backend.load_model()  # same model + adapter construction; the trainer below is plain trl
    args = backend._sft_config()
    with _quiet():
        start = time.perf_counter()
        rows = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in data.train]
        trainer = SFTTrainer(
            model=backend.model,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=backend.tokenizer,
            data_collator=DataCollatorForLanguageModeling(pad_token_id=backend.tokenizer.pad_token_id),
        )
        trainer.train()
        wall = time.perf_counter() - start
    return wall


def bootstrap_ci(values: Sequence[float], stat: Callable = None, resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = BOOTSTRAP_SEED, level: float = 0.95) -> Tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` (default: median) over ``values``."""
    import numpy as np

    stat = stat or (lambda a: np.median(a, axis=1))
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    samples = data[rng.integers(0, len(data), size=(resamples, len(data)))]
    estimates = stat(samples)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(estimates, [tail, 100 - tail])
    return float(low), float(high)


def measure(steps: int = 40, rounds: int = 15, batch: int = 8, cache_dir: Path | None = None,
            say: Callable[[str], None] = lambda _line: None) -> Dict[str, Any]:
    """Interleaved A B / B A rounds; the tokens/s ratio (harness / plain) with bootstrap 95 % intervals."""
    import numpy as np

    cfg = _config(steps, batch, _cache(cache_dir))
    times: Dict[str, List[float]] = {"harness": [], "plain": []}
    step_times: List[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        harness_side(cfg, Path(tmp) / "warm")  # build the tiny model and the token cache once, untimed
        plain_side(cfg, Path(tmp) / "warm-plain")
        for i in range(rounds):
            order = ("harness", "plain") if i % 2 == 0 else ("plain", "harness")
            for side in order:
                if side == "harness":
                    wall, steps_s = harness_side(cfg, Path(tmp) / f"{side}{i}")
                    step_times += steps_s[cfg.train.measure_warmup_steps:]
                else:
                    wall = plain_side(cfg, Path(tmp) / f"{side}{i}")
                times[side].append(wall)
            say(f"round {i + 1}/{rounds} ({'AB' if i % 2 == 0 else 'BA'}): harness {times['harness'][-1]:.3f} s, "
                f"plain {times['plain'][-1]:.3f} s, ratio {times['plain'][-1] / times['harness'][-1]:.4f}")
    ratios = [p / h for h, p in zip(times["harness"], times["plain"])]
    return {
        "tokens_per_s_ratio": statistics.median(ratios),
        "ratio_ci95": bootstrap_ci(ratios),
        "ratio_mean": statistics.fmean(ratios),
        "ratio_mean_ci95": bootstrap_ci(ratios, stat=lambda a: np.mean(a, axis=1)),
        "ratios": ratios,
        "harness_s": times["harness"],
        "plain_s": times["plain"],
        "median_step_s": statistics.median(step_times),
        "step_s_quartiles": statistics.quantiles(step_times, n=4, method="inclusive"),
        "step_cv": statistics.stdev(step_times) / statistics.fmean(step_times),
        "steps": steps,
        "rounds": rounds,
        "batch": batch,
        "bootstrap": f"percentile, {BOOTSTRAP_RESAMPLES} resamples of the {rounds} rounds, numpy seed {BOOTSTRAP_SEED}",
        "definition": "per round: harness tokens/s / plain trl tokens/s = plain wall time / harness wall time "
                      "(trainer build + training, same steps, same tokens); rounds interleaved AB, BA, AB, ...",
    }


def median_step_s(steps: int = 24, batch: int = 8, cache_dir: Path | None = None) -> float:
    """Median optimizer-step time of one harness training run of the tiny model (warm-up excluded)."""
    cfg = _config(steps, batch, _cache(cache_dir))
    with tempfile.TemporaryDirectory() as tmp:
        _, step_times = harness_side(cfg, Path(tmp) / "steps")
    return statistics.median(step_times[cfg.train.measure_warmup_steps:])


def per_step_report(work_s: float, step_s: float) -> str:
    return (f"per-step added work: {work_s * 1e6:.1f} µs = {100 * work_s / step_s:.4f} % "
            f"of the median optimizer step ({step_s * 1e3:.1f} ms)")


def main() -> None:
    """Print the per-step added work and the end-to-end ratio with its 95 % interval."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per side per round")
    parser.add_argument("--rounds", type=int, default=15, help="A/B rounds (>= 15 for a usable interval)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step in the per-step timing")
    parser.add_argument("--skip-e2e", action="store_true", help="only the per-step timing (median step from one run)")
    args = parser.parse_args()
    cache = _cache(None)

    with tempfile.TemporaryDirectory() as tmp:
        one_step, covers = per_step_work(_config(args.steps, args.batch, cache, args.grad_accum), Path(tmp))
        work = time_per_step_work(one_step)
    print(f"per-step harness work ({', '.join(covers['callbacks'])}; {covers['collator_calls_per_step']} collator "
          f"call(s) on a {covers['batch_shape']} batch; {covers['events_per_step']} callback events): "
          f"median {work['median_s'] * 1e6:.2f} µs (min {work['min_s'] * 1e6:.2f}, max {work['max_s'] * 1e6:.2f}; "
          f"7 repeats x {work['loops']} loops)")
    for name, part in covers["parts"].items():
        print(f"  {name}: median {time_per_step_work(part, target_s=0.1)['median_s'] * 1e6:.2f} µs per step")
    if args.skip_e2e:
        print(per_step_report(work["median_s"], median_step_s(batch=args.batch, cache_dir=cache)))
        return
    out = measure(args.steps, args.rounds, args.batch, cache, say=print)
    print(per_step_report(work["median_s"], out["median_step_s"]))
    q1, q2, q3 = out["step_s_quartiles"]
    print(f"  optimizer step of the tiny model (harness side, all rounds): median {q2 * 1e3:.1f} ms, "
          f"IQR {q1 * 1e3:.1f}-{q3 * 1e3:.1f} ms, CV {out['step_cv']:.3f}")
    low, high = out["ratio_ci95"]
    ratio = out["tokens_per_s_ratio"]
    print(f"end-to-end tokens/s ratio harness/plain, median of {args.rounds} ABBA rounds: {ratio:.4f} "
          f"(95 % CI {low:.4f}-{high:.4f}) -> harness overhead {100 * (1 - ratio):+.2f} % "
          f"(95 % CI {100 * (1 - high):+.2f} to {100 * (1 - low):+.2f} %)")
    low, high = out["ratio_mean_ci95"]
    print(f"  mean ratio {out['ratio_mean']:.4f} (95 % CI {low:.4f}-{high:.4f}); {out['bootstrap']}")
    print("  per round:", ", ".join(f"{r:.4f}" for r in out["ratios"]))
    print("  harness s:", [round(t, 3) for t in out["harness_s"]])
    print("  plain s:  ", [round(t, 3) for t in out["plain_s"]])


if __name__ == "__main__":
    main()
