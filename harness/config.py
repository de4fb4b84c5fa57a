"""Typed configuration schema for a harness cell.

One dataclass per Hydra config group, stored in Hydra's ConfigStore so YAML files and
command-line overrides are type-checked when they are merged. The parent converts the
composed config once with ``OmegaConf.to_object``; ``__post_init__`` then validates each
block and names the command-line key in its message, so a bad value fails in one line
before any model is loaded.

This module must stay importable without torch: the parent process imports it.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from harness.errors import ConfigError
from harness.eval_blocks import AlpacaEvalConfig, DomainEvalConfig, JudgeConfig, MtBenchEvalConfig
from harness.hf_names import LR_SCHEDULERS, OPTIMIZERS
from harness.names import COMMIT_HASH, RESERVED_SWEEPS, check_run_root_name, local_folder, path_segment, pickle_only
from harness.names import require as _require
from harness.report.config import LoggerConfig, ReportConfig

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

LORA_TARGET_PRESETS = ("attention", "all-linear")
PEFT_METHODS = ("lora", "dora", "full")
QUANT_MODES = ("none", "8bit", "4bit")
DTYPES = ("auto", "float32", "bfloat16", "float16")
WEIGHTS = ("pretrained", "random")
MODEL_SHAPE_KEYS = ("arch", "num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim", "intermediate_size",
                    "vocab_size", "tie_embeddings", "max_position_embeddings")
"""The ModelConfig keys that give a model its shape (the numbers a pretrained checkpoint fixes)."""
MODEL_GROUPS_DIR = Path(__file__).resolve().parents[1] / "conf" / "model"


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


def _one_of(key: str, value: Any, allowed: tuple) -> None:
    """Check that ``value`` is one of ``allowed``, naming the key and the choices."""
    _require(value in allowed, key, value, f"must be one of {', '.join(map(str, allowed))}")


def _known_name(key: str, value: str, allowed: tuple, what: str) -> None:
    """Like ``_one_of`` for long lists: a did-you-mean hint first, then every name."""
    if value in allowed:
        return
    close = difflib.get_close_matches(str(value), list(allowed), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ConfigError(f"{key}={value}: not {what}{hint}; known: {', '.join(allowed)}")


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
        _one_of("model.arch", self.arch, tuple(ARCH_LINEAR_MODULES))
        _one_of("model.dtype", self.dtype, DTYPES)
        _one_of("model.weights", self.weights, WEIGHTS)
        pretrained = self.effective_weights() == "pretrained"
        _require(not pretrained or bool(self.hub_id), "model.hub_id", self.hub_id, "a non-tiny model needs a hub id or local path")
        for key in ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "intermediate_size", "vocab_size"):
            value = getattr(self, key)
            _require(value > 0, f"model.{key}", value, "must be a positive integer")
        _require(self.num_heads % self.num_kv_heads == 0, "model.num_kv_heads", self.num_kv_heads, "must divide model.num_heads")
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
            _require(
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
            _require(
                COMMIT_HASH.fullmatch(str(self.revision)) is not None,
                "model.revision",
                self.revision,
                "model.trust_remote_code=true needs a full 40-character commit hash (a branch or tag can change under you)",
            )
        if folder is not None and not self.allow_pickle:
            found = pickle_only(folder)
            _require(
                not found,
                "model.hub_id",
                self.hub_id,
                f"has only pickle weights ({', '.join(found[:3])}) and no .safetensors file; convert them to safetensors "
                "or set model.allow_pickle=true if you trust the files (unpickling can run code)",
            )


@dataclass
class PeftConfig:
    """How the model is adapted: an adapter (LoRA, DoRA) or a full fine-tune."""

    method: str = "lora"
    """lora | dora (weight-decomposed LoRA, slower, often better at low rank) | full."""

    def __post_init__(self) -> None:
        _one_of("peft.method", self.method, PEFT_METHODS)


@dataclass
class LoraConfig:
    """LoRA/DoRA knobs; used when peft is lora or dora (``lora.r=8,16`` sweeps the rank)."""

    r: int = 16
    """Adapter rank; memory and trainable parameters grow linearly with it."""
    alpha: int = 32
    """Scaling numerator: the update is scaled by alpha / r."""
    dropout: float = 0.05
    """Dropout on the adapter input."""
    target: str = "all-linear"
    """Preset: attention (q/k/v/o only) or all-linear (attention + MLP, QLoRA paper default)."""
    modules: Optional[List[str]] = None
    """Explicit module names; overrides the preset (``lora.modules=[q_proj,v_proj]``)."""

    def __post_init__(self) -> None:
        _require(isinstance(self.r, int) and self.r > 0, "lora.r", self.r, "must be a positive integer")
        _require(self.alpha > 0, "lora.alpha", self.alpha, "must be positive")
        _require(0.0 <= self.dropout < 1.0, "lora.dropout", self.dropout, "must be in [0, 1)")
        _one_of("lora.target", self.target, LORA_TARGET_PRESETS)
        if self.modules is not None:
            _require(len(self.modules) > 0, "lora.modules", self.modules, "must name at least one module (or be null)")


@dataclass
class QuantConfig:
    """Weight quantization of the frozen base through bitsandbytes."""

    mode: str = "none"
    """none | 8bit (LLM.int8) | 4bit (NF4, QLoRA)."""
    quant_type: str = "nf4"
    """4-bit data type: nf4 (QLoRA) or fp4."""
    double_quant: bool = True
    """Quantize the quantization constants too (saves ~0.37 bit/parameter)."""

    def __post_init__(self) -> None:
        _one_of("quant.mode", self.mode, QUANT_MODES)
        _one_of("quant.quant_type", self.quant_type, ("nf4", "fp4"))


@dataclass
class FrameworkConfig:
    """Which training backend runs the cell."""

    name: str = "hf"
    """Label shown in summaries."""
    backend: str = "hf"
    """Registry name (hf) or an import path ``package.module:Class`` for a plug-in backend."""
    isolate: bool = True
    """Run each cell in a fresh worker process (required for backends that patch libraries)."""
    options: Dict[str, Any] = field(default_factory=dict)
    """Backend-specific options, passed through untouched."""
    env: Optional[str] = None
    """Virtual environment the worker runs in (``<env>/bin/python``; relative to the repository root); None = the
    harness's own. For frameworks whose pins clash with the harness's (harness/envs.py)."""
    setup: Optional[str] = None
    """The command that builds ``env`` (shown when it is missing; default ``make setup-<name>``)."""
    runner: Optional[str] = None
    """A module run with ``env``'s Python to train (``python -m <runner> RUN_DIR``) while the worker itself stays in
    the harness's environment, so evaluation runs with the harness's libraries (LitGPT); None: the whole worker
    runs in ``env`` (Unsloth)."""

    def __post_init__(self) -> None:
        path_segment("framework.name", self.name)


@dataclass
class TrainConfig:
    """Optimisation settings shared by every backend."""

    lr: float = 2e-4
    """Peak learning rate."""
    batch_size: int = 4
    """Per-device micro-batch size."""
    grad_accum: int = 1
    """Micro-batches per optimizer step; effective batch = batch_size * grad_accum."""
    max_steps: int = 30
    """Optimizer steps; set <= 0 to train for ``epochs`` instead."""
    epochs: float = 1.0
    """Epochs over the training split, used when max_steps <= 0."""
    warmup_steps: int = 2
    """Learning-rate warm-up steps."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_seq_len: int = 256
    """Longest training sequence in tokens; longer examples are truncated."""
    seed: int = 42
    """Seed for initialisation of adapters, data order and dropout."""
    eval_every: int = 10
    """Evaluate held-out loss every N optimizer steps (0 = only at the end)."""
    early_stopping_patience: int = 3
    """Stop after this many evaluations without improvement (0 = never stop early)."""
    early_stopping_min_delta: float = 0.0
    """Improvement in eval loss smaller than this counts as none."""
    gradient_checkpointing: bool = False
    """True cuts activation memory to ~2·s·b·h per layer, costs ~30 % speed."""
    optimizer: str = "adamw_torch"
    """transformers optimizer name (adamw_torch, paged_adamw_8bit, sgd, ...; see harness/hf_names.py)."""
    lr_scheduler: str = "linear"
    """transformers scheduler name (linear, cosine, constant_with_warmup, ...; see harness/hf_names.py)."""
    measure_warmup_steps: int = 2
    """Optimizer steps excluded from throughput figures (compilation, allocator warm-up)."""

    def __post_init__(self) -> None:
        _require(self.lr > 0, "train.lr", self.lr, "must be > 0")
        for key in ("batch_size", "grad_accum", "max_seq_len"):
            value = getattr(self, key)
            _require(value > 0, f"train.{key}", value, "must be a positive integer")
        _require(self.max_steps > 0 or self.epochs > 0, "train.epochs", self.epochs, "must be > 0 when train.max_steps <= 0")
        for key in ("warmup_steps", "eval_every", "early_stopping_patience", "measure_warmup_steps"):
            value = getattr(self, key)
            _require(value >= 0, f"train.{key}", value, "must be >= 0")
        _require(self.weight_decay >= 0, "train.weight_decay", self.weight_decay, "must be >= 0")
        _known_name("train.optimizer", self.optimizer, OPTIMIZERS, "a transformers optimizer")
        _known_name("train.lr_scheduler", self.lr_scheduler, LR_SCHEDULERS, "a transformers learning-rate scheduler")


