"""On-disk cache of prepared, tokenized data, shared by the cells of a sweep (and across sweeps).

An entry is keyed by a hash of the data's content, every setting that shapes the
examples (format, columns, on_error, filters, split fractions, seed) and the tokenization
(tokenizer files, chat template, max length, loss_on, overlong) and the pipeline's own
source code - but not max_examples, which only takes a prefix of the cached training
split, so a data-size sweep tokenizes once. One ``.npz`` file per entry under
``<run.cache_dir>/tokenized/``, written under a file lock and renamed into place, so
parallel workers build it once and never read half.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from harness.data.tokenize import TokenizedSplit
from harness.files import file_lock, stable_digest, write_bytes_atomic

CODE_DIR = Path(__file__).resolve().parent
ARRAYS = ("ids", "mask", "offsets", "full_lengths", "source")

Splits = Dict[str, TokenizedSplit]


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Hash of what decides token ids: the tokenizer's full definition, class and chat template."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    definition = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    digest = hashlib.sha256(definition.encode())
    digest.update(type(tokenizer).__name__.encode())
    digest.update(str(getattr(tokenizer, "chat_template", "")).encode())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Hash of the data pipeline's own source: a change to how data is prepared invalidates old entries."""
    digest = hashlib.sha256()
    for path in sorted(CODE_DIR.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def cache_key(parts: Dict[str, Any]) -> str:
    """Stable key for a dict of settings (and the pipeline code)."""
    return stable_digest({"code": code_fingerprint(), **parts}, 24)


def _encode(splits: Splits, meta: Dict[str, Any]) -> bytes:
    """One npz blob: each split's arrays and the JSON metadata (with the split counts)."""
    arrays = {f"{name}.{key}": getattr(split, key) for name, split in splits.items() for key in ARRAYS}
    meta = {**meta, "split_counts": {name: split.counts for name, split in splits.items()}}
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array(json.dumps(meta)), **arrays)
    return buffer.getvalue()


def read_entry(path: Path) -> Optional[Tuple[Splits, Dict[str, Any]]]:
    """(splits, meta) from a cache file, or None when it is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as blob:
            meta = json.loads(str(blob["meta"]))
            splits = {
                name: TokenizedSplit(**{key: blob[f"{name}.{key}"] for key in ARRAYS}, counts=counts)
                for name, counts in meta.pop("split_counts").items()
            }
    except (OSError, ValueError, KeyError):
        return None
    return splits, meta


def cached(
    root: Optional[Path], key: str, build: Callable[[], Tuple[Splits, Dict[str, Any]]]
) -> Tuple[Splits, Dict[str, Any], bool]:
    """(splits, meta, hit): the entry for ``key``, built by ``build`` under a lock when absent."""
    if root is None:
        return (*build(), False)
    path = Path(root) / f"{key}.npz"
    entry = read_entry(path)
    if entry is not None:
        return (*entry, True)
    with file_lock(path.with_suffix(".lock")):
        entry = read_entry(path)  # built by a concurrent worker while this one waited
        if entry is not None:
            return (*entry, True)
        splits, meta = build()
        write_bytes_atomic(path, _encode(splits, meta))
    return splits, meta, False
