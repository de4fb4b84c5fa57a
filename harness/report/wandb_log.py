"""Log a sweep to Weights & Biases from the parent, from the records only.

The worker never talks to W&B: everything logged here is read back from the store
(``harness.report.data.load``), so a sweep can be logged (again) at any time, offline or
online, without retraining. One W&B run per cell (id = the cell id, so logging again
resumes the same run), grouped by sweep; its config is the cell's resolved config with
anything secret-looking dropped, its summary the cell's numeric summary columns, and its
history the training (and held-out) loss curve step by step. One more run per sweep
(id = the sweep name) holds the report files as an artifact of type ``report``.

W&B's own files go under the sweep folder (``<sweep>/wandb/``); ``mode="offline"`` needs
no network (``wandb sync <sweep>/wandb/offline-run-*`` uploads them later). wandb is an
optional dependency, imported only when a sweep is logged.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional

from harness.errors import ConfigError
from harness.files import stable_digest
from harness.report.data import ReportData

SECRET_WORDS = {"key", "keys", "token", "secret", "secrets", "password", "passwd", "apikey", "credential", "credentials"}
"""Words of a config key's name that mark its value as secret; the key is left out of the logged config."""
KEY_LIKE = re.compile(r"^(sk-|sk_|Bearer |ghp_|hf_)|^[A-Za-z0-9_\-]{40,}$")
"""String values that look like credentials (the judge block's check); left out whatever their key is called."""
RUN_ID_RESERVED = re.compile(r"[:;,#?/'\s]")
"""Characters W&B refuses in a run id (``,`` appears in sweep names derived from overrides)."""
RUN_ID_MAX = 64
INSTALL_HINT = "pip install 'harness[wandb]'"


def _words(name: str) -> List[str]:
    """``api_key_env`` -> [api, key, env]; ``hfToken`` -> [hf, token]."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(name))
    return [w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]


def is_secret_key(name: str) -> bool:
    """True when a config key's name says it holds a secret (key, token, secret, password).

    Whole words only, so ``max_tokens`` stays; a name ending in ``_env`` holds the *name*
    of an environment variable (``eval.judge.api_key_env``: checked to be one), never its
    value, and stays too.
    """
    words = _words(name)
    if words and words[-1] == "env":
        return False
    return any(word in SECRET_WORDS for word in words)


def scrub(config: Any) -> Any:
    """The config without secret-named keys or credential-looking strings (nested dicts and lists)."""
    if isinstance(config, Mapping):
        return {k: scrub(v) for k, v in config.items() if not is_secret_key(str(k)) and not _key_like(v)}
    if isinstance(config, (list, tuple)):
        return [scrub(v) for v in config if not _key_like(v)]
    return config


def _key_like(value: Any) -> bool:
    return isinstance(value, str) and bool(KEY_LIKE.search(value))


def run_id(name: str) -> str:
    """A W&B run id for a cell id or sweep name: reserved characters replaced, long names shortened by a hash."""
    safe = RUN_ID_RESERVED.sub("_", str(name))
    if len(safe) > RUN_ID_MAX:
        safe = f"{safe[:RUN_ID_MAX - 13]}-{stable_digest(name, 12)}"
    return safe


def _artifact_name(name: str) -> str:
    """An artifact name (letters, digits, ``-``, ``_``, ``.``) for a sweep's report."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{name}-report")


def _number(value: Any) -> Optional[float]:
    """A finite int/float/bool as a summary value; None for text, missing and non-finite values."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else None
    item = getattr(value, "item", None)  # numpy scalars from pandas
    if callable(item):
        return _number(item())
    return None


def summary_metrics(row: Mapping[str, Any]) -> Dict[str, Any]:
    """The wide row's numeric columns (trainable_params, peak_mem_mib, eval_loss, ...), finite values only."""
    out: Dict[str, Any] = {}
    for column, value in row.items():
        number = _number(value)
        if number is not None:
            out[str(column)] = number
    return out


