"""Name -> "module:Class" maps for the two seams, imported lazily.

The parent validates names against these tables without importing anything heavy; the
worker imports the class it needs. A value containing ``:`` is taken as an import path,
so a user can plug in a backend or evaluator of their own without editing this file.
"""

from __future__ import annotations

import importlib
from typing import Any, Dict

from harness.config.names import did_you_mean
from harness.errors import ConfigError

BACKENDS: Dict[str, str] = {
    "hf": "harness.backends.hf:HFBackend",
    "unsloth": "harness.backends.unsloth:UnslothBackend",
    "litgpt": "harness.backends.litgpt:LitGPTBackend",
}
EVALUATORS: Dict[str, str] = {
    "perplexity": "harness.evaluators.perplexity:PerplexityEvaluator",
    "lm_eval": "harness.evaluators.lmeval:LmEvalEvaluator",
    "mt_bench": "harness.evaluators.mt_bench:MtBenchEvaluator",
    "alpaca_eval": "harness.evaluators.alpaca_eval:AlpacaEvalEvaluator",
    "domain": "harness.evaluators.domain:DomainEvaluator",
}
# Parent-side checks of an evaluator's block that need more than its dataclass (files, caches):
# ``check(block, cache_dir)`` raises a one-line ConfigError. Each module named here must stay
# parent-safe (no torch, no lm_eval); the config schema reaches them only through this table,
# so harness.config never imports an evaluator module.
EVALUATOR_CHECKS: Dict[str, str] = {
    "lm_eval": "harness.evaluators.lmeval_tasks:check_config",
    "mt_bench": "harness.benchmarks.checks:check_mt_bench",
    "alpaca_eval": "harness.benchmarks.checks:check_alpaca_eval",
    "domain": "harness.benchmarks.checks:check_domain",
}

JUDGED = ("mt_bench", "alpaca_eval")
"""The evaluators whose answers a judge scores (in the parent, after the cells)."""
JUDGE_CHECK = "harness.judge.prices:check_judge_settings"
"""The judge's parent-side settings check (no network, no openai import), reached through this name so the
schema never imports the judge package."""


def check_name(key: str, name: str, table: Dict[str, str]) -> None:
    """Raise a one-line ConfigError with a did-you-mean hint for an unknown name."""
    if ":" in name or name in table:
        return
    raise ConfigError(f"{key}={name}: unknown{did_you_mean(name, table)}; known: {', '.join(sorted(table))}, or module.path:Class")


def load(key: str, name: str, table: Dict[str, str]) -> Any:
    """Import and return the class registered as ``name`` (or at the import path ``name``)."""
    check_name(key, name, table)
    target = table.get(name, name)
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"{key}={name}: cannot import {module_name} ({exc})") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{key}={name}: {module_name} has no attribute {attr}") from None


def check_evaluator_config(name: str, block: Any, cache_dir: str) -> None:
    """Run the parent-side check registered for evaluator ``name`` on its block, if there is one."""
    target = EVALUATOR_CHECKS.get(name)
    if target is not None:
        _check_function(target)(block, cache_dir)


def check_judge(settings: Dict[str, Any]) -> None:
    """Run the judge's parent-side check of ``eval.judge`` (``JUDGE_CHECK``) on its settings."""
    _check_function(JUDGE_CHECK)(settings)


def _check_function(target: str) -> Any:
    """The function a ``module:function`` check target names (imported only when a check runs)."""
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)
