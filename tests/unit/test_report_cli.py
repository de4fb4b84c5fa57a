"""python -m harness.report: one or several sweeps -> every report file; bad input in one line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO
from tests.unit.test_report_plots import CELLS, write_sweep

pytestmark = pytest.mark.unit
FILES = ("report.html", "plotly.min.js", "report.md", "report.tex", "cells.csv", "cells.parquet", "metrics.csv",
         "metrics.parquet")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.report", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_two_sweeps_give_one_merged_report_with_every_status_in_every_table(tmp_path: Path) -> None:
    first = write_sweep(tmp_path / "first")
    second = tmp_path / "second"
    second.mkdir()
    for cid in ("hf-r8-none", "hf-r16-4bit"):  # shared with the first sweep: each appears once
        shutil.copytree(first / cid, second / cid)
    out = tmp_path / "merged"
    done = run(str(first), str(second), f"report.out={out}", "report.values=[peak_mem_mib,eval_loss]")
    assert done.returncode == 0, done.stderr
    for name in FILES:
        assert (out / name).is_file(), name
    cells = pd.read_parquet(out / "cells.parquet")
    assert sorted(cells["cell"]) == sorted(c[0] for c in CELLS)
    assert set(cells.loc[cells["cell"] == "hf-r8-none", "sweeps"]) == {"first,second"}
    tidy = pd.read_csv(out / "metrics.csv")
    assert {"cell", "metric", "value", "stderr", "unit", "higher_is_better"} <= set(tidy.columns)
    assert not [c for c in tidy.columns if c.startswith(("config.", "env.")) or c in ("status", "sweeps")]
    assert not (out / "metrics_flat.csv").exists()  # the flat export is opt-in (report.flat_metrics)
    joined = pd.read_parquet(out / "metrics.parquet").merge(cells, on="cell", suffixes=("", "_cell"))  # documented
    assert {"caveats", "caveats_cell"} <= set(joined.columns)
    assert len(joined) == len(tidy) and set(joined["cell"]) <= set(cells["cell"])
    r8 = joined[(joined["cell"] == "hf-r8-none") & (joined["metric"] == "peak_mem_mib")]
    assert list(r8["config.lora.r"]) == [8] and list(r8["status"]) == ["ok"]
    markdown = (out / "report.md").read_text()
    tables = [t for t in markdown.split("### ")[1:] if not t.startswith("Pareto front")]  # the fronts list ok cells only
    assert len(tables) == 2
    for table in tables:
        assert "does not fit" in table and "failed" in table and "does not fit (inferred)" in table
    assert "\\toprule" in (out / "report.tex").read_text()


def test_flat_metrics_writes_the_joined_table_too(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path / "s")
    assert run(str(sweep), f"report.out={tmp_path / 'o'}", "report.flat_metrics=true").returncode == 0
    flat = pd.read_parquet(tmp_path / "o" / "metrics_flat.parquet")
    tidy = pd.read_parquet(tmp_path / "o" / "metrics.parquet")
    assert len(flat) == len(tidy) and list(flat.columns[:4]) == ["cell", "status", "status_label", "sweeps"]
    assert "config.lora.r" in flat.columns and "env.device" in flat.columns
    assert (tmp_path / "o" / "metrics_flat.csv").is_file()


def test_the_same_records_rebuild_byte_identical_files(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path / "s")
    outputs = []
    for name in ("a", "b"):
        assert run(str(sweep), f"report.out={tmp_path / name}").returncode == 0
        outputs.append({f: (tmp_path / name / f).read_bytes() for f in FILES if not f.endswith(".parquet")})
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize("args,needle", [
    ([], "usage: python -m harness.report"),
    (["/no/such/sweep"], "/no/such/sweep: not a sweep folder"),
    (["{sweep}", "report.colour=red"], "report.colour: unknown"),
    (["{sweep}", "train.lr=1"], "train.lr: only report.* and logger"),
    (["{sweep}", "report.baseline=lora_r=99"], "report.baseline=lora_r=99: matches 0 cells"),
    (["{sweep}", "report.values=[nope]"], "report.values: no column nope"),
    (["{sweep}", "logger=neptune"], "logger=neptune: must be one of none, wandb"),
])
def test_bad_input_is_one_line(tmp_path: Path, args: list, needle: str) -> None:
    sweep = write_sweep(tmp_path / "s")
    done = run(*[a.replace("{sweep}", str(sweep)) for a in args])
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], done.stderr
