"""Hydra callbacks: write the summary when a run or a sweep ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from harness.main import STATE
from harness.summary import COLUMNS, columns_for, to_markdown, write_summary

SHOWN = ["cell", "status", "peak_mem_mib", "pred_mem_mib", "mem_counter", "tokens_per_s", "eval_loss", "perplexity", "ppl_delta", "wall_s"]


def finish(sweep_dir: Path) -> None:
    """Write summary files for ``sweep_dir``, print them, and set the exit status."""
    rows = write_summary(sweep_dir)
    STATE.not_ok = sum(1 for row in rows if row["status"] != "ok")
    if rows:
        # lm-eval scores, stderrs and deltas (mmlu_acc, mmlu_acc_se, mmlu_delta) go on screen too; bases stay in the files
        scores = [c for c in columns_for(rows) if c not in COLUMNS and not c.endswith("_base")]
        shown = [c for c in SHOWN if c in COLUMNS]
        at = shown.index("wall_s") if "wall_s" in shown else len(shown)
        errors = ["error"] if STATE.not_ok else []
        print("\n" + to_markdown(rows, shown[:at] + scores + shown[at:] + errors))
    bad = STATE.not_ok
    verdict = f"{len(rows) - bad}/{len(rows)} cells ok" + (f", {bad} not ok (see the error column)" if bad else "")
    print(f"\n{verdict}\nsummary: {sweep_dir / 'summary.csv'}  and  {sweep_dir / 'summary.md'}", flush=True)


class SummaryCallback(Callback):
    """Reads the sweep folder Hydra was given (never 'the newest folder') and summarises it."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Summarise ``hydra.sweep.dir`` once every job of the sweep has ended."""
        finish(Path(config.hydra.sweep.dir))

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Summarise ``hydra.run.dir`` after a single run (nothing when its config was rejected)."""
        if STATE.invalid:
            return
        finish(Path(config.hydra.run.dir))
