"""Parent-side checks of ``eval.lm_eval`` that never import lm_eval (or torch).

Importing lm_eval and indexing its ~14,000 task files takes 7-20 s, too slow for the
parent, which validates every cell of a sweep before the first one starts. So the
worker, which must build that index anyway, leaves the list of task names in the cache
(``<cache>/lm_eval_tasks/names-<lm_eval version>.json``); from then on the parent checks
names against it in milliseconds. Before any worker has written it, an unknown name is
caught by the worker instead, still before the model loads.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
from importlib import metadata, util
from pathlib import Path
from typing import TYPE_CHECKING, FrozenSet, List, Optional

from harness.errors import ConfigError

if TYPE_CHECKING:  # the type only: this module is imported while configs are being built
    from harness.config.eval import LmEvalConfig

KEY = "eval.lm_eval.tasks"


def lm_eval_version() -> Optional[str]:
    """Installed lm-eval version, or None when it is not installed (read from metadata; no import)."""
    if util.find_spec("lm_eval") is None:
        return None
    try:
        return metadata.version("lm_eval")
    except metadata.PackageNotFoundError:
        return None


def names_file(cache_dir: str | Path, version: str) -> Path:
    """Where the worker records lm-eval's task names for this lm-eval version."""
    return Path(cache_dir).expanduser() / "lm_eval_tasks" / f"names-{version}.json"


def _known(path: Path) -> Optional[FrozenSet[str]]:
    try:
        return frozenset(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def needs_default_index(config: "LmEvalConfig") -> bool:
    """True unless every task is the local ``mmlu`` (indexing lm-eval's own tasks costs 7-20 s)."""
    return config.mmlu_dir is None or any(task != "mmlu" for task in config.tasks)


def is_pattern(name: str) -> bool:
    """Globs and YAML paths are resolved by lm-eval itself, not checked by name."""
    return any(ch in name for ch in "*?[") or name.endswith((".yaml", ".yml")) or "/" in name


def unknown_message(name: str, known: List[str]) -> str:
    """One line for an unknown task name, with a did-you-mean hint."""
    close = difflib.get_close_matches(name, known, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return f"{KEY}={name}: not an lm-eval task, group or tag{hint}; `lm-eval ls tasks` lists them"


def unknown_tasks(tasks: List[str], known: FrozenSet[str] | List[str]) -> List[str]:
    """Names in ``tasks`` that are neither in ``known`` nor a pattern that matches one of them."""
    known = frozenset(known)
    missing = []
    for name in tasks:
        if name in known:
            continue
        if is_pattern(name) and (not any(ch in name for ch in "*?[") or fnmatch.filter(known, name)):
            continue
        missing.append(name)
    return missing


def check_config(config: "LmEvalConfig", cache_dir: str | Path) -> None:
    """Everything the parent checks of ``eval.lm_eval`` beyond its dataclass: the local MMLU
    folder (readable, enough few-shot examples) and the task names (see ``check_tasks``)."""
    if config.mmlu_dir is not None:
        from harness.evaluators import mmlu_local  # parent-safe: JSON and YAML only

        mmlu_local.check_shots(mmlu_local.load(config.mmlu_dir), config.num_fewshot or 0)
    check_tasks(config, cache_dir)


def check_tasks(config: "LmEvalConfig", cache_dir: str | Path) -> None:
    """lm-eval is installed and, when the name list is cached, every task name is known."""
    version = lm_eval_version()
    if version is None:
        raise ConfigError("eval.lm_eval: lm-eval is not installed in this environment; pip install 'harness[eval]'")
    if not needs_default_index(config):
        return
    known = _known(names_file(cache_dir, version))
    if known is None:
        return  # the worker checks, before the model loads, and records the names for next time
    local = {"mmlu"} if config.mmlu_dir else set()
    missing = unknown_tasks([t for t in config.tasks if t not in local], known)
    if missing:
        raise ConfigError(unknown_message(missing[0], sorted(known)))
