"""Report speed at scale (pytest-benchmark; ``make bench``): 10,000 cell records -> every report file.

10,000 synthetic records (the cells of tests/unit/test_report_plots.py repeated over ranks,
quantizations and seeds, all statuses included) are written once; each round loads them
from disk and writes cells/metrics CSV + Parquet, report.md, report.tex and report.html.
Reported, never asserted (the issue's target: under 10 s on 2 cores).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config.report import ReportConfig
from harness.files import write_json_atomic
from harness.report.build import report
from harness.store.records import new_record
from tests.unit.test_report_plots import ENV, _config, _ok

pytestmark = pytest.mark.slow
CELLS = 10_000


@pytest.fixture(scope="module")
def big_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bench-sweep")
    statuses = ["ok"] * 8 + ["oom", "failed"]
    for i in range(CELLS):
        r, quant, status = (8, 16, 32, 64)[i % 4], ("none", "4bit")[(i // 4) % 2], statuses[i % 10]
        config = {**_config(("hf", "unsloth")[(i // 8) % 2], r, quant), "train": {"seed": i // 16}}
        cid = f"cell-{i:05d}"
        fields = _ok(i % 50, r, quant) if status == "ok" else {"error": "CUDA out of memory" if status == "oom" else "boom"}
        write_json_atomic(folder / cid / "cell.json", {"cell_id": cid, "config": config}, durable=False)
        write_json_atomic(folder / cid / "record.json", new_record(cid, status, config, environment=ENV, **fields),
                          durable=False)
    return folder


def test_report_of_10000_cells(benchmark, big_sweep: Path, tmp_path: Path) -> None:
    cfg = ReportConfig(out=str(tmp_path / "out"), rows=["lora_r", "framework"], cols=["quant"], values=["peak_mem_mib", "eval_loss"])
    files = benchmark.pedantic(lambda: report([big_sweep], cfg, say=lambda line: None), rounds=2, iterations=1)
    assert {f.name for f in files} >= {"report.html", "report.md", "report.tex", "cells.parquet", "metrics.parquet"}
    benchmark.extra_info["cells"] = CELLS
