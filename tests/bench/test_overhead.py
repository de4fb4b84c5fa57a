"""Harness cost on training throughput (target <= 3 %), reported with its spread, never asserted.

    make bench                                               # all benchmarks
    python tests/bench/overhead.py --rounds 15 --steps 40    # this one alone, per-round detail

Two figures (see tests/bench/overhead.py): the harness's own per-step work (collator
counting + trainer callbacks) timed directly by pytest-benchmark, as a fraction of the tiny
model's median optimizer step; and the end-to-end tokens/s ratio against a plain trl
SFTTrainer over 15 interleaved A B / B A rounds, with a bootstrap 95 % interval.
"""

from __future__ import annotations

import pytest

from tests.bench.overhead import _config, measure, median_step_s, per_step_report, per_step_work, time_per_step_work

pytestmark = pytest.mark.slow


def test_per_step_harness_work(benchmark, cache_dir, tmp_path):
    one_step, covers = per_step_work(_config(30, 8, cache_dir), tmp_path)
    parts = covers.pop("parts")
    benchmark(one_step)
    work_s = benchmark.stats.stats.median
    breakdown = {name: time_per_step_work(part, target_s=0.1)["median_s"] * 1e6 for name, part in parts.items()}
    step_s = median_step_s(steps=24, batch=8, cache_dir=cache_dir)
    benchmark.extra_info.update(
        covers, per_step_work_us=work_s * 1e6, breakdown_us=breakdown, median_step_ms=step_s * 1e3,
        fraction_of_step_pct=100 * work_s / step_s,
    )
    print("\n" + per_step_report(work_s, step_s), "; µs by part:", {k: round(v, 2) for k, v in breakdown.items()})


def test_harness_vs_plain_trl_tokens_per_s(benchmark, cache_dir):
    out = benchmark.pedantic(lambda: measure(steps=20, rounds=15, cache_dir=cache_dir), rounds=1, iterations=1)
    benchmark.extra_info.update({k: v for k, v in out.items() if k not in ("definition", "bootstrap")})
    (low, high), ratio = out["ratio_ci95"], out["tokens_per_s_ratio"]
    print(f"\ntokens/s ratio harness/plain, median of {out['rounds']} ABBA rounds: {ratio:.4f} "
          f"(95 % CI {low:.4f}-{high:.4f}; overhead {100 * (1 - ratio):+.2f} %, target <= 3 %); "
          f"rounds {[round(r, 4) for r in out['ratios']]}")
