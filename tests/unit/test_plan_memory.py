"""The memory model's breakdown: consistent, monotonic, and right about what each knob changes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.config import LoraConfig, ModelConfig, PeftConfig, QuantConfig, TrainConfig
from harness.plan.memory import DEFAULTS, MIB, Cell, Coefficients, predict, with_train
from harness.plan.params import count_params

pytestmark = pytest.mark.unit
CONF = Path(__file__).resolve().parents[2] / "conf" / "model"


def _cell(model="llama", method="lora", quant="none", r=16, **train):
    m = ModelConfig(**yaml.safe_load((CONF / f"{model}.yaml").read_text()))
    base = {"batch_size": 4, "max_seq_len": 2048}
    base.update(train)
    return Cell(m, PeftConfig(method=method), LoraConfig(r=r), QuantConfig(mode=quant), TrainConfig(**base))


CASES = [  # (model, method, quant, train keys, device, head): gc on and off, LoRA/DoRA/full, quantized, both phases
    ("llama", "lora", "4bit", {}, "cuda", "fused"),
    ("llama", "lora", "4bit", {"gradient_checkpointing": True}, "cuda", "fused"),  # the recomputed layer outgrows the head
    ("llama", "lora", "none", {"gradient_checkpointing": True}, "cuda", "full"),  # 128k-vocab logits outgrow the layer
    ("llama", "lora", "8bit", {"gradient_checkpointing": True, "batch_size": 1}, "cuda", "fused"),
    ("gemma", "dora", "4bit", {"gradient_checkpointing": True}, "cuda", "fused"),
    ("llama", "full", "none", {}, "cuda", "fused"),
    ("llama", "full", "none", {"batch_size": 1, "max_seq_len": 256}, "cuda", "fused"),  # optimizer step peaks
    ("llama", "full", "none", {"gradient_checkpointing": True, "batch_size": 1, "max_seq_len": 512}, "cuda", "fused"),
    ("llama", "full", "none", {"gradient_checkpointing": True, "grad_accum": 4}, "cuda", "full"),
    ("tiny-llama", "lora", "4bit", {"batch_size": 4, "max_seq_len": 64}, "cpu", "fused"),
    ("tiny-qwen", "full", "none", {"gradient_checkpointing": True, "batch_size": 8, "max_seq_len": 256}, "cpu", "fused"),
    ("tiny-gemma", "lora", "none", {"gradient_checkpointing": True, "batch_size": 1, "max_seq_len": 64}, "cpu", "full"),
    ("qwen-0.5b", "full", "none", {"batch_size": 4, "max_seq_len": 66}, "cpu", "fused"),  # CPU step: resident activations
]


@pytest.mark.parametrize("model,method,quant,train,device,head", CASES)
def test_breakdown_rows_sum_to_the_total_of_the_phase_that_peaks(model, method, quant, train, device, head):
    from harness.plan.calibrate import Point

    for coeff in (None, Coefficients(1.7, 300.0)):
        p = predict(_cell(model=model, method=method, quant=quant, **train), device, head=head, coeff=coeff)
        c = p.components
        assert sum(c.values()) == pytest.approx(p.total_mib, rel=1e-9)
        assert p.total_mib == pytest.approx(p.phases[p.phase]) and p.phases[p.phase] == max(p.phases.values())
        scale = (coeff or DEFAULTS[p.counter]).act_scale
        if p.phase == "optimizer step":  # nothing of the forward/backward is alive at the step
            assert c["recompute"] == c["head"] == 0
            assert c["gradients"] > 0 and c["gradients"] + c["step_temp"] == pytest.approx(p.terms["step"])
            # ... but on CPU glibc still holds the freed activations' pages: the activations row says how much
            assert c["activations"] == pytest.approx(scale * p.terms["resident"])
            assert (c["activations"] > 0) == (device == "cpu")
        else:
            assert c["step_temp"] == 0 and c["gradients"] == pytest.approx(p.terms["concurrent"])
            assert c["head"] > 0 or c["recompute"] > 0
        if not train.get("gradient_checkpointing"):
            assert c["recompute"] == 0
        else:  # the head is freed before the layers are recomputed: the peak holds one of them, labelled as what it is
            assert c["head"] == 0 or c["recompute"] == 0
        # the calibration's own terms give the same total, whichever phase peaks
        point = Point("x", p.counter, 1.0, p.terms["fixed"], p.terms["scalable"], p.terms["concurrent"], p.terms["step"],
                      p.terms["resident"])
        assert point.value(coeff or DEFAULTS[p.counter]) == pytest.approx(p.total_mib)
    if device == "cuda":
        assert p.device_total_mib > p.total_mib  # slack + CUDA context on a GPU


def test_checkpointing_rows_say_whether_the_layer_or_the_head_peaks():
    layer = predict(_cell(quant="4bit", gradient_checkpointing=True))
    assert layer.components["recompute"] > 0 and layer.components["head"] == 0
    assert "peaks recomputing a layer" in " ".join(layer.assumptions)
    head = predict(_cell(gradient_checkpointing=True), head="full")
    assert head.components["head"] > 0 and head.components["recompute"] == 0
    assert "peaks in the LM head" in " ".join(head.assumptions)


def test_the_cases_cover_both_phases_and_both_checkpointed_peaks():
    predictions = [predict(_cell(model=m, method=k, quant=q, **t), d, head=h) for m, k, q, t, d, h in CASES]
    assert {p.phase for p in predictions} == {"forward/backward", "optimizer step"}
    assert any(p.components["recompute"] > 0 for p in predictions) and any(
        p.components["head"] > 0 and "gradient checkpointing," in p.assumptions[0] for p in predictions)


@pytest.mark.parametrize("quant,device,noted", [("4bit", "cpu", True), ("8bit", "cpu", True), ("4bit", "cuda", False),
                                                ("none", "cpu", False)])
def test_quantized_cells_on_cpu_say_they_are_not_modelled(quant, device, noted):
    p = predict(_cell(model="tiny-llama", quant=quant, batch_size=1, max_seq_len=64), device)
    assert bool(p.caveats) == noted
    if noted:
        assert f"CPU {quant} is not modelled" in p.caveats[0] and "lower bound" in p.caveats[0]
        assert ("up to 30 %" in p.caveats[0]) == (quant == "4bit")


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
