"""Typed configuration schema for a harness cell: the root dataclass and its cross-group checks.

One dataclass per Hydra config group (their modules sit beside this one), stored in Hydra's ConfigStore so
YAML files and command-line overrides are type-checked when they are merged. The parent converts the
composed config once with ``OmegaConf.to_object``; ``__post_init__`` then validates each block and names the
command-line key in its message, so a bad value fails in one line before any model is loaded.

This module must stay importable without torch: the parent process imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.config.data import DataConfig
from harness.config.dist import DistConfig
from harness.config.eval import EvalConfig
from harness.config.model import ModelConfig
from harness.config.names import require
from harness.config.peft import LoraConfig, PeftConfig, QuantConfig, lora_target_modules
from harness.config.report import LoggerConfig, ReportConfig
from harness.config.run import RunConfig
from harness.config.train import FrameworkConfig, TrainConfig


@dataclass
class HarnessConfig:
    """A whole cell: one point of the sweep grid."""

    model: ModelConfig = field(default_factory=ModelConfig)
    peft: PeftConfig = field(default_factory=PeftConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    framework: FrameworkConfig = field(default_factory=FrameworkConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)

    def __post_init__(self) -> None:
        from harness.config.registry import BACKENDS, JUDGED, check_evaluator_config, check_judge, check_name

        check_name("framework.backend", self.framework.backend, BACKENDS)
        uses_adapter = self.peft.method in ("lora", "dora")
        require(
            uses_adapter or self.quant.mode == "none",
            "quant",
            self.quant.mode,
            f"quantized weights are frozen and cannot be trained with peft={self.peft.method}; use peft=lora or peft=dora",
        )
        if uses_adapter:
            lora_target_modules(self.model.arch, self.lora)  # raises on unknown module names
        self.data.check_fits(self.train.max_seq_len)
        if self.dist.enabled():
            require(self.framework.backend == "hf" and self.framework.env is None and not self.framework.runner, "dist",
                    self.dist.strategy, f"framework={self.framework.name} trains in one process; several ranks need framework=hf")
            require(not (self.dist.activation_checkpointing and self.train.gradient_checkpointing),
                    "dist.activation_checkpointing", True, "and train.gradient_checkpointing=true both recompute activations; "
                    "keep one (under FSDP, dist.activation_checkpointing: no extra all-gather in backward)")
        for name in self.eval.enabled():  # files and caches an evaluator's block points at
            check_evaluator_config(name, getattr(self.eval, name), self.run.cache_dir)
        if any(name in JUDGED for name in self.eval.enabled()):  # a judge that cannot work fails before any training
            from dataclasses import asdict

            check_judge(asdict(self.eval.judge))

    def adapter(self) -> bool:
        """True when the cell trains an adapter on a frozen base."""
        return self.peft.method in ("lora", "dora")


def register_configs() -> None:
    """Store the schema in Hydra's ConfigStore (called by the entry points)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="harness_schema", node=HarnessConfig)
