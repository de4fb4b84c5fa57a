"""Every broken input names file and line; on_error=skip drops and counts by reason; the parent checks first."""

from __future__ import annotations

import json

import pytest

from harness.config.data import DataConfig
from harness.data.load import check_source, load_conversations
from harness.errors import ConfigError, DataError

pytestmark = pytest.mark.unit
GOOD = {
    "messages": [
        {"role": "user", "content": "Hello there?"},
        {"role": "assistant", "content": "Hi, how can I help you today?"},
    ]
}


def _turns(*turns):
    return json.dumps({"messages": [{"role": r, "content": c} for r, c in turns]})


BROKEN = {
    "invalid_json": '{"messages": [{"role": "user", "content": "trunc',
    "not_an_object": "[1, 2]",
    "missing_field": json.dumps({"msgs": []}),
    "unknown_role": _turns(("user", "a?"), ("robot", "b")),
    "non_string_content": json.dumps(
        {"messages": [{"role": "user", "content": "a?"}, {"role": "assistant", "content": 42}]}
    ),
    "no_assistant_turn": _turns(("user", "a?"), ("user", "b?")),
    "empty_turn": _turns(("user", "a?"), ("assistant", "   ")),
    "bad_conversation": json.dumps({"messages": []}),
}
MESSAGES = {
    "invalid_json": "invalid JSON (Unterminated string",
    "not_an_object": "record is a JSON list, not an object",
    "missing_field": "missing field 'messages'",
    "unknown_role": "turn 1 has unknown role 'robot'",
    "non_string_content": "turn 1 (assistant) content must be a string, got int",
    "no_assistant_turn": "conversation has no assistant turn",
    "empty_turn": "turn 1 (assistant) is empty",
    "bad_conversation": "'messages' must be a non-empty list of turns",
}


def _file(tmp_path, lines, name="data.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("reason", sorted(BROKEN))
def test_each_broken_record_fails_in_one_line_with_file_and_line(tmp_path, reason):
    path = _file(tmp_path, [json.dumps(GOOD), json.dumps(GOOD), BROKEN[reason]])
    with pytest.raises(DataError) as info:
        load_conversations(DataConfig(path=str(path)))
    message = str(info.value)
    assert message.startswith(f"{path}:3: ") and MESSAGES[reason] in message
    assert "\n" not in message


def test_bad_utf8_names_the_line(tmp_path):
    path = tmp_path / "bytes.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b'\n{"messages": [{"role": "user", "content": "caf\xe9"}]}\n')
    with pytest.raises(DataError, match=r"bytes.jsonl:2: not valid UTF-8 \(byte 0xe9 at column 47\)"):
        load_conversations(DataConfig(path=str(path)))


def test_skip_drops_and_counts_every_reason(tmp_path):
    lines = [json.dumps(GOOD)] * 3 + [BROKEN[r] for r in sorted(BROKEN)]
    path = _file(tmp_path, lines)
    loaded = load_conversations(DataConfig(path=str(path), on_error="skip"))
    assert len(loaded.examples) == 3
    assert loaded.problems.counts == {reason: 1 for reason in BROKEN}
    assert loaded.problems.messages[0].startswith(f"{path}:")


def test_fail_message_counts_the_rest(tmp_path):
    path = _file(tmp_path, [json.dumps(GOOD), BROKEN["empty_turn"], BROKEN["unknown_role"]])
    with pytest.raises(
        DataError, match=r":2: turn 1 \(assistant\) is empty \(and 1 more invalid record; data.on_error=skip"
    ):
        load_conversations(DataConfig(path=str(path)))


@pytest.mark.parametrize(
    "name,content,on_error,pattern",
    [
        # a syntax error in an array cannot be skipped past: fatal even with skip
        (
            "arr.json",
            '[\n  {"prompt": "a?", "completion": "b."},\n  {"prompt": "c?", "completion": \n',
            "skip",
            r"arr.json:4: invalid JSON",
        ),
        (
            "arr.json",
            json.dumps([{"prompt": "a?", "completion": "b."}, {"prompt": "c?", "completion": ""}], indent=2),
            "fail",
            r"arr.json:6 \(record 1\): turn 1 \(assistant\) is empty",
        ),
        (
            "c.txt",
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello",
            "fail",
            r"c.txt:1: a <\|im_start\|> turn has no <\|im_end\|>",
        ),
        ("e.jsonl", "  \n", "fail", r"e.jsonl: file is empty"),
    ],
)
def test_file_level_errors_name_file_and_line(tmp_path, name, content, on_error, pattern):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=pattern):
        load_conversations(DataConfig(path=str(path), on_error=on_error))


