"""tools/gpu_check.py without running a cell: the grid it promises, its plan, and the table it writes from records."""

from __future__ import annotations

import importlib.util
import json
import tarfile
from pathlib import Path

import pytest

from harness.store.venvs import REPO

pytestmark = pytest.mark.unit
spec = importlib.util.spec_from_file_location("gpu_check", REPO / "tools" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)


def test_the_cuda_grid_covers_what_the_gpu_check_promises() -> None:
    grid = {cell["name"]: cell["overrides"] for cell in gpu_check.cells("cuda", unsloth=False)}
    for name in ("lora-b1", "qlora-b1", "lora-b4", "qlora-b4", "lora-b4-gc", "qlora-b4-gc", "full-small-b1"):
        assert name in grid
    assert {"model=llama", "model.weights=random", "quant=4bit", "train.batch_size=4", "train.max_seq_len=2048",
            "data=synthetic", "eval=[]", "run.device=cuda", "train.gradient_checkpointing=true"} <= set(grid["qlora-b4-gc"])
    assert {"model=llama-1b", "peft=full"} <= set(grid["full-small-b1"])
    assert list(grid)[:2] == ["lora-b1", "qlora-b1"]  # most valuable first: a cut-short run still has the headline cells
    # the headline cell again, forked warm in a run root of its own (it must train, not reuse lora-b1)
    assert set(grid["lora-b1-warm"]) == {*grid["lora-b1"], "run.worker=warm"}
    with_unsloth = [cell["name"] for cell in gpu_check.cells("cuda", unsloth=True)]
    assert with_unsloth[-2:] == ["unsloth-lora-b1", "unsloth-qlora-b1"]
    assert all("model=tiny-" in " ".join(cell["overrides"]) for cell in gpu_check.cells("cpu", unsloth=False))


def test_estimate_uses_the_planners_tokens_per_s() -> None:
    cell = gpu_check.cells("cuda", unsloth=False)[2]  # lora-b4: 6 steps x 4 x 2048 tokens
    assert gpu_check.estimate_s(cell, {"tokens_per_s": 49152.0}, "cuda") == pytest.approx(gpu_check.START_S["cuda"] + 1.0)


def test_table_and_archive_from_partial_results(tmp_path: Path) -> None:
    grid = gpu_check.cells("cuda", unsloth=False)[:2]
    grid[0]["prediction"] = {"total_mib": 20000.0, "device_total_mib": 21000.0, "tokens_per_s": 5000.0}
    grid[1]["prediction"] = {}
    sweep = tmp_path / "runs" / "gc-lora-b1" / "cell-1"
    sweep.mkdir(parents=True)
    record = {"status": "ok", "memory": {"train_peak": {"cuda_peak_allocated_mib": 19000.0, "cuda_peak_reserved_mib": 19500.0,
                                                         "nvml_process_peak_mib": 20500.0}},
              "train": {"tokens_per_s": 4200.0}, "efficiency": {"mfu": 0.412, "energy_j_per_token": 0.0871}}
    (sweep / "record.json").write_text(json.dumps(record))
    gpu_check.write_outputs(tmp_path, "cuda", grid, {"device": "test"}, ["a note"])
    table = (tmp_path / "table.md").read_text()
    assert "| lora-b1 | ok | 19,000 / 20,000 (+5.3 %) | 19,500 (+2.6 %) | 20,500 / 21,000 (+2.4 %) | 4,200 / 5,000 | 41.2 % | 0.087 |" in table
    assert "| qlora-b1 | not run (budget) |" in table and "a note" in table
    with tarfile.open(tmp_path / "gpu-check.tar.gz") as tar:
        assert "runs/gc-lora-b1/cell-1/record.json" in tar.getnames() and "table.md" in tar.getnames()


def test_the_claims_stage_runs_only_with_150_s_left_and_as_many_cells_as_fit() -> None:
    cuda = len(gpu_check.claims_cells("cuda"))
    assert cuda == 13 and gpu_check.claims_cells("cuda")[0] == "model=llama quant=4bit lora.r=16 train.batch_size=1"
    assert gpu_check.claims_count("cuda", 149.0, cuda) == 0  # under ~150 s: no claims stage at all
    assert gpu_check.claims_count("cuda", 150.0, cuda) == 1  # (150 - 30 kept for the check) // 90
    assert gpu_check.claims_count("cuda", 300.0, cuda) == 3
    assert gpu_check.claims_count("cuda", 5000.0, cuda) == cuda  # never more cells than the sweep has
    assert gpu_check.claims_count("cpu", 149.0, 11) == 0
    assert gpu_check.claims_count("cpu", 780.0, 11) == 2  # the CPU rehearsal only exercises the path


def test_the_claims_commands_are_the_named_sweep_cut_to_its_first_cells(tmp_path: Path) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    plan = gpu_check.claims_commands("cuda", 3, tmp_path, "python")
    assert plan["run"][:5] == ["python", "-m", "harness", "-cn", "seed-claims"]
    assert f"run.root={tmp_path / 'runs-claims'}" in plan["run"] and "run.device=cuda" in plan["run"]
    (cells,) = [o for o in plan["run"] if o.startswith("hydra.sweeper.cells=")]
    assert OverridesParser.create().parse_overrides([cells])[0].value() == gpu_check.claims_cells("cuda")[:3]
    assert plan["claims"] == ["python", "-m", "harness.claims", "--records", str(tmp_path / "runs-claims" / "seed-claims"),
                              "--out", str(tmp_path / "claims")]
    tiny = gpu_check.claims_commands("cpu", 2, tmp_path, "python")
    assert tiny["sweep"] == "seed-claims-tiny" and all("model=tiny-" in cell for cell in tiny["cells"])


def test_the_claims_stage_says_why_it_did_not_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu_check, "_run", lambda *a, **k: pytest.fail("nothing runs without the budget"))
    assert gpu_check.run_claims("cuda", 100.0, tmp_path, "python") == [
        "claims: not run, 100 s left of the budget (needs 150 s)"]


def test_dry_run_prints_the_claims_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(gpu_check, "predict", lambda cell, device, python: {"tokens_per_s": 1e6})
    assert gpu_check.main(["--out", str(tmp_path), "--device", "cpu", "--dry-run", "--python", "python"]) == 0
    printed = capsys.readouterr().out
    assert "the first 2 cells of sweeps/seed-claims-tiny.yaml" in printed
    assert "python -m harness -cn seed-claims-tiny hydra.sweeper.cells=['model=tiny-llama quant=4bit" in printed
    assert f"python -m harness.claims --records {tmp_path.resolve() / 'runs-claims' / 'seed-claims-tiny'}" in printed
    assert not (tmp_path / "runs").exists()  # a dry run runs nothing
