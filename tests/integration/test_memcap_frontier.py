"""A real capped sweep on the CPU: the cap's watchdog ends the smallest cell oom (never crashed), and the OOM
frontier skips the larger cells, in the manifest only; with run.oom_frontier=false every cell runs again.

The cap, 0.3 GiB, is below what any worker needs (importing torch and transformers alone takes
~0.3 GiB resident; a tiny cell peaks at ~0.63-0.68 GiB), so which cell runs out does not hang on
a few MiB of RSS noise. The grid is typed largest first: the launch order is the planner's.
"""

from __future__ import annotations

import csv
import json

import pytest

from harness.store.layout import read_manifest
from tests.conftest import FAST, run_harness, sweep_of

pytestmark = pytest.mark.integration

GRID = ["-m", "model=tiny-llama", "train.batch_size=4,1", "train.max_seq_len=128,64", "run.memory_cap_gib=0.3", *FAST]


def _rows(path):
    with open(path) as handle:
        return {(r["train.batch_size"], r["train.max_seq_len"]): r for r in csv.DictReader(handle)}


def test_a_capped_cell_runs_out_and_the_frontier_skips_the_larger_cells(harness_env, tmp_path):
    result = run_harness(GRID, harness_env, tmp_path, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    sweep = sweep_of(tmp_path)
    manifest = read_manifest(sweep)  # the grid merged with the jobs' own files
    jobs = [manifest["jobs"][str(i)] for i in range(4)]
    # launched in ascending predicted memory, numbered as launched
    assert [[o for o in j["overrides"] if o.startswith(("train.batch_size=", "train.max_seq_len="))] for j in jobs] == [
        ["train.batch_size=1", "train.max_seq_len=64"], ["train.batch_size=1", "train.max_seq_len=128"],
        ["train.batch_size=4", "train.max_seq_len=64"], ["train.batch_size=4", "train.max_seq_len=128"]]
    small = jobs[0]["cell_id"]
    record = json.loads((tmp_path / "cells" / small / "record.json").read_text())
    assert record["status"] == "oom", record.get("error")
    assert record["oom"]["reason"] == "memory_cap" and record["worker_exit_code"] == -9
    assert record["error"].startswith("out of memory under run.memory_cap_gib=0.3 (307 MiB)")
    assert record["memory_cap"]["in_force"] is True and record["memory_cap"]["rss_reached_mib"] > 307
    assert jobs[0]["ended"] == "oom"
    for job in jobs[1:]:  # skipped in the manifest, nothing in the cell store
        assert job["frontier"]["inferred_from"] == small
        assert not (tmp_path / "cells" / job["cell_id"] / "record.json").exists()
    assert result.stdout.count(f"skipped  does not fit (inferred from {small})") == 3
    rows = _rows(sweep / "summary.csv")
    assert rows[("1", "64")]["status"] == "oom"
    for key in (("1", "128"), ("4", "64"), ("4", "128")):
        assert rows[key]["status"] == "skipped" and rows[key]["error"].startswith(f"does not fit (inferred from {small})")
    with open(sweep / "cells.csv") as handle:
        labels = sorted(r["status_label"] for r in csv.DictReader(handle))
    assert labels == ["does not fit"] + ["does not fit (inferred)"] * 3
    assert "does not fit (inferred)" in (sweep / "report.html").read_text()

    # the same grid with the frontier off: grid order, and the rerun checks nothing from the first run
    again = run_harness(GRID + ["run.oom_frontier=false"], harness_env, tmp_path, timeout=300)
    assert again.returncode == 1, again.stdout + again.stderr
    assert sweep_of(tmp_path) == sweep
    manifest = read_manifest(sweep)  # the grid merged with the jobs' own files
    assert "train.batch_size=4" in manifest["jobs"]["0"]["overrides"]
    assert not any("frontier" in job or "ended" in job for job in manifest["jobs"].values())
    rows = _rows(sweep / "summary.csv")
    assert {r["status"] for r in rows.values()} == {"oom"}
    assert all(r["error"].startswith("out of memory under run.memory_cap_gib=0.3") for r in rows.values())
