"""Calibration recovers known coefficients, reports held-out error, and refuses to claim one from too few records."""

from __future__ import annotations

import random

import pytest

from harness.plan.calibrate import calibrate, fit, predict_record, prediction_cells, to_point
from harness.plan.setting import Coefficients

pytestmark = pytest.mark.unit
MODEL = {"name": "tiny-llama", "arch": "llama", "tiny": True, "num_layers": 4, "hidden_size": 256, "num_heads": 4,
         "num_kv_heads": 2, "intermediate_size": 512, "vocab_size": 2048}


def _record(i, batch, seq, measured=None, status="ok"):
    config = {"model": MODEL, "peft": {"method": "lora"}, "lora": {"r": 8}, "quant": {"mode": "none"},
              "train": {"batch_size": batch, "max_seq_len": seq}}
    record = {"cell_id": f"c{i}", "status": status, "config": config, "environment": {"device": "cpu"},
              "train": {"max_batch_shape": [batch, seq], "max_batch_loss_tokens": batch * seq // 2},
              "memory": {"train_peak": {"counter": "host_peak_rss", "peak_mib": measured}}}
    return record


def _synthetic(truth: Coefficients, noise: float, n: int = 8):
    rng = random.Random(0)
    shapes = [(b, s) for b in (1, 4, 16, 32) for s in (64, 256)][:n]
    records = []
    for i, (b, s) in enumerate(shapes):
        value = predict_record(_record(i, b, s), truth).total_mib * (1 + rng.uniform(-noise, noise))
        records.append(_record(i, b, s, value))
    return records


def test_fit_recovers_known_coefficients():
    truth = Coefficients(1.6, 450.0)
    points = [to_point(r) for r in _synthetic(truth, 0.0)]
    fitted = fit(points)
    assert fitted.act_scale == pytest.approx(1.6, abs=0.01)
    assert fitted.overhead_mib == pytest.approx(450.0, rel=0.01)


def test_leave_one_out_error_is_reported_per_counter():
    report = calibrate(_synthetic(Coefficients(1.3, 500.0), noise=0.02))
    entry = report["host_peak_rss"]
    assert entry["records"] == 8 and len(entry["cells"]) == 8
    assert entry["leave_one_out"]["median_abs_pct"] < 3.0
    assert entry["leave_one_out"]["worst_abs_pct"] >= entry["leave_one_out"]["median_abs_pct"]
    assert entry["default"]["median_abs_pct"] is not None


def test_too_few_records_give_no_fit_and_say_so():
    records = _synthetic(Coefficients(1.0, 600.0), 0.0, n=2) + [_record(9, 1, 8, 500.0, status="failed")]
    entry = calibrate(records)["host_peak_rss"]
    assert "fitted" not in entry and "at least 3" in entry["note"]


def test_prediction_cells_never_raise():
    assert prediction_cells({"config": {"model": {"arch": "nope"}}})["pred_mem_mib"] is None
    cells = prediction_cells(_record(1, 4, 64, 700.0))
    assert cells["pred_mem_mib"] > 0 and cells["pred_err_pct"] is not None


@pytest.mark.parametrize("memory", [{}, {"after_load": {"counter": "host_peak_rss", "peak_mib": 300.0}}, None,
                                    {"train_peak": None}, {"train_peak": {}}])
def test_no_prediction_for_a_cell_that_never_reached_training(memory):
    record = _record(1, 4, 64, status="failed")  # the worker reached a device (environment is set), then failed
    record["memory"] = memory
    assert prediction_cells(record) == {"pred_mem_mib": None, "pred_err_pct": None}


def test_a_cell_that_trained_gets_a_prediction_even_without_a_peak_value():
    record = _record(1, 4, 64, measured=None, status="diverged")
    cells = prediction_cells(record)
    assert cells["pred_mem_mib"] > 0 and cells["pred_err_pct"] is None


def test_quantized_cpu_records_are_left_out_of_the_fit_and_counted():
    records = _synthetic(Coefficients(1.3, 500.0), noise=0.0)
    quantized = []
    for i in range(3):  # bitsandbytes' CPU path: measured far above the model, which does not follow it
        record = _record(20 + i, 4, 64, 2000.0)
        record["config"]["quant"] = {"mode": "4bit"}
        quantized.append(record)
    assert all(to_point(r) is None for r in quantized)
    entry = calibrate(records + quantized)["host_peak_rss"]
    assert entry["records"] == 8 and entry["not_modelled"] == 3
    assert entry["fitted"]["act_scale"] == pytest.approx(1.3, abs=0.01)  # the fit is the one without them
    only = calibrate(quantized)["host_peak_rss"]
    assert only["records"] == 0 and only["not_modelled"] == 3 and "fitted" not in only
