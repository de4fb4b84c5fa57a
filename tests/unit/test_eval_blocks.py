"""Generation benchmark blocks: one-line validation, parent-side file checks, and what keys a generation result."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.benchmarks.checks import alpaca_items
from harness.config.generation import AlpacaEvalConfig, DomainEvalConfig, JudgeConfig, MtBenchEvalConfig
from harness.errors import ConfigError
from harness.evaluators.domain import normalise, scores
from harness.evaluators.generation import _answer
from harness.evaluators.mt_bench import _conversation, temperature
from harness.store.identity import eval_keys
from tests.unit.test_eval_config import _validate

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
SETS = REPO / "tests" / "fixtures" / "eval_sets"
REFERENCES = SETS / "alpaca_eval_references.json"
DOMAIN = SETS / "domain_qa.jsonl"
QUESTIONS = SETS / "mt_bench_question.jsonl"


@pytest.mark.parametrize(
    "build,needle",
    [
        (lambda: MtBenchEvalConfig(limit=0), "eval.mt_bench.limit=0: must be > 0 (or null)"),
        (lambda: MtBenchEvalConfig(max_new_tokens=0), "eval.mt_bench.max_new_tokens=0: must be > 0"),
        (lambda: AlpacaEvalConfig(batch_size=0), "eval.alpaca_eval.batch_size=0: must be > 0"),
        (lambda: DomainEvalConfig(path=""), "eval.domain.path=: is required"),
        (lambda: DomainEvalConfig(path="/no/such/file.jsonl"), "eval.domain.path=/no/such/file.jsonl: no such file or folder"),
        (lambda: JudgeConfig(concurrency=0), "eval.judge.concurrency=0: must be >= 1"),
        (lambda: JudgeConfig(repeats=0), "eval.judge.repeats=0: must be >= 1"),
        (lambda: JudgeConfig(timeout_s=0), "eval.judge.timeout_s=0: must be > 0"),
        (lambda: JudgeConfig(retries=-1), "eval.judge.retries=-1: must be >= 0"),
        (lambda: JudgeConfig(max_usd=0.0), "eval.judge.max_usd=0.0: must be > 0 (or null)"),
        (lambda: JudgeConfig(base_url="localhost:8000"), "eval.judge.base_url=localhost:8000: must start with http://"),
        (lambda: JudgeConfig(api_key_env="MY KEY"), "eval.judge.api_key_env=MY KEY: must be an environment variable name"),
        (lambda: JudgeConfig(prices="/no/prices.yaml"), "eval.judge.prices=/no/prices.yaml: no such file"),
    ],
)
def test_bad_values_fail_in_one_line_naming_the_key(build, needle):
    with pytest.raises(ConfigError) as info:
        build()
    assert str(info.value).startswith(needle) and "\n" not in str(info.value)


def test_an_api_key_in_place_of_its_variable_name_is_refused_without_echoing_it():
    secret = "sk-proj-" + "a1B2" * 12
    with pytest.raises(ConfigError) as info:
        JudgeConfig(api_key_env=secret)
    assert "put the key in the environment" in str(info.value) and secret not in str(info.value)
    assert JudgeConfig(api_key_env=None).api_key_env is None  # a local server without a key
    assert JudgeConfig(base_url="http://127.0.0.1:8000/v1", api_key_env="VLLM_KEY").base_url.startswith("http://")


def test_enabled_lists_evaluators_in_a_stable_order_and_judge_is_always_there(tmp_path):
    typed, plain = _validate(["eval=[domain,alpaca_eval,mt_bench,perplexity]", f"eval.domain.path={DOMAIN}",
                              f"eval.alpaca_eval.references={REFERENCES}", f"run.cache_dir={tmp_path}",
                              "eval.judge.api_key_env=null"])
    assert typed.eval.enabled() == ["perplexity", "mt_bench", "alpaca_eval", "domain"]
    assert plain["eval"]["judge"]["model"] == "gpt-4" and typed.eval.mt_bench.max_new_tokens == 1024
    assert typed.eval.alpaca_eval.max_new_tokens == 2048 and typed.eval.domain.max_new_tokens == 256
    assert _validate(["eval=[perplexity]"])[0].eval.judge.concurrency == 8


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["eval=[domain]"], "eval.domain.path"),  # path: ??? in conf/eval/domain.yaml
        (["eval=[mt_bench]", "eval.mt_bench.questions=/no/q.jsonl"], "eval.mt_bench.questions=/no/q.jsonl: no such file"),
        (["eval=[mt_bench]", f"eval.mt_bench.judge_prompts={QUESTIONS}"], "line 1 needs name and prompt_template"),
        (["eval=[alpaca_eval]", f"eval.alpaca_eval.references={QUESTIONS}"], "item 1 needs string instruction and output"),
        (["eval=[alpaca_eval]", "eval.alpaca_eval.difficulty=/no/d.csv"], "eval.alpaca_eval.difficulty=/no/d.csv: no such file"),
        (["eval=[domain]", f"eval.domain.path={QUESTIONS}"], f"eval.domain.path={QUESTIONS}:"),
    ],
)
def test_parent_side_file_checks_fail_in_one_line(overrides, needle, tmp_path):
    with pytest.raises(ConfigError) as info:
        _validate([*overrides, f"run.cache_dir={tmp_path}"])
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_difficulty_csv_needs_its_columns_and_instructions_must_match_the_references(tmp_path):
    bad = tmp_path / "difficulty.csv"
    bad.write_text("index,difficulty\n0,1.5\n")
    refs = f"eval.alpaca_eval.references={REFERENCES}"
    with pytest.raises(ConfigError, match=r"^eval.alpaca_eval.difficulty=.*lacks column\(s\) instruction_difficulty$"):
        _validate(["eval=[alpaca_eval]", refs, f"eval.alpaca_eval.difficulty={bad}"])
    rows = json.loads(REFERENCES.read_text())
    mine = tmp_path / "instructions.jsonl"
    mine.write_text("".join(json.dumps({"instruction": r["instruction"]}) + "\n" for r in (rows[3], rows[1])))
    items = alpaca_items(AlpacaEvalConfig(references=str(REFERENCES), instructions=str(mine)))
    assert [i["index"] for i in items] == [3, 1] and items[0]["output"] == rows[3]["output"]
    mine.write_text(json.dumps({"instruction": "not in the reference set"}) + "\n")
    with pytest.raises(ConfigError, match=r"^eval.alpaca_eval.instructions=.*item 1 has no reference"):
        _validate(["eval=[alpaca_eval]", refs, f"eval.alpaca_eval.instructions={mine}"])


def _keys(eval_block):
    return eval_keys({"eval": {"baseline": True, "judge": {"model": "gpt-4"}, **eval_block}})


def test_judge_settings_do_not_change_the_generation_key_but_inputs_do(tmp_path):
    mt = {"questions": None, "references": None, "judge_prompts": None, "limit": 2, "max_new_tokens": 8, "batch_size": 8, "seed": 0}
    key = _keys({"mt_bench": mt})["mt_bench"]
    assert _keys({"mt_bench": {**mt, "judge_prompts": "/x.jsonl", "references": "/y.jsonl"}})["mt_bench"] == key
    assert eval_keys({"eval": {"baseline": True, "judge": {"model": "gpt-4o"}, "mt_bench": mt}})["mt_bench"] == key
    assert _keys({"mt_bench": {**mt, "max_new_tokens": 9}})["mt_bench"] != key
    questions = tmp_path / "q.jsonl"
    questions.write_text(QUESTIONS.read_text())
    first = _keys({"mt_bench": {**mt, "questions": str(questions)}})["mt_bench"]
    questions.write_text(QUESTIONS.read_text().replace("Hawaii", "Iceland"))
    assert _keys({"mt_bench": {**mt, "questions": str(questions)}})["mt_bench"] not in (first, key)
    ae = {"references": str(REFERENCES), "instructions": None, "judge_prompt": None, "difficulty": None, "limit": 3,
          "max_new_tokens": 8, "batch_size": 8, "seed": 0}
    assert _keys({"alpaca_eval": ae}) == _keys({"alpaca_eval": {**ae, "judge_prompt": "/p.txt", "difficulty": "/d.csv"}})
    domain = tmp_path / "d.jsonl"
    domain.write_text(DOMAIN.read_text())
    block = {"domain": {"path": str(domain), "limit": None, "max_new_tokens": 8, "batch_size": 8}}
    before = _keys(block)["domain"]
    domain.write_text(DOMAIN.read_text().replace("Paris", "Lyon"))
    assert _keys(block)["domain"] != before


def test_perplexity_and_lm_eval_keys_are_the_ones_computed_before_the_generation_benchmarks():
    block = {
        "perplexity": {"batch_size": 8, "rolling": True, "max_length": None},
        "lm_eval": {"tasks": ["mmlu"], "num_fewshot": 5, "limit": None, "batch_size": 8, "mmlu_dir": None, "log_samples": False},
    }
    assert _keys(block) == {"perplexity": "perplexity-f6791b481f", "lm_eval": "lm_eval-ef588e147e"}


def test_fastchat_temperatures_and_turn_two_holds_the_models_own_first_answer():
    assert [temperature(c) for c in ("writing", "roleplay", "extraction", "math", "coding", "reasoning", "stem", "humanities", "x")] \
        == [0.7, 0.7, 0.0, 0.0, 0.0, 0.0, 0.1, 0.1, 0.7]
    answer = {"questions": ["q1", "q2"], "turns": ["a1"]}
    assert _conversation(answer, 0) == [{"role": "user", "content": "q1"}]
    assert _conversation(answer, 1) == [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
                                        {"role": "user", "content": "q2"}]


class _Tokenizer:
    def decode(self, ids, skip_special_tokens=True):
        return " ".join(str(i) for i in ids) + " "


@pytest.mark.parametrize(
    "new,expected",
    [
        ([5, 6, 2, 0, 0], {"text": "5 6", "tokens": 2, "cut_off": False}),  # EOS 2, then padding
        ([5, 6, 7, 8], {"text": "5 6 7 8", "tokens": 4, "cut_off": True}),  # no EOS within max_new_tokens
        ([9, 2], {"text": "9", "tokens": 1, "cut_off": False}),
    ],
)
def test_answer_tokens_stop_at_the_first_eos_and_cut_off_means_no_eos(new, expected):
    assert _answer(_Tokenizer(), new, {2}, 4) == expected


def test_domain_scores_normalise_whitespace_and_use_rouge_and_sacrebleu():
    assert normalise("  Paris \n is  nice ") == "Paris is nice"
    got = scores(["Paris", " the  cat sat on the mat ", "x"], ["Paris", "the cat sat on the mat", "Jupiter"])
    assert got["exact_match"] == [1.0, 1.0, 0.0]
    assert got["rouge_l"][:2] == [1.0, 1.0] and got["rouge_l"][2] == 0.0
    assert 0 < got["bleu"] < 100
    assert scores(["the cat sat on the mat"], ["the cat sat on the mat"])["bleu"] == pytest.approx(100)


def test_config_and_checks_stay_torch_free(tmp_path):
    code = (
        "import sys\n"
        "from tests.unit.test_eval_config import _validate\n"
        f"_validate(['eval=[mt_bench,alpaca_eval,domain]', 'eval.domain.path={DOMAIN}', "
        f"'eval.alpaca_eval.references={REFERENCES}', 'run.cache_dir={tmp_path}', 'eval.judge.api_key_env=null'])\n"
        "from harness.store.identity import eval_keys\n"
        "heavy = [m for m in ('torch', 'transformers', 'openai') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_hub_references_out_of_reach_fail_in_one_line_before_any_worker(monkeypatch):
    from harness.models.hub import hub_reachable

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_reachable.cache_clear()
    with pytest.raises(ConfigError, match=r"references=null: AlpacaEval 2.0's reference outputs .* need the hub"):
        _validate(["eval=[alpaca_eval]", "eval.judge.api_key_env=null"])
    hub_reachable.cache_clear()
