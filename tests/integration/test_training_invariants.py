"""Settings that must be equivalent give the same training; early stopping stops when told."""

from __future__ import annotations

import pytest

from tests.conftest import records, run_harness

pytestmark = pytest.mark.integration
DETERMINISTIC = ["lora.dropout=0.0", "train.eval_every=0", "train.max_steps=3", "train.warmup_steps=0"]


def test_batch_8_equals_batch_1_times_accumulation_8(harness_env, tmp_path):
    big = run_harness(["train.batch_size=8", "train.grad_accum=1", *DETERMINISTIC, "run.sweep=big"], harness_env, tmp_path)
    small = run_harness(["train.batch_size=1", "train.grad_accum=8", *DETERMINISTIC, "run.sweep=small"], harness_env, tmp_path)
    assert big.returncode == 0 and small.returncode == 0, big.stderr + small.stderr
    (rb,) = records(tmp_path / "big").values()
    (rs,) = records(tmp_path / "small").values()
    assert rb["train"]["trained_tokens"] == rs["train"]["trained_tokens"]
    assert rb["train"]["samples"] == rs["train"]["samples"] == 24
    for (step_b, loss_b), (step_s, loss_s) in zip(rb["train"]["loss_curve"], rs["train"]["loss_curve"]):
        assert step_b == step_s
        assert loss_s == pytest.approx(loss_b, rel=2e-3)


def test_early_stopping_after_patience_evaluations(harness_env, tmp_path):
    args = [
        "train.max_steps=20", "train.eval_every=2", "train.early_stopping_patience=2",
        "train.early_stopping_min_delta=100", "run.sweep=es",
    ]
    result = run_harness(args, harness_env, tmp_path)
    assert result.returncode == 0, result.stderr
    (record,) = records(tmp_path / "es").values()
    # eval at 2 sets the best; 4 and 6 do not improve by 100 nats -> stop at step 6
    assert record["train"]["stopped_early_at_step"] == 6
    assert record["train"]["optimizer_steps"] == 6
