"""The memory model's breakdown: consistent, monotonic, and right about what each knob changes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.config import LoraConfig, ModelConfig, PeftConfig, QuantConfig, TrainConfig
from harness.plan.memory import MIB, Cell, Coefficients, predict, with_train
from harness.plan.params import count_params

pytestmark = pytest.mark.unit
CONF = Path(__file__).resolve().parents[2] / "conf" / "model"


def _cell(model="llama", method="lora", quant="none", r=16, **train):
    m = ModelConfig(**yaml.safe_load((CONF / f"{model}.yaml").read_text()))
    base = {"batch_size": 4, "max_seq_len": 2048}
    base.update(train)
    return Cell(m, PeftConfig(method=method), LoraConfig(r=r), QuantConfig(mode=quant), TrainConfig(**base))


def test_components_add_up_to_the_total():
    p = predict(_cell(quant="4bit"))
    c = p.components
    fwd = c["activations"] + c["head"] + p.terms["concurrent"]
    step = c["gradients"] + c["step_temp"]
    expected = c["weights"] + c["adapter"] + c["optimizer"] + max(fwd, step) + c["overhead"]
    assert p.total_mib == pytest.approx(expected)
    assert p.device_total_mib > p.total_mib  # slack + CUDA context on a GPU
    assert p.counter == "cuda_peak_allocated"


def test_quantization_shrinks_the_frozen_weights():
    weights = {q: predict(_cell(quant=q)).components["weights"] for q in ("none", "8bit", "4bit")}
    assert weights["4bit"] < weights["8bit"] < weights["none"]
    counts = count_params(_cell().model)
    assert weights["none"] * MIB == pytest.approx(counts.total * 2)  # bf16
    # nf4 + double quant: ~0.516 byte per layer-linear weight; the rest fp32 after peft's upcast
    linear_bytes = weights["4bit"] * MIB - (counts.total - counts.layer_linear) * 4
    assert linear_bytes / counts.layer_linear == pytest.approx(0.516, abs=0.002)


def test_adapter_optimizer_and_full_finetune_bytes():
    lora = predict(_cell(r=16))
    n = lora.params["adapter"]
    assert lora.components["adapter"] * MIB == n * 4 and lora.components["optimizer"] * MIB == n * 8
    full = predict(_cell(method="full", batch_size=1, max_seq_len=512))
    total = full.params["total"]
    assert full.components["optimizer"] * MIB == total * 4  # AdamW states in bf16, like the bf16 parameters
    sgd = predict(_cell(method="full", optimizer="sgd", batch_size=1, max_seq_len=512))
    assert sgd.components["optimizer"] == 0 and sgd.total_mib < full.total_mib


def test_activation_knobs():
    base = predict(_cell(quant="4bit"))
    ckpt = predict(_cell(quant="4bit", gradient_checkpointing=True))
    assert ckpt.components["activations"] < base.components["activations"] / 5
    double_batch = predict(with_train(_cell(quant="4bit"), batch_size=8))
    assert double_batch.components["activations"] == pytest.approx(2 * base.components["activations"], rel=0.01)
    eager = predict(_cell(quant="4bit"), attention="eager")
    assert eager.components["activations"] > base.components["activations"]  # s² scores kept
    full_head = predict(_cell(quant="4bit"), head="full")
    assert full_head.components["head"] > 10 * base.components["head"]  # 128k-vocab logits materialised


def test_coefficients_scale_and_shift():
    p1 = predict(_cell(), coeff=Coefficients(1.0, 0.0))
    p2 = predict(_cell(), coeff=Coefficients(2.0, 100.0))
    assert p2.components["activations"] == pytest.approx(2 * p1.components["activations"])
    assert p2.total_mib > p1.total_mib + 100


def test_cpu_variant_predicts_host_rss_in_fp32():
    p = predict(_cell(model="tiny-llama", batch_size=4, max_seq_len=64), device="cpu")
    assert p.counter == "host_peak_rss" and p.device_total_mib == p.total_mib
    assert p.components["weights"] * MIB == count_params(_cell(model="tiny-llama").model).total * 4
    assert p.components["overhead"] > 100  # the Python/torch runtime is part of RSS


def test_from_record_dict_ignores_unknown_keys():
    cell = Cell.from_dict({"model": {"name": "x", "tiny": True, "future_key": 1}, "train": {"batch_size": 2, "new": 0}})
    assert cell.train.batch_size == 2 and cell.model.name == "x"
