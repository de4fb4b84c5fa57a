"""The litgpt backend's worker side and its runner's pure parts, without LitGPT's environment.

What LitGPT must honour is decided in the harness's environment before anything heavy starts; the runner's
learning-rate factors must be transformers' own, step for step, or the two frameworks would not train alike.
"""

from __future__ import annotations

import pytest

from harness.backends.litgpt import LitGPTBackend, lora_layers, optimizer_steps
from harness.config.peft import LoraConfig, lora_target_modules
from harness.config.schema import HarnessConfig
from harness.config.train import TrainConfig
from harness.errors import UnsupportedError
from harness.seams import CellContext

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant", "constant_with_warmup"])
@pytest.mark.parametrize("warmup", [0, 3])
def test_runner_lr_factors_are_transformers_schedules(kind: str, warmup: int) -> None:
    import torch
    from transformers import get_scheduler

    from harness.frameworks.litgpt_runner import lr_lambda

    total = 12
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = get_scheduler(kind, optimizer, num_warmup_steps=warmup, num_training_steps=total)
    theirs = [fn(step) for step in range(total + 1) for fn in scheduler.lr_lambdas]
    ours = [lr_lambda(kind, warmup, total)(step) for step in range(total + 1)]
    assert ours == pytest.approx(theirs, abs=1e-12)


def test_lora_targets_map_to_litgpt_switches() -> None:
    every = lora_target_modules("llama", LoraConfig(target="all-linear"))
    assert lora_layers(every) == {"query": True, "key": True, "value": True, "projection": True, "head": False, "mlp": True}
    attention = lora_target_modules("llama", LoraConfig(target="attention"))
    assert lora_layers(attention)["mlp"] is False and lora_layers(attention)["query"] is True
    assert lora_layers(["q_proj", "v_proj"]) == {"query": True, "key": False, "value": True, "projection": False,
                                                 "head": False, "mlp": False}
    with pytest.raises(UnsupportedError, match=r"^lora\.modules=q_proj,gate_proj: LitGPT puts LoRA on gate, up and down"):
        lora_layers(["q_proj", "gate_proj"])


def test_optimizer_steps_follow_max_steps_or_whole_epochs() -> None:
    assert optimizer_steps(TrainConfig(max_steps=7), rows=100) == 7
    assert optimizer_steps(TrainConfig(max_steps=0, epochs=2.0, batch_size=4, grad_accum=5), rows=80) == 8
    with pytest.raises(UnsupportedError, match=r"^train\.epochs=1\.0: with 25 micro-batches per epoch and grad_accum=2"):
        optimizer_steps(TrainConfig(max_steps=0, epochs=1.0, batch_size=4, grad_accum=2), rows=100)


@pytest.mark.parametrize("override, key", [
    (("quant", "mode", "4bit"), "quant.mode=4bit"),
    (("peft", "method", "dora"), "peft.method=dora"),
    (("peft", "method", "full"), "peft.method=full"),
    (("train", "optimizer", "sgd"), "train.optimizer=sgd"),
    (("train", "lr_scheduler", "cosine_with_restarts"), "train.lr_scheduler=cosine_with_restarts"),
    (("train", "gradient_checkpointing", True), "train.gradient_checkpointing=true"),
    (("model", "arch", "phi3"), "model.arch=phi3"),
])
def test_what_litgpt_cannot_honour_is_unsupported_naming_the_key(tmp_path, override, key) -> None:
    cfg = HarnessConfig()
    block, field, value = override
    setattr(getattr(cfg, block), field, value)
    backend = LitGPTBackend(cfg, CellContext(cell_dir=tmp_path, cache_dir=tmp_path, device="cpu"))
    with pytest.raises(UnsupportedError) as info:
        backend.load_model()
    assert str(info.value).startswith(key + ":")


def test_runner_collate_pads_right_and_counts_trained_tokens() -> None:
    from harness.frameworks.litgpt_runner import Collate
    from harness.measure.meters import StepMeter

    meter = StepMeter(grad_accum=2, warmup=0)
    collate = Collate(pad_id=0, meter=meter, grad_accum=2)
    batch = collate([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8, 9], "labels": [-100, -100]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 9, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [-100, -100, -100]]
    assert batch["token_counts"]["raw"].tolist() == [3, 2]
    collate([{"input_ids": [1, 2], "labels": [1, 2]}])
    meter.step_end()
    assert meter.summary()["trained_tokens"] == 3  # 2 + 0 + 1 (the first position never carries loss)
    assert meter.summary()["all_tokens"] == 7 and meter.summary()["samples"] == 3


def test_runner_checks_litgpt_trains_as_many_lora_parameters_as_peft() -> None:
    from harness.frameworks.litgpt_runner import peft_lora_params

    tiny_llama = {"hidden_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64,
                  "intermediate_size": 512, "num_hidden_layers": 4, "vocab_size": 2048}
    every = {"r": 16, **lora_layers(lora_target_modules("llama", LoraConfig(target="all-linear")))}
    assert peft_lora_params(tiny_llama, every) == 262_144  # what peft reports for tiny-llama r=16 all-linear
    assert peft_lora_params(tiny_llama, {**every, "value": False}) == 262_144 - 16 * 4 * (256 + 128)
