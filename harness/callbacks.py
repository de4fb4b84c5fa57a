"""Hydra callbacks: write the summary when a run or a sweep ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from harness.main import STATE
from harness.summary import COLUMNS, to_markdown, write_summary

SHOWN = ["cell", "status", "peak_mem_mib", "mem_counter", "tokens_per_s", "eval_loss", "perplexity", "wall_s"]


def finish(sweep_dir: Path) -> None:
    """Write summary files for ``sweep_dir``, print them, and set the exit status."""
    rows = write_summary(sweep_dir)
    STATE.not_ok = sum(1 for row in rows if row["status"] != "ok")
    if rows:
        print("\n" + to_markdown(rows, [c for c in SHOWN if c in COLUMNS]))
    bad = STATE.not_ok
    verdict = f"{len(rows) - bad}/{len(rows)} cells ok" + (f", {bad} not ok (see error column)" if bad else "")
    print(f"\n{verdict}\nsummary: {sweep_dir / 'summary.csv'}  and  {sweep_dir / 'summary.md'}", flush=True)


class SummaryCallback(Callback):
    """Reads the sweep folder Hydra was given (never 'the newest folder') and summarises it."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        finish(Path(config.hydra.sweep.dir))

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        if STATE.invalid:
            return
        finish(Path(config.hydra.run.dir))
