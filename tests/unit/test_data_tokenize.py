"""Chat templates, loss masks, over-long policy, the tokenized cache and hub loading (tiny tokenizer, no model)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from harness.config.data import DataColumnsConfig, DataConfig, DataFilterConfig
from harness.config.model import ModelConfig
from harness.data.prepare import prepare_data
from harness.data.tokenize import IGNORE_INDEX, ensure_chat_template, tokenize_split
from harness.errors import DataError

pytestmark = pytest.mark.unit
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "data"
CONV = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "Blue is a colour."},
    {"role": "user", "content": "Another one?"},
    {"role": "assistant", "content": "Green."},
]


@pytest.fixture(scope="module")
def tokenizer(cache_dir):
    from transformers import AutoTokenizer

    from harness.models.tiny import ensure_tiny_model

    return AutoTokenizer.from_pretrained(ensure_tiny_model(ModelConfig(), cache_dir))


def _trained_text(tokenizer, split, k=0):
    lo, hi = split.offsets[k], split.offsets[k + 1]
    ids, mask = split.ids[lo:hi], split.mask[lo:hi]
    runs, current = [], []
    for token, on in zip(ids.tolist(), mask.tolist()):
        if on:
            current.append(token)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    if current:
        runs.append(tokenizer.decode(current))
    return runs


def test_only_assistant_turns_carry_loss(tokenizer):
    split = tokenize_split(tokenizer, [CONV], 256)
    assert _trained_text(tokenizer, split) == ["Blue is a colour.<|im_end|>", "Green.<|im_end|>"]
    row = split.rows()[0]
    assert len(row["input_ids"]) == len(row["labels"]) and IGNORE_INDEX in row["labels"]


def test_loss_on_all_trains_every_token(tokenizer):
    split = tokenize_split(tokenizer, [CONV], 256, loss_on="all")
    assert split.mask.all() and split.stats()["loss_tokens"] == split.stats()["tokens"]


def test_overlong_truncate_drop_and_nothing_trainable(tokenizer):
    long = [{"role": "user", "content": "word " * 60}, {"role": "assistant", "content": "A fine answer here."}]
    short = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello, friend."}]
    kept = tokenize_split(tokenizer, [short, long], 40, overlong="truncate")
    assert kept.counts["dropped_no_trainable_tokens"] == 1 and len(kept) == 1  # the cut removed the answer
    dropped = tokenize_split(tokenizer, [short, long], 40, overlong="drop")
    assert dropped.counts["dropped_overlong"] == 1 and len(dropped) == 1
    cut = tokenize_split(
        tokenizer, [[{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "ok " * 80}]], 40
    )
    assert cut.counts["truncated"] == 1 and cut.stats()["tokens"] == 40 and cut.full_lengths[0] > 40


def test_template_without_system_role_folds_it_into_the_user_turn(tokenizer):
    strict = copy.deepcopy(tokenizer)
    strict.chat_template = (
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
        + tokenizer.chat_template
    )
    split = tokenize_split(strict, [CONV], 256)
    text = strict.decode(split.ids.tolist())
    assert "system" not in text and "Be brief.\n\nName a colour." in text


def test_tokenizer_without_template_gets_chatml(tokenizer):
    bare = copy.deepcopy(tokenizer)
    bare.chat_template = None
    assert ensure_chat_template(bare) == "chatml"
    assert ensure_chat_template(tokenizer) == "model"


def test_no_trainable_tokens_fails_clearly(tokenizer):
    with pytest.raises(DataError, match=r"no train example has an assistant token left within train.max_seq_len=8"):
        prepare_data(DataConfig(path=str(FIXTURES / "sharegpt.json")), tokenizer, 8, seed=1)


def test_prepared_splits_and_stats(tokenizer):
    data = prepare_data(DataConfig(path=str(FIXTURES / "sharegpt.json")), tokenizer, 256, seed=1)
    assert (len(data.train), len(data.heldout), len(data.test)) == (16, 2, 2)
    stats = data.stats
    assert stats["format"] == "sharegpt" and stats["format_detected"]
    assert stats["train"]["examples"] == 16 and stats["train"]["loss_tokens"] > 0
    assert stats["validation"]["examples"] == 2 and stats["test"]["examples"] == 2
    assert stats["token_lengths"]["p50"] <= stats["token_lengths"]["p95"] <= stats["token_lengths"]["max"]


def test_prepare_prints_one_data_line_with_kept_and_dropped(tokenizer, tmp_path, capsys):
    """The worker's log says what filters dropped (a sweep would otherwise train on 153 of 500 silently)."""
    rows = [json.loads(line) for line in (FIXTURES / "messages.jsonl").read_text().splitlines() if line.strip()]
    path = tmp_path / "dupes.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows + rows[:3]) + "\n")
    data = prepare_data(DataConfig(path=str(path), max_examples=2), tokenizer, 256, seed=1, cache_dir=tmp_path)
    (line,) = [out for out in capsys.readouterr().out.splitlines() if out.startswith("data: ")]
    stats = data.stats
    split = stats["split_examples"]
    assert line == (
        f"data: {len(rows) + 3} records, 0 invalid; kept {stats['kept']}, dropped {len(rows) + 3 - stats['kept']} "
        f"(exact_duplicate 3); train {split['train']} / validation {split['validation']} / test {split['test']}; "
        "training on 2 examples"
    )
    prepare_data(DataConfig(path=str(path)), tokenizer, 256, seed=1, cache_dir=tmp_path, quiet=True)
    assert "data: " not in capsys.readouterr().out


