"""The judge client against a scripted local OpenAI-compatible server (tests/judge_server.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import pytest

from harness.errors import ConfigError
from harness.judge import cache as judge_cache
from harness.judge.calls import Request
from harness.judge.client import JudgeClient
from harness.judge.prices import SHIPPED_PRICES, check_judge_settings, cost, load_prices, price_for
from tests.judge_server import JudgeServer

pytestmark = pytest.mark.unit


@pytest.fixture
def server():
    with JudgeServer() as running:
        yield running


def settings(server: JudgeServer, **overrides: Any) -> Dict[str, Any]:
    block = {"base_url": server.url, "model": "test-judge", "api_key_env": None, "concurrency": 4, "repeats": 1,
             "max_usd": None, "timeout_s": 5.0, "retries": 0, "prices": None, "null_control": False,
             "max_tokens": 64}
    block.update(overrides)
    return block


def requests(n: int, **fields: Any) -> List[Request]:
    return [Request(messages=[{"role": "user", "content": f"question {i}"}], max_tokens=32, tag={"i": i}, **fields)
            for i in range(n)]


def run(block: Dict[str, Any], cache_dir: Path, reqs: List[Request]):
    with JudgeClient(block, cache_dir) as client:
        return client.run(reqs), client.stats


def test_text_and_logprobs_are_parsed(server, tmp_path):
    server.logprobs = lambda body: [("1", -0.1), ("2", -2.5)]
    outcomes, stats = run(settings(server), tmp_path, requests(2, logprobs=True, top_logprobs=2))
    assert [o.text for o in outcomes] == ["Rating: [[7]]"] * 2
    assert outcomes[0].ok and not outcomes[0].cached and outcomes[0].error is None
    assert outcomes[0].top_logprobs == [{"token": "1", "logprob": -0.1}, {"token": "2", "logprob": -2.5}]
    assert server.calls[0]["logprobs"] is True and server.calls[0]["top_logprobs"] == 2
    assert server.calls[0]["max_tokens"] == 32 and server.calls[0]["temperature"] == 0.0
    assert stats["calls"] == 2 and stats["failed"] == 0


def test_no_logprobs_from_server_gives_none_and_not_asked_unless_requested(server, tmp_path):
    outcomes, _ = run(settings(server), tmp_path, requests(1, logprobs=True, top_logprobs=5))  # server ignores them
    assert outcomes[0].ok and outcomes[0].top_logprobs is None
    server.logprobs = lambda body: [("A", -0.5)]
    outcomes, _ = run(settings(server), tmp_path / "other", requests(1))
    assert outcomes[0].top_logprobs is None and "logprobs" not in server.calls[-1]


def test_cache_hit_makes_no_call(server, tmp_path):
    reqs = requests(3)
    first, _ = run(settings(server), tmp_path, reqs)
    second, stats = run(settings(server), tmp_path, reqs)
    assert len(server.calls) == 3
    assert stats["calls"] == 0 and stats["cached"] == 3 and stats["usd"] == 0
    assert all(o.cached and o.ok and o.usd == 0 for o in second)
    assert [o.text for o in second] == [o.text for o in first]
    assert len(list((tmp_path / "judge").rglob("*.json"))) == 3


def test_tag_is_not_part_of_the_key_but_repeat_is(server, tmp_path):
    base = requests(1)[0]
    same = Request(messages=base.messages, max_tokens=base.max_tokens, tag={"other": True})
    assert judge_cache.key(base, "m") == judge_cache.key(same, "m")
    assert judge_cache.key(base, "m") != judge_cache.key(base, "n")
    again = Request(messages=base.messages, max_tokens=base.max_tokens, repeat=1)
    _, stats = run(settings(server), tmp_path, [base, again])
    assert stats["calls"] == 2 and len(list((tmp_path / "judge").rglob("*.json"))) == 2
    _, stats = run(settings(server), tmp_path, [base, again])
    assert stats["calls"] == 0 and stats["cached"] == 2


def test_failed_calls_are_not_cached_and_rerun_alone(server, tmp_path):
    server.fail = lambda body, n: 500 if body["messages"][0]["content"] in ("question 3", "question 5") else None
    outcomes, stats = run(settings(server), tmp_path, requests(10))
    assert [i for i, o in enumerate(outcomes) if not o.ok] == [3, 5]
    assert stats["failed"] == 2 and stats["calls"] == 10
    assert len(list((tmp_path / "judge").rglob("*.json"))) == 8
    server.fail = None
    outcomes, stats = run(settings(server), tmp_path, requests(10))
    assert all(o.ok for o in outcomes) and stats["calls"] == 2 and stats["cached"] == 8
    assert sorted(c["messages"][0]["content"] for c in server.calls[10:]) == ["question 3", "question 5"]


def test_429_is_retried(server, tmp_path):
    server.fail = lambda body, n: 429 if n == 1 else None
    outcomes, stats = run(settings(server, retries=2), tmp_path, requests(1))
    assert outcomes[0].ok and len(server.calls) == 2
    assert stats["retries"] == 1 and stats["calls"] == 1 and stats["failed"] == 0


def test_500_without_retries_is_a_one_line_error(server, tmp_path):
    server.fail = lambda body, n: 500
    server.error_message = "internal\nserver  error"
    outcomes, stats = run(settings(server, retries=0), tmp_path, requests(1))
    error = outcomes[0].error
    assert not outcomes[0].ok and outcomes[0].text is None and "\n" not in error
    assert error.startswith("HTTP 500 InternalServerError") and "internal server error" in error
    assert len(server.calls) == 1 and stats["failed"] == 1
    assert not (tmp_path / "judge").exists()


def test_slow_server_times_out(server, tmp_path):
    server.delay_s = 1.0
    outcomes, stats = run(settings(server, timeout_s=0.2, retries=0), tmp_path, requests(1))
    assert not outcomes[0].ok and "Timeout" in outcomes[0].error and stats["failed"] == 1


def test_no_choices_fails_and_is_asked_again(server, tmp_path):
    server.no_choices = True
    outcomes, _ = run(settings(server), tmp_path, requests(1))
    assert not outcomes[0].ok and outcomes[0].error.startswith("empty response")
    assert not (tmp_path / "judge").exists()


@pytest.mark.parametrize("content", [None, "", "  \n"])
def test_an_empty_reply_is_retried_and_never_cached(server, tmp_path, content):
    server.verdict = lambda body: content
    outcomes, stats = run(settings(server, retries=2), tmp_path, requests(1))
    assert not outcomes[0].ok and outcomes[0].error.startswith("empty reply") and stats["failed"] == 1
    assert len(server.calls) == 3 and not (tmp_path / "judge").exists()
    # a passing fault: the next attempt answers, and that answer is the one cached
    server.verdict = lambda body: content if len(server.calls) < 5 else "Rating: [[7]]"
    outcomes, stats = run(settings(server, retries=2), tmp_path, requests(1))
    assert outcomes[0].ok and outcomes[0].text == "Rating: [[7]]" and len(server.calls) == 5
    again, stats = run(settings(server), tmp_path, requests(1))
    assert again[0].cached and stats["calls"] == 0


def test_an_empty_reply_in_an_old_cache_is_asked_again(server, tmp_path):
    request = requests(1)[0]
    judge_cache.JudgeCache(tmp_path).put(judge_cache.key(request, "test-judge"), text="", top_logprobs=None,
                                         prompt_tokens=1, completion_tokens=0, model="test-judge")
    outcomes, stats = run(settings(server), tmp_path, [request])
    assert outcomes[0].ok and outcomes[0].text == "Rating: [[7]]" and stats["calls"] == 1


class TruncatingServer(JudgeServer):
    """Replies cut off at max_tokens (finish_reason "length")."""

    def _completion(self, body, number):
        out = super()._completion(body, number)
        out["choices"][0]["finish_reason"] = "length"
        return out


def test_a_reply_truncated_before_its_verdict_is_retried_not_cached(tmp_path):
    with TruncatingServer() as server:
        server.verdict = lambda body: "The answer is long and thorough, and"
        outcomes, stats = run(settings(server, retries=1), tmp_path, requests(1, verdict=r"\[\[\d+\]\]"))
        assert not outcomes[0].ok and outcomes[0].error.startswith("truncated reply") and len(server.calls) == 2
        assert not (tmp_path / "judge").exists()
        server.verdict = lambda body: "Fine. Rating: [[6]] and more"  # cut off after the verdict: counts
        outcomes, _ = run(settings(server), tmp_path, requests(1, verdict=r"\[\[\d+\]\]"))
        assert outcomes[0].ok
        server.verdict = lambda body: "M"  # no verdict pattern asked (AlpacaEval's one token): counts
        outcomes, _ = run(settings(server), tmp_path, requests(2)[1:])
        assert outcomes[0].ok


def test_cost_from_usage_and_the_price_table(server, tmp_path):
    outcomes, stats = run(settings(server, model="gpt-4"), tmp_path, requests(3))
    for outcome in outcomes:
        assert outcome.prompt_tokens > 0 and outcome.completion_tokens == len("Rating: [[7]]") // 4 + 1
        assert outcome.usd == pytest.approx((outcome.prompt_tokens * 30 + outcome.completion_tokens * 60) / 1e6)
    assert stats["usd"] == pytest.approx(sum(o.usd for o in outcomes))
    assert stats["prompt_tokens"] == sum(o.prompt_tokens for o in outcomes)
    prices = tmp_path / "prices.yaml"
    prices.write_text("test-judge: {input_per_mtok: 1000000, output_per_mtok: 2000000}\n")
    outcomes, _ = run(settings(server, prices=str(prices)), tmp_path / "c2", requests(1))
    assert outcomes[0].usd == pytest.approx(outcomes[0].prompt_tokens + 2 * outcomes[0].completion_tokens)
    outcomes, _ = run(settings(server), tmp_path / "c3", requests(1))  # unpriced: a local server costs 0
    assert outcomes[0].usd == 0


@pytest.mark.parametrize("concurrency", [1, 8])
def test_max_usd_stops_calls_before_exceeding(server, tmp_path, concurrency):
    cap = 0.01
    block = settings(server, model="gpt-4", max_usd=cap, concurrency=concurrency)
    outcomes, stats = run(block, tmp_path, requests(40))
    refused = [o for o in outcomes if not o.ok]
    assert stats["usd"] <= cap and stats["calls"] == len(server.calls) == 40 - len(refused)
    assert stats["calls"] > 0 and refused
    assert all(o.error.startswith("budget: eval.judge.max_usd=0.01 reached (spent $") for o in refused)


def test_unpriced_model_with_max_usd_is_a_config_error(server, tmp_path):
    with pytest.raises(ConfigError, match=r"eval.judge.max_usd=5: the judge model test-judge has no price in .*prices.yaml"):
        JudgeClient(settings(server, max_usd=5.0), tmp_path)


def test_api_key_is_a_bearer_header_and_stored_nowhere(server, tmp_path, monkeypatch):
    secret = "sk-test-s3cr3t-value"
    monkeypatch.setenv("JUDGE_TEST_KEY", secret)
    block = settings(server, api_key_env="JUDGE_TEST_KEY")
    outcomes, _ = run(block, tmp_path, requests(2))
    assert all(o.ok for o in outcomes) and server.auth_headers == [f"Bearer {secret}"] * 2
    files = list(tmp_path.rglob("*"))
    assert files and not any(secret in f.read_text() for f in files if f.is_file())
    server.fail = lambda body, n: 401
    server.error_message = f"bad key {secret}"  # a server echoing the key back must not leak it
    outcomes, _ = run(block, tmp_path / "other", requests(1))
    assert not outcomes[0].ok and secret not in outcomes[0].error and "***" in outcomes[0].error
    assert secret not in repr(outcomes[0])


def test_missing_key_variable_names_it(server, tmp_path, monkeypatch):
    monkeypatch.delenv("JUDGE_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="^eval.judge.api_key_env=JUDGE_TEST_KEY: the environment variable "
                                          "JUDGE_TEST_KEY is not set$"):
        JudgeClient(settings(server, api_key_env="JUDGE_TEST_KEY"), tmp_path)


def test_requests_run_concurrently_and_in_order(server, tmp_path):
    server.delay_s = 0.2
    server.verdict = lambda body: body["messages"][0]["content"]
    outcomes, stats = run(settings(server, concurrency=16), tmp_path, requests(16))
    assert [o.text for o in outcomes] == [f"question {i}" for i in range(16)]
    assert server.max_in_flight > 1 and stats["calls"] == 16


def test_cache_ignores_unreadable_entries(tmp_path):
    cache = judge_cache.JudgeCache(tmp_path)
    key = judge_cache.key(requests(1)[0], "m")
    assert cache.get(key) is None
    cache.put(key, text="x", top_logprobs=None, prompt_tokens=1, completion_tokens=2, model="m")
    assert cache.get(key)["text"] == "x" and cache.path(key).parent.name == key[:2]
    cache.path(key).write_text("{not json")
    assert cache.get(key) is None


def test_shipped_prices_and_bad_tables(tmp_path):
    prices = load_prices(None)
    assert price_for("gpt-4", prices) == (30.0, 60.0) and price_for("gpt-4o-mini", prices) == (0.15, 0.6)
    assert price_for("my-local-model", prices) is None
    assert cost("gpt-4o", 1_000_000, 1_000_000, prices) == pytest.approx(12.5)
    assert SHIPPED_PRICES.exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("gpt-4: {input_per_mtok: 1\n")
    with pytest.raises(ConfigError, match=rf"^eval.judge.prices={bad}:\d+: not valid YAML"):
        load_prices(str(bad))
    bad.write_text("gpt-4: {input_per_mtok: 1}\n")
    with pytest.raises(ConfigError, match="model gpt-4 needs both input_per_mtok and output_per_mtok"):
        load_prices(str(bad))
    with pytest.raises(ConfigError, match="eval.judge.prices=.*missing.yaml: cannot read"):
        load_prices(str(tmp_path / "missing.yaml"))


@pytest.mark.parametrize("field,value,message", [
    ("concurrency", 0, "eval.judge.concurrency=0: must be at least 1"),
    ("repeats", 0, "eval.judge.repeats=0: must be at least 1"),
    ("timeout_s", 0, "eval.judge.timeout_s=0: must be > 0"),
    ("retries", -1, "eval.judge.retries=-1: must be >= 0"),
    ("max_usd", 0, "eval.judge.max_usd=0: must be > 0"),
])
def test_check_judge_settings_rejects_bad_numbers(field, value, message):
    block = {"model": "gpt-4", "api_key_env": None, "concurrency": 8, "repeats": 1, "timeout_s": 120.0,
             "retries": 4, "max_usd": None, "prices": None, field: value}
    with pytest.raises(ConfigError, match=f"^{message}$"):
        check_judge_settings(block)


def test_check_judge_settings_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys; from harness.judge.prices import check_judge_settings; "
            "check_judge_settings({'model': 'gpt-4', 'max_usd': 1.0, 'api_key_env': None}); "
            "print(json.dumps(sorted(m for m in ('openai', 'torch', 'transformers', 'httpx') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert json.loads(out.stdout) == []
