"""MMLU-format local folders: validation in one line naming the key, and the generated lm-eval task."""

from __future__ import annotations

import json
from importlib import util
from pathlib import Path

import pytest
import yaml

from harness.errors import ConfigError
from harness.evaluators import mmlu_local

pytestmark = pytest.mark.unit
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "mmlu_tiny"


def _folder(tmp_path: Path, dev: list, test: list) -> Path:
    for name, rows in (("dev", dev), ("test", test)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def _q(subject="algebra", answer=0, choices=("1", "2", "3", "4"), **extra):
    return {"question": "What?", "subject": subject, "choices": list(choices), "answer": answer, **extra}


def test_fixture_loads_with_subjects_and_counts():
    local = mmlu_local.load(str(FIXTURE))
    assert local.subjects == ("basic_chemistry", "elementary_mathematics", "world_geography")
    assert all(local.dev_count(s) == 5 and len(local.rows["test"][s]) == 12 for s in local.subjects)
    mmlu_local.check_shots(local, 5)
    assert mmlu_local.load(str(FIXTURE)) is local  # cached per file size and mtime


@pytest.mark.parametrize(
    "dev,test,needle",
    [
        ([_q()], [_q(answer=4)], "test.jsonl line 1: answer must be the 0-based index of a choice (0..3), got 4"),
        ([_q()], [{"question": "q", "choices": ["a", "b"], "answer": 0}], "test.jsonl line 1: missing subject"),
        ([_q()], [_q(choices=("only",))], "choices must be a list of 2 to 10 strings"),
        ([_q(choices=("a", "b"))], [_q()], "subject algebra mixes questions with 2 and 4 choices"),
        ([_q(subject="Algebra!")], [_q(subject="algebra")], "map to the same task name algebra"),
        ([_q()], [], "test.jsonl has no questions"),
    ],
)
def test_bad_files_fail_in_one_line_naming_the_key(tmp_path, dev, test, needle):
    with pytest.raises(ConfigError) as info:
        mmlu_local.load(str(_folder(tmp_path, dev, test)))
    message = str(info.value)
    assert message.startswith("eval.lm_eval.mmlu_dir=") and needle in message and "\n" not in message


def test_missing_folder_file_and_non_json(tmp_path):
    with pytest.raises(ConfigError, match=r"mmlu_dir=/no/such: no such folder"):
        mmlu_local.load("/no/such")
    (tmp_path / "test.jsonl").write_text(json.dumps(_q()) + "\n")
    with pytest.raises(ConfigError, match="missing dev.jsonl"):
        mmlu_local.load(str(tmp_path))
    (tmp_path / "dev.jsonl").write_text("{not json\n")
    with pytest.raises(ConfigError, match="dev.jsonl line 1: not JSON"):
        mmlu_local.load(str(tmp_path))


def test_too_few_dev_questions_for_the_shots(tmp_path):
    local = mmlu_local.load(str(_folder(tmp_path, [_q()] * 2, [_q()])))
    with pytest.raises(ConfigError, match=r"num_fewshot=5 but dev.jsonl has fewer questions for algebra \(2\)"):
        mmlu_local.check_shots(local, 5)


def test_generated_task_matches_lm_evals_own_mmlu_template(tmp_path):
    local = mmlu_local.load(str(FIXTURE))
    folder = mmlu_local.task_folder(local, tmp_path)
    assert mmlu_local.task_folder(local, tmp_path) == folder  # written once, then reused
    group = yaml.safe_load((folder / "_mmlu.yaml").read_text())
    assert group["group"] == "mmlu" and group["task"] == [f"mmlu_local_{s}" for s in local.subjects]
    assert group["aggregate_metric_list"] == [{"metric": "acc", "weight_by_size": True}]
    task = yaml.safe_load((folder / "mmlu_local_world_geography.yaml").read_text())
    # lm-eval's own template, read as text: this test must not import lm_eval
    template_path = Path(util.find_spec("lm_eval").origin).parent / "tasks" / "mmlu" / "default" / "_default_template_yaml"
    template = yaml.safe_load(template_path.read_text())
    for key in ("test_split", "fewshot_split", "fewshot_config", "output_type", "doc_to_text", "doc_to_choice", "doc_to_target", "metric_list"):
        assert task[key] == template[key], key
    assert task["description"] == "The following are multiple choice questions (with answers) about world geography.\n\n"
    test_file = Path(task["dataset_kwargs"]["data_files"]["test"])
    assert test_file.parent == folder / "data" and len(test_file.read_text().splitlines()) == 12
