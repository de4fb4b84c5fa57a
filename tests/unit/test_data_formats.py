"""Every input format is detected (or named) and normalised to the same conversation form."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.config.data import DataColumnsConfig, DataConfig
from harness.data.load import load_conversations

pytestmark = pytest.mark.unit
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"


def _load(path, **kwargs):
    return load_conversations(DataConfig(path=str(path), **kwargs))


@pytest.mark.parametrize(
    "name,fmt,count",
    [
        ("sharegpt.json", "sharegpt", 20),
        ("alpaca.json", "alpaca", 20),
        ("messages.jsonl", "messages", 20),
        ("prompt_completion.jsonl", "prompt_completion", 20),
        ("chatml.txt", "chatml", 6),
    ],
)
def test_each_format_is_detected_and_normalised(name, fmt, count):
    loaded = _load(FIXTURES / name)
    assert list(loaded.formats.values()) == [fmt]
    assert len(loaded.examples) == count and loaded.records == count
    for example in loaded.examples:
        roles = [turn["role"] for turn in example.conversation]
        assert set(roles) <= {"system", "user", "assistant"} and "assistant" in roles
        assert all(isinstance(turn["content"], str) and turn["content"].strip() for turn in example.conversation)


def test_sharegpt_roles_and_locations():
    first = _load(FIXTURES / "sharegpt.json").examples[0]
    assert [t["role"] for t in first.conversation] == ["system", "user", "assistant"]
    assert first.conversation[1]["content"] == "Tell me something about rivers."
    assert first.where.endswith("sharegpt.json:2 (record 0)")


def test_alpaca_input_is_appended_and_extra_fields_ignored():
    examples = _load(FIXTURES / "alpaca.json").examples
    assert examples[0].conversation[0] == {
        "role": "user",
        "content": "Describe rivers in one sentence.\n\nAudience: group 0",
    }
    assert examples[1].conversation[0]["content"] == "Describe volcanoes in one sentence."  # empty input: no blank tail


def test_chatml_text_file_splits_conversations_at_blank_lines():
    examples = _load(FIXTURES / "chatml.txt").examples
    assert [t["role"] for t in examples[0].conversation] == ["system", "user", "assistant"]
    assert examples[0].conversation[1]["content"] == "Why rivers?"
    assert examples[1].where.endswith("chatml.txt:8")


def test_chatml_in_a_text_field_of_jsonl(tmp_path):
    path = tmp_path / "t.jsonl"
    text = "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello, how can I help?<|im_end|>"
    path.write_text(json.dumps({"text": text}) + "\n")
    loaded = _load(path)
    assert loaded.formats == {str(path): "chatml"}
    assert loaded.examples[0].conversation[1] == {"role": "assistant", "content": "Hello, how can I help?"}


def test_folder_reads_every_file_with_its_own_format():
    loaded = _load(FIXTURES / "folder")
    assert sorted(loaded.formats.values()) == ["messages", "prompt_completion"]
    assert len(loaded.examples) == 10


def test_named_format_overrides_detection(tmp_path):
    path = tmp_path / "both.jsonl"  # has the fields of two formats; named format decides
    path.write_text(json.dumps({"prompt": "p?", "completion": "c.", "instruction": "Say hi.", "output": "Hi!"}) + "\n")
    assert _load(path).formats[str(path)] == "alpaca"  # detection prefers the first matching format
    assert _load(path, format="prompt_completion").examples[0].conversation[0]["content"] == "p?"


def test_column_mapping(tmp_path):
    path = tmp_path / "qa.json"
    path.write_text(json.dumps([{"question": "What is up?", "answer": "Not much at all."}]))
    columns = DataColumnsConfig(instruction="question", output="answer")
    loaded = _load(path, columns=columns)
    assert loaded.formats[str(path)] == "alpaca"
    assert loaded.examples[0].conversation == [
        {"role": "user", "content": "What is up?"},
        {"role": "assistant", "content": "Not much at all."},
    ]


def test_sharegpt_with_role_content_turns_and_bom(tmp_path):
    path = tmp_path / "variant.jsonl"
    row = {"conversations": [{"role": "user", "content": "Hey"}, {"role": "assistant", "content": "Hello!"}]}
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(row).encode() + b"\n")
    assert _load(path).examples[0].conversation[1]["content"] == "Hello!"


def test_undetectable_format_names_the_fields(tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_text(json.dumps({"q": "a", "a": "b"}) + "\n")
    from harness.errors import DataError

    with pytest.raises(
        DataError, match=r"odd.jsonl: cannot detect the format \(records have fields: a, q\).*data.columns"
    ):
        _load(path)


EVAL_SETS = Path(__file__).resolve().parents[1] / "fixtures" / "eval_sets"


def test_mt_bench_questions_are_named_an_evaluation_set_not_training_data():
    """MT-Bench's question.jsonl (3 lines of FastChat's llm_judge data): prompts with no answers."""
    from harness.errors import DataError

    path = EVAL_SETS / "mt_bench_question.jsonl"
    with pytest.raises(DataError) as info:
        _load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: this looks like an evaluation set, not training data (MT-Bench questions")
    assert "data.columns" not in message  # no column mapping can make answers appear


def test_mmlu_style_questions_are_named_an_evaluation_set():
    from harness.errors import DataError

    path = Path(__file__).resolve().parents[1] / "fixtures" / "mmlu_tiny" / "test.jsonl"
    with pytest.raises(DataError, match=r"evaluation set, not training data \(multiple-choice questions.*mmlu_dir"):
        _load(path)
