"""Fixed-length generated data (``data=synthetic``): every example exactly ``data.seq_len`` tokens.

Memory and throughput depend on the shape of a micro-batch, not on what its tokens say, and
real chat data is short (the bundled set is p50 128 tokens), so "batch 4 x 2048" on it never
trains a 2048-token row. Here each row is ``data.seq_len`` token ids drawn uniformly from the
tokenizer's vocabulary without its special tokens (no BOS, EOS or pad inside a row, so the
collator masks nothing and the model sees no turn boundaries), and every token carries loss.
There is no chat template, no filter and no tokenization: the rows are token ids already, so
nothing is cached either (drawing them is cheaper than reading a cache entry back).

Deterministic: the same data.split_seed, tokenizer, seq_len and example counts give the same
rows; each split has its own random stream, so 16 examples are the first 16 of 32. Quality
numbers on it mean nothing: on uniform random tokens no model beats a loss of ln(vocabulary),
which the statistics record as ``chance_loss`` beside ``synthetic: true``.
"""

from __future__ import annotations

import math
import time
from typing import Any, Dict, Tuple

import numpy as np

from harness.config.data import DataConfig
from harness.data.split import SPLITS
from harness.data.tokenize import TokenizedSplit
from harness.errors import DataError

GENERATOR_VERSION = 1
"""Bump when the same settings would draw other rows: it is part of a synthetic cell's data fingerprint."""


def fingerprint(seq_len: int, examples: int) -> str:
    """The data's identity for a cell id: generator version and the shape asked for (the split seed is in the config)."""
    return f"synthetic:v{GENERATOR_VERSION}:{seq_len}x{examples}"


def split_sizes(data: DataConfig) -> Dict[str, int]:
    """Examples per split: data.examples to train on, and val_fraction / test_fraction of that many (validation >= 1)."""
    count = int(data.examples)
    return {
        "train": count,
        "validation": max(1, math.ceil(count * data.val_fraction)),
        "test": math.ceil(count * data.test_fraction),
    }


def vocabulary(tokenizer: Any) -> np.ndarray:
    """Token ids a synthetic row may hold: the tokenizer's whole vocabulary minus every special token.

    Special tokens include the named ones (BOS, EOS, pad, unk) and every added token marked
    special (the tiny tokenizer's reserved padding ids, Llama 3's reserved tokens).
    """
    special = set(int(i) for i in getattr(tokenizer, "all_special_ids", []) or [])
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    special.update(int(i) for i, token in added.items() if getattr(token, "special", False))
    ids = np.setdiff1d(np.arange(len(tokenizer), dtype=np.int64), np.fromiter(special, dtype=np.int64, count=len(special)))
    if not len(ids):
        raise DataError("data=synthetic: the tokenizer has no token that is not special")
    return ids.astype(np.int32)


def draw_split(ids: np.ndarray, count: int, seq_len: int, seed: int, index: int) -> TokenizedSplit:
    """``count`` rows of ``seq_len`` ids from ``ids``, all loss-bearing, from split ``index``'s own stream."""
    rng = np.random.default_rng([seed & (2**64 - 1), GENERATOR_VERSION, index])  # SeedSequence takes no negative seed
    tokens = ids[rng.integers(0, len(ids), size=count * seq_len)]
    return TokenizedSplit(
        ids=tokens.astype(np.int32),
        mask=np.ones(count * seq_len, dtype=bool),
        offsets=np.arange(count + 1, dtype=np.int64) * seq_len,
        full_lengths=np.full(count, seq_len, dtype=np.int32),
        source=np.arange(count, dtype=np.int64),
        counts={"truncated": 0, "dropped_overlong": 0, "dropped_no_trainable_tokens": 0, "dropped_template_error": 0},
    )


def build(data: DataConfig, tokenizer: Any, max_seq_len: int, seed: int) -> Tuple[Dict[str, TokenizedSplit], Dict[str, Any]]:
    """Every split and the statistics a record carries, shaped like the file pipeline's (``prepare.build``)."""
    if data.seq_len > max_seq_len:  # HarnessConfig rejects this first; kept for direct callers
        raise DataError(f"data.seq_len={data.seq_len}: longer than train.max_seq_len={max_seq_len}; synthetic rows are never truncated")
    mark = time.perf_counter()
    ids = vocabulary(tokenizer)
    sizes = split_sizes(data)
    splits = {name: draw_split(ids, sizes[name], data.seq_len, seed, k) for k, name in enumerate(SPLITS)}
    total = sum(sizes.values())
    length = int(data.seq_len)
    stats: Dict[str, Any] = {
        "source": f"{length}-token random rows",
        "format": "synthetic",
        "format_detected": False,
        "synthetic": True,
        "seq_len": length,
        "examples": int(data.examples),
        "vocabulary": int(len(ids)),
        "chance_loss": math.log(len(ids)),
        "quality": "meaningless: uniform random tokens; no model beats chance_loss (perplexity = vocabulary)",
        "records": total,
        "valid": total,
        "invalid": {},
        "invalid_examples": [],
        "on_error": data.on_error,
        "filtered": {},
        "pii_scrubbed": None,
        "near_duplicate_clusters": None,
        "kept": total,
        "split_seed": seed,
        "split_examples": sizes,
        "timings_s": {"generate": time.perf_counter() - mark},
        "token_lengths": {"p50": length, "p95": length, "max": length},
        "where": {name: [f"synthetic {name} row {k}" for k in range(min(2, sizes[name]))] for name in SPLITS},
    }
    return splits, stats
