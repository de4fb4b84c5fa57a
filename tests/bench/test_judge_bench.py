"""Judge client throughput against a local scripted server (pytest-benchmark; ``make bench``).

160 requests, each answered after 0.2 s, at eval.judge.concurrency=16: the uncached run is
bounded below by 160 / 16 * 0.2 s = 2 s of server time, so the figure shows the client's
overhead on top; the same 160 again come from the on-disk cache with no call. Reported
(extra_info: achieved and ideal calls per second, their ratio ideal_s / measured_s per round
and at the median, time from the client's construction to the server's first arrival, and
the process's one-time import warm-up, paid once in the fixture), never asserted.
"""

from __future__ import annotations

import itertools
import time

import pytest

from harness.judge.calls import Request
from harness.judge.client import JudgeClient, warm
from tests.judge_server import JudgeServer

pytestmark = pytest.mark.slow

REQUESTS = 160
CONCURRENCY = 16
DELAY_S = 0.2


@pytest.fixture(scope="module")
def server():
    pytest.importorskip("openai")
    # Once per process (httpcore/trio, openai's chat types): reported as warmup_s, not charged to a round.
    warmup_s = warm()
    with JudgeServer() as running:
        running.delay_s = DELAY_S
        running.warmup_s = warmup_s
        yield running


def _settings(server: JudgeServer) -> dict:
    return {"base_url": server.url, "model": "test-judge", "api_key_env": None, "concurrency": CONCURRENCY,
            "repeats": 1, "max_usd": None, "timeout_s": 30.0, "retries": 0, "prices": None, "max_tokens": 64}


def _requests() -> list:
    return [Request(messages=[{"role": "user", "content": f"judge answer {i}"}], max_tokens=64, tag={"i": i})
            for i in range(REQUESTS)]


def _judge(server: JudgeServer, cache_dir) -> tuple:
    with JudgeClient(_settings(server), cache_dir) as client:
        return client.run(_requests()), client.stats


def test_judge_160_uncached(benchmark, server, tmp_path):
    rounds = itertools.count()
    results = []
    ideal_s = REQUESTS / CONCURRENCY * DELAY_S

    def fresh_cache():
        return (server, tmp_path / f"round{next(rounds)}"), {}

    def judged(*args):
        first = len(server.arrived_at)
        started = time.perf_counter()
        outcome = _judge(*args)
        measured = time.perf_counter() - started
        results.append((*outcome, measured, server.arrived_at[first] - started))

    benchmark.pedantic(judged, setup=fresh_cache, rounds=5, iterations=1)
    for outcomes, stats, _, _ in results:
        assert all(o.ok and not o.cached for o in outcomes) and stats["calls"] == REQUESTS
    median = benchmark.stats.stats.median
    ratios = [round(ideal_s / measured, 3) for _, _, measured, _ in results]
    first_call = [round(first, 4) for _, _, _, first in results]
    benchmark.extra_info.update(requests=REQUESTS, concurrency=CONCURRENCY, server_delay_s=DELAY_S,
                                ideal_s=ideal_s, ideal_calls_per_s=REQUESTS / ideal_s,
                                calls_per_s=REQUESTS / median, ratio=ideal_s / median, ratio_per_round=ratios,
                                first_call_s_per_round=first_call, warmup_s=server.warmup_s,
                                overhead_over_ideal_pct=100 * (median - ideal_s) / ideal_s,
                                server_max_in_flight=server.max_in_flight)
    print(f"\n{REQUESTS} uncached judge calls: median {median:.2f} s (ideal {ideal_s:.2f} s), "
          f"{REQUESTS / median:.0f} of {REQUESTS / ideal_s:.0f} calls/s (ratio {ideal_s / median:.2f}; rounds {ratios}), "
          f"first call after {first_call} s, one-time warm-up {server.warmup_s:.2f} s, "
          f"server saw up to {server.max_in_flight} at once")


def test_judge_160_cached(benchmark, server, tmp_path):
    _judge(server, tmp_path)  # fill the cache once
    before = len(server.calls)
    outcomes, stats = benchmark.pedantic(_judge, args=(server, tmp_path), rounds=5, iterations=1)
    assert all(o.ok and o.cached for o in outcomes) and stats["cached"] == REQUESTS and stats["calls"] == 0
    assert len(server.calls) == before
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(requests=REQUESTS, requests_per_s=REQUESTS / median)
    print(f"\n{REQUESTS} cached judge answers: median {median * 1e3:.1f} ms, {REQUESTS / median:.0f} requests/s")
