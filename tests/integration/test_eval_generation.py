"""Generation benchmarks on a tiny model: seeded batched generation, and a one-cell sweep writing
MT-Bench / AlpacaEval / domain answers for the cell and, once, for its untrained base."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.backends.base import ModelView
from harness.benchmarks.inputs import stratified_sample
from harness.config.model import ModelConfig
from harness.evaluators.generation import generate
from harness.models.tiny import ensure_tiny_model
from tests.conftest import FAST, run_harness

pytestmark = pytest.mark.integration
SETS = Path(__file__).resolve().parents[1] / "fixtures" / "eval_sets"
CONVERSATIONS = [
    [{"role": "user", "content": "hello there"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "a much longer prompt with many more words in it"}],
    [{"role": "user", "content": "x"}],
]


@pytest.fixture(scope="module")
def view(cache_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = ensure_tiny_model(ModelConfig(), cache_dir)
    return ModelView(AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path), "cpu", "tiny")


def test_sampling_is_seeded_batching_keeps_order_and_mode_is_restored(view):
    view.model.train()
    first = generate(view, CONVERSATIONS, 8, 0.7, 2, seed=3)
    assert generate(view, CONVERSATIONS, 8, 0.7, 2, seed=3) == first
    assert view.model.training  # restored after generating in eval mode
    greedy = generate(view, CONVERSATIONS, 8, 0.0, 2, seed=0)
    # left padding must not change a greedy answer: batched equals one prompt at a time, in the caller's order
    assert [generate(view, [c], 8, 0.0, 1, seed=0)[0] for c in CONVERSATIONS] == greedy
    assert all(set(a) == {"text", "tokens", "cut_off"} and 0 <= a["tokens"] <= 8 for a in first + greedy)
    assert all(a["cut_off"] == (a["tokens"] == 8) for a in greedy)  # random weights rarely emit EOS early


def test_one_cell_writes_answers_for_the_cell_and_its_cached_base(tmp_path, harness_env, cache_dir):
    args = [
        "eval=[mt_bench,alpaca_eval,domain]", "eval.mt_bench.limit=2", "eval.mt_bench.max_new_tokens=8",
        f"eval.mt_bench.questions={SETS / 'mt_bench_question.jsonl'}",
        f"eval.alpaca_eval.references={SETS / 'alpaca_eval_references.json'}", "eval.alpaca_eval.limit=3",
        "eval.alpaca_eval.max_new_tokens=8", f"eval.domain.path={SETS / 'domain_qa.jsonl'}", "eval.domain.max_new_tokens=8",
        # no judge here: a closed local port fails every judge call at once (the judge phase is not under test)
        "eval.judge.base_url=http://127.0.0.1:9/v1", "eval.judge.api_key_env=null", "eval.judge.retries=0",
        "eval.judge.timeout_s=2", *FAST,
    ]
    result = run_harness(args, harness_env, tmp_path)
    (cell,) = list((tmp_path / "cells").iterdir())
    results = {p.parent.name.split("-")[0]: json.loads(p.read_text()) for p in cell.glob("evals/*/result.json")}
    assert set(results) == {"mt_bench", "alpaca_eval", "domain"}, result.stderr[-3000:]
    for name, res in results.items():
        assert res["status"] == "ok", (name, res.get("error"))
        answers = [json.loads(line) for line in (cell / "evals" / res["key"] / "answers.jsonl").read_text().splitlines()]
        base = cache_dir / "baselines" / res["baseline"]["key"] / "answers.jsonl"
        assert base.is_file() and len(base.read_text().splitlines()) == len(answers)
        rows = {r["metric"]: r for r in res["rows"]}
        if name == "mt_bench":
            questions = [json.loads(line) for line in (SETS / "mt_bench_question.jsonl").read_text().splitlines()]
            sample = [q["question_id"] for q in stratified_sample(questions, 2)]  # seeded, across categories
            assert [a["question_id"] for a in answers] == sample and len(set(sample)) == 2
            assert all(len(a["turns"]) == len(a["tokens"]) == len(a["cut_off"]) == 2 and a["temperature"] == 0.7 for a in answers)
            assert rows["mt_bench_answer_tokens"]["n"] == 4 and "mt_bench_cut_off_delta" in rows
        elif name == "alpaca_eval":
            assert [a["index"] for a in answers] == [0, 1, 2] and answers[0]["reference_generator"] == "gpt4_turbo"
            assert set(answers[0]) == {"index", "instruction", "output", "tokens", "cut_off", "reference",
                                       "reference_generator", "dataset"}
            assert rows["alpaca_answer_tokens"]["n"] == 3 and "alpaca_cut_off" in rows
        else:
            assert len(answers) == 6 and answers[0]["reference"] == "Paris" and answers[0]["prompt"][-1]["role"] == "user"
            assert {"exact_match", "rouge_l", "bleu", "exact_match_delta"} <= set(rows)
            assert {r["task"] for r in res["rows"]} == {"domain_qa"}
