"""Copy the records of a sweep (no weights, no logs) into a folder a report can be rebuilt from.

    python tools/export_records.py SWEEP_DIR DEST

DEST/<sweep>/manifest.json and DEST/<sweep>/<cell id>/ with record.json, cell.json and every
evaluation's result.json (and judge results), as real folders rather than links into a cell
store, so ``python -m harness.report DEST/<sweep>`` reads them anywhere (reports/<name>/records/).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

KEEP = ("record.json", "cell.json")


def export(sweep_dir: Path, dest: Path) -> Path:
    """Copy the sweep's manifest and its cells' JSON records into ``dest/<sweep name>``; return that folder."""
    from harness.store.layout import read_manifest

    manifest = read_manifest(sweep_dir)
    if manifest is None:
        raise SystemExit(f"error: {sweep_dir}: not a sweep folder (no manifest.json)")
    target = dest / sweep_dir.name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    shutil.copy2(sweep_dir / "manifest.json", target / "manifest.json")
    for job in manifest["jobs"].values():
        cell = sweep_dir / job["cell_id"]
        out = target / job["cell_id"]
        out.mkdir(exist_ok=True)
        for name in KEEP:
            if (cell / name).is_file():
                shutil.copy2(cell / name, out / name)
        for result in (cell / "evals").glob("**/result.json") if (cell / "evals").is_dir() else []:
            copy = out / result.relative_to(cell)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(result, copy)
    return target


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python tools/export_records.py SWEEP_DIR DEST")
    print(export(Path(sys.argv[1]), Path(sys.argv[2])))
