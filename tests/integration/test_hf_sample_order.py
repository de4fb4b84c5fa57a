"""The hf Trainer's micro-batches are the ones harness.backends.litgpt hands LitGPT, and only they are counted.

LitGPT's runner is given the sample order explicitly; this checks that order against what the hf backend's
Trainer really draws (accelerate's seeded sampler), with evaluations in between, whose held-out batches go through
the same collator in the Trainer and must not reach the meter's queue of trained micro-batches.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_hf_trains_the_predicted_micro_batches_and_counts_only_them(cache_dir: Path, tmp_path: Path) -> None:
    from harness.backends.hf import HFBackend
    from harness.backends.litgpt import hf_micro_batches
    from harness.config.schema import HarnessConfig
    from harness.config.train import TrainConfig
    from harness.data.prepare import prepare_data
    from harness.measure.meters import StepMeter
    from harness.seams import CellContext

    steps, batch = 4, 3
    cfg = HarnessConfig(train=TrainConfig(max_steps=steps, batch_size=batch, eval_every=2, early_stopping_patience=0))
    backend = HFBackend(cfg, CellContext(cell_dir=tmp_path, cache_dir=cache_dir, device="cpu"))
    tokenizer = backend.load_tokenizer()
    data = prepare_data(cfg.data, tokenizer, cfg.train.max_seq_len, cfg.data.split_seed, cache_dir=cache_dir)
    backend.load_model()
    seen = []
    import trl.trainer.sft_trainer as sft

    inner = sft.DataCollatorForLanguageModeling.torch_call

    def spy(self, examples):
        seen.append([tuple(e["input_ids"]) for e in examples])
        return inner(self, examples)

    meter = StepMeter(grad_accum=1, warmup=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sft.DataCollatorForLanguageModeling, "torch_call", spy)
        stats = backend.train(data, meter)
    assert len(stats["eval_curve"]) == 2  # evaluations ran between the steps
    predicted = hf_micro_batches(len(data.train), batch, cfg.train.seed, steps)
    rows = [tuple(row["input_ids"]) for row in data.train]
    trained = [[rows[i] for i in micro] for micro in predicted]
    assert [micro for micro in seen if micro[0] in set(rows)][:steps] == trained  # held-out rows are not training rows
    assert len(seen) > steps + 1  # held-out batches went through the collator too (beside one prefetched batch)
    loss_tokens = sum(sum(1 for label in data.train[i]["labels"][1:] if label != -100) for micro in predicted for i in micro)
    assert meter.summary()["trained_tokens"] == loss_tokens
    assert meter.summary()["samples"] == steps * batch
