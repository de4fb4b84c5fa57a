"""Exceptions the harness raises on purpose; each carries a one-line, user-facing message."""

from __future__ import annotations

import re
from typing import Any, Callable

NAME_LIKE = re.compile(r"[A-Za-z0-9_ .:-]{1,32}")


def safe_repr(value: Any) -> str:
    """A value read from a file, for an error message: quoted only when short and name-like.

    Messages must not echo arbitrary file bytes (a mistyped ``data.path`` can point at a
    secret), so free text is described by its type and length, never quoted.
    """
    if isinstance(value, str):
        return repr(value) if NAME_LIKE.fullmatch(value) else f"a string of {len(value)} characters"
    if value is None or isinstance(value, (bool, int)):
        return repr(value)
    return f"a {type(value).__name__}"


class HarnessError(Exception):
    """Base class: the message is shown to the user as is, without a traceback."""


class StoreError(HarnessError):
    """A store path or layout problem; one line."""


class CorruptFileError(StoreError):
    """A store file that exists but does not parse (a truncated ``record.json``, a ``manifest.json`` of ``{}``);
    the message names the file and what to do."""


class ConfigError(HarnessError):
    """An invalid configuration value; the message names the command-line key."""


class UnsupportedError(HarnessError):
    """A setting the cell's framework cannot honour here (e.g. 8-bit on Unsloth's CPU path); the cell ends
    ``unsupported``, not ``failed``, and the message names the key."""


class DataError(HarnessError):
    """Unusable training data; the message names the file and line or record."""


class HubUnavailableError(HarnessError):
    """A model or dataset that lives on a hub could not be reached."""


def run_cli(body: Callable[[], int]) -> int:
    """A command's exit code: ``body()``; 2 with one ``error:`` line for a HarnessError; 130 on Ctrl-C."""
    import sys

    try:
        return body()
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

