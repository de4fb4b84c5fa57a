"""Real-size architectures with random weights (``model.weights=random``), built once and loaded like a checkpoint.

Memory and speed do not depend on the values of the weights: a model group's numbers
(Llama-3.1-8B's widths, say) built with the transformers class of ``model.arch`` allocate
what the real checkpoint allocates and run the same kernels. So the harness writes such a
model once per architecture and building device as an ordinary ``save_pretrained`` folder
under ``<cache_dir>/models/`` (keyed and locked like the tiny models,
``harness.models.tiny.ensure_cached_model``), and the backends load it with
``from_pretrained`` like any local checkpoint: 8-bit and 4-bit quantized loading, peft's
k-bit preparation and the cell's dtype take the path a downloaded model takes. No hub access.

The file is stored in the dtype the family's hub checkpoints are stored in (bfloat16;
float32 for Gemma 2), not in the cell's dtype, because that decides the loading path: a
float32 cell on a CPU converts every tensor into fresh memory, as it would from the
download, where a file already in the cell's dtype stays memory-mapped and only the pages
touched count (measured: Llama-3.1-8B widths at two layers peaked 4.5 GiB RSS from a
float32 file, its untied 2 GiB embedding mostly never read).

Building is cheap: the model is made on the meta device (no allocation, no init), then
allocated uninitialised on the target device (``to_empty``) and filled in place in the
stored dtype: linear and embedding weights with a seeded normal x initializer_range,
biases with zeros, norms by the model's own ``_init_weights`` (a few small vectors). On a
GPU that is seconds for an 8B; the time that remains is writing and reading the file.
The build runs in a child process, so its memory never shows in the worker's counters.

The tokenizer is the tiny models' (trained locally on the bundled chat set), padded with
unused vocabulary entries up to the model's ``vocab_size`` (``len(tokenizer)`` equals the
embedding rows, as with a real checkpoint) and saved beside the weights.

Importable without torch: the parent computes ``random_fingerprint`` for cell ids.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List, Optional

from harness.config.model import MODEL_SHAPE_KEYS, ModelConfig
from harness.files import stable_digest
from harness.models import tiny

BUILDER_VERSION = 1
"""Bump when the build recipe changes, so stale cached checkpoints are not reused."""
SEED = 1234
"""Fixed: every cell of an architecture loads the same weights (the cell's train.seed still seeds adapters and data)."""
TRAINED_VOCAB = 2048
"""Merges learnt as for the tiny models: the same text gives the same token counts at every size."""
MODULE = "harness.models.random_weights"
STORED_DTYPES = {"gemma2": "float32"}
"""Families whose hub checkpoints are not stored in bfloat16 (google/gemma-2-9b ships float32 safetensors)."""


def stored_dtype(model: ModelConfig) -> str:
    """The dtype the checkpoint file holds: the one the family's real checkpoints are stored in."""
    return STORED_DTYPES.get(model.arch, "bfloat16")


def architecture_spec(model: ModelConfig) -> Dict[str, Any]:
    """Everything that shapes a random-weight checkpoint: numbers, stored dtype, recipe, seed, the tokenizer's corpus."""
    spec: Dict[str, Any] = {key: getattr(model, key) for key in MODEL_SHAPE_KEYS}
    corpus = hashlib.sha256(tiny.TOKENIZER_CORPUS.read_bytes()).hexdigest()[:16]
    spec.update(stored=stored_dtype(model), builder=BUILDER_VERSION, tokenizer=[tiny.BUILDER_VERSION, TRAINED_VOCAB, corpus],
                seed=SEED)
    return spec


def random_fingerprint(model: ModelConfig) -> str:
    """The base weights' identity of a random-weight cell (the device that draws them is in the cell identity already)."""
    return stable_digest(architecture_spec(model), 16)


def random_model_key(model: ModelConfig, device: str) -> str:
    """Cache folder name: architecture, stored dtype and the device that drew the numbers.

    The device is in the key because CPU and CUDA generators draw different numbers from one
    seed: a key always names the same bytes.
    """
    digest = stable_digest({**architecture_spec(model), "device": device}, 12)
    return f"random-{model.arch}-{stored_dtype(model)}-{device}-{digest}"


def ensure_random_model(model: ModelConfig, cache_dir: Path, device: str) -> Path:
    """Folder of the cached random-weight checkpoint, building it on ``device`` (cpu or cuda) if no process has."""
    key = random_model_key(model, device)

    def build(staging: Path) -> None:
        started = time.perf_counter()
        tokenizer = sized_tokenizer(model.vocab_size, model.max_position_embeddings)
        tokenizer.save_pretrained(staging)
        special = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id, "bos_token_id": None}
        _build_in_child(model, staging, stored_dtype(model), device, special)
        print(f"model: built random-weight {model.name} ({key}) in {time.perf_counter() - started:.1f} s", flush=True)

    return tiny.ensure_cached_model(cache_dir, key, build)


