"""The Hydra job: validate one grid point, run it as a cell, report one line.

Runs in the parent process and never imports torch. It must never raise: Hydra skips
its multirun-end callback (the summary) when a job raises, so every outcome of a cell
becomes a recorded status instead.
"""

from __future__ import annotations

import copy
import hashlib
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from harness.config import HarnessConfig
from harness.errors import ConfigError, HarnessError

RUN_ONLY_PREFIXES = ("run.", "+run.", "++run.", "hydra.")
SWEEP_NAME_MAX = 80


@dataclass
class SweepState:
    """Outcome counters the entry point turns into an exit code."""

    invalid: int = 0
    not_ok: int = 0

    def exit_code(self) -> int:
        """2 for a rejected config, 1 when any cell did not end ok, else 0."""
        return 2 if self.invalid else (1 if self.not_ok else 0)


STATE = SweepState()


def sweep_name(name: Optional[str], overrides: Sequence[str]) -> str:
    """Folder name of a sweep: ``run.sweep`` if given, else derived from the overrides.

    The same command line (in any order) gives the same folder, which is what makes
    resuming a sweep a matter of running the command again. Run-only keys (``run.*``)
    do not count, so ``run.force=true`` reruns into the same folder.
    """
    if name:
        return re.sub(r"[^A-Za-z0-9._=,+-]", "_", str(name))
    kept = sorted(o for o in overrides if not o.startswith(RUN_ONLY_PREFIXES))
    if not kept:
        return "default"
    slug = re.sub(r"[^A-Za-z0-9._=,+-]", "_", "__".join(kept))
    if len(slug) <= SWEEP_NAME_MAX:
        return slug
    digest = hashlib.sha256("\n".join(kept).encode()).hexdigest()[:10]
    return f"{slug[:SWEEP_NAME_MAX - 11]}-{digest}"


def register_resolvers() -> None:
    """OmegaConf resolvers used by conf/config.yaml."""
    OmegaConf.register_new_resolver(
        "harness_sweep_name", lambda name, overrides: sweep_name(name, list(overrides or [])), replace=True
    )


def validate(cfg: DictConfig) -> Tuple[HarnessConfig, Dict[str, Any]]:
    """(validated dataclass config, resolved plain dict); raises ConfigError in one line."""
    if "hydra" in cfg:  # a sweeper-composed config still carries Hydra's own node
        cfg = copy.deepcopy(cfg)  # keep the root's schema type, so cross-field checks run
        with open_dict(cfg):
            del cfg["hydra"]
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
        typed = OmegaConf.to_object(cfg)
    except ConfigError as exc:  # OmegaConf appends "full_key: ..." lines; keep ours
        raise ConfigError(str(exc).strip().splitlines()[0]) from None
    except OmegaConfBaseException as exc:
        raise ConfigError(str(exc).strip().splitlines()[0]) from None
    check_data(typed)
    return typed, plain


def check_data(typed: HarnessConfig) -> None:
    """Validate a local data source's records before any worker starts (memoised per file state).

    Pure Python (no torch, no datasets): with data.on_error=fail a bad record stops the
    whole sweep here, in one line naming file and line, instead of failing every cell.
    """
    from harness.data.load import check_source
    from harness.errors import DataError

    try:
        check_source(typed.data)
    except DataError as exc:
        raise ConfigError(str(exc)) from None


def _job_dir() -> Tuple[Path, str]:
    """(sweep or run folder, job label) from Hydra's runtime config."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return Path(hydra_cfg.sweep.dir), f"#{hydra_cfg.job.num}"
    return Path(hydra_cfg.run.dir), "#0"


def _describe(record: Dict[str, Any]) -> str:
    metrics = {row["metric"]: row["value"] for row in record.get("metrics", []) if row["evaluator"] == "perplexity"}
    if record["status"] != "ok":
        return record.get("error") or ""
    from harness.summary import lm_eval_headlines  # light: the summary module never imports torch

    parts = [f"eval_loss {metrics['eval_loss']:.4f}"] if "eval_loss" in metrics else []
    return "  ".join(parts + lm_eval_headlines(record))


def task(cfg: DictConfig) -> None:
    """Hydra task function: one cell."""
    from harness.cell import fail_cell, run_cell
    from harness.hub import hub_problem

    try:
        sweep_dir, label = _job_dir()
        try:
            typed, plain = validate(cfg)
        except ConfigError as exc:
            STATE.invalid += 1
            print(f"error: {exc}", file=sys.stderr)
            return
        problem = hub_problem(typed.model)
        if problem:
            record, reused = fail_cell(plain, sweep_dir, problem), False
        else:
            record, reused = run_cell(plain, sweep_dir, timeout_s=typed.run.timeout_s, force=typed.run.force)
        wall = record.get("timings_s", {}).get("cell_wall")
        note = "reused ok record (run.force=true reruns)" if reused else f"{wall:.1f} s" if wall else ""
        print(f"{label} {record['cell_id']}: {record['status']}  {note}  {_describe(record)}".rstrip(), flush=True)
        if record["status"] != "ok":
            STATE.not_ok += 1
    except KeyboardInterrupt:
        raise
    except HarnessError as exc:
        STATE.not_ok += 1
        print(f"error: {exc}", file=sys.stderr)
    except Exception:  # noqa: BLE001 - a harness bug must not take the sweep down either
        STATE.not_ok += 1
        print(f"error: internal error in the harness parent:\n{traceback.format_exc()}", file=sys.stderr)