DATA_FORMATS = ("auto", "messages", "sharegpt", "alpaca", "prompt_completion", "chatml")


@dataclass
class DataColumnsConfig:
    """Which of your fields holds each thing the formats read; None = the format's own name.

    ``data.columns={instruction:question,output:answer}`` reads Alpaca-style records whose
    fields are called question and answer; role/content rename the fields inside turns.
    """

    messages: Optional[str] = None
    """Turn list of the messages format."""
    conversations: Optional[str] = None
    """Turn list of the ShareGPT format."""
    instruction: Optional[str] = None
    """Alpaca instruction."""
    input: Optional[str] = None
    """Alpaca optional input (appended to the instruction)."""
    output: Optional[str] = None
    """Alpaca response."""
    prompt: Optional[str] = None
    """Prompt of prompt/completion pairs."""
    completion: Optional[str] = None
    """Completion of prompt/completion pairs."""
    text: Optional[str] = None
    """Raw ChatML text."""
    system: Optional[str] = None
    """Optional system prompt of Alpaca and prompt/completion records."""
    role: Optional[str] = None
    """Role field inside a turn (messages: role; ShareGPT: from)."""
    content: Optional[str] = None
    """Content field inside a turn (messages: content; ShareGPT: value)."""

    def mapping(self) -> Dict[str, str]:
        """harness field -> your field, for the fields that are renamed."""
        return {name: column for name, column in vars(self).items() if column is not None}


