"""Deterministic train/validation/test split by content hash and seed, cluster by cluster.

Each example gets a rank from a hash of the seed and its content, so the split does not
depend on file order. Near-duplicate clusters (see dedup.py) are placed whole, by the
smallest rank among their members, so no near-duplicate pair straddles two splits.
"""

from __future__ import annotations

import hashlib
import json
from typing import Dict, List, Sequence

import numpy as np

from harness.data.validate import Conversation
from harness.errors import DataError

SPLITS = ("train", "validation", "test")


def rank(conversation: Conversation, seed: int) -> str:
    """A stable pseudo-random key for a conversation under a seed."""
    blob = json.dumps(conversation, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(str(seed).encode() + b"\0" + blob).hexdigest()


def _targets(count: int, val_fraction: float, test_fraction: float) -> tuple:
    """(validation, test) sizes: rounded shares, at least one each when the share is non-zero."""
    val = max(1, round(count * val_fraction))
    test = max(1, round(count * test_fraction)) if test_fraction > 0 else 0
    return val, test


def split_clusters(
    conversations: Sequence[Conversation], labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> Dict[str, List[int]]:
    """Indices per split; each split ordered by rank (so a prefix is a deterministic sample)."""
    ranks = [rank(conversation, seed) for conversation in conversations]
    first: Dict[int, str] = {}
    for index, label in enumerate(labels.tolist()):
        if label not in first or ranks[index] < first[label]:
            first[label] = ranks[index]
    needed = 3 if test_fraction > 0 else 2
    if len(first) < needed:
        raise DataError(
            f"only {len(first)} distinct example(s) after validation and filters; "
            f"need at least {needed} for the train/validation{'/test' if test_fraction > 0 else ''} split"
        )
    val_target, test_target = _targets(len(conversations), val_fraction, test_fraction)
    side: Dict[int, str] = {}
    filled = {"validation": 0, "test": 0}
    sizes = np.bincount(labels)
    for label in sorted(first, key=first.__getitem__):
        if filled["validation"] < val_target:
            name = "validation"
        elif filled["test"] < test_target:
            name = "test"
        else:
            name = "train"
        side[label] = name
        if name != "train":
            filled[name] += int(sizes[label])
    out: Dict[str, List[int]] = {name: [] for name in SPLITS}
    for index in sorted(range(len(conversations)), key=ranks.__getitem__):
        out[side[int(labels[index])]].append(index)
    if not out["train"]:
        raise DataError(
            f"no example left for training after the split ({len(conversations)} examples); "
            "lower data.val_fraction/test_fraction"
        )
    return out