def sized_tokenizer(vocab_size: int, max_length: int) -> Any:
    """The tiny models' tokenizer with exactly ``vocab_size`` entries.

    The extra entries (``<|unused_N|>``) are plain vocabulary that no merge produces: the
    text tokenizes as with the tiny tokenizer, at no cost, and ``len(tokenizer)`` equals the
    model's embedding rows (lm-eval and peft resize embeddings to the tokenizer).
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    base = tiny.build_tokenizer(min(vocab_size, TRAINED_VOCAB))
    spec = json.loads(base.backend_tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    # the tiny padding (added <|reserved_N|> tokens) goes: on loading, tokenizers renumbers added tokens after the
    # model's vocabulary, which would collide with the entries below; the special tokens are in the vocabulary
    spec["added_tokens"] = [token for token in spec["added_tokens"] if token["content"] in vocab]
    have = len(vocab)
    for index in range(vocab_size - have):
        vocab[f"<|unused_{index}|>"] = have + index
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
        bos_token=None,
        eos_token=base.eos_token,
        pad_token=base.pad_token,
        unk_token=None,
        chat_template=base.chat_template,
        model_max_length=max_length,
    )


def _build_in_child(model: ModelConfig, folder: Path, dtype: str, device: str, special: Dict[str, Optional[int]]) -> None:
    """Write the weights into ``folder`` from a child process (its peak memory is not the worker's)."""
    spec = {"model": asdict(model), "dtype": dtype, "device": device, "special": special}
    done = subprocess.run([sys.executable, "-m", MODULE, str(folder)], input=json.dumps(spec), capture_output=True, text=True)
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout or "").strip().splitlines()[-3:])
        raise RuntimeError(f"building the random-weight {model.name} ({model.arch}) failed with exit code {done.returncode}: {tail}")


def build_random_model(model: ModelConfig, dtype: str, device: str, special: Dict[str, Optional[int]]) -> Any:
    """The causal LM of ``model.arch`` at ``model``'s numbers, random weights in ``dtype`` on ``device``."""
    import torch
    from transformers import AutoModelForCausalLM

    config = tiny.hf_config(model, **special)
    with torch.device("meta"):  # shapes only: nothing allocated, no init run
        built = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    built.to_empty(device=device)
    built.tie_weights()  # to_empty gives tied parameters separate storage; tie them again before filling
    fill_random(built, config.initializer_range, SEED)
    return built


def fill_random(model: Any, std: float, seed: int) -> None:
    """Fill an uninitialised model in place: matrices ~ N(0, std) from ``seed``, biases 0, norms by the model's init."""
    import torch
    from torch import nn

    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    seen: set = set()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                if id(module.weight) not in seen:  # a tied lm_head is the embedding: drawn once
                    seen.add(id(module.weight))
                    module.weight.normal_(0.0, std, generator=generator)  # in place, in the target dtype
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
            elif _owns_tensors(module):
                model._init_weights(module)  # norms (ones; zeros for Gemma's 1 + w), rotary buffers


def _owns_tensors(module: Any) -> bool:
    return any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False))


def write_random_checkpoint(model: ModelConfig, folder: Path, dtype: str, device: str, special: Dict[str, Optional[int]]) -> None:
    """Build the random model and ``save_pretrained`` it (safetensors) into ``folder``."""
    build_random_model(model, dtype, device, special).save_pretrained(folder)


def main(argv: List[str]) -> int:
    """Child entry point: ``python -m harness.models.random_weights FOLDER`` with the build spec as JSON on stdin."""
    spec = json.loads(sys.stdin.read())
    write_random_checkpoint(ModelConfig(**spec["model"]), Path(argv[0]), spec["dtype"], spec["device"], spec["special"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
