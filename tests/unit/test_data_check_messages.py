"""What ``python -m harness.data check`` says: JSON errors without "at at", near-duplicates as what they are."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from harness.config.data import DataConfig, DataFilterConfig
from harness.data.__main__ import near_duplicate_note
from harness.data.load import load_conversations
from harness.data.prepare import select_examples
from harness.errors import DataError
from tests.data_synth import synthetic_conversations

pytestmark = pytest.mark.unit


def test_json_reasons_ending_in_at_are_not_doubled(tmp_path):
    path = tmp_path / "d.jsonl"
    good = json.dumps({"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]})
    path.write_text(good + '\n{"messages": [{"role": "user", "content": "cut off\n{"a" 1}\n')
    messages = load_conversations(DataConfig(path=str(path), on_error="skip")).problems.messages
    assert messages[0].endswith(":2: invalid JSON (Unterminated string starting at column 43)"), messages
    assert messages[1].endswith(":3: invalid JSON (Expecting ':' delimiter at column 6)"), messages
    broken = tmp_path / "d.json"
    broken.write_text('[{"messages": "cut off\n]')
    with pytest.raises(DataError) as info:
        load_conversations(DataConfig(path=str(broken)))
    assert "d.json:1: invalid JSON (Invalid control character at column 23); a broken JSON array" in str(info.value)
    assert " at at " not in str(info.value) and not any(" at at " in m for m in messages)


def _write(tmp_path, conversations):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations))
    return str(path)


def test_only_clusters_of_two_or_more_count_as_near_duplicates(tmp_path):
    distinct = _write(tmp_path, synthetic_conversations(120, seed=3, near_dup_rate=0.0))
    _, stats = select_examples(DataConfig(path=distinct), seed=1)
    assert (stats["near_duplicate_clusters"], stats["near_duplicates"]) == (0, 0)  # not 120 one-example "clusters"

    path = _write(tmp_path, synthetic_conversations(120, seed=3, near_dup_rate=0.3))
    _, dropped = select_examples(DataConfig(path=path), seed=1)
    _, kept = select_examples(DataConfig(path=path, filters=DataFilterConfig(near_dedup=False)), seed=1)
    clusters, extra = dropped["near_duplicate_clusters"], dropped["near_duplicates"]
    assert 0 < clusters <= extra and dropped["filtered"]["near_duplicate"] == extra
    assert (kept["near_duplicate_clusters"], kept["near_duplicates"]) == (clusters, extra)
    assert "near_duplicate" not in kept["filtered"] and kept["kept"] == dropped["kept"] + extra


def _cfg(near_dedup=True):
    return SimpleNamespace(data=SimpleNamespace(filters=DataFilterConfig(near_dedup=near_dedup)))


def test_the_note_says_dropped_only_when_they_were():
    found = {"near_duplicate_clusters": 3, "near_duplicates": 5}
    assert near_duplicate_note(_cfg(), found) == "  (8 examples in 3 near-duplicate clusters: dropped 5, kept the first of each)"
    kept = near_duplicate_note(_cfg(near_dedup=False), found)
    assert kept == "  (8 examples in 3 near-duplicate clusters: kept, data.filters.near_dedup=false; each cluster stays in one split)"
    assert "dropped" not in kept
    none = near_duplicate_note(_cfg(), {"near_duplicate_clusters": 0, "near_duplicates": 0})
    assert none == "  (no near-duplicates at cosine > 0.92)"
    assert near_duplicate_note(_cfg(), {"near_duplicate_clusters": 1, "near_duplicates": 1}).startswith("  (2 examples in 1 near-duplicate cluster:")
    assert near_duplicate_note(_cfg(), {"near_duplicate_clusters": None}) == ""  # synthetic rows: no search ran
