"""A tiny CPU sweep shows predicted beside measured memory, and the planner calibrates on it."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from tests.conftest import FAST, REPO, run_harness, sweep_of

pytestmark = pytest.mark.integration


def test_summary_has_predictions_and_planner_calibrates(harness_env, tmp_path):
    result = run_harness(["-m", "train.batch_size=1,8,32", *FAST], harness_env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    sweep = sweep_of(tmp_path)
    with open(sweep / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3
    for row in rows:
        assert float(row["pred_mem_mib"]) > 0 and row["mem_counter"] == "host_peak_rss"
        assert abs(float(row["pred_err_pct"])) < 50  # uncalibrated, but the right order of magnitude
    assert "pred_mem_mib" in result.stdout

    record = json.loads(next(sweep.glob("*/record.json")).read_text())
    assert record["train"]["max_batch_shape"][0] >= 1
    assert record["efficiency"]["flops_per_token"] > 0 and "mfu" in record["efficiency"]["absent"]
    assert "cpu" in record["memory"]["train_peak"]["absent"]["nvml"].lower()

    plan = subprocess.run(
        [sys.executable, "-m", "harness.plan", "--sweeps", str(sweep), "--device", "cpu", "--json"],
        cwd=REPO, env=harness_env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert plan.returncode == 0, plan.stderr
    report = json.loads(plan.stdout)["calibration"]["host_peak_rss"]
    assert report["records"] == 3 and len(report["cells"]) == 3
    assert report["leave_one_out"]["median_abs_pct"] is not None
    assert json.loads(plan.stdout)["plans"][0]["coefficients"]["calibrated"] is True
