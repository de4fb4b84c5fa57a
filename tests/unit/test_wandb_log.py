"""W&B logging from the records: offline runs per cell and per sweep, no secret in W&B's files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict

import pandas as pd
import pytest

from harness.errors import ConfigError
from harness.report.data import ReportData
from harness.report.wandb_log import history, is_secret_key, log_sweep, run_id, scrub

pytestmark = pytest.mark.unit
CANARIES = {"WANDB_API_KEY": "canary-xyz0", "OPENAI_API_KEY": "canary-abc1", "HF_TOKEN": "canary-hf2"}


def _cell(cell_id: str, r: int, sweep: str) -> Dict[str, Any]:
    config = {"model": {"name": "tiny-llama"}, "lora": {"r": r}, "quant": {"mode": "none"},
              "eval": {"judge": {"api_key_env": "OPENAI_API_KEY", "api_key": "canary-cfg3", "max_tokens": 2048}},
              "data": {"hub_token": "canary-cfg4", "name": "bundled"}, "run": {"notes": "sk-canary5"}}
    return {"cell_id": cell_id, "status": "ok", "config": config, "sweeps": [sweep],
            "train": {"loss_curve": [[1, 7.5], [2, 7.25], [3, 7.0]], "eval_curve": [[2, 7.4], [3, float("nan")]]}}


def _data(sweep_dir: Path) -> ReportData:
    cells = [_cell("tiny-llama-lora-r8-none-hf-aaaaaaaaaaaa", 8, sweep_dir.name),
             _cell("tiny-llama-lora-r16-none-hf-bbbbbbbbbbbb", 16, sweep_dir.name)]
    wide = pd.DataFrame([{"cell": c["cell_id"], "status": "ok", "model": "tiny-llama", "lora_r": r, "eval_loss": 7.125 + r,
                          "peak_mem_mib": 321.5, "mfu": float("nan"), "error": None} for c, r in zip(cells, (8, 16))])
    return ReportData([sweep_dir], cells, wide, pd.DataFrame(), ["lora_r"])


def test_secret_names_and_values_are_scrubbed_variable_names_kept():
    assert is_secret_key("api_key") and is_secret_key("hfToken") and is_secret_key("db_password")
    assert not is_secret_key("api_key_env") and not is_secret_key("max_tokens") and not is_secret_key("keep_weights")
    config = _cell("c", 8, "s")["config"]
    clean = scrub(config)
    assert clean["eval"]["judge"] == {"api_key_env": "OPENAI_API_KEY", "max_tokens": 2048}
    assert clean["data"] == {"name": "bundled"} and clean["run"] == {} and "canary" not in repr(clean)


def test_run_ids_avoid_reserved_characters_and_stay_short():
    assert run_id("lora.r=8,16") == "lora.r=8_16"
    long = run_id("x" * 100)
    assert len(long) == 64 and long == run_id("x" * 100)


def test_history_merges_curves_in_step_order_without_non_finite_values():
    assert history(_cell("c", 8, "s")) == [{"step": 1, "train/loss": 7.5}, {"step": 2, "train/loss": 7.25, "eval/loss": 7.4},
                                           {"step": 3, "train/loss": 7.0}]


def test_missing_wandb_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    with pytest.raises(ConfigError, match=r"^logger=wandb: wandb is not installed; pip install 'harness\[wandb\]'$"):
        log_sweep(_data(tmp_path / "s"), {"mode": "offline"}, [])


def test_offline_runs_hold_metrics_and_config_and_no_secret(monkeypatch, tmp_path):
    pytest.importorskip("wandb")
    for name, value in CANARIES.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    sweep = tmp_path / "runs" / "rank-sweep"
    sweep.mkdir(parents=True)
    report = sweep / "report.md"
    report.write_text("# rank-sweep report\n", encoding="utf-8")

    log_sweep(_data(sweep), {"name": "wandb", "project": "harness-test", "entity": None, "mode": "offline"}, [report])

    runs = sorted((sweep / "wandb").glob("offline-run-*"))
    assert len(runs) == 3, runs  # two cells and the sweep
    blobs = {run: b"".join(p.read_bytes() for p in run.rglob("*") if p.is_file()) for run in runs}
    cells = [b for b in blobs.values() if b"tiny-llama-lora-r8-none-hf-aaaaaaaaaaaa" in b and b"train/loss" in b]
    assert cells and all(b"eval_loss" in b and b"peak_mem_mib" in b and b"api_key_env" in b for b in cells)
    assert any(b"15.125" in b for b in cells)  # r8's eval_loss in its summary
    assert [b for b in blobs.values() if b"rank-sweep-report" in b and b"report.md" in b]  # the sweep run's artifact
    staged = [p for p in (sweep / "wandb").rglob("*") if p.is_file() and p.read_bytes() == report.read_bytes()]
    assert staged  # the staged copy `wandb sync` uploads later, kept under the sweep folder (not ~/.local)
    for root in (sweep / "wandb", tmp_path / "wandb-dir"):
        for path in root.rglob("*") if root.exists() else []:
            if path.is_file():
                assert b"canary" not in path.read_bytes(), path
