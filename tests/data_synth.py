"""Synthetic conversations for data-pipeline tests and benchmarks (no files from outside)."""

from __future__ import annotations

import random
from typing import Dict, List

SYLLABLES = ["ka", "lo", "mi", "ten", "ru", "sa", "vo", "pel", "dri", "an", "os", "quo", "zen", "bar", "ti", "ne"]


def _vocabulary(rng: random.Random, size: int) -> List[str]:
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def synthetic_conversations(
    count: int,
    seed: int = 0,
    near_dup_rate: float = 0.1,
    prompt_words: tuple = (15, 40),
    answer_words: tuple = (12, 60),
) -> List[List[Dict[str, str]]]:
    """``count`` two-turn conversations; about ``near_dup_rate`` repeat an earlier prompt with one word changed."""
    rng = random.Random(seed)
    vocab = _vocabulary(rng, 20000)
    out = []
    for _ in range(count):
        if out and rng.random() < near_dup_rate:
            words = out[rng.randrange(len(out))][0]["content"].rstrip("?").split()
            words[rng.randrange(len(words))] = rng.choice(vocab)
            prompt = " ".join(words) + "?"
        else:
            prompt = " ".join(rng.choice(vocab) for _ in range(rng.randint(*prompt_words))) + "?"
        answer = " ".join(rng.choice(vocab) for _ in range(rng.randint(*answer_words))) + "."
        out.append([{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}])
    return out
