"""What the parent tells a cell's worker through its environment, and how records are read back for it.

The parent (``harness.sweep.launch``) decides a launch block -- cells at once, threads per cell, a leased
GPU -- and hands it to the worker as ``HARNESS_LAUNCH`` (JSON), with its spawn time as
``HARNESS_SPAWN_TIME``. The worker copies the block into ``record["environment"]["launch"]``; the summary,
the planner's calibration and the frontier read it back from there.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Mapping, Optional, Sequence

LAUNCH_ENV = "HARNESS_LAUNCH"
"""Environment variable through which the worker learns its placement (JSON of ``Placement.info``)."""


def int_value(value: Any) -> Optional[int]:
    """``value`` as an int, or None when it is missing, a bool or not a number."""
    try:
        return None if value is None or isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        return None


def launch_block(record: Mapping[str, Any]) -> Dict[str, Any]:
    """A record's launch block (``environment.launch``); {} for a cell that ran alone or before launchers."""
    return ((record.get("environment") or {}).get("launch")) or {}


def from_env(environ: Mapping[str, str] = os.environ) -> Optional[Dict[str, Any]]:
    """The worker's side: the launch block its parent decided, for ``record["environment"]["launch"]``."""
    text = environ.get(LAUNCH_ENV)
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def shared_gpu(record: Mapping[str, Any]) -> bool:
    """True for a record of a cell that may have shared its GPU with another cell (its peaks are not its own)."""
    return bool(launch_block(record).get("gpu_shared"))


def concurrent(record: Mapping[str, Any]) -> int:
    """How many cells ran at once beside (and including) this one on its machine; 1 when not recorded."""
    return int_value(launch_block(record).get("cells_at_once")) or 1


def concurrency_note(records: Sequence[Mapping[str, Any]]) -> Optional[str]:
    """The summary's note when cells ran several at once: their throughput is not a single-cell figure."""
    parallel = [r for r in records if concurrent(r) > 1]
    if not parallel:
        return None
    most = max(concurrent(r) for r in parallel)
    launchers = sorted({str(launch_block(r).get("launcher")) for r in parallel})
    threads = sorted({launch_block(r).get("threads_per_cell") for r in parallel if launch_block(r).get("threads_per_cell")})
    per = f", {'/'.join(map(str, threads))} thread(s) per cell" if threads else ""
    return (f"{len(parallel)} of {len(records)} cells ran up to {most} at once ({', '.join(launchers)}{per}): "
            "their tokens_per_s is not a single-cell figure")


SPAWN_TIME_ENV = "HARNESS_SPAWN_TIME"
WORKER_ENV = "HARNESS_WORKER"
"""How the parent started the worker, ``warm`` (forked from a template, harness.sweep.warm) or ``spawn``; the
record's ``environment.worker``."""


def worker_kind(environ: Mapping[str, str] = os.environ) -> str:
    """The worker's side: ``warm`` or ``spawn`` (a worker started by hand, without a parent, is a spawn)."""
    return "warm" if environ.get(WORKER_ENV) == "warm" else "spawn"
