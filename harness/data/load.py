"""Read conversations from disk; every problem names the file and the line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional

from harness.errors import DataError

BUNDLED_PATH = Path(__file__).resolve().parent / "bundled" / "chat.jsonl"
ROLES = ("system", "user", "assistant")
Conversation = List[Dict[str, str]]


def resolve_path(path: Optional[str]) -> Path:
    """The file a data config points at; None means the bundled chat set."""
    return BUNDLED_PATH if path is None else Path(path).expanduser()


def check_conversation(messages: object, where: str) -> Conversation:
    """Validate one conversation; raise DataError naming ``where`` (file:line) on a problem."""
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: 'messages' must be a non-empty list of turns")
    for index, turn in enumerate(messages):
        if not isinstance(turn, dict):
            raise DataError(f"{where}: turn {index} is not an object")
        role, content = turn.get("role"), turn.get("content")
        if role not in ROLES:
            raise DataError(f"{where}: turn {index} has unknown role {role!r} (expected {', '.join(ROLES)})")
        if not isinstance(content, str):
            raise DataError(f"{where}: turn {index} content must be a string, got {type(content).__name__}")
        if not content.strip():
            raise DataError(f"{where}: turn {index} ({role}) is empty")
    if not any(turn["role"] == "assistant" for turn in messages):
        raise DataError(f"{where}: conversation has no assistant turn")
    return [{"role": turn["role"], "content": turn["content"]} for turn in messages]


def load_messages_jsonl(path: Path) -> List[Conversation]:
    """Conversations from an OpenAI-messages JSONL file (one ``{"messages": [...]}`` per line)."""
    conversations = []
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}: cannot open ({exc.strerror})") from None
    with handle:
        try:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
                if not isinstance(row, dict) or "messages" not in row:
                    raise DataError(f"{where}: missing field 'messages'")
                conversations.append(check_conversation(row["messages"], where))
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not valid UTF-8 (byte offset {exc.start} of a line)") from None
    if not conversations:
        raise DataError(f"{path}: no conversations found")
    return conversations
