"""The parent's status line while a worker runs, drawn from ``harness.store.progress``.

On a terminal one line redrawn in place (``\r`` + clear to end of line) and cleared before other output;
elsewhere (a log file, CI) a status line through ``say`` at most every ``NON_TTY_EVERY_S``.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Optional, TextIO

from harness.store.progress import SHARED_FILES, RunningCell, SweepProgress, sweep_progress

REDRAW_S = 1.0
"""How often the parent redraws the line on a terminal (its wait on the worker is sliced so)."""
NON_TTY_EVERY_S = 30.0
"""Least time between two status lines when stdout is not a terminal."""




def clock_text(seconds: float) -> str:
    """``0:42``, ``12:05``, ``1:02:03`` (hours unbounded)."""
    total = int(round(max(0.0, seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


_HASH_TAIL = re.compile(r"^(.*-[0-9a-f]{4})[0-9a-f]{8}$")


def short_id(cell_id: str) -> str:
    """A cell id with its 12-digit hash cut to 4 digits and an ellipsis (the log path keeps the whole id)."""
    match = _HASH_TAIL.match(cell_id)
    return f"{match.group(1)}…" if match else cell_id


def _shown_path(path: Path, cwd: Optional[Path]) -> str:
    """``path`` relative to ``cwd`` when it lies under it, else as it is."""
    if cwd is not None and path.is_absolute():
        try:
            return str(path.relative_to(cwd))
        except ValueError:
            pass
    return str(path)


def _doing(cell: RunningCell) -> str:
    what = cell.phase
    if cell.phase == "train" and cell.step is not None:
        what += f" step {cell.step}/{cell.max_steps if cell.max_steps is not None else '?'}"
    if cell.phase == "train" and cell.loss is not None:
        what += f" loss {cell.loss:.4g}"
    return what


def format_progress(progress: SweepProgress, *, cwd: Optional[Path] = None, width: Optional[int] = None) -> str:
    """One line: ``[2/4 done, 0 failed, 1 running, 1 left] <cell>: train step 12/30 loss 7.41 | ETA about 0:42 | log <path>``.

    The ETA (median wall of the cells finished in this run x what is left) is redrawn with every line, so it
    follows each cell that finishes; "about" because on a loaded machine the cells still to run may be slower.

    With ``width`` (a terminal's columns) the line is made to fit: first without the log path,
    then without the cell id, then in short words, and only then cut.
    """
    head = (f"[{progress.ok}/{progress.total} done, {progress.failed} failed, {len(progress.running)} running, "
            f"{progress.left} left]")
    eta = "ETA after the first cell" if progress.eta_s is None else f"ETA about {clock_text(progress.eta_s)}"
    short = (f"[{progress.ok}/{progress.total} ok {progress.failed} failed {len(progress.running)} run "
             f"{progress.left} left]", "ETA after 1st cell" if progress.eta_s is None else f"ETA ~{clock_text(progress.eta_s)}")
    if not progress.running:
        candidates = [f"{head} | {eta}", f"{short[0]} | {short[1]}"]
    else:
        cell = progress.running[0]
        more = len(progress.running) - 1
        doing = _doing(cell) + (f" (+{more} more running)" if more else "")
        candidates = [
            f"{head} {short_id(cell.cell_id)}: {doing} | {eta} | log {_shown_path(cell.log, cwd)}",
            f"{head} {short_id(cell.cell_id)}: {doing} | {eta}",
            f"{head} {doing} | {eta}",
            f"{short[0]} {_doing(cell)}{f' (+{more})' if more else ''} | {short[1]}",
        ]
    if width is None:
        return candidates[0]
    room = max(10, width - 1)  # the last column would wrap on some terminals, and a wrapped line cannot be redrawn
    fitting = next((line for line in candidates if len(line) <= room), None)
    return fitting if fitting is not None else candidates[-1][: room - 1] + "…"


class StatusLine:
    """The parent's progress line while a worker runs; ``tick`` about every ``REDRAW_S``, ``clear`` when it ends.

    On a terminal (``stream.isatty()``) each tick redraws one line in place; ``clear`` erases it
    so the next printed line starts clean. Elsewhere a tick prints a line through ``say`` only
    when ``every_s`` has passed since this object was made (the cell's start line) or since its
    last line. A failure to read or draw turns the line off for this cell, never the sweep.
    """

    CLEAR = "\r\x1b[K"

    def __init__(self, sweep_dir: Path, say: Callable[[str], None], *, stream: Optional[TextIO] = None,
                 tty: Optional[bool] = None, clock: Callable[[], float] = time.monotonic,
                 every_s: float = NON_TTY_EVERY_S, columns: Optional[Callable[[], int]] = None,
                 render: Optional[Callable[[], Optional[str]]] = None) -> None:
        self.sweep_dir = Path(sweep_dir)
        self.say = say
        self.stream = stream if stream is not None else sys.stdout
        self.tty = self._isatty(self.stream) if tty is None else tty
        self.clock = clock
        self.every_s = every_s
        self.columns = columns or (lambda: shutil.get_terminal_size((120, 24)).columns)
        self.render = render or self._render
        self.files = SHARED_FILES
        self._last = clock()
        self._drawn = False
        self._off = False

    @staticmethod
    def _isatty(stream: TextIO) -> bool:
        try:
            return bool(stream.isatty())
        except (AttributeError, ValueError, OSError):
            return False

    def _render(self) -> Optional[str]:
        progress = sweep_progress(self.sweep_dir, files=self.files)
        if progress is None:
            return None
        return format_progress(progress, cwd=Path.cwd(), width=self.columns() if self.tty else None)

    def due(self) -> bool:
        """Whether a tick now would draw: always on a terminal, else once ``every_s`` has passed."""
        return not self._off and (self.tty or self.clock() - self._last >= self.every_s)

    def tick(self) -> None:
        """Redraw (terminal) or print a status line when one is due."""
        if not self.due():
            return
        try:
            line = self.render()
            if line is None:
                return
            if self.tty:
                self.stream.write(self.CLEAR + line)
                self.stream.flush()
                self._drawn = True
            else:
                self.say(line)
            self._last = self.clock()
        except Exception as exc:  # noqa: BLE001 - the progress line must never stop a sweep
            self.clear()
            self._off = True
            self.say(f"(progress line off for this cell: {type(exc).__name__}: {exc})")

    def clear(self) -> None:
        """Erase the drawn line (terminal), so what is printed next starts at column 0."""
        if not self._drawn:
            return
        self._drawn = False
        try:
            self.stream.write(self.CLEAR)
            self.stream.flush()
        except (OSError, ValueError):
            pass
