"""model.weights=random: validation, identity, no hub, the sized tokenizer, and a random checkpoint that loads like any."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest

from harness.config.model import ModelConfig
from harness.config.schema import HarnessConfig
from harness.errors import ConfigError
from harness.models import hub
from harness.report.summary import NOTES, notes_for, real_random
from harness.store import identity
from harness.store.identity import cell_id, cell_identity
from harness.sweep.validate import validate
from tests.unit.test_config import _compose

pytestmark = pytest.mark.unit

# a real architecture class at a few hundred thousand parameters: q/k/v biases (qwen2) and tied embeddings
SMALL = dict(name="small-qwen", hub_id=None, tiny=False, weights="random", arch="qwen2", num_layers=2, hidden_size=64,
             num_heads=4, num_kv_heads=2, intermediate_size=128, vocab_size=3000, tie_embeddings=True,
             max_position_embeddings=512)


def test_weights_is_pretrained_or_random():
    with pytest.raises(ConfigError, match=r"^model.weights=rand: must be one of pretrained, random$"):
        ModelConfig(weights="rand")


def test_a_pretrained_models_shape_comes_from_its_checkpoint():
    with pytest.raises(ConfigError) as caught:
        validate(_compose(["model=llama", "model.num_layers=2"]))
    message = str(caught.value)
    assert message.startswith("model.num_layers=2: the numbers of a pretrained model come from its checkpoint")
    assert "model.weights=random" in message and "\n" not in message
    typed, plain = validate(_compose(["model=llama", "model.weights=random", "model.num_layers=2"]))
    assert (typed.model.num_layers, typed.model.hidden_size, plain["model"]["weights"]) == (2, 4096, "random")


def test_tiny_models_are_random_and_the_schema_default_stays_pretrained():
    typed, plain = validate(_compose(["model=tiny-llama"]))
    assert typed.model.effective_weights() == "random"
    assert plain["model"]["weights"] == "pretrained"  # the field as given: tiny cell ids do not move
    typed, _ = validate(_compose(["model=qwen-0.5b"]))
    assert typed.model.effective_weights() == "pretrained"
    assert (typed.model.hub_id, len(typed.model.revision)) == ("Qwen/Qwen2.5-0.5B", 40)


def test_random_weights_need_no_hub(monkeypatch):
    def no_hub(*args, **kwargs):
        raise AssertionError("a random-weight model must not ask the hub")

    monkeypatch.setattr(hub, "in_local_cache", no_hub)
    monkeypatch.setattr(hub, "hub_reachable", no_hub)
    monkeypatch.setattr(identity, "resolve_revision", no_hub)
    monkeypatch.setattr(identity, "_visible_gpu_name", lambda: None)
    assert hub.hub_problem(ModelConfig(**SMALL)) is None
    typed, plain = validate(_compose(["model=llama", "model.weights=random"]))
    assert hub.hub_problem(typed.model) is None
    assert cell_identity(plain)["model"].startswith("random:")


def test_random_and_pretrained_are_different_cells(monkeypatch):
    monkeypatch.setattr(identity, "_visible_gpu_name", lambda: None)
    monkeypatch.setattr(identity, "resolve_revision", lambda hub_id, revision: "0" * 40)
    _, pretrained = validate(_compose(["model=qwen-0.5b"]))
    _, random = validate(_compose(["model=qwen-0.5b", "model.weights=random"]))
    assert cell_id(pretrained, cell_identity(pretrained)) != cell_id(random, cell_identity(random))
    fewer = copy.deepcopy(random)
    fewer["model"]["num_layers"] = 2
    assert cell_identity(fewer)["model"] != cell_identity(random)["model"]  # the architecture is the weights' identity


def test_record_and_summary_mark_random_weights():
    from harness.report.rows import summary_row
    from harness.store.records import new_record
    from harness.worker.phases import load_config

    config = dataclasses.asdict(HarnessConfig(model=ModelConfig(**SMALL)))
    assert load_config({"config": config}).model.effective_weights() == "random"  # what open_cell records
    row = summary_row(new_record("a", "ok", config, model={"weights": "random"}))
    assert row["weights"] == "random" and real_random(config)
    tiny = dataclasses.asdict(HarnessConfig())
    assert notes_for([row], [config]) == [NOTES["random_real"]]
    assert notes_for([row, dict(row)], [config, tiny]) == [NOTES["random"], NOTES["random_real"]]
    assert notes_for([row]) == [NOTES["random"]]  # no configs: as before


def test_sized_tokenizer_pads_the_tiny_vocabulary_to_the_model():
    pytest.importorskip("tokenizers")
    from harness.models.random_weights import TRAINED_VOCAB, sized_tokenizer
    from harness.models.tiny import build_tokenizer

    tokenizer = sized_tokenizer(5000, 4096)
    tiny = build_tokenizer(TRAINED_VOCAB)
    assert len(tokenizer) == 5000 and tokenizer.model_max_length == 4096
    text = "The quick brown fox explains LoRA to a capacity planner."
    assert tokenizer(text)["input_ids"] == tiny(text)["input_ids"]  # padding adds entries, never changes a text's tokens
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id) == (tiny.pad_token_id, tiny.eos_token_id)
    ids = sorted(tokenizer.get_vocab().values())
    assert ids == list(range(5000))  # every id once: nothing renumbered onto another token
    assert tokenizer.convert_ids_to_tokens(4999).startswith("<|unused_") and tokenizer.decode([17, 4999])


def test_random_build_of_a_small_real_architecture(tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM

    from harness.backends.hf import HFBackend
    from harness.models.random_weights import build_random_model
    from harness.plan.params import count_params
    from harness.seams import CellContext

    model = ModelConfig(**SMALL)
    backend = HFBackend(HarnessConfig(model=model), CellContext(cell_dir=tmp_path, cache_dir=tmp_path / "cache", device="cpu"))
    tokenizer = backend.load_tokenizer()  # builds the checkpoint (tokenizer + weights, in a child process) once
    folder = Path(backend._source())
    assert folder.parent == (tmp_path / "cache" / "models").resolve() and backend._hub_kwargs() == {}
    assert len(tokenizer) == model.vocab_size
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as stored:  # stored as the hub stores Qwen2: bfloat16
        assert {stored.get_slice(name).get_dtype() for name in stored.keys()} == {"BF16"}
    loaded, info = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, use_safetensors=True, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert sum(p.numel() for p in loaded.parameters()) == count_params(model).total
    attention, layer = loaded.model.layers[0].self_attn, loaded.model.layers[0]
    assert torch.all(attention.q_proj.bias == 0) and torch.all(layer.input_layernorm.weight == 1)
    assert abs(attention.q_proj.weight.std().item() - 0.02) < 0.003
    assert loaded.lm_head.weight is loaded.get_input_embeddings().weight

    gemma = dataclasses.replace(model, arch="gemma2", head_dim=16)  # Gemma's norms are 1 + w: drawn as zeros
    built = build_random_model(gemma, "bfloat16", "cpu", {"pad_token_id": 0, "eos_token_id": 2, "bos_token_id": None})
    assert next(built.parameters()).dtype == torch.bfloat16
    assert torch.all(built.model.layers[0].input_layernorm.weight == 0)
    assert torch.isfinite(built(torch.tensor([[5, 6, 7]])).logits).all()
