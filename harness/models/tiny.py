"""Tiny random-initialised models of the real architecture classes, built and cached once.

Each tiny model uses the real transformers config class of its family (LlamaConfig,
MistralConfig, Gemma2Config, Qwen2Config, Phi3Config) at 1-2 M parameters, initialised
from a fixed seed, with a byte-level BPE tokenizer trained locally on the bundled chat
set and a ChatML chat template. The result is saved as an ordinary ``save_pretrained``
folder under ``<cache_dir>/models/``, keyed by a hash of everything that shapes it, so
every cell (and every sweep) loads the same files. Worker-only: imports torch.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zlib
from pathlib import Path
from typing import Callable, Iterator

from harness.config.model import ModelConfig
from harness.data.load import BUNDLED_PATH
from harness.files import file_lock, make_staging_dir, share_tree, stable_digest, within

BUILDER_VERSION = 3
"""Bump when the build recipe changes, so stale caches are not reused."""
TOKENIZER_CORPUS = BUNDLED_PATH
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# ChatML, with {% generation %} markers so transformers can return assistant masks.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}"
    "{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def tiny_model_key(model: ModelConfig) -> str:
    """Stable cache key: the architecture numbers, the recipe version and the corpus."""
    spec = {
        "arch": model.arch,
        "layers": model.num_layers,
        "hidden": model.hidden_size,
        "heads": model.num_heads,
        "kv_heads": model.num_kv_heads,
        "head_dim": model.head_dim,
        "intermediate": model.intermediate_size,
        "vocab": model.vocab_size,
        "tie": model.tie_embeddings,
        "max_pos": model.max_position_embeddings,
        "builder": BUILDER_VERSION,
        "corpus": hashlib.sha256(TOKENIZER_CORPUS.read_bytes()).hexdigest()[:16],
    }
    digest = stable_digest(spec, 12)
    return f"{model.name}-{digest}"


def ensure_tiny_model(model: ModelConfig, cache_dir: Path) -> Path:
    """Folder of the cached tiny model, building it first if no other process has."""

    def build(staging: Path) -> None:
        tokenizer = build_tokenizer(model.vocab_size)
        tokenizer.save_pretrained(staging)
        build_model(model, tokenizer).save_pretrained(staging)

    return ensure_cached_model(cache_dir, tiny_model_key(model), build)


def ensure_cached_model(cache_dir: Path, key: str, build: Callable[[Path], None]) -> Path:
    """Folder ``<cache_dir>/models/<key>``, made once by ``build(staging)`` under a lock shared by every process.

    ``build`` fills a private staging folder, renamed into place only when complete (a
    folder with a ``config.json`` counts as built), so a crashed build leaves nothing that
    looks finished, and a concurrent worker waits for the lock, then reuses the folder.
    Shared by the tiny models and the random-weight checkpoints (harness/models/random_weights.py).
    """
    root = Path(cache_dir).expanduser()
    target = within(root / "models" / key, root)
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.with_suffix(".lock")):
        if (target / "config.json").exists():  # built by a concurrent worker meanwhile
            return target
        staging = make_staging_dir(f".{target.name}.", target.parent)  # not mkdtemp's 0700: a shared cache entry
        try:
            build(staging)
            share_tree(staging)  # safetensors writes 0600; every user of the cache must read the weights
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _corpus_lines() -> Iterator[str]:
    """Texts the tokenizer is trained on: every turn of the bundled chat set."""
    with open(TOKENIZER_CORPUS, encoding="utf-8") as handle:
        for line in handle:
            for message in json.loads(line)["messages"]:
                yield message["content"]


def build_tokenizer(vocab_size: int):
    """Byte-level BPE trained on the bundled corpus, wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(_corpus_lines(), trainer=trainer)
    # Pad with reserved special tokens up to the model's vocabulary, so len(tokenizer) equals
    # the embedding rows: tools that resize embeddings to the tokenizer (lm-eval with peft=)
    # then leave the model untouched and score exactly what the harness scores.
    spare = vocab_size - core.get_vocab_size()
    if spare > 0:
        core.add_special_tokens([f"<|reserved_{i}|>" for i in range(spare)])
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        chat_template=CHATML_TEMPLATE,
        model_max_length=2048,
    )


def hf_config(model: ModelConfig, **special_ids: int | None):
    """The transformers config object of the model's real architecture class.

    Built from the config numbers alone, so the planner's parameter counts and the built
    model agree by construction.
    """
    import transformers

    common = dict(
        vocab_size=model.vocab_size,
        hidden_size=model.hidden_size,
        intermediate_size=model.intermediate_size,
        num_hidden_layers=model.num_layers,
        num_attention_heads=model.num_heads,
        num_key_value_heads=model.num_kv_heads,
        max_position_embeddings=model.max_position_embeddings,
        tie_word_embeddings=model.tie_embeddings,
        **special_ids,
    )
    if model.head_dim is not None:
        common["head_dim"] = model.head_dim
    classes = {
        "llama": transformers.LlamaConfig,
        "mistral": transformers.MistralConfig,
        "gemma2": transformers.Gemma2Config,
        "qwen2": transformers.Qwen2Config,
        "phi3": transformers.Phi3Config,
    }
    return classes[model.arch](**common)


def build_model(model: ModelConfig, tokenizer):
    """Random-initialised causal LM from a seed fixed by the model name (same weights on every machine)."""
    import torch
    from transformers import AutoModelForCausalLM

    if len(tokenizer) > model.vocab_size:
        raise ValueError(f"model.vocab_size={model.vocab_size} is smaller than the tokenizer ({len(tokenizer)} tokens)")
    config = hf_config(
        model, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None
    )
    torch.manual_seed(zlib.crc32(model.name.encode()))  # fixed, but distinct per tiny model
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)
