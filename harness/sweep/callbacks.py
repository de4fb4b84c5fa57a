"""Hydra callbacks: write the summary when a run or a sweep ends."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from harness.report.quality import console_hidden
from harness.report.rows import COLUMNS
from harness.report.summary import SweepSummary, summarise
from harness.sweep.job import STATE, cannot_write
from harness.text import to_markdown

SHOWN = ["cell", "status", "peak_mem_mib", "pred_mem_mib", "mem_counter", "tokens_per_s", "eval_loss", "perplexity", "ppl_delta", "wall_s"]


def _with_stderr(value: Any, stderr: Any, sign: bool) -> Any:
    """``-0.008±0.017`` for the console (a value without stderr stays a number)."""
    if not isinstance(value, (int, float)) or stderr is None:
        return value
    return (f"{value:+.3f}" if sign else f"{value:.3f}") + f"±{stderr:.3f}"


def console_table(summary: SweepSummary, not_ok: int) -> str:
    """The table printed at the end of a sweep: the axes first, lm-eval scores and deltas shown as value±stderr.

    ``weights`` joins when cells mix random and pretrained models; bases stay in the files.
    """
    rows, axes = summary.rows, summary.axes
    scores = [c for c in summary.columns if c not in COLUMNS and c not in axes and not c.endswith("_base") and not console_hidden(c)]
    merged = [c for c in scores if f"{c}_se" in scores]  # <task>_<metric> and <task>_delta, each with its stderr
    scores = [c for c in scores if not (c.endswith("_se") and c[:-3] in merged)]
    mixed = ["weights"] if len({row.get("weights") for row in rows}) > 1 and "weights" not in axes else []
    # cells on several ranks: their memory is the largest rank's, their throughput all ranks' (harness/measure/ranks.py)
    mixed += ["gpus"] if any((row.get("gpus") or 1) > 1 for row in rows) and "gpus" not in axes else []
    shown = [c for c in SHOWN if c in COLUMNS and c not in axes]
    at = shown.index("wall_s") if "wall_s" in shown else len(shown)
    columns = axes + shown[:2] + mixed + shown[2:at] + scores + shown[at:] + (["error"] if not_ok else [])
    table = [
        {**row, **{c: _with_stderr(row.get(c), row.get(f"{c}_se"), c.endswith("_delta")) for c in merged}} for row in rows
    ]
    return to_markdown(table, columns)


def judge_first(sweep_dir: Path) -> None:
    """Judge the sweep's stored answers (judged benchmarks only); a judge problem is one line, never a lost summary."""
    from harness.store.layout import read_manifest

    if not any(job.get("judges") for job in (read_manifest(sweep_dir) or {}).get("jobs", {}).values()):
        return  # nothing judged: the judge package (and the openai client) is never imported
    from harness.errors import HarnessError
    from harness.judge.run import judge_pending

    try:
        judge_pending(sweep_dir)
    except HarnessError as exc:
        print(f"error: judge: {exc}", file=sys.stderr)


def write_report(sweep_dir: Path, blocks: Any = None) -> None:
    """The sweep's report (harness.report) after its summary; a report problem is one line, never a lost sweep."""
    import traceback

    from harness.errors import HarnessError

    try:
        from harness.report.build import report, settings

        cfg, logger = settings(blocks)
        report([Path(sweep_dir)], cfg, logger)
    except OSError as exc:  # a full disk: one line naming the file, and the command cannot exit 0 without its report
        STATE.unwritten += 1
        print(f"error: report: {cannot_write(exc, f'the report under {sweep_dir}')}", file=sys.stderr)
    except HarnessError as exc:
        print(f"error: report: {exc}", file=sys.stderr)
    except Exception:  # noqa: BLE001 - the summary and every record are written; say what broke and go on
        print(f"error: report: internal error (the summary is written):\n{traceback.format_exc()}", file=sys.stderr)


