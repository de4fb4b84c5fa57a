"""The backend contract; the small objects that cross it live in ``harness.seams``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Protocol

from harness.config.schema import HarnessConfig
from harness.data.prepare import PreparedData
from harness.measure.meters import StepMeter
from harness.seams import CellContext, ModelView  # re-exported: they lived here before harness.seams

__all__ = ["Backend", "CellContext", "ModelView"]


class Backend(Protocol):
    """How a cell trains. Methods are called in this order by the worker."""

    def __init__(self, cfg: HarnessConfig, ctx: CellContext) -> None: ...

    def load_tokenizer(self) -> Any:
        """The tokenizer, with a pad token and a chat template."""

    def load_model(self, weights: Optional[Path] = None) -> Dict[str, Any]:
        """Load base + quantization + adapter; return parameter counts. With ``weights`` (a folder
        ``save_weights`` wrote), load the trained cell instead of a fresh adapter, for evaluation."""

    def train(self, data: PreparedData, meter: StepMeter) -> Dict[str, Any]:
        """Train, feeding ``meter``; return train stats (loss curve, stop reason)."""

    def model_view(self) -> ModelView:
        """The model for evaluation: after train, the trained model; the worker also calls it
        once before train to score the untrained base (so train must set training mode itself)."""

    def save_weights(self, cell_dir: Path) -> Optional[Path]:
        """Save what evaluation needs later (``cell_dir/adapter``, or ``cell_dir/model`` for a full
        fine-tune with run.keep_weights); return the folder, or None when nothing is kept."""
