"""Files every room writes: atomic writes, JSON that is always finite, stable digests, locks, path guards.

A reader never sees a half-written file: writers go through ``write_*_atomic`` (temp file, fsync,
``os.replace``). Files and folders respect the umask. Standard library only.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

from harness.errors import CorruptFileError, StoreError, safe_repr


def stable_digest(payload: Any, length: int) -> str:
    """First ``length`` hex digits of the sha256 of ``payload`` as canonical JSON (sorted keys).

    The one way identities are hashed (cell ids, cache keys), so equal settings always
    give equal keys on any machine.
    """
    blob = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def _read_umask() -> int:
    """The process umask, without changing it where Linux can tell (/proc/self/status, kernel 4.7+).

    Elsewhere it is set and restored, which is racy against another thread creating a
    file in that instant; hence once, at import, and cached.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


UMASK = _read_umask()
"""The umask at import, read once: what ``FILE_MODE`` and ``DIR_MODE`` honour."""
FILE_MODE = 0o666 & ~UMASK
"""Mode of files the harness writes: what ``open()`` would give (mkstemp would give 0600)."""
DIR_MODE = 0o777 & ~UMASK
"""Mode of folders the harness creates: what ``mkdir`` would give (mkdtemp would give 0700)."""


def make_staging_dir(prefix: str, parent: Path) -> Path:
    """A fresh private-named folder in ``parent`` (``tempfile.mkdtemp``) with the user's usual folder mode.

    For folders built in place and then renamed to their final, shared name (cache
    entries), which must not stay 0700.
    """
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(folder, DIR_MODE)
    return folder


def share_tree(folder: Path) -> None:
    """Give ``folder`` and everything under it the user's usual modes (``DIR_MODE``, ``FILE_MODE``).

    For folders third-party writers fill: safetensors (0.8) writes its files 0600
    whatever the umask, so saved models and adapters would be unreadable to the rest of
    a group sharing the cache or run root. Symbolic links are left alone.
    """
    folder = Path(folder)
    os.chmod(folder, DIR_MODE)
    for path in folder.rglob("*"):
        if path.is_symlink():
            continue
        executable = path.is_dir() or path.stat().st_mode & 0o111
        os.chmod(path, DIR_MODE if executable else FILE_MODE)


def write_text_atomic(path: Path, text: str, durable: bool = True) -> None:
    """Write ``text`` to ``path`` via a temp file in the same folder, fsync and rename."""
    write_bytes_atomic(path, text.encode("utf-8"), durable=durable)


def write_bytes_atomic(path: Path, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder, fsync and rename.

    ``durable=False`` skips both fsyncs (file and folder): readers still never see a
    half-written file, but a power cut may lose it. For files rewritten often that only
    report on a run (``progress.json``), where an fsync would cost the run time.
    """
    path = Path(path)
    try:
        _write_replace(path, data, durable)
    except OSError as exc:  # name the file the user knows (a full disk fails write() with no name, mkstemp with the temp's)
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
    if durable:
        _fsync_dir(path.parent)


def _write_replace(path: Path, data: bytes, durable: bool) -> None:
    """The temp file, its contents and the rename of ``write_bytes_atomic``; the temp file never outlives a failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), FILE_MODE)  # mkstemp makes 0600; outputs are shared like any file the user writes
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def finite_json(value: Any) -> Any:
    """``value`` with NaN and infinities as null: strict JSON readers (browsers, jq, pandas' C parser) reject them.

    A diverged cell says which value broke where in its own field (``train.diverged``), as text.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(item) for item in value]
    return value


def write_json_atomic(path: Path, payload: Any, durable: bool = True) -> None:
    """Write strict JSON atomically (see ``write_bytes_atomic``; non-finite floats become null)."""
    text = json.dumps(finite_json(payload), indent=2, default=_json_default, allow_nan=False)
    write_text_atomic(path, text + "\n", durable=durable)


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _json_default(value: Any) -> Any:
    """Serialise the few non-JSON types records carry (paths, numpy scalars)."""
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_json(path: Path) -> Optional[Dict[str, Any]]:
    """Parsed JSON object at ``path``, or None when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def load_json(path: Path, shown: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """Parsed JSON object at ``path``; None when the file is missing; ``CorruptFileError`` naming ``shown``
    (default: the path) when it exists but is not a JSON object (truncated by a full disk or a kill, or edited)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except ValueError:
        raise CorruptFileError(f"{shown or path}: not valid JSON (truncated?)") from None
    except OSError as exc:
        raise CorruptFileError(f"{shown or path}: cannot be read ({exc.strerror or exc})") from None
    if not isinstance(data, dict):
        raise CorruptFileError(f"{shown or path}: holds {safe_repr(data)}, not a JSON object")
    return data


@contextmanager
def file_lock(path: Path, wait: bool = True) -> Iterator[bool]:
    """Exclusive advisory lock held for the ``with`` block, so one process builds what all share; yields True
    when held, False (nothing held) when ``wait`` is False and another process holds it."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def within(path: Path, root: Path) -> Path:
    """``path`` resolved, after checking that it stays under ``root`` (no ``..`` or link escapes)."""
    resolved, base = Path(path).resolve(), Path(root).resolve()
    if resolved != base and base not in resolved.parents:
        raise StoreError(f"refusing to write {path}: it is outside {root}")
    return resolved
