"""``framework`` and ``train``: which library trains the cell, and its optimisation settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from harness.config.hf_names import LR_SCHEDULERS, OPTIMIZERS
from harness.config.names import (
    known_name,
    path_segment,
    require,
)


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
    harness's own. For frameworks whose pins clash with the harness's (harness/store/venvs.py)."""
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
    """Optimizer steps; 0 trains for ``epochs`` instead (a negative value is rejected, not read as 0)."""
    epochs: float = 1.0
    """Epochs over the training split, used when max_steps = 0."""
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
    """transformers optimizer name (adamw_torch, paged_adamw_8bit, sgd, ...; see harness/config/hf_names.py)."""
    lr_scheduler: str = "linear"
    """transformers scheduler name (linear, cosine, constant_with_warmup, ...; see harness/config/hf_names.py)."""
    measure_warmup_steps: int = 2
    """Optimizer steps excluded from throughput figures (compilation, allocator warm-up)."""

    def __post_init__(self) -> None:
        require(self.lr > 0, "train.lr", self.lr, "must be > 0")
        for key in ("batch_size", "grad_accum", "max_seq_len"):
            value = getattr(self, key)
            require(value > 0, f"train.{key}", value, "must be a positive integer")
        # 0 is the one epoch-mode sentinel; transformers' -1 and any other negative (a typo such as -5) is refused,
        # so two spellings of epoch mode never give two cell ids and a sign slip never trains a whole epoch.
        require(self.max_steps >= 0, "train.max_steps", self.max_steps,
                "must be a positive number of optimizer steps, or 0 to train for train.epochs")
        require(self.max_steps > 0 or self.epochs > 0, "train.epochs", self.epochs, "must be > 0 when train.max_steps=0")
        for key in ("warmup_steps", "eval_every", "early_stopping_patience", "measure_warmup_steps"):
            value = getattr(self, key)
            require(value >= 0, f"train.{key}", value, "must be >= 0")
        require(self.weight_decay >= 0, "train.weight_decay", self.weight_decay, "must be >= 0")
        known_name("train.optimizer", self.optimizer, OPTIMIZERS, "a transformers optimizer")
        known_name("train.lr_scheduler", self.lr_scheduler, LR_SCHEDULERS, "a transformers learning-rate scheduler")
