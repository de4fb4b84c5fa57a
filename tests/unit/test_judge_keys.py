"""Judge result keys: what changes a score re-judges, what only changes how it is obtained does not;
and the summary columns the judged rows become."""

from __future__ import annotations

import pytest

from harness.judge.keys import judge_key, judge_keys, judge_settings
from harness.judge.run import public_url
from harness.report.quality import console_hidden, judge_cells, quality_cells
from harness.store.records import metric_row

pytestmark = pytest.mark.unit

JUDGE = {"base_url": "http://127.0.0.1:1/v1", "model": "gpt-4", "api_key_env": "K", "concurrency": 8, "repeats": 1,
         "max_usd": None, "timeout_s": 120.0, "retries": 4, "prices": None, "null_control": False, "max_tokens": 2048}


def test_only_score_settings_and_judge_files_change_the_key(tmp_path) -> None:
    key = judge_key("mt_bench", "mt_bench-abc", {}, JUDGE)
    assert key.startswith("mt_bench-abc/judge-")
    for same in ({"base_url": "https://elsewhere/v1"}, {"api_key_env": "OTHER"}, {"concurrency": 64},
                 {"timeout_s": 5.0}, {"retries": 0}, {"max_usd": 3.0}):
        assert judge_key("mt_bench", "mt_bench-abc", {}, {**JUDGE, **same}) == key, same
    for other in ({"model": "gpt-4o"}, {"repeats": 3}, {"null_control": True}, {"max_tokens": 16}):
        assert judge_key("mt_bench", "mt_bench-abc", {}, {**JUDGE, **other}) != key, other
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"name": "single-v1"}\n')
    edited = judge_key("mt_bench", "mt_bench-abc", {"judge_prompts": str(prompts)}, JUDGE)
    assert edited != key
    prompts.write_text('{"name": "single-v1", "x": 1}\n')
    assert judge_key("mt_bench", "mt_bench-abc", {"judge_prompts": str(prompts)}, JUDGE) != edited


def test_keys_and_settings_only_for_judged_benchmarks() -> None:
    config = {"eval": {"perplexity": {}, "mt_bench": {}, "judge": JUDGE}, "run": {"cache_dir": "/c"}}
    assert set(judge_keys(config, {"perplexity": "p-1", "mt_bench": "m-1"})) == {"mt_bench"}
    assert judge_settings(config) == {"judge": JUDGE, "cache_dir": "/c"}
    assert judge_settings({"eval": {"perplexity": {}, "judge": JUDGE}}) is None


def test_public_url_drops_credentials() -> None:
    assert public_url("https://user:s3cret@host.example:8443/v1?token=x") == "https://host.example:8443/v1"
    assert public_url(None) is None


def _row(evaluator: str, task: str, metric: str, value: float, stderr: float = None) -> dict:
    return metric_row(evaluator, task, metric, value, stderr=stderr, higher_is_better=True)


def test_judge_rows_become_prefixed_columns_and_the_console_keeps_headlines() -> None:
    record = {"metrics": [
        _row("mt_bench", "mt_bench", "mt_bench", 6.5, 0.4), _row("mt_bench", "writing", "mt_bench", 7.0),
        _row("mt_bench", "mt_bench", "judged", 8), _row("mt_bench", "mt_bench", "mt_bench_answer_tokens_delta", 3.0),
        _row("alpaca_eval", "alpaca_eval", "alpaca_wr", 52.0, 9.4), _row("alpaca_eval", "alpaca_eval", "fallback", 0),
        _row("domain", "qa", "rouge_l", 0.25, 0.05), _row("domain", "qa", "rouge_l_base", 0.2)]}
    cells = quality_cells(record)
    assert cells["mt_bench"] == 6.5 and cells["mt_bench_se"] == 0.4 and cells["mt_bench_writing"] == 7.0
    assert cells["mt_bench_judged"] == 8 and cells["alpaca_wr"] == 52.0 and cells["alpaca_fallback"] == 0
    assert cells["qa_rouge_l"] == 0.25 and "qa_rouge_l_base" not in cells
    assert "mt_bench_answer_tokens_delta" not in judge_cells(record)
    assert not console_hidden("mt_bench") and not console_hidden("alpaca_wr_se") and not console_hidden("qa_rouge_l")
    assert console_hidden("mt_bench_judged") and console_hidden("mt_bench_writing") and console_hidden("alpaca_fallback")
