"""data=synthetic: rows of exactly data.seq_len tokens, all loss-bearing, deterministic, in the cell id, validated early."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest

from harness.config.data import DataConfig
from harness.config.model import ModelConfig
from harness.config.schema import HarnessConfig
from harness.config.train import TrainConfig
from harness.data.prepare import data_line, prepare_data
from harness.data.synthetic import split_sizes, vocabulary
from harness.data.tokenize import IGNORE_INDEX
from harness.errors import ConfigError, DataError
from harness.store import identity
from harness.store.identity import cell_id, cell_identity
from tests.unit.test_config import _compose

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def tokenizer(cache_dir):
    from transformers import AutoTokenizer

    from harness.models.tiny import ensure_tiny_model

    return AutoTokenizer.from_pretrained(ensure_tiny_model(ModelConfig(), cache_dir))


def _data(seq_len=64, examples=16, **changes):
    return DataConfig(name="synthetic", synthetic=True, seq_len=seq_len, examples=examples, **changes)


def test_every_row_is_exactly_seq_len_tokens_all_loss_bearing(tokenizer, capsys):
    prepared = prepare_data(_data(), tokenizer, max_seq_len=256, seed=1234)
    assert [len(prepared.train), len(prepared.heldout), len(prepared.test)] == [16, 2, 2]
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    for row in prepared.train + prepared.heldout + prepared.test:
        assert len(row["input_ids"]) == 64 and row["labels"] == row["input_ids"]
        assert IGNORE_INDEX not in row["labels"] and not special & set(row["input_ids"])
        assert max(row["input_ids"]) < len(tokenizer)
    stats = prepared.stats
    assert stats["token_lengths"] == {"p50": 64, "p95": 64, "max": 64}
    assert stats["synthetic"] is True and stats["chance_loss"] == pytest.approx(math.log(stats["vocabulary"]))
    assert stats["train"]["tokens"] == stats["train"]["loss_tokens"] == 16 * 64 and stats["train"]["truncated"] == 0
    assert stats["loss_on"] == "all" and stats["cache"]["key"] is None
    printed = capsys.readouterr().out
    assert printed == data_line(stats) + "\n" and "synthetic, 20 rows of 64 random tokens" in printed


def test_rows_follow_the_seed_and_nothing_else(tokenizer):
    first = prepare_data(_data(), tokenizer, 256, seed=7, quiet=True)
    again = prepare_data(_data(), tokenizer, 256, seed=7, quiet=True)
    other = prepare_data(_data(), tokenizer, 256, seed=8, quiet=True)
    more = prepare_data(_data(examples=32), tokenizer, 256, seed=7, quiet=True)
    assert first.train == again.train and first.heldout == again.heldout and first.test == again.test
    assert first.train != other.train
    assert more.train[:16] == first.train  # each split draws from its own stream: 16 rows are the first 16 of 32
    assert first.train[0] != first.heldout[0]
    assert first.stats["where"]["train"] == ["synthetic train row 0", "synthetic train row 1"]


def test_split_sizes_follow_the_fractions_and_max_examples_takes_a_prefix(tokenizer):
    assert split_sizes(_data(examples=100)) == {"train": 100, "validation": 10, "test": 10}
    assert split_sizes(_data(examples=3, test_fraction=0.0)) == {"train": 3, "validation": 1, "test": 0}
    whole = prepare_data(_data(), tokenizer, 256, seed=3, quiet=True)
    part = prepare_data(_data(max_examples=4), tokenizer, 256, seed=3, quiet=True)
    assert part.train == whole.train[:4] and part.stats["train"]["available"] == 16


def test_vocabulary_leaves_out_every_special_token(tokenizer):
    ids = vocabulary(tokenizer)
    assert tokenizer.pad_token_id not in ids and tokenizer.eos_token_id not in ids
    assert 0 < len(ids) < len(tokenizer) and np.all(np.diff(ids) > 0)


def test_longer_than_max_seq_len_is_refused_even_without_the_config_check(tokenizer):
    with pytest.raises(DataError, match="data.seq_len=512: longer than train.max_seq_len=256"):
        prepare_data(_data(seq_len=512), tokenizer, 256, seed=1, quiet=True)


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["data=synthetic", "data.seq_len=1024"],
         "data.seq_len=1024: longer than train.max_seq_len=256; synthetic rows are never truncated: set train.max_seq_len=1024"),
        (["data=synthetic", "data.seq_len=0"], "data.seq_len=0: must be a positive integer"),
        (["data=synthetic", "data.examples=-1"], "data.examples=-1: must be a positive integer"),
        (["data.seq_len=64"], "data.seq_len=64: only applies to generated data: use data=synthetic"),
        (["data=synthetic", "data.hub_id=tatsu-lab/alpaca"], "data.hub_id=tatsu-lab/alpaca: data=synthetic generates"),
    ],
)
def test_bad_settings_fail_in_one_line_naming_the_key(overrides, needle):
    from harness.sweep.validate import validate

    with pytest.raises(ConfigError) as info:
        validate(_compose(overrides))
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_seq_len_follows_train_max_seq_len_unless_given():
    from harness.sweep.validate import validate

    typed, plain = validate(_compose(["data=synthetic", "train.max_seq_len=512"]))
    assert typed.data.synthetic and typed.data.seq_len == plain["data"]["seq_len"] == 512
    typed, _ = validate(_compose(["data=synthetic", "data.seq_len=64", "data.examples=16"]))
    assert (typed.data.seq_len, typed.data.examples, typed.train.max_seq_len) == (64, 16, 256)


@pytest.fixture
def synthetic_config(monkeypatch):
    monkeypatch.setattr(identity, "_visible_gpu_name", lambda: None)
    return dataclasses.asdict(HarnessConfig(data=_data(), train=TrainConfig(max_seq_len=256)))


@pytest.mark.parametrize("key,value", [("seq_len", 128), ("examples", 32), ("split_seed", 1)])
def test_shape_and_seed_are_part_of_the_cell_id(synthetic_config, key, value):
    changed = copy.deepcopy(synthetic_config)
    changed["data"][key] = value
    ids = {cell_id(c, cell_identity(c)) for c in (synthetic_config, changed)}
    assert len(ids) == 2
    assert cell_identity(synthetic_config)["data"] == "synthetic:v1:64x16"


def test_a_synthetic_cell_is_never_the_bundled_cell(synthetic_config):
    bundled = dataclasses.asdict(HarnessConfig(train=TrainConfig(max_seq_len=256)))
    assert cell_id(bundled, cell_identity(bundled)) != cell_id(synthetic_config, cell_identity(synthetic_config))
    renamed = copy.deepcopy(synthetic_config)
    renamed["data"]["name"] = "fixed-len"  # a label: same rows, same cell
    assert cell_id(renamed, cell_identity(renamed)) == cell_id(synthetic_config, cell_identity(synthetic_config))
