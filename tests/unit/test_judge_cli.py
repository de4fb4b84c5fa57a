"""python -m harness.judge: --help, and judge keys checked as python -m harness checks them, before any call."""

from __future__ import annotations

import dataclasses
import json

import pytest

from harness.config.generation import JudgeConfig
from harness.errors import ConfigError
from harness.judge import __main__ as cli

pytestmark = pytest.mark.unit


def _sweep(tmp_path, **stored):
    judge = {**dataclasses.asdict(JudgeConfig(api_key_env=None)), **stored}
    job = {"cell_id": "c1", "evals": {"mt_bench": "mt_bench-k"}, "judges": {"mt_bench": "judge-k"},
           "judge": {"judge": judge, "cache_dir": str(tmp_path / "cache")}}
    (tmp_path / "manifest.json").write_text(json.dumps({"jobs": {"0": job}}))
    return tmp_path


def test_help_prints_usage_and_exits_0(capsys):
    assert cli.main(["harness.judge", "--help"]) == 0
    out = capsys.readouterr().out
    assert "python -m harness.judge SWEEP_DIR" in out and "error" not in out


@pytest.mark.parametrize("pair, message", [
    ("eval.judge.repeats=abc", "eval.judge.repeats=abc: must be an integer"),
    ("eval.judge.timeout_s=soon", "eval.judge.timeout_s=soon: must be a number"),
    ("eval.judge.repeats=0", "eval.judge.repeats"),
])
def test_bad_judge_value_is_the_main_commands_one_line(tmp_path, pair, message):
    sweep = _sweep(tmp_path)
    with pytest.raises(ConfigError) as err:
        cli.settings_for(sweep, dict([pair.split("=", 1)]))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_bad_value_exits_2_with_one_line_before_any_call(tmp_path, capsys):
    sweep = _sweep(tmp_path)
    assert cli.main(["harness.judge", str(sweep), "eval.judge.repeats=abc"]) == 2
    assert capsys.readouterr().err.strip() == "error: eval.judge.repeats=abc: must be an integer"


def test_good_values_are_typed_and_old_stored_keys_dropped(tmp_path):
    sweep = _sweep(tmp_path, retired_key=1)
    settings, overrides = cli.settings_for(sweep, {"eval.judge.repeats": "3", "eval.judge.model": "judge-y",
                                                   "eval.mt_bench.judge_prompts": "p.jsonl"})
    assert settings["judge"]["repeats"] == 3 and settings["judge"]["model"] == "judge-y"
    assert "retired_key" not in settings["judge"] and overrides == {"mt_bench": {"judge_prompts": "p.jsonl"}}


def test_unknown_judge_key_names_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match="eval.judge.repeat: unknown; eval.judge has .*repeats"):
        cli.settings_for(_sweep(tmp_path), {"eval.judge.repeat": "2"})
