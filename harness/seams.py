"""The small objects that cross the backend and evaluator seams.

Kept apart from ``harness.backends`` and ``harness.evaluators`` so either side can name
them without importing the other, the config schema or torch: the types are ``Any``
where they would otherwise pull in a heavy module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class CellContext:
    """Where a cell runs and writes."""

    cell_dir: Path
    cache_dir: Path
    device: str
    """Resolved device: cpu or cuda."""
    progress: Any = None
    """The worker's ``harness.store.progress.ProgressWriter`` (None outside a worker): a backend reports
    its training step and loss to it (``step``); it throttles the writes itself."""


@dataclass
class ModelView:
    """What an evaluator sees of a trained model: never the backend itself."""

    model: Any
    tokenizer: Any
    device: str
    name: str
    """Human label, e.g. the model's short name."""


@dataclass
class EvalContext:
    """What an evaluator may use besides the model: held-out data and folders."""

    data: Any
    """The cell's ``harness.data.prepare.PreparedData`` (held-out splits, statistics)."""
    cell_dir: Path
    """Where this evaluation keeps raw output: the cell folder, or the baseline's cache folder."""
    cache_dir: Path