@dataclass
class DataFilterConfig:
    """Quality filters applied after validation, before the split; each drop is counted."""

    min_assistant_tokens: int = 10
    """Drop conversations whose assistant turns hold fewer words+punctuation marks than this (0 = off).

    Counted with a regex (``\\w+|[^\\w\\s]``), not the model's tokenizer, so every model of a
    sweep trains on the same examples."""
    placeholders: bool = True
    """Drop conversations whose assistant text is placeholder text ([Insert response here], TODO, lorem ipsum)."""
    placeholder_patterns: Optional[List[str]] = None
    """Case-insensitive regexes that mark placeholder text; None = the built-in list."""
    exact_dedup: bool = True
    """Drop exact duplicate conversations (same turns after case and whitespace folding); keeps the first."""
    near_dedup: bool = True
    """Drop near-duplicates: conversations whose prompt vectors have cosine similarity above the threshold.

    Near-duplicate clusters are always kept on one side of the split, even when this is off."""
    near_dedup_threshold: float = 0.92
    """Cosine similarity above which two prompts are near-duplicates."""
    embedder: Optional[str] = None
    """Sentence-embedding model (hub id or local folder) for prompt vectors; None = local TF-IDF vectoriser."""
    pii_scrub: bool = False
    """Replace e-mail addresses, phone numbers and card numbers with [EMAIL], [PHONE], [CARD]; counts recorded."""

    def __post_init__(self) -> None:
        _require(self.min_assistant_tokens >= 0, "data.filters.min_assistant_tokens", self.min_assistant_tokens, "must be >= 0")
        _require(
            0.0 < self.near_dedup_threshold <= 1.0, "data.filters.near_dedup_threshold", self.near_dedup_threshold, "must be in (0, 1]"
        )
        for pattern in self.placeholder_patterns or []:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"data.filters.placeholder_patterns={pattern}: not a regular expression ({exc})") from None