def test_cache_is_shared_across_max_examples_and_keyed_by_settings(tokenizer, tmp_path):
    config = DataConfig(path=str(FIXTURES / "messages.jsonl"))
    first = prepare_data(config, tokenizer, 256, seed=1, cache_dir=tmp_path)
    again = prepare_data(DataConfig(path=config.path, max_examples=5), tokenizer, 256, seed=1, cache_dir=tmp_path)
    assert not first.stats["cache"]["hit"] and again.stats["cache"]["hit"]
    assert again.stats["cache"]["key"] == first.stats["cache"]["key"]
    assert again.train == first.train[:5] and again.stats["train"]["examples"] == 5
    assert again.stats["train"]["available"] == len(first.train)
    assert again.heldout == first.heldout
    other = prepare_data(
        DataConfig(path=config.path, filters=DataFilterConfig(near_dedup=False)),
        tokenizer,
        256,
        seed=1,
        cache_dir=tmp_path,
    )
    assert not other.stats["cache"]["hit"]
    assert (
        prepare_data(config, tokenizer, 128, seed=1, cache_dir=tmp_path).stats["cache"]["key"]
        != first.stats["cache"]["key"]
    )
    assert len(list((tmp_path / "tokenized").glob("*.npz"))) == 3


def test_cache_notices_changed_data(tokenizer, tmp_path):
    path = tmp_path / "d.jsonl"
    lines = (FIXTURES / "messages.jsonl").read_text().splitlines()
    path.write_text("\n".join(lines[:15]) + "\n")
    first = prepare_data(DataConfig(path=str(path)), tokenizer, 256, seed=1, cache_dir=tmp_path)
    path.write_text("\n".join(lines) + "\n")
    second = prepare_data(DataConfig(path=str(path)), tokenizer, 256, seed=1, cache_dir=tmp_path)
    assert not second.stats["cache"]["hit"] and second.stats["kept"] == 20 != first.stats["kept"]


def test_hub_loading_through_datasets_with_column_mapping(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    folder = tmp_path / "qa_dataset"
    folder.mkdir()
    rows = json.loads((FIXTURES / "alpaca.json").read_text())
    (folder / "train.jsonl").write_text(
        "".join(json.dumps({"q": r["instruction"], "a": r["output"]}) + "\n" for r in rows)
    )
    config = DataConfig(hub_id=str(folder), hub_split="train", columns=DataColumnsConfig(instruction="q", output="a"))
    data = prepare_data(config, tokenizer, 256, seed=1, cache_dir=tmp_path)
    assert data.stats["format"] == "alpaca" and data.stats["records"] == 20
    assert data.stats["source"] == f"{folder}[train]"
    assert data.stats["where"]["train"][0].startswith(f"{folder}[train] row ")
    with pytest.raises(Exception, match=r"data.hub_id=.*cannot load split 'nope'"):
        prepare_data(DataConfig(hub_id=str(folder), hub_split="nope"), tokenizer, 256, seed=1, cache_dir=tmp_path)


def test_sentence_embedding_model_path_for_near_duplicates(cache_dir):
    from harness.data.dedup import near_duplicate_clusters
    from harness.models.tiny import ensure_tiny_model

    model = str(ensure_tiny_model(ModelConfig(), cache_dir))  # any transformers model folder works as an embedder
    same = [{"role": "user", "content": "Tell me about rivers."}, {"role": "assistant", "content": "Rivers flow."}]
    other = [
        {"role": "user", "content": "Completely different words here, about chess openings"},
        {"role": "assistant", "content": "Sure."},
    ]
    labels = near_duplicate_clusters([same, other, same], 0.999, embedder=model)
    assert labels[0] == labels[2] != labels[1]
    with pytest.raises(DataError, match=r"data.filters.embedder=/no/such/model: cannot load the embedding model"):
        near_duplicate_clusters([same, other], 0.9, embedder="/no/such/model")
