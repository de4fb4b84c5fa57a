"""The memory model's breakdown: consistent, monotonic, and right about what each knob changes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.config.hf_names import OPTIMIZERS as TRANSFORMERS_OPTIMIZERS
from harness.config.model import ModelConfig
from harness.config.peft import LoraConfig, PeftConfig, QuantConfig
from harness.config.train import TrainConfig
from harness.plan.memory import predict, with_train
from harness.plan.params import count_params, layer_linears
from harness.plan.setting import DEFAULTS, FOREACH_TEMP, HEAP_TENSOR_MAX, MIB, OPTIMIZERS, Cell, Coefficients, resolve
from harness.plan.terms import (
    activation_bytes,
    adapter_bytes,
    adapter_param_count,
    concurrent_gradient_bytes,
    gradient_bytes,
    head_bytes,
    layer_bytes,
    mask_bytes,
    optimizer_bytes,
    resident_bytes,
    step_temp_bytes,
    term_bytes,
    weights_bytes,
)

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


# -- the terms alone: each one is what it must be, and together they are the prediction --


def _grown(cell: Cell, vocab: int) -> Cell:
    """The same cell with a larger vocabulary: more frozen base parameters (embedding and LM head), same adapter."""
    model = ModelConfig(**{**cell.model.__dict__, "vocab_size": vocab, "weights": "random"})
    return Cell(model, cell.peft, cell.lora, cell.quant, cell.train)


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_frozen_weights_carry_no_optimizer_state_and_no_gradient(method):
    cell = _cell(method=method, quant="4bit")
    x, grown = resolve(cell), resolve(_grown(cell, 2 * cell.model.vocab_size))
    n = adapter_param_count(x)
    assert n > 0 and optimizer_bytes(x) == n * 2 * 4 and gradient_bytes(x) == n * 4  # AdamW: two fp32 states
    # a larger frozen base weighs more but adds no state and no gradient
    assert weights_bytes(grown) > weights_bytes(x)
    assert optimizer_bytes(grown) == optimizer_bytes(x) and gradient_bytes(grown) == gradient_bytes(x)
    # ... whereas a full fine-tune trains every base parameter: two bf16 states and a bf16 gradient each
    full = resolve(_cell(method="full"))
    full_grown = resolve(_grown(_cell(method="full"), 2 * cell.model.vocab_size))
    added = count_params(full_grown.cell.model).total - count_params(full.cell.model).total
    assert optimizer_bytes(full_grown) - optimizer_bytes(full) == added * 2 * 2
    assert gradient_bytes(full_grown) - gradient_bytes(full) == added * 2


def test_adapter_term_is_zero_for_a_full_finetune_and_dora_adds_the_magnitudes():
    full = resolve(_cell(method="full"))
    assert adapter_param_count(full) == 0 and adapter_bytes(full) == 0
    assert weights_bytes(full) == count_params(full.cell.model).total * 2  # bf16, the whole base
    lora, dora = resolve(_cell(method="lora")), resolve(_cell(method="dora"))
    d_out = sum(lin.d_out for lin in layer_linears(lora.cell.model) if lin.name in lora.modules)
    assert adapter_bytes(lora) == adapter_param_count(lora) * 4.0  # fp32 adapters
    assert adapter_bytes(dora) - adapter_bytes(lora) == d_out * lora.cell.model.num_layers * 4.0


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_step_temporaries_only_for_torch_adamw(device):
    for optimizer in [name for name in OPTIMIZERS if name in TRANSFORMERS_OPTIMIZERS]:  # names the config accepts
        x = resolve(_cell(method="full", optimizer=optimizer, batch_size=1, max_seq_len=64), device)
        assert (step_temp_bytes(x) > 0) == (optimizer in FOREACH_TEMP), optimizer
    sgd = resolve(_cell(method="full", optimizer="sgd"), device)
    assert optimizer_bytes(sgd) == 0 and step_temp_bytes(sgd) == 0 and gradient_bytes(sgd) > 0


def test_full_finetune_gradients_are_not_alive_with_the_activations_unless_accumulated():
    for method, accum, alive in [("full", 1, False), ("full", 4, True), ("lora", 1, True)]:
        x = resolve(_cell(method=method, grad_accum=accum))
        assert concurrent_gradient_bytes(x) == (gradient_bytes(x) if alive else 0.0)


def test_resident_pages_are_zero_on_cuda_and_only_heap_sized_tensors_on_cpu():
    cell = _cell(model="tiny-llama", method="full", gradient_checkpointing=True, batch_size=2, max_seq_len=64)
    assert resident_bytes(resolve(cell, "cuda")) == 0.0
    x = resolve(cell, "cpu")
    m, t = cell.model, 2 * 64
    assert resident_bytes(x) == m.num_layers * 4 * t * m.hidden_size + mask_bytes(x)  # every checkpoint on the heap
    # tensors above glibc's mmap threshold are unmapped on free: of a long batch only the id tensors stay resident
    big = resolve(with_train(cell, batch_size=64, max_seq_len=1024), "cpu")
    assert 4 * 64 * 1024 * m.hidden_size > HEAP_TENSOR_MAX and 64 * 1024 * 1024 > HEAP_TENSOR_MAX  # checkpoint, 4D mask
    assert resident_bytes(big) == 24.0 * 64 * 1024


def test_masks_are_bool_for_sdpa_and_compute_dtype_for_eager():
    for attention, per_elem in [("sdpa", 1), ("eager", 2)]:
        x = resolve(_cell(batch_size=2, max_seq_len=128), attention=attention)
        assert mask_bytes(x) == 2 * 128 * 128 * per_elem + 24.0 * 2 * 128


@pytest.mark.parametrize("head", ["fused", "full"])
def test_checkpointing_keeps_each_layer_input_and_one_of_recompute_and_head(head):
    cell = _cell(quant="4bit", gradient_checkpointing=True)
    x = resolve(cell, head=head)
    layer, lm_head = layer_bytes(x), head_bytes(x)
    activations, recompute, head_part = activation_bytes(x, layer, lm_head)
    m = cell.model
    assert activations == m.num_layers * 2 * 4 * 2048 * m.hidden_size + mask_bytes(x)
    assert (recompute, head_part) == ((layer, 0.0) if layer > lm_head else (0.0, lm_head))
    plain = resolve(with_train(cell, gradient_checkpointing=False), head=head)
    assert activation_bytes(plain, layer, lm_head) == (m.num_layers * layer + mask_bytes(plain), 0.0, lm_head)


def test_head_term_full_logits_and_the_full_finetune_weight_gradient():
    t = 4 * 2048
    lora = resolve(_cell(), head="full")
    m = lora.cell.model
    assert head_bytes(lora) == 4.0 * t * m.hidden_size + (2 + 12.0) * t * m.vocab_size  # bf16 logits + fp32 loss
    full = resolve(_cell(method="full"), head="full")
    assert head_bytes(full) - head_bytes(lora) == 2 * m.vocab_size * m.hidden_size  # the head's weight gradient
    # fused: an fp32 accumulator plus its cast to bf16 on CUDA; on CPU the weights are fp32, no cast
    fused = resolve(_cell(method="full")), resolve(_cell())
    assert head_bytes(fused[0]) - head_bytes(fused[1]) == (4.0 + 2) * m.vocab_size * m.hidden_size
    cpu = resolve(_cell(method="full"), "cpu"), resolve(_cell(), "cpu")
    assert head_bytes(cpu[0]) - head_bytes(cpu[1]) == 4.0 * m.vocab_size * m.hidden_size


@pytest.mark.parametrize("model,method,quant,train,device,head", CASES)
def test_terms_add_up_to_the_total_the_prediction_reports(model, method, quant, train, device, head):
    cell = _cell(model=model, method=method, quant=quant, **train)
    for coeff in (None, Coefficients(1.7, 300.0)):
        p = predict(cell, device, head=head, coeff=coeff)
        c = coeff or DEFAULTS[p.counter]
        terms = term_bytes(resolve(cell, device, head=head))
        # each row is its term, MiB
        assert p.components["weights"] == terms.weights / MIB and p.components["adapter"] == terms.adapter / MIB
        assert p.components["optimizer"] == terms.optimizer / MIB
        if p.phase == "forward/backward":
            peak = terms.fixed + c.act_scale * (terms.activations + terms.recompute + terms.head)
            peak += terms.concurrent_gradients
        else:
            peak = terms.fixed + terms.gradients + terms.step_temp + c.act_scale * terms.resident
        assert p.total_mib == pytest.approx(peak / MIB + c.overhead_mib, rel=1e-12)
        assert p.terms == {"fixed": terms.fixed / MIB, "scalable": terms.scalable / MIB,
                           "concurrent": terms.concurrent_gradients / MIB, "step": terms.step / MIB,
                           "resident": terms.resident / MIB}
