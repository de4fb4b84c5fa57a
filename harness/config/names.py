"""Names that become folders, and the folders the harness may write or read models from.

Parent-safe (no torch): the config schema checks these in ``__post_init__``, before any
folder is created, so no name can put a cell, a cache entry or a summary outside its root.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Iterable, List, Optional

from harness.errors import ConfigError


def require(ok: bool, key: str, value: Any, reason: str) -> None:
    """Raise a one-line ConfigError naming the command-line key when ``ok`` is false."""
    if not ok:
        raise ConfigError(f"{key}={value}: {reason}")


SEGMENT = re.compile(r"[A-Za-z0-9._=,+-]+")
SEGMENT_MAX = 120
RESERVED_SWEEPS = ("cells",)
"""Sweep names that would collide with what the harness keeps under run.root (the cell store)."""
# Folders a run root must never be: writing sweep folders and a cell store straight into them
# would scatter files among the system's own. Subfolders (/var/tmp/runs) are fine.
SYSTEM_ROOTS = frozenset(
    ["/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/mnt", "/media", "/opt", "/proc",
     "/root", "/run", "/sbin", "/srv", "/sys", "/usr", "/var"]
)
SYSTEM_TREES = ("/proc", "/sys", "/dev", "/etc", "/boot")
"""Trees no run root may be inside (virtual filesystems and system configuration)."""
COMMIT_HASH = re.compile(r"[0-9a-f]{40}")


def path_segment(key: str, value: Any) -> None:
    """``value`` is used as one folder name: one path segment of safe characters, never ``..``."""
    text = str(value)
    require(bool(text), key, value, "must not be empty (it names a folder)")
    require(
        SEGMENT.fullmatch(text) is not None,
        key,
        value,
        "names a folder: use only letters, digits and . _ = , + - (no / or spaces)",
    )
    require(not text.startswith(".") and ".." not in text, key, value, "names a folder: must not start with '.' or contain '..'")
    require(len(text) <= SEGMENT_MAX, key, value, f"names a folder: at most {SEGMENT_MAX} characters (got {len(text)})")


def system_root(path: Path) -> bool:
    """True for a filesystem root, a top-level system folder, or anything inside /proc, /sys, /dev, /etc, /boot."""
    if path == Path(path.anchor):
        return True
    text = path.as_posix()
    return text in SYSTEM_ROOTS or any(text.startswith(tree + "/") for tree in SYSTEM_TREES)


def check_run_root_name(root: Any) -> None:
    """``run.root`` names a folder, and not the filesystem root or a system folder, once resolved.

    The check reads the path after ``..`` and symbolic links are resolved (``os.path.realpath``): ``/tmp/r/../../etc``
    or a link to ``/etc`` is where the cells would really be written. Reads links only; creates nothing.
    """
    require(bool(str(root or "").strip()), "run.root", root, "must name a folder")
    path = Path(os.path.realpath(os.path.expanduser(str(root))))
    shown = "" if str(path) == str(root) else f" ({path})"
    require(not system_root(path), "run.root", root,
            f"is a filesystem root or a system folder{shown}; use a folder of your own (default: runs)")


def local_folder(hub_id: Optional[str]) -> Optional[Path]:
    """The folder ``model.hub_id`` names when it is a local directory, else None (a hub id)."""
    if not hub_id:
        return None
    path = Path(os.path.expanduser(hub_id))
    return path if path.is_dir() else None


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def pickle_only(folder: Path) -> List[str]:
    """Names of the pickle weight files of a local model folder that has no safetensors file; [] otherwise."""
    names = [p.name for p in folder.iterdir() if p.is_file()]
    if any(name.endswith(".safetensors") for name in names):
        return []
    return sorted(name for name in names if name.endswith(PICKLE_SUFFIXES))


def one_of(key: str, value: Any, allowed: tuple) -> None:
    """Check that ``value`` is one of ``allowed``, naming the key and the choices."""
    require(value in allowed, key, value, f"must be one of {', '.join(map(str, allowed))}")


def closest(name: Any, choices: Iterable[str]) -> Optional[str]:
    """The choice a mistyped ``name`` most likely meant, or None: the first choice it is a prefix of, else difflib's.

    A prefix wins over spelling similarity because a short name is usually the start of the full one
    (``adamw`` -> ``adamw_torch``); difflib alone ranks ``grokadamw`` first. Ties go to the choices' own order
    (transformers lists its common optimizers first).
    """
    text, options = str(name), list(choices)
    if not text:
        return None
    prefixed = [option for option in options if option.lower().startswith(text.lower()) and option != text]
    if prefixed:
        return prefixed[0]
    close = difflib.get_close_matches(text, options, n=1)
    return close[0] if close else None


def did_you_mean(name: Any, choices: Iterable[str]) -> str:
    """`` (did you mean X?)`` for the choice ``closest`` finds, or "" when there is none."""
    close = closest(name, choices)
    return f" (did you mean {close}?)" if close else ""


def known_name(key: str, value: str, allowed: tuple, what: str) -> None:
    """Like ``one_of`` for long lists: a did-you-mean hint first, then every name."""
    if value in allowed:
        return
    hint = did_you_mean(value, allowed)
    raise ConfigError(f"{key}={value}: not {what}{hint}; known: {', '.join(allowed)}")
