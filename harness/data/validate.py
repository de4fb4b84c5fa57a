"""Validation of conversations, and the ``data.on_error`` policy.

A problem is a reason code (counted when records are skipped) plus a message; the loader
prefixes the file and line (or record index), so every message says where to look.
Nothing is silently repaired: an empty turn or a missing field is a problem, never an
empty example.
"""

from __future__ import annotations

from collections import Counter
from typing import Dict, List

from harness.errors import DataError, safe_repr

Conversation = List[Dict[str, str]]
ROLES = ("system", "user", "assistant")
REASONS = {
    "invalid_json": "a line or file that is not valid JSON",
    "bad_utf8": "bytes that are not valid UTF-8",
    "not_an_object": "a record that is not a JSON object",
    "missing_field": "a field the format needs is absent",
    "bad_conversation": "the turn list is not a non-empty list of objects",
    "unknown_role": "a turn's role is not system, user or assistant (or a known alias)",
    "non_string_content": "a turn's content is not a string",
    "empty_turn": "a turn whose content is empty or only whitespace",
    "no_assistant_turn": "a conversation with nothing to train on",
    "bad_chatml": "ChatML text that does not parse into turns",
    "unknown_format": "a record whose format cannot be detected",
}
"""Reason codes of invalid records, as counted in ``record["data"]["invalid"]``."""
SHOWN_PROBLEMS = 20
"""How many problem messages are kept for display (all are counted)."""


class RecordProblem(Exception):
    """One invalid record: ``reason`` is a key of REASONS, the message has no location yet."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def check_turns(turns: Conversation) -> Conversation:
    """Validate normalised turns (roles known, content non-empty strings, an assistant turn)."""
    for index, turn in enumerate(turns):
        role, content = turn["role"], turn["content"]
        if role not in ROLES:
            raise RecordProblem("unknown_role", f"turn {index} has unknown role {safe_repr(role)} (expected {', '.join(ROLES)})")
        if not isinstance(content, str):
            raise RecordProblem(
                "non_string_content", f"turn {index} ({role}) content must be a string, got {type(content).__name__}"
            )
        if not content.strip():
            raise RecordProblem("empty_turn", f"turn {index} ({role}) is empty")
    if not any(turn["role"] == "assistant" for turn in turns):
        raise RecordProblem("no_assistant_turn", "conversation has no assistant turn")
    return turns


class ProblemLog:
    """Invalid records by reason, the first messages, and the on_error policy."""

    def __init__(self, on_error: str) -> None:
        self.on_error = on_error
        self.counts: Counter = Counter()
        self.messages: List[str] = []

    def add(self, where: str, problem: RecordProblem) -> None:
        """Count one invalid record and keep its message (up to SHOWN_PROBLEMS)."""
        self.counts[problem.reason] += 1
        if len(self.messages) < SHOWN_PROBLEMS:
            self.messages.append(f"{where}: {problem}")

    @property
    def total(self) -> int:
        """Invalid records seen."""
        return sum(self.counts.values())

    def raise_if_failing(self) -> None:
        """With on_error=fail, raise the first problem in one line (and how many more there are)."""
        if self.on_error != "fail" or not self.total:
            return
        more = self.total - 1
        tail = (
            f" (and {more} more invalid record{'s' if more > 1 else ''}; data.on_error=skip drops and counts them)"
            if more
            else ""
        )
        raise DataError(f"{self.messages[0]}{tail}")

    def nothing_valid(self, label: str) -> str:
        """One line for a source with no valid record: the first problem with its file and line, then the counts."""
        if not self.total:
            return f"{label}: no conversations in it"
        if self.total == 1:
            return f"{self.messages[0]} (no valid conversations: the only record is invalid)"
        counts = ", ".join(f"{reason} {count}" for reason, count in self.counts.most_common())
        return f"{self.messages[0]} (no valid conversations: all {self.total} records are invalid: {counts})"
