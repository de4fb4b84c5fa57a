"""On-disk cache of judge calls: one atomic JSON file per successful call.

``<cache_dir>/judge/<2 hex>/<sha256>.json``. Each file is written to a temp name and
renamed into place (``write_json_atomic``), so concurrent writers -- threads, processes,
machines on a shared file system -- never leave a half-written entry, and two writers of
the same key both write a complete, equivalent answer. Only the answer and its token
usage are stored: never the API key, base URL or headers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Optional

from harness.files import read_json, stable_digest, write_json_atomic
from harness.judge.calls import Request


def key(request: Request, model: str) -> str:
    """sha256 (64 hex) of what decides the judge's answer: model, prompt hash, messages, sampling, repeat.

    ``request.tag`` is bookkeeping and stays out, so the same judgment is shared by
    every cell and benchmark run that asks it.
    """
    payload = {
        "model": model,
        "prompt_hash": request.prompt_hash,
        "messages": request.messages,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "logprobs": request.logprobs,
        "top_logprobs": request.top_logprobs,
        "repeat": request.repeat,
    }
    return stable_digest(payload, 64)


class JudgeCache:
    """The judge's entries under ``<cache_dir>/judge``."""

    def __init__(self, cache_dir: Path) -> None:
        """Entries live under ``cache_dir / "judge"`` (created on the first write)."""
        self.root = Path(cache_dir) / "judge"

    def path(self, cache_key: str) -> Path:
        """Where the entry for ``cache_key`` lives: a 2-hex-digit fan-out keeps folders small."""
        return self.root / cache_key[:2] / f"{cache_key}.json"

    def get(self, cache_key: str) -> Optional[Dict[str, Any]]:
        """The stored entry, or None when missing, unreadable or not an answer (the call is made again)."""
        entry = read_json(self.path(cache_key))
        if entry is None or not isinstance(entry.get("text"), str):
            return None
        return entry

    def put(self, cache_key: str, *, text: str, top_logprobs: Optional[list], prompt_tokens: int,
            completion_tokens: int, model: str) -> None:
        """Store one successful answer atomically.

        Not fsynced: a lost entry after a power cut only means one call is made again.
        """
        entry = {
            "text": text,
            "top_logprobs": top_logprobs,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "model": model,
            "created": time.time(),
        }
        write_json_atomic(self.path(cache_key), entry, durable=False)