@dataclass
class DataConfig:
    """Training data: the bundled chat set, the user's own files, or a hub dataset."""

    name: str = "bundled"
    """Label shown in summaries."""
    path: Optional[str] = None
    """A JSON/JSONL/ChatML-text file or a folder of them; None (and no hub_id) uses the chat set shipped with the harness."""
    format: str = "auto"
    """auto (detected per file from the fields), messages, sharegpt, alpaca, prompt_completion or chatml."""
    hub_id: Optional[str] = None
    """Dataset loaded with ``datasets.load_dataset`` (hub id or a local dataset folder) instead of ``path``."""
    hub_config: Optional[str] = None
    """The dataset's configuration (subset) name, when it has several."""
    hub_split: str = "train"
    """Which split of the hub dataset to read (the harness makes its own train/validation/test split from it)."""
    hub_revision: Optional[str] = None
    """Hub revision (branch, tag or commit) to pin the dataset to; None = the default branch."""
    columns: DataColumnsConfig = field(default_factory=DataColumnsConfig)
    """Field renames, harness name -> your field (``data.columns={instruction:question,output:answer}``)."""
    on_error: str = "fail"
    """fail: stop at the first invalid record (before any model loads); skip: drop invalid records and count them."""
    filters: DataFilterConfig = field(default_factory=DataFilterConfig)
    """Quality filters; see DataFilterConfig."""
    val_fraction: float = 0.1
    """Share of examples in the validation split (held-out loss and perplexity)."""
    test_fraction: float = 0.1
    """Share of examples in the test split (kept for later evaluators; never trained on)."""
    split_seed: int = 1234
    """Picks the train/validation/test split, apart from train.seed, so seed replicates
    (``-m train.seed=1,2,3``) train on the same examples and share one validation set."""
    max_examples: Optional[int] = None
    """Use at most this many training examples, taken deterministically after filtering; None = all."""
    loss_on: str = "assistant"
    """assistant: loss on assistant tokens only; all: loss on the whole sequence."""
    overlong: str = "truncate"
    """Examples longer than train.max_seq_len: truncate (keep the first tokens) or drop."""
    synthetic: bool = False
    """Generate the examples instead of reading a data set (``data=synthetic``): each is exactly ``data.seq_len``
    random token ids from the tokenizer's vocabulary (special tokens left out), every token loss-bearing, drawn from
    data.split_seed. For memory and throughput checks ("batch 4 x 2048 tokens" trains 2048-token rows); its losses
    and perplexities say nothing about quality. format, columns, filters, loss_on and overlong do not apply."""
    seq_len: Optional[int] = None
    """Tokens in every synthetic example (data=synthetic only; conf/data/synthetic.yaml sets train.max_seq_len).
    Never truncated: a value above train.max_seq_len is rejected, since a memory check must train rows of the
    length it asked for, not silently shorter ones."""
    examples: Optional[int] = None
    """Synthetic training examples (data=synthetic only). Validation and test get val_fraction and test_fraction
    of that many more (at least one validation example), so the model trains on exactly this many rows."""

    def __post_init__(self) -> None:
        path_segment("data.name", self.name)
        self._check_synthetic()
        _require(self.path is None or self.hub_id is None, "data.hub_id", self.hub_id, "set data.path or data.hub_id, not both")
        if self.path is not None:
            path = os.path.expanduser(self.path)
            _require(os.path.exists(path), "data.path", self.path, "no such file or folder")
        _one_of("data.format", self.format, DATA_FORMATS)
        _one_of("data.on_error", self.on_error, ("fail", "skip"))
        _one_of("data.loss_on", self.loss_on, ("assistant", "all"))
        _one_of("data.overlong", self.overlong, ("truncate", "drop"))
        _require(0.0 < self.val_fraction < 1.0, "data.val_fraction", self.val_fraction, "must be in (0, 1)")
        _require(0.0 <= self.test_fraction < 1.0, "data.test_fraction", self.test_fraction, "must be in [0, 1)")
        _require(
            self.val_fraction + self.test_fraction < 1.0,
            "data.test_fraction",
            self.test_fraction,
            f"data.val_fraction + data.test_fraction must leave examples to train on (< 1, got {self.val_fraction + self.test_fraction:g})",
        )
        if self.max_examples is not None:
            _require(self.max_examples > 0, "data.max_examples", self.max_examples, "must be a positive integer")

    def _check_synthetic(self) -> None:
        """seq_len and examples go with data.synthetic, and a synthetic source reads no file or hub dataset."""
        if not self.synthetic:
            for key in ("seq_len", "examples"):
                value = getattr(self, key)
                _require(value is None, f"data.{key}", value, "only applies to generated data: use data=synthetic")
            return
        for key in ("seq_len", "examples"):
            value = getattr(self, key)
            _require(isinstance(value, int) and value > 0, f"data.{key}", value, "must be a positive integer with data=synthetic")
        for key in ("path", "hub_id"):
            value = getattr(self, key)
            _require(value is None, f"data.{key}", value, "data=synthetic generates its examples; it reads no data set")

    def check_fits(self, max_seq_len: int) -> None:
        """Synthetic rows fit train.max_seq_len (they are never truncated); checked by HarnessConfig."""
        if self.synthetic:
            _require(
                self.seq_len <= max_seq_len,
                "data.seq_len",
                self.seq_len,
                f"longer than train.max_seq_len={max_seq_len}; synthetic rows are never truncated: "
                f"set train.max_seq_len={self.seq_len} or more",
            )