def test_nothing_valid_is_an_error_even_with_skip(tmp_path):
    path = _file(tmp_path, [BROKEN["empty_turn"]])
    with pytest.raises(DataError, match="no valid conversations"):
        load_conversations(DataConfig(path=str(path), on_error="skip"))


def test_nothing_valid_still_names_the_first_bad_record(tmp_path):
    """All records invalid: the first one's file:line and problem, then the counts by reason (one line)."""
    one = _file(tmp_path, [BROKEN["unknown_role"]], "one.jsonl")
    with pytest.raises(DataError) as info:
        load_conversations(DataConfig(path=str(one), on_error="skip"))
    assert str(info.value) == (
        f"{one}:1: turn 1 has unknown role 'robot' (expected assistant, developer, system, user) "
        "(no valid conversations: the only record is invalid)"
    )
    many = _file(tmp_path, [BROKEN["unknown_role"], BROKEN["empty_turn"], BROKEN["unknown_role"]], "many.jsonl")
    with pytest.raises(DataError) as info:
        load_conversations(DataConfig(path=str(many), on_error="skip"))
    assert str(info.value) == (
        f"{many}:1: turn 1 has unknown role 'robot' (expected assistant, developer, system, user) "
        "(no valid conversations: all 3 records are invalid: unknown_role 2, empty_turn 1)"
    )


@pytest.mark.parametrize("on_error", ["fail", "skip"])
def test_one_line_file_with_bad_utf8_names_the_byte(tmp_path, on_error):
    """Not "cannot detect the format": the file, line, byte and column."""
    path = tmp_path / "one.jsonl"
    path.write_bytes(b'{"messages": [{"role": "user", "content": "h\xffi"}]}\n')
    with pytest.raises(DataError) as info:
        load_conversations(DataConfig(path=str(path), on_error=on_error))
    message = str(info.value)
    assert message.startswith(f"{path}:1: not valid UTF-8 (byte 0xff at column 45)")
    assert "cannot detect" not in message and "\n" not in message


def test_an_unreadable_file_beside_good_ones_is_skipped_and_counted(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps(GOOD) + "\n")
    (tmp_path / "b.jsonl").write_bytes(b'{"x": "\xff"}\n')
    loaded = load_conversations(DataConfig(path=str(tmp_path), on_error="skip"))
    assert len(loaded.examples) == 1 and loaded.problems.counts == {"bad_utf8": 1}
    with pytest.raises(DataError, match=r"b.jsonl:1: not valid UTF-8 \(byte 0xff at column 8\)$"):
        load_conversations(DataConfig(path=str(tmp_path)))


def test_parent_validation_rejects_bad_data_before_any_cell(tmp_path):
    from harness.sweep.validate import validate
    from tests.unit.test_config import _compose

    path = _file(tmp_path, [json.dumps(GOOD), BROKEN["unknown_role"]])
    with pytest.raises(ConfigError, match=rf"^{path}:2: turn 1 has unknown role 'robot'"):
        validate(_compose([f"data.path={path}"]))
    typed, _ = validate(_compose([f"data.path={path}", "data.on_error=skip"]))
    assert typed.data.on_error == "skip"


def test_parent_check_sees_edits(tmp_path):
    path = _file(tmp_path, [json.dumps(GOOD)])
    check_source(DataConfig(path=str(path)))
    path.write_text(json.dumps(GOOD) + "\n" + BROKEN["empty_turn"] + "\n")
    with pytest.raises(DataError, match=":2: "):
        check_source(DataConfig(path=str(path)))


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["data.format=yaml"], "data.format=yaml: must be one of auto, messages"),
        (["data.on_error=ignore"], "data.on_error=ignore: must be one of fail, skip"),
        (["data.overlong=cut"], "data.overlong=cut"),
        (["data.loss_on=user"], "data.loss_on=user"),
        (["data.test_fraction=0.95"], "data.test_fraction=0.95: data.val_fraction + data.test_fraction must leave"),
        (["data.filters.near_dedup_threshold=1.5"], "data.filters.near_dedup_threshold=1.5: must be in (0, 1]"),
        (["data.filters.min_assistant_tokens=-1"], "data.filters.min_assistant_tokens=-1"),
        (
            ["data.filters.placeholder_patterns=['a(b']"],
            "data.filters.placeholder_patterns=a(b: not a regular expression",
        ),
        (["data.hub_id=org/set", "data.path=/tmp"], "data.hub_id=org/set: set data.path or data.hub_id, not both"),
    ],
)
def test_bad_data_keys_fail_in_one_line(overrides, needle):
    from harness.sweep.validate import validate
    from tests.unit.test_config import _compose

    with pytest.raises(ConfigError) as info:
        validate(_compose(overrides))
    assert needle in str(info.value) and "\n" not in str(info.value)
