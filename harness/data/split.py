"""Deterministic train/held-out split by content hash and seed."""

from __future__ import annotations

import hashlib
import json
from typing import List, Tuple

from harness.data.load import Conversation


def _rank(conversation: Conversation, seed: int) -> str:
    """A stable pseudo-random key for a conversation: independent of file order."""
    blob = json.dumps(conversation, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(str(seed).encode() + b"\0" + blob).hexdigest()


def split_conversations(
    conversations: List[Conversation], val_fraction: float, seed: int
) -> Tuple[List[Conversation], List[Conversation]]:
    """(train, held-out): the same conversations always land on the same side for a seed.

    Identical conversations share a rank and therefore a side, so an exact duplicate can
    never leak from training into evaluation.
    """
    if len(conversations) < 2:
        raise ValueError("need at least two conversations to hold one out")
    keyed = sorted(((_rank(conv, seed), conv) for conv in conversations), key=lambda pair: pair[0])
    target = min(max(1, round(len(keyed) * val_fraction)), len(keyed) - 1)
    held_keys: set = set()
    count = 0
    for key, _ in keyed:  # identical conversations are adjacent: a group goes to one side
        if count >= target and key not in held_keys:
            break
        held_keys.add(key)
        count += 1
    train = [conv for key, conv in keyed if key not in held_keys]
    held = [conv for key, conv in keyed if key in held_keys]
    return train, held