@dataclass
class PerplexityEvalConfig:
    """Held-out loss and perplexity, token-weighted over loss-bearing tokens."""

    batch_size: int = 8
    """Sequences per forward pass."""
    rolling: bool = True
    """Also score every token of each held-out example the way lm-eval's loglikelihood_rolling does
    (seq_nll, seq_perplexity, word_perplexity, byte_perplexity, bits_per_byte); one more pass."""
    max_length: Optional[int] = None
    """Rolling window in tokens; None = the model's context length, as lm-eval picks it."""

    def __post_init__(self) -> None:
        _require(self.batch_size > 0, "eval.perplexity.batch_size", self.batch_size, "must be a positive integer")
        if self.max_length is not None:
            _require(self.max_length > 1, "eval.perplexity.max_length", self.max_length, "must be > 1 (or null)")


@dataclass
class LmEvalConfig:
    """lm-evaluation-harness tasks, scored in-process on the trained model (``eval=[mmlu]``)."""

    tasks: List[str] = field(default_factory=lambda: ["mmlu"])
    """lm-eval task, group or tag names (``eval.lm_eval.tasks=[mmlu,hellaswag,arc_easy]``); hub data via lm-eval."""
    num_fewshot: Optional[int] = None
    """Few-shot examples per question; None keeps each task's own default (conf/eval/mmlu.yaml sets 5)."""
    limit: Optional[float] = None
    """Score at most this many questions per task (per subject for mmlu), a fraction when < 1; None = all.
    A limited score is for quick checks only: it is not comparable with published numbers."""
    batch_size: int = 8
    """Requests per forward pass."""
    mmlu_dir: Optional[str] = None
    """Folder with MMLU-format dev.jsonl and test.jsonl that replaces the hub ``mmlu`` task (offline or
    private data); see harness/evaluators/mmlu_local.py for the format."""
    log_samples: bool = False
    """Also keep lm-eval's per-question outputs (prompt, log-likelihoods, correct or not) as
    ``lm_eval/samples_<task>.jsonl`` in the cell folder; large for full MMLU (~14k prompts)."""

    def __post_init__(self) -> None:
        _require(len(self.tasks) > 0, "eval.lm_eval.tasks", self.tasks, "must name at least one lm-eval task")
        for name in self.tasks:
            _require(bool(str(name).strip()) and "," not in str(name), "eval.lm_eval.tasks", name, "task names are non-empty, one per list item")
        if self.num_fewshot is not None:
            _require(self.num_fewshot >= 0, "eval.lm_eval.num_fewshot", self.num_fewshot, "must be >= 0 (or null for the task default)")
        if self.limit is not None:
            _require(self.limit > 0, "eval.lm_eval.limit", self.limit, "must be > 0 (a count, or a fraction < 1)")
        _require(self.batch_size > 0, "eval.lm_eval.batch_size", self.batch_size, "must be a positive integer")
        if self.mmlu_dir is not None:  # the folder's files are checked by registry.EVALUATOR_CHECKS
            _require("mmlu" in self.tasks, "eval.lm_eval.mmlu_dir", self.mmlu_dir, "replaces the task mmlu, but eval.lm_eval.tasks has no mmlu")


