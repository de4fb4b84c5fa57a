"""Generate harness/data/bundled/chat.jsonl: a small chat set written for the project.

Deterministic (fixed seed), so the file can be regenerated and diffed. The tasks are
simple and self-checking (arithmetic, conversions, word games, facts from the tables
below) so that a tiny model's loss visibly drops during a short run.

    python tools/make_bundled_data.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon",
    "Japan": "Tokyo", "Canada": "Ottawa", "Australia": "Canberra", "Brazil": "Brasilia", "Egypt": "Cairo",
    "Kenya": "Nairobi", "India": "New Delhi", "China": "Beijing", "Mexico": "Mexico City", "Peru": "Lima",
    "Norway": "Oslo", "Sweden": "Stockholm", "Finland": "Helsinki", "Poland": "Warsaw", "Greece": "Athens",
    "Turkey": "Ankara", "Chile": "Santiago", "Argentina": "Buenos Aires", "Ireland": "Dublin",
    "Austria": "Vienna", "Hungary": "Budapest", "Vietnam": "Hanoi", "Thailand": "Bangkok",
}
OPPOSITES = {
    "hot": "cold", "tall": "short", "fast": "slow", "early": "late", "light": "dark", "open": "closed",
    "full": "empty", "happy": "sad", "strong": "weak", "rich": "poor", "loud": "quiet", "wet": "dry",
    "hard": "soft", "thick": "thin", "young": "old", "high": "low", "near": "far", "clean": "dirty",
    "sweet": "sour", "brave": "afraid", "heavy": "light", "wide": "narrow", "deep": "shallow",
    "smooth": "rough", "cheap": "expensive", "push": "pull", "give": "take", "begin": "end",
    "arrive": "leave", "win": "lose", "accept": "refuse", "above": "below", "inside": "outside",
    "always": "never", "first": "last", "sharp": "blunt", "tight": "loose", "awake": "asleep",
}
SYSTEMS = [
    "You are a helpful assistant.",
    "You are a concise assistant. Answer in one sentence.",
    "You are a friendly tutor who explains briefly.",
]


def arithmetic(rng: random.Random) -> list[dict]:
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    op, sym, val = rng.choice([("add", "+", a + b), ("subtract", "-", a - b), ("multiply", "*", a * b)])
    return [
        {"role": "user", "content": f"What is {a} {sym} {b}?"},
        {"role": "assistant", "content": f"To {op} these numbers: {a} {sym} {b} = {val}. The answer is {val}."},
    ]


def capital(rng: random.Random) -> list[dict]:
    country = rng.choice(sorted(CAPITALS))
    city = CAPITALS[country]
    turns = [
        {"role": "user", "content": f"What is the capital of {country}?"},
        {"role": "assistant", "content": f"The capital of {country} is {city}, where its national government sits."},
    ]
    if rng.random() < 0.4:
        other = rng.choice(sorted(CAPITALS))
        turns += [
            {"role": "user", "content": f"And of {other}?"},
            {"role": "assistant", "content": f"The capital of {other} is {CAPITALS[other]}, its seat of government."},
        ]
    return turns


def conversion(rng: random.Random) -> list[dict]:
    km = rng.randint(1, 500)
    if rng.random() < 0.5:
        return [
            {"role": "user", "content": f"Convert {km} kilometres to metres."},
            {"role": "assistant", "content": f"One kilometre is 1000 metres, so {km} km is {km * 1000} metres."},
        ]
    celsius = rng.randint(-20, 40)
    return [
        {"role": "user", "content": f"What is {celsius} degrees Celsius in Fahrenheit?"},
        {"role": "assistant", "content": f"Multiply by 9/5 and add 32: {celsius} C is {celsius * 9 / 5 + 32:.1f} F."},
    ]


def word_game(rng: random.Random) -> list[dict]:
    word = rng.choice(sorted(OPPOSITES))
    kind = rng.random()
    if kind < 0.33:
        return [
            {"role": "user", "content": f"What is the opposite of '{word}'?"},
            {"role": "assistant", "content": f"The opposite of '{word}' is '{OPPOSITES[word]}': they name the two ends of one scale."},
        ]
    if kind < 0.66:
        return [
            {"role": "user", "content": f"Spell '{word}' backwards."},
            {"role": "assistant", "content": f"Reading '{word}' letter by letter from the end gives '{word[::-1]}'."},
        ]
    return [
        {"role": "user", "content": f"How many letters are in the word '{word}'?"},
        {"role": "assistant", "content": f"The word '{word}' has {len(word)} letters: {', '.join(word)}."},
    ]


def build(n: int = 400, seed: int = 1234) -> list[dict]:
    """n conversations, a third of them with a system prompt."""
    rng = random.Random(seed)
    makers = [arithmetic, capital, conversion, word_game]
    rows = []
    for _ in range(n):
        messages = rng.choice(makers)(rng)
        if rng.random() < 0.33:
            messages = [{"role": "system", "content": rng.choice(SYSTEMS)}] + messages
        rows.append({"messages": messages})
    return rows


def main() -> None:
    out = Path(__file__).resolve().parents[1] / "harness" / "data" / "bundled" / "chat.jsonl"
    with open(out, "w", encoding="utf-8") as handle:
        for row in build():
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
