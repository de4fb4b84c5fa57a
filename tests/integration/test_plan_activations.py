"""The activation formula against what autograd actually saves, on tiny models of the real architectures.

Counts the bytes of every distinct storage autograd saves during one forward (parameters
excluded) through the hf backend's own path (peft LoRA/DoRA, trl's fused LM head) and
compares them with the planner's layer + head + mask terms. Fast: no training, no worker.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.config.model import ModelConfig
from harness.config.peft import LoraConfig, PeftConfig, QuantConfig, lora_target_modules
from harness.config.train import TrainConfig
from harness.plan.setting import Cell, attention_variant
from harness.plan.terms import _layer_bytes

pytestmark = pytest.mark.integration
CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
TOLERANCE = 0.12


def _saved_bytes(model_cfg: ModelConfig, method: str, dropout: float, b: int, s: int) -> int:
    torch = pytest.importorskip("torch")
    import peft
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from harness.models.tiny import hf_config

    torch.manual_seed(0)
    config = hf_config(model_cfg, pad_token_id=0, bos_token_id=None, eos_token_id=None)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    if method != "full":
        modules = lora_target_modules(model_cfg.arch, LoraConfig(r=8, dropout=dropout))
        model = peft.get_peft_model(model, peft.LoraConfig(
            r=8, lora_alpha=16, lora_dropout=dropout, target_modules=modules, use_dora=method == "dora", task_type="CAUSAL_LM"))
    model.train()
    ids = torch.randint(1, model_cfg.vocab_size, (b, s))
    mask = torch.ones(b, s, dtype=torch.long)
    mask[0, s // 2:] = 0  # one padded row, as the collator builds
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = {}

    def pack(x):
        storage = x.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        model(input_ids=ids, attention_mask=mask, labels=ids, fused_lm_head=True)
    return sum(seen.values())


@pytest.mark.parametrize(
    "name,method,dropout",
    [("tiny-llama", "lora", 0.05), ("tiny-qwen", "lora", 0.05), ("tiny-phi", "lora", 0.05), ("tiny-gemma", "lora", 0.05),
     ("tiny-llama", "lora", 0.0), ("tiny-llama", "full", 0.05), ("tiny-gemma", "full", 0.05), ("tiny-llama", "dora", 0.05)],
)
def test_saved_activations_match_the_formula(name, method, dropout):
    model = ModelConfig(**yaml.safe_load((CONF / f"{name}.yaml").read_text()))
    b, s = 4, 128
    lora = LoraConfig(r=8, dropout=dropout)
    cell = Cell(model, PeftConfig(method=method), lora, QuantConfig(), TrainConfig(batch_size=b, max_seq_len=s))
    attention = attention_variant(model, "auto")
    adapter = method != "full"
    modules = lora_target_modules(model.arch, lora) if adapter else []
    t, e = b * s, 4
    layer = _layer_bytes(cell, t, b, s, e, attention, adapter, modules, "cpu")
    head_saved = 4 * t * model.hidden_size + e * t * model.hidden_size + 40 * t  # final norm, hidden copy, stats
    mask = b * s * s * (1 if attention == "sdpa" else e)
    predicted = model.num_layers * layer + head_saved + mask
    measured = _saved_bytes(model, method, dropout, b, s)
    assert abs(predicted - measured) / measured < TOLERANCE, (predicted / 2**20, measured / 2**20)