@dataclass
class EvalConfig:
    """Evaluators to run on each trained cell; a block that is set runs (``eval=[perplexity,mmlu]``)."""

    perplexity: Optional[PerplexityEvalConfig] = None
    """Held-out perplexity; see PerplexityEvalConfig."""
    lm_eval: Optional[LmEvalConfig] = None
    """lm-evaluation-harness tasks (conf/eval/mmlu.yaml: MMLU 5-shot); see LmEvalConfig."""
    mt_bench: Optional[MtBenchEvalConfig] = None
    """MT-Bench answers (generated here, judged by eval.judge); see harness/eval_blocks.py."""
    alpaca_eval: Optional[AlpacaEvalConfig] = None
    """AlpacaEval 2.0 answers (generated here, judged against a reference by eval.judge)."""
    domain: Optional[DomainEvalConfig] = None
    """Your own prompt/reference set: exact match, ROUGE-L and BLEU of greedy answers (eval.domain.path=FILE)."""
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    """The LLM judge of mt_bench and alpaca_eval (any OpenAI-compatible server); not an evaluator itself."""
    baseline: bool = True
    """Also score the untrained base once per (model, quantization, evaluator config), cached and shared
    by every cell, and report each metric's ``_base`` and ``_delta`` (cell minus base)."""

    def enabled(self) -> List[str]:
        """Names of the evaluators whose block is set, in a stable order."""
        names = ("perplexity", "lm_eval", "mt_bench", "alpaca_eval", "domain")
        return [name for name in names if getattr(self, name) is not None]


@dataclass
class RunConfig:
    """How a cell is run; none of these keys changes a cell's result or its id."""

    timeout_s: float = 3600.0
    """Wall-clock limit per cell; the worker is killed and the cell recorded as timeout."""
    force: bool = False
    """Train cells again (under the same id) even when the store has them ok."""
    cache_dir: str = "${oc.env:HARNESS_CACHE,'~/.cache/harness'}"
    """Where tiny models, tokenized data and baselines are cached between cells, sweeps and clones: one per user,
    for make and direct commands alike ($HARNESS_CACHE, else ~/.cache/harness; the Makefile sets none)."""
    root: str = "runs"
    """Folder that holds the cell store (``cells/``) and the sweep folders that view it."""
    sweep: Optional[str] = None
    """Name of the sweep folder; None derives it from the command-line overrides."""
    device: str = "auto"
    """auto (cuda when available, else cpu), cpu or cuda; the device class (cpu, cuda:<name>) is part of a cell's id."""
    on_busy: str = "wait"
    """When another run holds a cell (same cell, another sweep or copy): wait for it, or skip it."""
    keep_weights: bool = False
    """Keep a full fine-tune's weights (the whole model) in the cell, so evaluators can be added later;
    adapters are always kept."""
    step_cv_warn: float = 0.25
    """Flag cells whose step-time CV (stdev / mean of measured step times) is above this; noisy throughput."""
    memory_cap_gib: Optional[float] = None
    """Emulate a smaller device (GiB): on CUDA a per-process memory fraction of (cap - CUDA context) / total, on
    CPU a watchdog on the worker's resident memory; past it the cell ends oom (reason memory_cap). Unlike the other
    run keys it is part of a capped cell's identity: a result under a cap is not one without it (harness/memcap.py)."""
    oom_frontier: bool = True
    """Run a sweep's cells in ascending predicted memory and skip a cell as "does not fit (inferred)" once a cell it
    dominates (same everything but train.batch_size, train.max_seq_len, lora.r, each <=) ran out of memory
    (harness/frontier.py); the skips live in the sweep's manifest, and a rerun checks them again."""
    threads_per_cell: Optional[int] = None
    """CPU threads of each worker (OMP_NUM_THREADS, MKL_NUM_THREADS, torch) when a launcher runs several cells at
    once; None: the cores // cells at once (at least 1); one cell at a time keeps the environment's (harness/launch.py)."""
    cells_per_gpu: int = 1
    """Cells that may share one GPU when a launcher runs several at once; above 1 such cells are flagged gpu_shared
    and stay out of planner calibration (their peaks are not their own)."""

    def __post_init__(self) -> None:
        _require(self.timeout_s > 0, "run.timeout_s", self.timeout_s, "must be > 0")
        _require(self.threads_per_cell is None or self.threads_per_cell >= 1, "run.threads_per_cell", self.threads_per_cell,
                 "must be a positive integer (or null: cores // cells at once)")
        _require(self.cells_per_gpu >= 1, "run.cells_per_gpu", self.cells_per_gpu, "must be a positive integer")
        _require(self.step_cv_warn > 0, "run.step_cv_warn", self.step_cv_warn, "must be > 0")
        _one_of("run.device", self.device, ("auto", "cpu", "cuda"))
        if self.sweep is not None:
            path_segment("run.sweep", self.sweep)
            _require(self.sweep.lower() not in RESERVED_SWEEPS, "run.sweep", self.sweep, "is reserved (run.root/cells holds the cell store)")
        check_run_root_name(self.root)
        _one_of("run.on_busy", self.on_busy, ("wait", "skip"))
        if self.memory_cap_gib is not None:
            cap = self.memory_cap_gib
            _require(isinstance(cap, (int, float)) and not isinstance(cap, bool) and 0 < cap < float("inf"),
                     "run.memory_cap_gib", cap, "must be a positive number of GiB (or null for no cap)")


