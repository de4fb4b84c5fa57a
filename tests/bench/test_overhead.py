"""Harness cost on tokens/s against a plain trl SFTTrainer (target <= 3 %), reported, never asserted.

    make bench                                   # all benchmarks
    python tests/bench/overhead.py --rounds 7    # this one alone, with its per-round ratios
"""

from __future__ import annotations

import pytest

from tests.bench.overhead import measure

pytestmark = pytest.mark.slow


def test_harness_vs_plain_trl_tokens_per_s(benchmark, cache_dir):
    out = benchmark.pedantic(lambda: measure(steps=30, rounds=3, cache_dir=cache_dir), rounds=1, iterations=1)
    benchmark.extra_info.update({k: v for k, v in out.items() if k != "definition"})
    print(f"\ntokens/s ratio harness/plain: {out['tokens_per_s_ratio']:.4f} "
          f"(overhead {100 * (1 - out['tokens_per_s_ratio']):+.2f} %; target <= 3 %); rounds {out['ratios']}")
