"""What a cell's parent and a warm template share: the template's key and socket, the fingerprint that proves
it runs today's code, and the messages between them.

A warm template (``python -m harness.worker.template``, ``run.worker=warm``) is one process per Python
environment and environment-variable set that imported the training stack once and then forks a child per
cell; the parent (``harness.sweep.warm``) asks it for a child over a Unix socket and hands it the cell's log,
lock and GPU-lease descriptors (SCM_RIGHTS). Light: standard library only.

The key: the interpreter, the working directory and every environment variable except the per-cell ones (``PER_CELL_ENV``: applied
in the child before anything reads them), so a template never serves a cell whose environment would have
imported differently (``HF_HUB_OFFLINE``, ``PYTHONPATH``, ``OMP_NUM_THREADS`` ... are read at import time).
The fingerprint: library versions, the site-packages folders' mtimes (a ``pip install`` changes them) and the
harness's own source files (path, size, mtime: commits, checkouts and uncommitted edits alike); a template
whose fingerprint differs from the parent's refuses to fork and is replaced.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from harness.files import stable_digest
from harness.store.environment import library_versions
from harness.store.launch import LAUNCH_ENV, SPAWN_TIME_ENV, WORKER_ENV

IDLE_ENV = "HARNESS_TEMPLATE_IDLE_S"
"""Seconds a template with no running cell waits for the next one before it exits (default ``IDLE_S``)."""
IDLE_S = 600.0
PER_CELL_ENV = (SPAWN_TIME_ENV, LAUNCH_ENV, WORKER_ENV, "CUDA_VISIBLE_DEVICES", "PYTEST_CURRENT_TEST",
                "PWD", "OLDPWD", "SHLVL", "_")
"""Variables that differ from cell to cell and are read only after the fork (CUDA_VISIBLE_DEVICES at CUDA init,
which a template never does): they do not key the template; the child sets them."""
PACKAGE = Path(__file__).resolve().parents[1]
"""The harness package whose source the fingerprint covers."""
HEADER = 8


SECRET = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)
"""Names of variables a template never holds or hashes (API keys reach only the child, through the request)."""


def _keyed(name: str) -> bool:
    if name in PER_CELL_ENV or SECRET.search(name):
        return False
    # the harness's own variables are read when a cell runs, never when a module is imported
    return not name.startswith("HARNESS_") or name == IDLE_ENV


def template_env(env: Mapping[str, str]) -> Dict[str, str]:
    """The environment a template for ``env`` starts with and is keyed by: ``env`` less the per-cell variables,
    anything named like a secret, and the harness's own variables (the child gets all of them back)."""
    return {k: v for k, v in env.items() if _keyed(k)}


def template_key(python: str, env: Mapping[str, str], cwd: str) -> str:
    """Which template may fork a cell run by ``python`` with ``env`` from ``cwd`` (16 hex digits); the working
    directory is ``sys.path[0]`` of ``python -m``, so it decides what imports as a spawned worker would."""
    return stable_digest({"python": os.path.abspath(python), "env": sorted(template_env(env).items()),
                          "cwd": os.path.abspath(cwd)}, 16)


def template_dir() -> Path:
    """This user's folder of template sockets and logs (mode 0700, short enough for a socket path)."""
    folder = Path(tempfile.gettempdir()) / f"harness-{os.getuid()}" / "templates"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = folder.stat()
    if info.st_uid != os.getuid():  # never talk to, or through, another user's socket
        raise PermissionError(f"{folder} belongs to uid {info.st_uid}, not this user")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(folder, 0o700)
    return folder


def socket_path(key: str) -> Path:
    """The socket a template of ``key`` listens on."""
    return template_dir() / f"{key}.sock"


def refusal_path(key: str) -> Path:
    """Where a template of ``key`` that would not serve says why (with its fingerprint: a change retries)."""
    return template_dir() / f"{key}.refused.json"


def _source_digest(package: Path = PACKAGE) -> str:
    entries: List[Tuple[str, int, int]] = []
    for root, dirs, files in os.walk(package):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".py", ".json", ".jsonl", ".txt", ".yaml")):
                info = os.stat(os.path.join(root, name))
                entries.append((os.path.relpath(os.path.join(root, name), package), info.st_size, info.st_mtime_ns))
    return stable_digest(entries, 16)


def _site_dirs() -> List[str]:
    paths = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    return sorted(p for p in paths if os.path.isdir(p))


def fingerprint() -> Dict[str, Any]:
    """What this interpreter would import now: library versions, site-packages mtimes, harness source digest."""
    return {
        "python": sys.version,
        "libraries": library_versions(),
        "site_packages": {p: os.stat(p).st_mtime_ns for p in _site_dirs()},
        "harness_source": _source_digest(),
    }


def difference(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> Optional[str]:
    """One line naming what differs between two fingerprints, or None when they match."""
    keys = [key for key in sorted(set(ours) | set(theirs)) if ours.get(key) != theirs.get(key)]
    if not keys:
        return None
    if keys == ["libraries"]:
        names = sorted(n for n in set(ours["libraries"]) | set(theirs["libraries"])
                       if ours["libraries"].get(n) != theirs["libraries"].get(n))
        return f"library versions changed ({', '.join(names)})"
    labels = {"site_packages": "site-packages changed (a pip install)", "harness_source": "harness source changed",
              "python": "python changed", "libraries": "library versions changed"}
    return "; ".join(labels.get(key, key) for key in keys)


def send(sock: socket.socket, payload: Mapping[str, Any], fds: Sequence[int] = ()) -> None:
    """One message: an 8-byte length and JSON, with ``fds`` attached to its first bytes."""
    data = json.dumps(payload).encode()
    frame = len(data).to_bytes(HEADER, "big") + data
    if fds:
        sent = socket.send_fds(sock, [frame], list(fds))
        sock.sendall(frame[sent:])
    else:
        sock.sendall(frame)


class Channel:
    """The receiving end of a socket: whole messages out of a byte stream that may split or join them."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.fds: List[int] = []
        """Descriptors received so far (the caller owns and closes them)."""

    def _message(self) -> Optional[Dict[str, Any]]:
        if len(self.buffer) < HEADER:
            return None
        size = int.from_bytes(self.buffer[:HEADER], "big")
        if len(self.buffer) < HEADER + size:
            return None
        data, self.buffer = self.buffer[HEADER:HEADER + size], self.buffer[HEADER + size:]
        return json.loads(data)

    def receive(self, timeout: Optional[float] = None, max_fds: int = 0) -> Tuple[Optional[Dict[str, Any]], bool]:
        """(the next message or None, whether the stream ended); waits up to ``timeout`` seconds (None: forever)."""
        import select

        while True:
            message = self._message()
            if message is not None:
                return message, False
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                return None, False
            if max_fds:
                data, fds, _flags, _addr = socket.recv_fds(self.sock, 65536, max_fds)
                self.fds.extend(fds)
            else:
                data = self.sock.recv(65536)
            if not data:
                return self._message(), True
            self.buffer += data
