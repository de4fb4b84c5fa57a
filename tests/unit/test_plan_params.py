"""The planner's analytic parameter counts equal those of the real architectures built on the meta device."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.config.model import ModelConfig
from harness.config.peft import LoraConfig, lora_target_modules
from harness.plan.params import adapter_params, count_params, layer_linears

pytestmark = pytest.mark.unit
MODELS = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "conf" / "model").glob("*.yaml"))


def _model(name: str) -> ModelConfig:
    path = Path(__file__).resolve().parents[2] / "conf" / "model" / f"{name}.yaml"
    return ModelConfig(**yaml.safe_load(path.read_text()))


def _meta_model(model: ModelConfig):
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM

    from harness.models.tiny import hf_config

    # special ids off: Phi-3's default pad id (32000) lies outside a tiny vocabulary
    config = hf_config(model, pad_token_id=None, bos_token_id=None, eos_token_id=None)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def test_every_shipped_model_is_covered():
    # the ten of the first release at least; models added later are picked up by the glob
    first = {"gemma", "llama", "mistral", "phi", "qwen"}
    assert first | {f"tiny-{name}" for name in first} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_total_params_match_the_meta_model(name):
    model = _model(name)
    built = _meta_model(model)
    counts = count_params(model)
    assert counts.total == sum(p.numel() for p in built.parameters())
    assert counts.embedding == built.get_input_embeddings().weight.numel()
    # per-layer linear shapes are the ones transformers builds
    layer = built.model.layers[0]
    modules = dict(layer.named_modules())
    for linear in layer_linears(model):
        short = next(k for k in modules if k.endswith("." + linear.name))
        weight = modules[short].weight
        assert tuple(weight.shape) == (linear.d_out, linear.d_in), (name, linear.name)
        assert (modules[short].bias is not None) == linear.bias, (name, linear.name)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma", "tiny-phi", "tiny-qwen"])
@pytest.mark.parametrize("target,dora", [("all-linear", False), ("attention", True)])
def test_adapter_params_match_peft(name, target, dora):
    pytest.importorskip("torch")
    import peft

    model = _model(name)
    lora = LoraConfig(r=8, target=target)
    modules = lora_target_modules(model.arch, lora)
    built = peft.get_peft_model(
        _meta_model(model).to_empty(device="cpu"),
        peft.LoraConfig(r=8, lora_alpha=16, target_modules=modules, use_dora=dora, task_type="CAUSAL_LM"),
    )
    trainable, _ = built.get_nb_trainable_parameters()
    assert adapter_params(model, modules, 8, dora) == trainable
