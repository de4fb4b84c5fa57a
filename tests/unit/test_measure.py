"""Step metering: FIFO attribution of micro-batches, warm-up exclusion, memory readers."""

from __future__ import annotations

import pytest

from harness.measure.meters import MemoryMeter, StepMeter, host_memory

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


def _metered(times, loss_tokens, warmup=0, cv_warn=0.25):
    """A StepMeter that ran one micro-batch per step with the given step times and loss tokens."""
    meter = StepMeter(grad_accum=1, warmup=warmup, cv_warn=cv_warn)
    clock = iter([t for step in times for t in (0.0, step)])
    meter._now = lambda: next(clock)  # type: ignore[method-assign]
    for tokens in loss_tokens:
        meter.on_batch(1, tokens, tokens)
        meter.step_begin()
        meter.step_end()
    return meter.summary()


def test_spread_quartiles_and_cv_of_measured_steps():
    # warm-up step (10 s) excluded; then 8 steps of 100 loss tokens taking 1..8 s
    times = [10.0] + [float(t) for t in range(1, 9)]
    summary = _metered(times, [100] * 9, warmup=1)
    rates = sorted(100 / t for t in range(1, 9))  # 12.5 ... 100
    # inclusive (linear-interpolation) quartiles, as numpy.percentile's default
    assert summary["tokens_per_s_p50"] == pytest.approx((rates[3] + rates[4]) / 2)
    assert summary["tokens_per_s_p25"] == pytest.approx(rates[1] + 0.75 * (rates[2] - rates[1]))
    assert summary["tokens_per_s_p75"] == pytest.approx(rates[5] + 0.25 * (rates[6] - rates[5]))
    assert summary["tokens_per_s_p25"] <= summary["tokens_per_s_p50"] <= summary["tokens_per_s_p75"]
    # the headline figure stays total tokens / total time, not a mean of per-step rates
    assert summary["tokens_per_s"] == pytest.approx(800 / 36)
    mean = 4.5
    stdev = (sum((t - mean) ** 2 for t in range(1, 9)) / 7) ** 0.5
    assert summary["step_cv"] == pytest.approx(stdev / mean)
    assert summary["step_cv_flag"] is True  # 0.54 > 0.25
    assert summary["spread_note"] is None
    assert summary["step_cv_warn"] == 0.25


def test_steady_steps_are_not_flagged():
    summary = _metered([1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 1.0, 1.0], [50] * 8)
    assert summary["step_cv"] == pytest.approx(0.0598, abs=1e-3)
    assert summary["step_cv_flag"] is False
    assert summary["tokens_per_s_p50"] == pytest.approx(50.0)


def test_flag_follows_the_threshold():
    times = [1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 1.0, 1.0]
    assert _metered(times, [50] * 8, cv_warn=0.05)["step_cv_flag"] is True
    assert _metered(times, [50] * 8, cv_warn=None)["step_cv_flag"] is None


def test_spread_is_na_with_fewer_than_eight_measured_steps():
    summary = _metered([1.0] * 9, [10] * 9, warmup=2)  # 7 measured steps
    assert summary["measured_steps"] == 7
    for key in ("tokens_per_s_p25", "tokens_per_s_p50", "tokens_per_s_p75", "step_cv", "step_cv_flag"):
        assert summary[key] is None, key
    assert "7 measured steps" in summary["spread_note"] and ">= 8" in summary["spread_note"]
    assert summary["tokens_per_s"] == pytest.approx(10.0)  # the headline is still given


def test_new_fields_are_defined():
    from harness.measure.meters import DEFINITIONS

    for key in ("tokens_per_s_p25", "tokens_per_s_p50", "tokens_per_s_p75", "step_cv", "step_cv_flag", "spread_note"):
        assert key in DEFINITIONS and DEFINITIONS[key]


def test_step_cv_warn_must_be_positive():
    from harness.config.run import RunConfig
    from harness.errors import ConfigError

    assert RunConfig().step_cv_warn == 0.25
    with pytest.raises(ConfigError, match="run.step_cv_warn"):
        RunConfig(step_cv_warn=0)