def history(cell: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """The cell's loss curves as W&B history rows, in step order: train/loss and eval/loss per step."""
    train = cell.get("train") or {}
    by_step: Dict[int, Dict[str, Any]] = {}
    for curve, metric in (("loss_curve", "train/loss"), ("eval_curve", "eval/loss")):
        for point in train.get(curve) or []:
            step, value = int(point[0]), point[1]
            if isinstance(value, (int, float)) and math.isfinite(value):
                by_step.setdefault(step, {})[metric] = value
    return [{"step": step, **by_step[step]} for step in sorted(by_step)]


def _wandb() -> Any:
    try:
        import wandb
    except ImportError:
        raise ConfigError(f"logger=wandb: wandb is not installed; {INSTALL_HINT}") from None
    return wandb


def _settings(wandb: Any) -> Any:
    """Quiet, local-only W&B settings: no code, git, console, system metrics or machine metadata captured."""
    return wandb.Settings(silent=True, console="off", save_code=False, disable_git=True, x_disable_stats=True,
                          x_disable_meta=True, x_disable_machine_info=True)


@contextlib.contextmanager
def _files_under(folder: Path) -> Iterator[None]:
    """Keep W&B's staged artifact copies and its service logs in ``folder`` too (not ~/.local, ~/.cache).

    Only for this call, and only where the user has not chosen the folders (WANDB_DATA_DIR,
    WANDB_CACHE_DIR). An offline artifact is a staged copy of each file, so ``wandb sync``
    later uploads the report as it was when logged, even if it has been rebuilt since.
    """
    chosen = {name: str(folder) for name in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR") if name not in os.environ}
    os.environ.update(chosen)
    try:
        yield
    finally:
        for name in chosen:
            os.environ.pop(name, None)


def log_sweep(data: ReportData, settings: Mapping[str, Any], files: List[Path], folder: Optional[Path] = None) -> None:
    """Log every cell of ``data`` as a W&B run and the report ``files`` as an artifact of the sweep's run.

    ``settings``: the ``logger`` block (project, entity, mode: online | offline). W&B's files
    go to ``folder`` (default: the first sweep folder) under ``wandb/``. Reads no environment
    variable into what it logs; W&B itself reads WANDB_API_KEY to upload when online.
    """
    wandb = _wandb()
    if not data.sweeps and folder is None:
        raise ConfigError("logger=wandb: no sweep folder to log")
    folder = Path(folder or data.sweeps[0])
    (folder / "wandb").mkdir(parents=True, exist_ok=True)
    with _files_under(folder / "wandb"):
        try:
            _log(wandb, data, settings, files, folder)
        finally:
            wandb.teardown()  # waits for W&B's service to write (or upload) everything: the files are final on return


def _log(wandb: Any, data: ReportData, settings: Mapping[str, Any], files: List[Path], folder: Path) -> None:
    """One run per cell (config, loss history, summary), then the sweep's run with the report artifact."""
    sweep_name = "+".join(Path(s).name for s in data.sweeps) or folder.name
    common = {"project": settings.get("project") or "harness", "entity": settings.get("entity"),
              "mode": settings.get("mode") or "online", "dir": str(folder), "settings": _settings(wandb)}
    rows = {row["cell"]: row for row in data.wide.to_dict("records")} if not data.wide.empty else {}
    for cell in data.cells:
        cell_id = str(cell.get("cell_id"))
        run = wandb.init(id=run_id(cell_id), name=cell_id, resume="allow", group=",".join(cell.get("sweeps") or []) or sweep_name,
                         job_type="cell", config=scrub(cell.get("config") or {}), **common)
        try:
            for point in history(cell):
                step = point.pop("step")
                run.log(point, step=step)
            run.summary.update({**summary_metrics(rows.get(cell_id, {})), "status": str(cell.get("status"))})
        finally:
            run.finish()
    run = wandb.init(id=run_id(sweep_name), name=sweep_name, resume="allow", group=sweep_name, job_type="report",
                     config={"sweeps": [Path(s).name for s in data.sweeps], "cells": [c.get("cell_id") for c in data.cells]},
                     **common)
    try:
        artifact = wandb.Artifact(_artifact_name(sweep_name), type="report")
        for path in files:
            artifact.add_file(str(path), name=Path(path).name)
        if files:
            run.log_artifact(artifact)
    finally:
        run.finish()
