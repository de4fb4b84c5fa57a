"""Evaluate the stored cells of a sweep with other evaluators, without training anything.

    python -m harness.evaluate SWEEP_DIR eval=[perplexity,mmlu] eval.lm_eval.mmlu_dir=PATH

Each cell of the sweep's manifest that trained ok is scored by every requested evaluator
that has no ok result under its key yet (cell id + the evaluator's own settings); results
already stored are reused. The manifest then points at these evaluations, and the sweep's
summary is rewritten with them. Only ``eval.*`` and a few ``run.*`` keys may be given:
what decides the trained weights is fixed by the stored cells.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, Dict, List

from harness.errors import ConfigError, run_cli

USAGE = "usage: python -m harness.evaluate SWEEP_DIR eval=[NAME,...] [eval.KEY=VALUE ...] [run.timeout_s=S run.on_busy=wait|skip]"
ALLOWED = ("eval", "+eval", "eval.", "+eval.", "run.timeout_s=", "run.on_busy=", "run.cache_dir=")


def parse(argv: List[str]) -> tuple[Path, List[str]]:
    """(sweep folder, overrides); one-line ConfigError for anything else."""
    if len(argv) < 2 or argv[1].startswith("-"):
        raise ConfigError(USAGE)
    sweep_dir, overrides = Path(argv[1]), argv[2:]
    for override in overrides:
        if not override.startswith(ALLOWED):
            raise ConfigError(f"{override.split('=')[0]}: only eval.* and run.timeout_s/on_busy/cache_dir can be set here; "
                              "keys that change training make other cells (run python -m harness for those)")
    return sweep_dir, overrides


def evaluation_settings(overrides: List[str]) -> tuple[Dict[str, Any], Dict[str, Any]]:
    """(eval block, run block) composed and validated as ``python -m harness`` would."""
    from harness.config.compose import compose

    typed = compose(overrides)
    return dataclasses.asdict(typed.eval), dataclasses.asdict(typed.run)


def evaluate_sweep(sweep_dir: Path, overrides: List[str]) -> int:
    """Evaluate every trained cell of the sweep; write its summary; return the exit code."""
    from harness.files import read_json
    from harness.judge.keys import judge_keys, judge_settings
    from harness.store.identity import eval_keys
    from harness.store.layout import read_manifest, update_manifest
    from harness.store.records import CELL_SPEC_NAME, RECORD_NAME
    from harness.sweep.callbacks import finish
    from harness.sweep.cell import CellPlan, run_cell
    from harness.sweep.job import manifest_entry

    manifest = read_manifest(sweep_dir)
    if manifest is None:
        raise ConfigError(f"{sweep_dir}: not a sweep folder with a manifest.json (python -m harness.store migrate ROOT converts old ones)")
    block, run = evaluation_settings(overrides)
    for num, job in sorted(manifest["jobs"].items(), key=lambda item: int(item[0])):
        cell_dir = Path(sweep_dir) / job["cell_id"]
        spec, record = read_json(cell_dir / CELL_SPEC_NAME), read_json(cell_dir / RECORD_NAME)
        if spec is None or record is None or record.get("status") != "ok":
            print(f"#{num} {job['cell_id']}: not trained ok ({(record or {}).get('status', 'no record')}); nothing to evaluate")
            continue
        config = {**spec["config"], "eval": block, "run": {**spec["config"]["run"], **{k: run[k] for k in ("timeout_s", "on_busy", "cache_dir")}}}
        evals = eval_keys(config)
        plan = CellPlan(job["cell_id"], spec.get("identity", {}), config, evals, cell_dir.resolve(), judge_keys(config, evals),
                        judge_settings(config))
        view, note = run_cell(plan, timeout_s=run["timeout_s"], force=False, on_busy=run["on_busy"], say=print)
        print(f"#{num} {plan.cell_id}: {view['status']}  {note or view.get('error') or ''}".rstrip(), flush=True)
        update_manifest(sweep_dir, num, manifest_entry(plan, job.get("overrides", [])))
    finish(Path(sweep_dir))
    from harness.sweep.job import STATE

    return STATE.exit_code()


def main(argv: List[str] = sys.argv) -> int:
    """Entry point: 0 when every cell and evaluation is ok, 1 when one is not, 2 on bad input."""
    return run_cli(lambda: evaluate_sweep(*parse(argv)))