@dataclass
class HarnessConfig:
    """A whole cell: one point of the sweep grid."""

    model: ModelConfig = field(default_factory=ModelConfig)
    peft: PeftConfig = field(default_factory=PeftConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    framework: FrameworkConfig = field(default_factory=FrameworkConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)

    def __post_init__(self) -> None:
        from harness.judge.keys import JUDGED
        from harness.registry import BACKENDS, check_evaluator_config, check_name

        check_name("framework.backend", self.framework.backend, BACKENDS)
        uses_adapter = self.peft.method in ("lora", "dora")
        _require(
            uses_adapter or self.quant.mode == "none",
            "quant",
            self.quant.mode,
            f"quantized weights are frozen and cannot be trained with peft={self.peft.method}; use peft=lora or peft=dora",
        )
        if uses_adapter:
            lora_target_modules(self.model.arch, self.lora)  # raises on unknown module names
        self.data.check_fits(self.train.max_seq_len)
        for name in self.eval.enabled():  # files and caches an evaluator's block points at
            check_evaluator_config(name, getattr(self.eval, name), self.run.cache_dir)
        if any(name in JUDGED for name in self.eval.enabled()):  # a judge that cannot work fails before any training
            from dataclasses import asdict

            from harness.judge.prices import check_judge_settings

            check_judge_settings(asdict(self.eval.judge))

    def adapter(self) -> bool:
        """True when the cell trains an adapter on a frozen base."""
        return self.peft.method in ("lora", "dora")


def lora_target_modules(arch: str, lora: LoraConfig) -> List[str]:
    """Module names LoRA attaches to for this architecture, validated against the arch table."""
    table = ARCH_LINEAR_MODULES[arch]
    known = table["attention"] + table["mlp"]
    if lora.modules is not None:
        unknown = [name for name in lora.modules if name not in known]
        _require(
            not unknown,
            "lora.modules",
            ",".join(lora.modules),
            f"{arch} has no module {', '.join(unknown)} (it has {', '.join(known)})",
        )
        return list(lora.modules)
    return list(table["attention"]) if lora.target == "attention" else known


def register_configs() -> None:
    """Store the schema in Hydra's ConfigStore (called by the entry points)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="harness_schema", node=HarnessConfig)
