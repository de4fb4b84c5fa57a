"""``model``: which base model a cell trains, and the decoder architectures the harness knows."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from harness.config.names import (
    COMMIT_HASH,
    local_folder,
    one_of,
    path_segment,
    pickle_only,
    require,
)
from harness.errors import ConfigError

# Linear sub-modules of each decoder architecture, as named in transformers. The LoRA
# presets and the "does this module exist" check are derived from this table, so no
# model has to be loaded to validate a target list. Phi-3 fuses q/k/v and gate/up.
ARCH_LINEAR_MODULES: Dict[str, Dict[str, List[str]]] = {
    "llama": {
        "attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "mlp": ["gate_proj", "up_proj", "down_proj"],
    },
    "mistral": {
        "attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "mlp": ["gate_proj", "up_proj", "down_proj"],
    },
    "gemma2": {
        "attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "mlp": ["gate_proj", "up_proj", "down_proj"],
    },
    "qwen2": {
        "attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "mlp": ["gate_proj", "up_proj", "down_proj"],
    },
    "phi3": {
        "attention": ["qkv_proj", "o_proj"],
        "mlp": ["gate_up_proj", "down_proj"],
    },
}


DTYPES = ("auto", "float32", "bfloat16", "float16")
WEIGHTS = ("pretrained", "random")
MODEL_SHAPE_KEYS = ("arch", "num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim", "intermediate_size",
                    "vocab_size", "tie_embeddings", "max_position_embeddings")
"""The ModelConfig keys that give a model its shape (the numbers a pretrained checkpoint fixes)."""


MODEL_GROUPS_DIR = Path(__file__).resolve().parents[2] / "conf" / "model"


@functools.lru_cache(maxsize=None)
def shipped_model_group(name: str) -> Optional[Dict[str, Any]]:
    """The values of ``conf/model/<name>.yaml``, or None when no such group ships (or it does not parse)."""
    import yaml

    path = MODEL_GROUPS_DIR / f"{name}.yaml"
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return values if isinstance(values, dict) else None


HF_SHAPE_KEYS = {"num_layers": "num_hidden_layers", "hidden_size": "hidden_size", "num_heads": "num_attention_heads",
                 "num_kv_heads": "num_key_value_heads", "intermediate_size": "intermediate_size",
                 "vocab_size": "vocab_size", "head_dim": "head_dim", "tie_embeddings": "tie_word_embeddings",
                 "max_position_embeddings": "max_position_embeddings"}
"""ModelConfig shape key -> its name in a transformers ``config.json``."""


def checkpoint_config(model: "ModelConfig") -> Optional[Path]:
    """The ``config.json`` of a pretrained model whose hub_id is a local folder (what the worker loads), else None."""
    if model.effective_weights() != "pretrained" or not model.hub_id:
        return None
    folder = local_folder(model.hub_id)
    path = Path(folder) / "config.json" if folder is not None else None
    return path if path is not None and path.is_file() else None


def checkpoint_shape(model: "ModelConfig") -> "ModelConfig":
    """``model`` with its shape keys read from its local folder's ``config.json`` (unchanged when hub_id is not a
    local folder with one): the planner must predict the checkpoint the worker loads, not the group's numbers."""
    import dataclasses
    import json

    path = checkpoint_config(model)
    if path is None:
        return model
    try:
        hf = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model.hub_id={model.hub_id}: cannot read {path} ({exc})") from None
    values: Dict[str, Any] = {key: hf[name] for key, name in HF_SHAPE_KEYS.items() if hf.get(name) is not None}
    if hf.get("model_type") in ARCH_LINEAR_MODULES:
        values["arch"] = hf["model_type"]
    values.setdefault("num_kv_heads", values.get("num_heads", model.num_heads))  # transformers' default: no GQA
    # absent from the file: the family config class's default (Gemma 2 ties, the others here do not)
    values.setdefault("tie_embeddings", values.get("arch", model.arch) == "gemma2")
    if "head_dim" in values and "hidden_size" in values and values["head_dim"] * values.get("num_heads", 0) == values["hidden_size"]:
        values["head_dim"] = None  # the default width: keep the group's convention (set only when it differs)
    return dataclasses.replace(model, **values)


