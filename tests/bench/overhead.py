"""Harness overhead on training throughput: the hf backend vs a plain trl SFTTrainer, same config.

    python tests/bench/overhead.py --steps 40 --rounds 5      # prints the tokens/s ratio

Both sides train the same cached tiny model on the same tokenized batches with the same
SFTConfig, in this one process, interleaved round by round (so machine load hits both
alike). The harness side runs ``HFBackend.train`` — its counting collator, step meter and
callbacks; the plain side is the SFTTrainer a user would write, with trl's own collator
and no callbacks. Each side's training wall time covers the same steps and tokens, so
tokens/s ratio = plain time / harness time. The target is a harness cost <= 3 %.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def _config(steps: int, batch: int, cache_dir: Path):
    from harness.config import EvalConfig, HarnessConfig, RunConfig, TrainConfig

    train = TrainConfig(max_steps=steps, batch_size=batch, eval_every=0, early_stopping_patience=0, measure_warmup_steps=0)
    return HarnessConfig(train=train, eval=EvalConfig(baseline=False), run=RunConfig(cache_dir=str(cache_dir)))


def _prepare(cfg, folder: Path):
    from harness.backends.base import CellContext
    from harness.backends.hf import HFBackend
    from harness.data.prepare import prepare_data

    backend = HFBackend(cfg, CellContext(cell_dir=folder, cache_dir=Path(cfg.run.cache_dir), device="cpu"))
    tokenizer = backend.load_tokenizer()
    data = prepare_data(cfg.data, tokenizer, cfg.train.max_seq_len, cfg.train.seed, cache_dir=Path(cfg.run.cache_dir))
    return backend, data


def harness_side(cfg, folder: Path) -> float:
    """Training wall time through the harness backend (counting collator, meter, callbacks)."""
    from harness.measure import StepMeter

    backend, data = _prepare(cfg, folder)
    backend.load_model()
    meter = StepMeter(grad_accum=cfg.train.grad_accum, warmup=0)
    start = time.perf_counter()
    backend.train(data, meter)
    return time.perf_counter() - start


def plain_side(cfg, folder: Path) -> float:
    """Training wall time of a plain SFTTrainer on the same model, batches and SFTConfig."""
    from datasets import Dataset
    from trl import SFTTrainer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    backend, data = _prepare(cfg, folder)
    backend.load_model()  # same model + adapter construction; the trainer below is plain trl
    rows = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in data.train]
    trainer = SFTTrainer(
        model=backend.model,
        args=backend._sft_config(),
        train_dataset=Dataset.from_list(rows),
        processing_class=backend.tokenizer,
        data_collator=DataCollatorForLanguageModeling(pad_token_id=backend.tokenizer.pad_token_id),
    )
    start = time.perf_counter()
    trainer.train()
    return time.perf_counter() - start


def measure(steps: int = 40, rounds: int = 5, batch: int = 8, cache_dir: Path | None = None) -> Dict[str, object]:
    """Interleaved rounds of both sides; the median tokens/s ratio (harness / plain) and the raw times."""
    cache = Path(cache_dir or os.environ.get("HARNESS_CACHE", REPO / ".cache" / "harness")).expanduser()
    cfg = _config(steps, batch, cache)
    times: Dict[str, List[float]] = {"harness": [], "plain": []}
    with tempfile.TemporaryDirectory() as tmp:
        harness_side(cfg, Path(tmp) / "warm")  # build the tiny model and the token cache once, untimed
        for i in range(rounds):
            order = ("harness", "plain") if i % 2 == 0 else ("plain", "harness")
            for side in order:
                run = harness_side if side == "harness" else plain_side
                times[side].append(run(cfg, Path(tmp) / f"{side}{i}"))
    ratios = [p / h for h, p in zip(times["harness"], times["plain"])]
    return {
        "tokens_per_s_ratio": statistics.median(ratios),
        "ratios": ratios,
        "harness_s": times["harness"],
        "plain_s": times["plain"],
        "steps": steps,
        "batch": batch,
        "definition": "harness tokens/s / plain trl tokens/s = plain train time / harness train time (same steps, same tokens)",
    }


def main() -> None:
    """Print the measured ratio and the overhead in percent."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    out = measure(args.steps, args.rounds, args.batch)
    ratio = out["tokens_per_s_ratio"]
    print(f"tokens/s ratio harness/plain (median of {args.rounds}): {ratio:.4f}  -> harness overhead {100 * (1 - ratio):+.2f} %")
    print("per round:", ", ".join(f"{r:.4f}" for r in out["ratios"]))
    print("harness s:", [round(t, 3) for t in out["harness_s"]], " plain s:", [round(t, 3) for t in out["plain_s"]])


if __name__ == "__main__":
    main()
