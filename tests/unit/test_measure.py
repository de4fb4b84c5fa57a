"""Step metering: FIFO attribution of micro-batches, warm-up exclusion, memory readers."""

from __future__ import annotations

import pytest

from harness.measure import MemoryMeter, StepMeter, host_memory

pytestmark = pytest.mark.unit


def test_prefetched_batches_are_attributed_in_order():
    meter = StepMeter(grad_accum=2, warmup=1)
    clock = iter([0.0, 1.0, 1.0, 3.0, 3.0, 7.0])
    meter._now = lambda: next(clock)  # type: ignore[method-assign]
    for n in (10, 20, 30):  # a loader that runs one micro-batch ahead
        meter.on_batch(1, n, n // 2)
    meter.step_begin()
    meter.on_batch(1, 40, 20)
    meter.step_end()  # step 1: batches 10 + 20, 1 s
    meter.on_batch(1, 50, 25)
    meter.step_begin()
    meter.step_end()  # step 2: batches 30 + 40, 2 s
    meter.step_begin()
    meter.step_end()  # step 3: batch 50 only, 4 s
    summary = meter.summary()
    assert [c.tokens for c in meter.step_counts] == [30, 70, 50]
    assert summary["warmup_steps_excluded"] == 1
    assert summary["all_tokens_per_s"] == pytest.approx((70 + 50) / (2 + 4))
    assert summary["tokens_per_s"] == pytest.approx((35 + 25) / 6)
    assert summary["samples_per_s"] == pytest.approx(3 / 6)
    assert summary["step_times_s"] == [1.0, 2.0, 4.0]
    assert summary["all_tokens"] == 150


def test_warmup_not_excluded_when_run_is_too_short():
    meter = StepMeter(grad_accum=1, warmup=5)
    meter.on_batch(2, 10, 5)
    meter.step_begin()
    meter.step_end()
    assert meter.summary()["warmup_steps_excluded"] == 0


def test_host_peak_counter_is_labelled():
    meter = MemoryMeter("cpu")
    meter.reset_peak()
    peak = meter.peak()
    assert peak["counter"] == "host_peak_rss"
    assert peak["peak_mib"] > 0
    assert host_memory()["host_rss_mib"] > 0