@dataclass
class ModelConfig:
    """Which base model a cell fine-tunes, and the architecture numbers the planner uses."""

    name: str = "tiny-llama"
    """Short name used in overrides and folder names (``model=llama``)."""
    hub_id: Optional[str] = None
    """Hugging Face hub id (``meta-llama/Llama-3.1-8B``) or a local folder; None for tiny models."""
    revision: str = "main"
    """Hub revision (branch, tag or commit) to pin the weights to."""
    arch: str = "llama"
    """Architecture family: llama, mistral, gemma2, qwen2 or phi3 (decides module names)."""
    tiny: bool = True
    """True for the random-initialised tiny models the harness builds and caches itself."""
    weights: str = "pretrained"
    """pretrained: the checkpoint at hub_id@revision. random: the architecture built from this group's numbers with
    the transformers class of ``arch``, random weights from a fixed seed, cached once per architecture and dtype, no
    hub access: memory and speed are the real model's, losses and scores mean nothing (``model=llama
    model.weights=random``). Shape keys (``model.num_layers=2``) may then differ from the checkpoint's. Tiny models
    are always random (``effective_weights``)."""
    num_layers: int = 2
    """Decoder layers."""
    hidden_size: int = 128
    """Model width."""
    num_heads: int = 4
    """Attention (query) heads."""
    num_kv_heads: int = 2
    """Key/value heads (grouped-query attention when fewer than num_heads)."""
    intermediate_size: int = 256
    """MLP inner width."""
    vocab_size: int = 2048
    """Vocabulary size."""
    head_dim: Optional[int] = None
    """Per-head width when it is not hidden_size / num_heads (Gemma 2)."""
    tie_embeddings: bool = False
    """Whether input and output embeddings share weights."""
    max_position_embeddings: int = 2048
    """Longest position the model supports."""
    dtype: str = "auto"
    """Weight/compute dtype: auto picks bfloat16 on GPUs that support it, float32 on CPU."""
    trust_remote_code: bool = False
    """Passed to transformers; off by default because it runs code from the hub. When on, a hub
    model's ``revision`` must be a full 40-character commit hash, so the code that runs is the
    code that was reviewed, not whatever the branch holds today."""
    allow_pickle: bool = False
    """Also load weights from pickle files (``pytorch_model.bin``, ``.pt``). Off: safetensors only,
    because unpickling a file can run arbitrary code."""

    def __post_init__(self) -> None:
        path_segment("model.name", self.name)
        one_of("model.arch", self.arch, tuple(ARCH_LINEAR_MODULES))
        one_of("model.dtype", self.dtype, DTYPES)
        one_of("model.weights", self.weights, WEIGHTS)
        pretrained = self.effective_weights() == "pretrained"
        require(not pretrained or bool(self.hub_id), "model.hub_id", self.hub_id, "a non-tiny model needs a hub id or local path")
        for key in ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "intermediate_size", "vocab_size"):
            value = getattr(self, key)
            require(value > 0, f"model.{key}", value, "must be a positive integer")
        require(self.num_heads % self.num_kv_heads == 0, "model.num_kv_heads", self.num_kv_heads, "must divide model.num_heads")
        if pretrained:  # random weights load nothing from hub_id: no code, no pickle, no checkpoint numbers
            self._check_loading_policy()
            self._check_checkpoint_shape()

    def effective_weights(self) -> str:
        """random or pretrained: what the cell loads (a tiny model is random whatever ``weights`` says).

        ``weights`` itself is left as given: the schema's defaults (and so every cell id) are
        computed from a default ModelConfig, which is tiny.
        """
        return "random" if self.tiny else self.weights

    def _check_checkpoint_shape(self) -> None:
        """A shipped group's checkpoint fixes its shape: an override of a shape key needs model.weights=random."""
        shipped = shipped_model_group(self.name)
        if shipped is None or shipped.get("hub_id") != self.hub_id:  # not a shipped group's checkpoint: not known here
            return
        for key in MODEL_SHAPE_KEYS:
            expected = shipped.get(key, ModelConfig.__dataclass_fields__[key].default)
            require(
                getattr(self, key) == expected,
                f"model.{key}",
                getattr(self, key),
                f"the numbers of a pretrained model come from its checkpoint ({self.hub_id} has {expected}); "
                "use model.weights=random to train this architecture with random weights",
            )

    def _check_loading_policy(self) -> None:
        """Remote code only at a pinned commit; pickle weights only when allowed (local folders checked here)."""
        folder = local_folder(self.hub_id)
        if self.trust_remote_code and folder is None:
            require(
                COMMIT_HASH.fullmatch(str(self.revision)) is not None,
                "model.revision",
                self.revision,
                "model.trust_remote_code=true needs a full 40-character commit hash (a branch or tag can change under you)",
            )
        if folder is not None and not self.allow_pickle:
            found = pickle_only(folder)
            require(
                not found,
                "model.hub_id",
                self.hub_id,
                f"has only pickle weights ({', '.join(found[:3])}) and no .safetensors file; convert them to safetensors "
                "or set model.allow_pickle=true if you trust the files (unpickling can run code)",
            )
