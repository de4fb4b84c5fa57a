"""The backend contract and the small objects that cross it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Protocol

from harness.config import HarnessConfig
from harness.data.prepare import PreparedData
from harness.measure import StepMeter


@dataclass
class CellContext:
    """Where a cell runs and writes."""

    cell_dir: Path
    cache_dir: Path
    device: str
    """Resolved device: cpu or cuda."""


@dataclass
class ModelView:
    """What an evaluator sees of a trained model: never the backend itself."""

    model: Any
    tokenizer: Any
    device: str
    name: str
    """Human label, e.g. the model's short name."""


class Backend(Protocol):
    """How a cell trains. Methods are called in this order by the worker."""

    def __init__(self, cfg: HarnessConfig, ctx: CellContext) -> None: ...

    def load_tokenizer(self) -> Any:
        """The tokenizer, with a pad token and a chat template."""

    def load_model(self) -> Dict[str, Any]:
        """Load base + quantization + adapter; return parameter counts."""

    def train(self, data: PreparedData, meter: StepMeter) -> Dict[str, Any]:
        """Train, feeding ``meter``; return train stats (loss curve, stop reason)."""

    def model_view(self) -> ModelView:
        """The model for evaluation: after train, the trained model; the worker also calls it
        once before train to score the untrained base (so train must set training mode itself)."""

    def save_adapter(self, folder: Path) -> Optional[Path]:
        """Save trained weights (the adapter, or nothing for a full fine-tune); return the path."""
