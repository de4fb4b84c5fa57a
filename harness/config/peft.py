"""``peft``, ``lora`` and ``quant``: how the base is adapted and quantized."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from harness.config.model import ARCH_LINEAR_MODULES
from harness.config.names import (
    one_of,
    require,
)

LORA_TARGET_PRESETS = ("attention", "all-linear")
PEFT_METHODS = ("lora", "dora", "full")
QUANT_MODES = ("none", "8bit", "4bit")


@dataclass
class PeftConfig:
    """How the model is adapted: an adapter (LoRA, DoRA) or a full fine-tune."""

    method: str = "lora"
    """lora | dora (weight-decomposed LoRA, slower, often better at low rank) | full."""

    def __post_init__(self) -> None:
        one_of("peft.method", self.method, PEFT_METHODS)


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
        require(isinstance(self.r, int) and self.r > 0, "lora.r", self.r, "must be a positive integer")
        require(self.alpha > 0, "lora.alpha", self.alpha, "must be positive")
        require(0.0 <= self.dropout < 1.0, "lora.dropout", self.dropout, "must be in [0, 1)")
        one_of("lora.target", self.target, LORA_TARGET_PRESETS)
        if self.modules is not None:
            require(len(self.modules) > 0, "lora.modules", self.modules, "must name at least one module (or be null)")


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
        one_of("quant.mode", self.mode, QUANT_MODES)
        one_of("quant.quant_type", self.quant_type, ("nf4", "fp4"))


def lora_target_modules(arch: str, lora: LoraConfig) -> List[str]:
    """Module names LoRA attaches to for this architecture, validated against the arch table."""
    table = ARCH_LINEAR_MODULES[arch]
    known = table["attention"] + table["mlp"]
    if lora.modules is not None:
        unknown = [name for name in lora.modules if name not in known]
        require(
            not unknown,
            "lora.modules",
            ",".join(lora.modules),
            f"{arch} has no module {', '.join(unknown)} (it has {', '.join(known)})",
        )
        return list(lora.modules)
    return list(table["attention"]) if lora.target == "attention" else known
