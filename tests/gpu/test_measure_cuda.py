"""CUDA-only measurement checks: every memory and speed figure is present and labelled, MFU uses the catalogue.

Skipped without CUDA. Runs one tiny cell on the GPU (seconds) and, when pynvml is installed,
the NVML monitor against the real driver.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import FAST, run_harness

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_cuda_cell_record_labels_every_figure(harness_env, tmp_path):
    result = run_harness([*FAST, "run.device=cuda"], harness_env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads(next(tmp_path.glob("*/*/record.json")).read_text())
    peak = record["memory"]["train_peak"]
    assert peak["counter"] == "cuda_peak_allocated" and peak["peak_mib"] == peak["cuda_peak_allocated_mib"]
    assert peak["cuda_peak_reserved_mib"] >= peak["cuda_peak_allocated_mib"] > 0
    assert record["memory"]["after_load"]["cuda_allocated_mib"] > 0
    for key in ("nvml_process_peak_mib", "nvml_device_peak_mib"):  # a number, or absent with its reason
        assert peak[key] is not None or key in peak["absent"] or "nvml" in peak["absent"]
    if peak["nvml_device_peak_mib"] is not None:
        assert peak["nvml_device_peak_mib"] >= peak["cuda_peak_allocated_mib"]
    eff = record["efficiency"]
    if eff["hardware"] is not None:
        assert 0 < eff["mfu"] < 1 and eff["train_cost_usd"] > 0
    else:
        assert "hardware" in eff["absent"]
    assert eff["energy_j"] is not None or "energy" in eff["absent"]
    train = record["train"]
    assert train["tokens_per_s"] > 0 and train["time_to_first_step_s"] > 0 and train["step_times_s"]
    for key in ("cuda_peak_allocated_mib", "nvml_process_peak_mib", "mfu", "energy_j", "tokens_per_s"):
        assert key in record["definitions"]
    env = record["environment"]
    assert env["name"] and env["memory_mib"] > 0 and env["cuda_version"] and "allocator_env" in env


def test_nvml_monitor_on_the_real_driver():
    pytest.importorskip("pynvml")
    from harness.measure.meters import cuda_monitor

    monitor = cuda_monitor().start()
    block = torch.empty(256 * 1024 * 1024, dtype=torch.uint8, device="cuda")  # 256 MiB
    torch.cuda.synchronize()
    import time

    time.sleep(0.3)
    out = monitor.stop()
    del block
    assert out["nvml_device_peak_mib"] is not None and out["nvml_device_peak_mib"] > 256
    if out["nvml_process_peak_mib"] is not None:
        assert out["nvml_process_peak_mib"] > 256
    else:
        assert str(os.getpid()) in out["absent"]["nvml_process_peak_mib"]