def finish(sweep_dir: Path, judge: bool = True, blocks: Any = None) -> None:
    """Judge what the sweep's cells generated (unless ``judge`` is False), write the summary files, print them,
    write the report (settings from ``blocks``: a config with report/logger, else the defaults), and set the
    exit status."""
    from harness.errors import HarnessError

    try:
        if judge:
            judge_first(Path(sweep_dir))
        summary = summarise(sweep_dir)
    except (OSError, HarnessError) as exc:  # a full disk, a corrupt manifest: one line, the verdict from the records
        _unsummarised(Path(sweep_dir), exc)
        return
    rows = summary.rows
    STATE.not_ok = sum(1 for row in rows if row["status"] != "ok")
    if rows:
        print("\n" + "\n".join(summary.data + [""]) + console_table(summary, STATE.not_ok))
        for note in summary.notes:
            print(f"note: {note}")
    bad = STATE.not_ok
    verdict = f"{len(rows) - bad}/{len(rows)} cells ok" + (f", {bad} not ok (see the error column)" if bad else "")
    from harness.store.partial import partial_line

    partial = partial_line(rows)  # a sweep read before it ended (harness.judge, harness.sweep.finish, a busy rerun)
    verdict += f"\n{partial}" if partial else ""
    print(f"\n{verdict}\nsummary: {sweep_dir / 'summary.csv'}  and  {sweep_dir / 'summary.md'}", flush=True)
    if rows:
        write_report(Path(sweep_dir), blocks)


def _unsummarised(sweep_dir: Path, exc: Exception) -> None:
    """The summary could not be written (or read): one line why, then each cell's status from the store, if readable."""
    from harness.store.layout import load_sweep

    if isinstance(exc, OSError):
        STATE.unwritten += 1
        print(f"error: summary: {cannot_write(exc, str(sweep_dir / 'summary.csv'))}", file=sys.stderr)
    else:
        print(f"error: summary: {exc}", file=sys.stderr)
    try:
        views = load_sweep(sweep_dir)
    except Exception:  # noqa: BLE001 - the line above already says what is wrong
        STATE.not_ok = max(STATE.not_ok, 1)
        return
    STATE.not_ok = sum(1 for view in views if view.get("status") != "ok")
    for view in views:
        print(f"{view.get('cell_id')}: {view.get('status')}  {view.get('error') or ''}".rstrip())
    print(f"\n{len(views) - STATE.not_ok}/{len(views)} cells ok (no summary file)", flush=True)


class SummaryCallback(Callback):
    """Reads the sweep folder Hydra was given (never 'the newest folder') and summarises it.

    It runs in the parent whatever the launcher: the jobs may run in other processes or on other
    machines (joblib, submitit, Ray), so the verdict and the exit code come from the files on disk.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Note the sweep folder in the parent, so a Ctrl-C under a launcher whose jobs run elsewhere still summarises it."""
        try:
            STATE.sweep_dir = Path(config.hydra.sweep.dir)
        except Exception:  # noqa: BLE001 - only a fallback for Ctrl-C; the jobs set it too
            return
        from harness.judge.watch import start_for  # light: no openai import unless a judged benchmark runs

        self._judge_watch = start_for(Path(config.hydra.sweep.dir), config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Summarise ``hydra.sweep.dir`` once every job of the sweep has ended (under run.finish=slurm, the finish job
        does it: nothing here), and mark the sweep's run finished (harness.store.manifest: never joined again)."""
        if getattr(self, "_judge_watch", None) is not None:
            self._judge_watch.stop()  # <= ~1 s; a round in flight keeps the judge lock, the final judge waits for it
        if STATE.deferred is not None:
            return
        finish(Path(config.hydra.sweep.dir), blocks=config)
        from harness.store.layout import finish_run

        try:
            finish_run(Path(config.hydra.sweep.dir))
        except OSError:  # a full disk: the next identical grid may join this ended run; its cells are reused anyway
            pass

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Summarise ``hydra.run.dir`` after a single run (nothing when its config was rejected)."""
        if STATE.invalid:
            return
        finish(Path(config.hydra.run.dir), blocks=config)
