"""What a sweep that has not ended still lacks: the one line ``harness.report``, ``harness.judge`` and the summary
print on a partly finished sweep (cells ``running`` under a live lock, cells not started yet). Light."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

NOT_RUN = "not run"
"""How ``layout.cell_view`` begins the error of a cell that has no record (and no live holder)."""
SHOWN = 2
"""Holders named in the line; the rest are counted."""


def unfinished(views: Sequence[Dict[str, Any]]) -> tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """(cells running now, cells with no record and nobody on them) among a sweep's views (``load_sweep``)."""
    running = [view for view in views if view.get("status") == "running"]
    waiting = [view for view in views if view.get("status") == "skipped" and str(view.get("error") or "").startswith(NOT_RUN)]
    return running, waiting


def partial_line(views: Sequence[Dict[str, Any]]) -> Optional[str]:
    """``12 of 1000 cells still running (pid 7 on host a, ...), 40 not started: the report covers the 948 that
    ended``; None when every cell of the sweep has ended."""
    running, waiting = unfinished(views)
    if not running and not waiting:
        return None
    holders = [str(view.get("error") or "").removeprefix("running: ") for view in running]
    named = ", ".join(holders[:SHOWN]) + (f", and {len(holders) - SHOWN} more" if len(holders) > SHOWN else "")
    ended = len(views) - len(running) - len(waiting)
    return (f"{len(running)} of {len(views)} cells still running" + (f" ({named})" if named else "")
            + f", {len(waiting)} not started: the report covers the {ended} that ended")
