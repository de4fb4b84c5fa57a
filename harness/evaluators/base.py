"""The evaluator contract, and how the worker builds the enabled evaluators."""

from __future__ import annotations

import time
from typing import Any, Dict, List, Protocol

from harness.seams import EvalContext, ModelView

__all__ = ["EvalContext", "Evaluator", "load_evaluators"]


class Evaluator(Protocol):
    """Scores a model view; ``config`` is the evaluator's own block (``eval.<name>``).

    Two optional methods: ``prepare(ctx)`` runs before the model loads (checks and set-up
    that should fail fast: unknown task names, generated task files); and
    ``baseline_identity(ctx) -> dict`` names the inputs that fix the score besides the
    model and the config block (e.g. a hash of the held-out tokens). Only evaluators that
    have it get a cached untrained baseline and delta rows (``harness.evaluators.baseline``).
    """

    name: str

    def __init__(self, config: Any) -> None: ...

    def evaluate(self, view: ModelView, ctx: EvalContext) -> List[Dict[str, Any]]:
        """Metric rows (see ``harness.store.records.metric_row``)."""


def load_evaluators(cfg: Any, ctx: EvalContext, timings: Dict[str, float]) -> Dict[str, Any]:
    """name -> evaluator for every enabled block, each prepared (``eval_<name>_prepare`` timed)."""
    from harness.config import registry

    evaluators: Dict[str, Any] = {}
    for name in cfg.eval.enabled():
        mark = time.perf_counter()
        evaluator = registry.load(f"eval.{name}", name, registry.EVALUATORS)(getattr(cfg.eval, name))
        prepare = getattr(evaluator, "prepare", None)
        if prepare is not None:
            prepare(ctx)
        evaluators[name] = evaluator
        timings[f"eval_{name}_prepare"] = time.perf_counter() - mark
    return evaluators
