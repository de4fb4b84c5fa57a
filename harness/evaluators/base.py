"""The evaluator contract."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Protocol

from harness.backends.base import ModelView
from harness.data.prepare import PreparedData


@dataclass
class EvalContext:
    """What an evaluator may use besides the model: held-out data and folders."""

    data: PreparedData
    cell_dir: Path
    cache_dir: Path


class Evaluator(Protocol):
    """Scores a model view; ``config`` is the evaluator's own block (``eval.<name>``)."""

    name: str

    def __init__(self, config: Any) -> None: ...

    def evaluate(self, view: ModelView, ctx: EvalContext) -> List[Dict[str, Any]]:
        """Metric rows (see ``harness.records.metric_row``)."""
