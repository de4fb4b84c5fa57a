"""Judge client throughput against a local scripted server (pytest-benchmark; ``make bench``).

160 requests, each answered after 0.2 s, at eval.judge.concurrency=16: the uncached run is
bounded below by 160 / 16 * 0.2 s = 2 s of server time, so the figure shows the client's
overhead on top; the same 160 again come from the on-disk cache with no call. Reported
(extra_info: requests per second, overhead over the ideal), never asserted.
"""

from __future__ import annotations

import itertools

import pytest

from harness.judge.calls import Request
from harness.judge.client import JudgeClient
from tests.judge_server import JudgeServer

pytestmark = pytest.mark.slow

REQUESTS = 160
CONCURRENCY = 16
DELAY_S = 0.2


@pytest.fixture(scope="module")
def server():
    pytest.importorskip("openai")  # imported here so the first timed round does not pay for it
    with JudgeServer() as running:
        running.delay_s = DELAY_S
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

    def fresh_cache():
        return (server, tmp_path / f"round{next(rounds)}"), {}

    def judged(*args):
        results.append(_judge(*args))

    benchmark.pedantic(judged, setup=fresh_cache, rounds=3, iterations=1)
    for outcomes, stats in results:
        assert all(o.ok and not o.cached for o in outcomes) and stats["calls"] == REQUESTS
    ideal_s = REQUESTS / CONCURRENCY * DELAY_S
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(requests=REQUESTS, concurrency=CONCURRENCY, server_delay_s=DELAY_S,
                                ideal_s=ideal_s, requests_per_s=REQUESTS / median,
                                overhead_over_ideal_pct=100 * (median - ideal_s) / ideal_s,
                                server_max_in_flight=server.max_in_flight)
    print(f"\n{REQUESTS} uncached judge calls: median {median:.2f} s (ideal {ideal_s:.2f} s), "
          f"{REQUESTS / median:.0f} requests/s, server saw up to {server.max_in_flight} at once")


def test_judge_160_cached(benchmark, server, tmp_path):
    _judge(server, tmp_path)  # fill the cache once
    before = len(server.calls)
    outcomes, stats = benchmark.pedantic(_judge, args=(server, tmp_path), rounds=5, iterations=1)
    assert all(o.ok and o.cached for o in outcomes) and stats["cached"] == REQUESTS and stats["calls"] == 0
    assert len(server.calls) == before
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(requests=REQUESTS, requests_per_s=REQUESTS / median)
    print(f"\n{REQUESTS} cached judge answers: median {median * 1e3:.1f} ms, {REQUESTS / median:.0f} requests/s")
