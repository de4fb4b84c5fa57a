"""Data pipeline speed (pytest-benchmark; ``make bench``). Targets are the issue's, on 2 CPU cores.

- normalise + filter + deduplicate + split + tokenize 10,000 two-turn conversations with
  the tiny-llama tokenizer: under 10 s;
- near-duplicate clustering of 50,000 prompts: well under a minute;
- a cached second preparation skips all of that.
"""

from __future__ import annotations

import json

import pytest

from harness.config.data import DataConfig
from harness.config.model import ModelConfig
from harness.data.dedup import near_duplicate_clusters
from harness.data.prepare import prepare_data
from tests.data_synth import synthetic_conversations

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def tokenizer(cache_dir):
    from transformers import AutoTokenizer

    from harness.models.tiny import ensure_tiny_model

    return AutoTokenizer.from_pretrained(ensure_tiny_model(ModelConfig(), cache_dir))


@pytest.fixture(scope="module")
def ten_thousand(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "chat.jsonl"
    conversations = synthetic_conversations(10_000, seed=11, prompt_words=(8, 25), answer_words=(15, 45))
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations))
    return path


def test_prepare_10k_conversations(benchmark, tokenizer, ten_thousand):
    config = DataConfig(path=str(ten_thousand))
    data = benchmark.pedantic(prepare_data, args=(config, tokenizer, 256, 42), rounds=3, iterations=1)
    assert data.stats["records"] == 10_000 and data.stats["train"]["examples"] > 7_000
    assert benchmark.stats.stats.mean < 10.0


def test_cached_second_preparation_skips_the_work(benchmark, tokenizer, ten_thousand, tmp_path):
    config = DataConfig(path=str(ten_thousand))
    prepare_data(config, tokenizer, 256, 42, cache_dir=tmp_path)
    data = benchmark.pedantic(
        prepare_data, args=(config, tokenizer, 256, 42), kwargs={"cache_dir": tmp_path}, rounds=3, iterations=1
    )
    assert data.stats["cache"]["hit"]
    assert benchmark.stats.stats.mean < 2.0


def test_near_duplicates_of_50k_prompts(benchmark):
    conversations = synthetic_conversations(50_000, seed=12, near_dup_rate=0.1)
    labels = benchmark.pedantic(near_duplicate_clusters, args=(conversations, 0.92), rounds=2, iterations=1)
    assert len(set(labels.tolist())) < 0.97 * len(conversations)  # the planted near-duplicates were found
    assert benchmark.stats.stats.mean < 30.0
