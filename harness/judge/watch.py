"""Judging while the sweep trains: a daemon thread in the sweep's parent judges each cell as it finishes.

Without it the parent judges every cell's stored answers only after all training
(``harness.sweep.callbacks.judge_first`` -> ``harness.judge.run.judge_pending``). ``JudgeWatch``
polls the sweep's manifest (``read_manifest``: the merged view of every job's entry) and, for
each cell whose judged generation results are all stored and that it has not judged yet,
runs the same ``judge_sweep`` as the final judge, on the same cache. So the final judge finds
those results stored ok and makes no call for them.

Safe beside the final judge and ``python -m harness.judge``: every round holds the sweep's
judge lock (``run.judge_lock``; the watcher only tries it and skips the round when busy, the
others wait), results are written atomically, and the watcher never rewrites the manifest (the
jobs are still writing their own entries; the final judge does that update). A cell is judged
here at most once: a failed judgment waits for the final judge, which retries only the
failed calls, rather than hammering a failing server every poll. A watcher error is one line
and ends the watcher, never the sweep. Off with ``eval.judge.during_sweep=false``.
"""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Set, Tuple

from harness.config.registry import JUDGED
from harness.store.layout import read_eval, read_manifest

POLL_S = 2.0
"""Seconds between two looks at the manifest: a round reads one small result file per judged cell not yet judged."""
PREFIX = "judge (during the sweep): "


def _say(line: str) -> None:
    """Print one of judge_sweep's lines, marked as the background judge's (its own "judge: " folded in)."""
    print(PREFIX + (line[len("judge: "):] if line.startswith("judge: ") else line), flush=True)


def _get(node: Any, key: str) -> Any:
    """``node[key]`` for a dict or DictConfig, None when absent (or not a mapping)."""
    try:
        return node.get(key) if node is not None else None
    except Exception:  # noqa: BLE001 - a missing or unresolvable node just means "not set"
        return None


def wanted(config: Any) -> bool:
    """Whether the sweep ``config`` (its composed parent config) may judge during training.

    False when ``eval.judge.during_sweep`` is false, or when no judged benchmark is set in the
    config nor named by the sweep's overrides or sweeper params (nothing to judge).
    """
    blocks = _get(config, "eval")
    if _get(_get(blocks, "judge"), "during_sweep") is False:
        return False
    if any(_get(blocks, name) is not None for name in JUDGED):
        return True
    hydra = _get(config, "hydra")
    text = f"{_get(_get(hydra, 'overrides'), 'task')} {_get(_get(hydra, 'sweeper'), 'params')}"
    return any(re.search(rf"\b{name}\b", text) for name in JUDGED)


class JudgeWatch:
    """A daemon thread judging a sweep's cells as they finish; ``start()`` / ``stop()``."""

    def __init__(self, sweep_dir: Path, poll_s: float = POLL_S, say: Callable[[str], None] = _say) -> None:
        """Watch ``sweep_dir`` every ``poll_s`` seconds once started; ``say`` gets one line per event."""
        self.sweep_dir = Path(sweep_dir)
        self.poll_s = poll_s
        self.say = say
        self.judged: Set[str] = set()
        """Cell ids this watcher has judged (ok or not): never judged again by it."""
        self.totals: Dict[str, float] = {"results": 0, "calls": 0, "cached": 0, "failed": 0, "usd": 0.0}
        """Summed counts of this watcher's rounds."""
        self.error: Optional[str] = None
        """The one line that ended the watcher, if any."""
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "JudgeWatch":
        """Start the daemon thread (returns self)."""
        self._thread = threading.Thread(target=self._loop, name="judge-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 1.0) -> None:
        """Ask the thread to end and wait up to ``timeout_s``.

        A round in flight finishes on its own (its calls are paid for; its results land in the
        cache and the store); the final judge waits for it on the judge lock, then reuses it.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        """Whether the thread still runs (a round in flight after ``stop``, or still watching)."""
        return self._thread is not None and self._thread.is_alive()

    def ready(self) -> Tuple[Optional[Dict[str, Any]], Set[str]]:
        """The sweep's judge settings and the cells newly ready: every judged generation result stored."""
        manifest = read_manifest(self.sweep_dir) or {"jobs": {}}
        from harness.judge.run import sweep_settings

        settings = sweep_settings(manifest)
        if settings is None or (settings.get("judge") or {}).get("during_sweep") is False:
            return None, set()
        cells = set()
        for job in manifest["jobs"].values():
            cell_id = job.get("cell_id")
            if not job.get("judges") or cell_id is None or cell_id in self.judged or job.get("judge") != settings:
                continue  # a job judged with other settings is left to the final judge, which updates its entry
            cell_dir = self.sweep_dir / cell_id
            evals = job.get("evals") or {}
            # any status: collect() judges only answers stored ok; the others show their failure in the summary
            if all(name in evals and read_eval(cell_dir, evals[name]) is not None for name in job["judges"]):
                cells.add(cell_id)
        return settings, cells

    def _judged_sweep(self) -> bool:
        """Whether the manifest has a judged job yet (jobs write their entries as they start)."""
        from harness.judge.run import sweep_settings

        return sweep_settings(read_manifest(self.sweep_dir) or {}) is not None

    def poll(self) -> int:
        """One round: judge the newly ready cells (results written), unless another judge holds the lock."""
        settings, cells = self.ready()
        if not cells or settings is None:
            return 0
        from harness.judge.run import judge_sweep

        out = judge_sweep(self.sweep_dir, settings, say=self.say, only=cells, update=False, wait=False)
        if out is None:
            return 0  # the final judge (or python -m harness.judge) is at it; it covers these cells
        self.judged |= cells
        for name in self.totals:
            self.totals[name] += out.get(name) or 0
        return int(out.get("results") or 0)

    def _loop(self) -> None:
        try:
            from harness.judge.client import warm

            warmed = False
            while not self._stop.wait(self.poll_s):
                if not warmed and self._judged_sweep():
                    warm()  # the one-time imports, while the parent only waits for its cells
                    warmed = True
                self.poll()
        except Exception as exc:  # noqa: BLE001 - one line, never the sweep's death; the final judge retries
            from harness.judge.client import one_line

            self.error = one_line(f"{type(exc).__name__}: {exc}", None)
            print(f"error: {PREFIX}{self.error}; stopped watching (the judge after the sweep still runs)",
                  file=sys.stderr, flush=True)


def start_for(sweep_dir: Path, config: Any, poll_s: float = POLL_S) -> Optional[JudgeWatch]:
    """A started ``JudgeWatch`` for the sweep ``config`` runs in ``sweep_dir``, or None when nothing is judged
    or ``eval.judge.during_sweep`` is false. Cheap (no openai import) when it returns None."""
    if not wanted(config):
        return None
    return JudgeWatch(Path(sweep_dir), poll_s).start()
