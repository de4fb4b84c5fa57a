"""Quality filters and PII scrubbing over validated examples; every drop is counted.

Lengths are counted in words and punctuation marks (``\\w+|[^\\w\\s]``), not in model
tokens: the filters then keep the same examples for every model of a sweep, so models
are compared on identical data. Near-duplicates are handled in ``dedup.py``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from typing import Dict, List, Tuple

from harness.config.data import DataFilterConfig
from harness.data.load import Example
from harness.data.validate import Conversation

WORD = re.compile(r"\w+|[^\w\s]")
DEFAULT_PLACEHOLDERS = (
    r"\[\s*insert\b[^\]]*\]",  # [Insert response here]
    r"\[\s*(?:your|the)\s+(?:answer|response|text|output)\b[^\]]*\]",
    r"<\s*(?:insert|your)\s[^>]*>",
    r"\b(?:response|answer|output)\s+goes\s+here\b",
    r"\blorem\s+ipsum\b",
    r"^\s*(?:todo|tbd|fixme)\b",  # a turn that starts with a to-do marker
    r"^\s*(?:n/?a|placeholder|\.\.\.|-)\s*\.?\s*$",  # a turn that is nothing but a marker
)
"""Case-insensitive patterns searched in assistant turns (``data.filters.placeholder_patterns`` replaces them)."""

EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
CARD = re.compile(r"(?<![\w-])(?:\d[ -]?){12,18}\d(?![\w-])")
# a phone number stands alone: not a slice of a longer run of digit groups (ids, non-card numbers)
PHONE = re.compile(
    r"(?<![\w+])(?<!\d[ .-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}[ .-]\d{3,4}[ .-]?\d{3,4}(?!\w)(?![ .-]\d)"
)


def count_words(text: str) -> int:
    """Words plus punctuation marks: the length unit of the filters."""
    return len(WORD.findall(text))


def assistant_text(conversation: Conversation) -> List[str]:
    """Contents of the assistant turns."""
    return [turn["content"] for turn in conversation if turn["role"] == "assistant"]


def _luhn(digits: str) -> bool:
    """True for a number that passes the payment-card checksum (cuts false positives)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def scrub_text(text: str, counts: Counter) -> str:
    """Replace card numbers, phone numbers and e-mail addresses; count each kind."""

    def card(match: re.Match) -> str:
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and _luhn(digits):
            counts["card"] += 1
            return "[CARD]"
        return match.group()

    def replace(kind: str, token: str):
        def sub(match: re.Match) -> str:
            counts[kind] += 1
            return token

        return sub

    text = CARD.sub(card, text)
    text = PHONE.sub(replace("phone", "[PHONE]"), text)
    return EMAIL.sub(replace("email", "[EMAIL]"), text)


def scrub_pii(examples: List[Example]) -> Dict[str, int]:
    """Scrub every turn of every example in place; return counts by kind."""
    counts: Counter = Counter({"email": 0, "phone": 0, "card": 0})
    for example in examples:
        example.conversation = [
            {"role": t["role"], "content": scrub_text(t["content"], counts)} for t in example.conversation
        ]
    return dict(counts)


def placeholder_regex(config: DataFilterConfig) -> re.Pattern:
    """One compiled alternation of the placeholder patterns."""
    patterns = config.placeholder_patterns if config.placeholder_patterns is not None else DEFAULT_PLACEHOLDERS
    return re.compile("|".join(f"(?:{p})" for p in patterns) or r"(?!x)x", re.IGNORECASE)


def _drop_reason(example: Example, config: DataFilterConfig, placeholder: re.Pattern) -> str:
    """Name of the first per-example filter that drops the example, or ''."""
    answers = assistant_text(example.conversation)
    if config.min_assistant_tokens and sum(count_words(a) for a in answers) < config.min_assistant_tokens:
        return "min_assistant_tokens"
    if config.placeholders and any(placeholder.search(a) for a in answers):
        return "placeholder"
    return ""


def quality_filter(examples: List[Example], config: DataFilterConfig) -> Tuple[List[Example], Dict[str, int]]:
    """Examples that pass the per-example filters, and drops by filter."""
    placeholder = placeholder_regex(config)
    kept, dropped = [], Counter({"min_assistant_tokens": 0, "placeholder": 0})
    for example in examples:
        reason = _drop_reason(example, config, placeholder)
        if reason:
            dropped[reason] += 1
        else:
            kept.append(example)
    return kept, dict(dropped)


def conversation_key(conversation: Conversation) -> str:
    """Identity of a conversation up to case and whitespace: what "exact duplicate" means."""
    folded = [[turn["role"], " ".join(turn["content"].lower().split())] for turn in conversation]
    return hashlib.sha1(json.dumps(folded, ensure_ascii=False).encode()).hexdigest()


def drop_exact_duplicates(examples: List[Example]) -> Tuple[List[Example], int]:
    """First occurrence of each conversation; the number dropped."""
    seen, kept = set(), []
    for example in examples:
        key = conversation_key(example.conversation)
        if key not in seen:
            seen.add(key)
            kept.append(example)
    return kept, len(examples) - len(kept)
