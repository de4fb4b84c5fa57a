"""eval= picks several evaluators, each with its own block; bad eval values fail in the parent, in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from harness.config.compose import register
from harness.errors import ConfigError
from harness.evaluators import lmeval_tasks
from harness.sweep.validate import validate

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "mmlu_tiny"


def _validate(overrides):
    register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return validate(compose(config_name="config", overrides=list(overrides)))


def test_perplexity_and_mmlu_together_each_with_its_own_block(tmp_path):
    typed, plain = _validate(["eval=[perplexity,mmlu]", f"run.cache_dir={tmp_path}"])
    assert typed.eval.enabled() == ["perplexity", "lm_eval"]
    assert typed.eval.lm_eval.tasks == ["mmlu"] and typed.eval.lm_eval.num_fewshot == 5
    assert typed.eval.perplexity.rolling is True and typed.eval.baseline is True
    typed, _ = _validate(
        ["eval=[perplexity,mmlu]", "eval.lm_eval.tasks=[mmlu,hellaswag,arc_easy]", "eval.lm_eval.limit=20",
         "eval.lm_eval.num_fewshot=0", "eval.lm_eval.batch_size=4", f"eval.lm_eval.mmlu_dir={FIXTURE}", f"run.cache_dir={tmp_path}"]
    )
    assert typed.eval.lm_eval.tasks == ["mmlu", "hellaswag", "arc_easy"] and typed.eval.lm_eval.limit == 20
    assert _validate(["eval=[lm_eval]", f"run.cache_dir={tmp_path}"])[0].eval.lm_eval.num_fewshot is None
    assert _validate(["eval=[]"])[0].eval.enabled() == []


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["eval.lm_eval.mmlu_dir=/no/such/dir"], "eval.lm_eval.mmlu_dir=/no/such/dir: no such folder"),
        ([f"eval.lm_eval.mmlu_dir={FIXTURE}", "eval.lm_eval.tasks=[hellaswag]"], "replaces the task mmlu, but eval.lm_eval.tasks has no mmlu"),
        ([f"eval.lm_eval.mmlu_dir={FIXTURE}", "eval.lm_eval.num_fewshot=6"], "num_fewshot=6 but dev.jsonl has fewer questions"),
        (["eval.lm_eval.tasks=[]"], "eval.lm_eval.tasks=[]: must name at least one lm-eval task"),
        (["eval.lm_eval.limit=0"], "eval.lm_eval.limit=0.0: must be > 0"),
        (["eval.lm_eval.num_fewshot=-1"], "eval.lm_eval.num_fewshot=-1: must be >= 0"),
        (["eval.lm_eval.batch_size=0"], "eval.lm_eval.batch_size=0: must be a positive integer"),
        (["eval.perplexity.max_length=1"], "eval.perplexity.max_length=1: must be > 1"),
    ],
)
def test_bad_eval_values_fail_in_one_line_naming_the_key(overrides, needle, tmp_path):
    with pytest.raises(ConfigError) as info:
        _validate(["eval=[perplexity,mmlu]", f"run.cache_dir={tmp_path}", *overrides])
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_unknown_task_fails_in_the_parent_once_the_worker_recorded_the_names(tmp_path):
    overrides = ["eval=[mmlu]", "eval.lm_eval.tasks=[mmlu,hellaswg]", f"run.cache_dir={tmp_path}"]
    _validate(overrides)  # no name list yet: the worker checks, before the model loads
    names = lmeval_tasks.names_file(tmp_path, lmeval_tasks.lm_eval_version())
    names.parent.mkdir(parents=True)
    names.write_text(json.dumps(["mmlu", "hellaswag", "arc_easy", "mmlu_anatomy"]))
    with pytest.raises(ConfigError) as info:
        _validate(overrides)
    assert str(info.value).startswith("eval.lm_eval.tasks=hellaswg: not an lm-eval task") and "did you mean hellaswag" in str(info.value)
    _validate(["eval=[mmlu]", "eval.lm_eval.tasks=[hellaswag,mmlu_*]", f"run.cache_dir={tmp_path}"])  # globs pass
    # the local mmlu is not looked up in lm-eval's list
    names.write_text(json.dumps(["hellaswag"]))
    _validate(["eval=[mmlu]", f"eval.lm_eval.mmlu_dir={FIXTURE}", f"run.cache_dir={tmp_path}"])


def test_parent_validation_never_imports_lm_eval_or_torch(tmp_path):
    code = (
        "import sys\n"
        "from tests.unit.test_eval_config import _validate\n"
        f"_validate(['eval=[perplexity,mmlu]', 'eval.lm_eval.mmlu_dir={FIXTURE}', 'run.cache_dir={tmp_path}'])\n"
        "import harness.report.summary, harness.sweep.callbacks, harness.sweep.cell\n"
        "heavy = [m for m in ('torch', 'lm_eval', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
