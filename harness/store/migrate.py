"""Move the cells of sweep folders written before the cell store into it (``python -m harness.store migrate ROOT``).

Old layout: ``ROOT/<sweep>/<old cell id>/{cell.json,record.json,adapter/,worker.log}``, metrics
inside the record. Each such folder moves to ``ROOT/cells/<new id>`` and the sweep folder gets
a link and a manifest in its place. The new id is computed from the record's own config,
device and library versions. The data's content hash is the current file's only when no
data file changed after the record was written; otherwise the cell gets an identity no new
cell can have (``unverified``), so it stays visible in its sweep but is never reused for
edited data. Metric rows become one evaluator result each. Nothing is deleted: a cell whose
new id is already in the store is moved aside to ``cells/.duplicates/``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List

from harness.files import read_json, write_json_atomic
from harness.store.identity import (
    IDENTITY_VERSION,
    canonical_training_config,
    cell_id,
    data_fingerprint,
    environment_digest,
    eval_keys,
    model_fingerprint,
)
from harness.store.layout import CELLS, cells_root, old_layout_cells, write_eval, write_manifest
from harness.store.records import RECORD_NAME


def _data_identity(config: Dict[str, Any], written: float) -> str:
    """The data's content hash, when the data provably did not change since ``written``."""
    data = config["data"]
    try:
        if not data.get("hub_id"):
            from harness.data.load import resolve_path, source_files

            if any(p.stat().st_mtime > written for p in source_files(resolve_path(data.get("path")))):
                return "unverified:changed-since-record"
        return data_fingerprint(data)
    except Exception:  # noqa: BLE001 - missing or unreadable data: the old cell is kept, never reused
        return "unverified:unreadable"


def _identity(record: Dict[str, Any], written: float) -> Dict[str, Any]:
    """The store identity of an old record, from what the record says it ran with."""
    config, env = record["config"], record.get("environment", {})
    if "split_seed" not in config.get("data", {}):  # before data.split_seed, train.seed picked the split
        config = {**config, "data": {**config["data"], "split_seed": config.get("train", {}).get("seed", 42)}}
    device = env.get("device") or "cpu"
    return {
        "version": IDENTITY_VERSION,
        "config": canonical_training_config(config),
        "data": _data_identity(config, written),
        "model": model_fingerprint(config["model"]),
        "device": f"cuda:{env.get('name')}" if device == "cuda" else "cpu",
        "environment": environment_digest(env.get("python", "0.0"), env.get("libraries", {})),
    }


def _split_evals(cell_dir: Path, record: Dict[str, Any]) -> Dict[str, str]:
    """Write the record's metric rows as one evaluator result each; return name -> key."""
    keys = eval_keys(record["config"])
    if record.get("status") != "ok":
        return keys
    for name, key in keys.items():
        rows = [row for row in record.get("metrics", []) if row.get("evaluator") == name]
        result = {"evaluator": name, "key": key, "status": "ok", "error": None, "rows": rows, "migrated": True,
                  "config": record["config"].get("eval", {}).get(name), "baseline": record.get("baselines", {}).get(name)}
        write_eval(cell_dir, key, result)
    return keys


def _move(folder: Path, root: Path) -> Dict[str, Any]:
    """Move one old cell folder into the store; return its manifest entry."""
    record_path = folder / RECORD_NAME
    record = read_json(record_path)
    if record is None:
        raise ValueError("no readable record")
    identity = _identity(record, record_path.stat().st_mtime)
    new_id = cell_id(record["config"], identity)
    target = cells_root(root) / new_id
    if target.exists():
        target = cells_root(root) / ".duplicates" / f"{folder.parent.name}-{folder.name}"
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(folder, target)
    adapter = target / "adapter"
    record.update(cell_id=new_id, identity=identity, migrated_from=f"{folder.parent.name}/{folder.name}",
                  artifacts={"weights": "adapter" if adapter.is_dir() else None})
    evals = _split_evals(target, record)
    record["metrics"] = []
    write_json_atomic(target / RECORD_NAME, record)
    return {"cell_id": target.name if target.parent.name == CELLS else new_id, "evals": evals, "overrides": []}


def migrate(root: Path) -> int:
    """Move every old-layout cell under ``root`` into the store; return how many moved."""
    root = Path(root)
    if not root.is_dir():
        from harness.errors import ConfigError

        raise ConfigError(f"{root}: no such folder")
    moved = 0
    for sweep in sorted(p for p in root.iterdir() if p.is_dir() and p.name != CELLS):
        folders: List[Path] = old_layout_cells(sweep)
        if not folders:
            continue
        jobs = {}
        for num, folder in enumerate(folders):
            try:
                jobs[str(num)] = _move(folder, root)
                moved += 1
            except (OSError, ValueError, KeyError) as exc:
                print(f"{folder}: left in place ({exc})")
        if jobs:
            write_manifest(sweep, jobs)
    return moved
