"""lm-evaluation-harness tasks, scored in-process on the model the cell just trained.

The loaded model (adapter applied, not merged) and its tokenizer are wrapped in lm-eval's
``HFLM`` and passed to ``lm_eval.simple_evaluate``: nothing is reloaded from disk, and
the scores are those the ``lm_eval`` command reports for the same base model, adapter,
task, shots and limit (tests/integration/test_eval_lm_eval.py checks this). Hub datasets
load through lm-eval itself; ``mmlu_dir`` swaps in a generated local task (see
``mmlu_local``) and, when nothing else is asked for, skips indexing lm-eval's own task
folder. lm-eval's full output is kept as ``<cell>/lm_eval/results.json`` (and, with
``log_samples``, every question's outputs as ``samples_<task>.jsonl``).

Rows: one per requested task (a group such as ``mmlu`` as its aggregate) and metric,
with lm-eval's stderr and n = questions scored. A metric computed under a filter other
than lm-eval's ``none`` is named ``metric/filter``. Rows of the ``mmlu`` group generated
from ``mmlu_dir`` keep the task name ``mmlu`` and carry ``mmlu_dir`` (the folder's path),
so the summary labels them ``mmlu_local_<folder name>``, never as the hub benchmark.

Worker-only: imports torch and lm_eval.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

from harness.config.eval import LmEvalConfig
from harness.errors import ConfigError, HubUnavailableError
from harness.evaluators import lmeval_tasks, mmlu_local
from harness.files import write_json_atomic, write_text_atomic
from harness.seams import EvalContext, ModelView
from harness.store.records import metric_row

RAW_DIR = "lm_eval"
RAW_NAME = "results.json"
SKIP_KEYS = ("alias", "name", "sample_len", "sample_count", "samples")


def _number(value: Any) -> Optional[float]:
    """A finite float, or None for lm-eval's "N/A" and friends."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _sample_count(results: Dict[str, Any], name: str) -> Optional[int]:
    """Questions scored for a task, or summed over a group's leaf tasks."""
    entry = results.get("results", {}).get(name, {})
    if isinstance(entry.get("sample_len"), int):
        return entry["sample_len"]
    samples = results.get("n-samples", {})
    if name in samples:
        return int(samples[name]["effective"])
    leaves = [t for t in results.get("group_subtasks", {}).get(name, []) if t in samples]
    return sum(int(samples[t]["effective"]) for t in leaves) if leaves else None


def _reported(results: Dict[str, Any], requested: List[str]) -> List[str]:
    """Result entries to turn into rows: each requested name, or for a tag (no entry of its own) its tasks."""
    entries = results.get("results", {})
    names = [name for name in requested if name in entries]
    if len(names) < len(requested):  # a tag or glob expanded to tasks; report the top-level ones
        children = {c for group in names for c in results.get("group_subtasks", {}).get(group, [])}
        nested = {c for kids in results.get("group_subtasks", {}).values() for c in kids}
        names += [n for n in entries if n not in names and n not in children and n not in nested]
    return names


def rows_from_results(results: Dict[str, Any], requested: List[str]) -> List[Dict[str, Any]]:
    """Metric rows from a ``simple_evaluate`` result for the requested tasks."""
    rows = []
    local = (results.get("harness") or {}).get("mmlu_dir")  # set by evaluate() when mmlu_dir swapped in the group
    for name in _reported(results, requested):
        entry = results["results"][name]
        better = results.get("higher_is_better", {}).get(name, {})
        n = _sample_count(results, name)
        for key, value in entry.items():
            metric, _, filt = key.partition(",")
            if metric in SKIP_KEYS or metric.endswith("_stderr") or _number(value) is None:
                continue
            label = metric if filt in ("", "none") else f"{metric}/{filt}"
            stderr = _number(entry.get(f"{metric}_stderr,{filt}" if filt else f"{metric}_stderr"))
            higher = bool(better.get(metric, True))
            rows.append(metric_row("lm_eval", name, label, float(value), stderr=stderr, n=n, higher_is_better=higher))
            if local and name == mmlu_local.GROUP:
                rows[-1]["mmlu_dir"] = local
    return rows


class LmEvalEvaluator:
    """Runs ``eval.lm_eval.tasks`` through lm-eval's Python API on the cell's model view."""

    name = "lm_eval"

    def __init__(self, config: LmEvalConfig) -> None:
        self.config = config
        self.include_path: Optional[Path] = None
        self.local: Optional[mmlu_local.LocalMmlu] = None
        self._manager: Any = None

    def prepare(self, ctx: EvalContext) -> None:
        """Generate the local task, index tasks and check every name, before the model loads."""
        from lm_eval.tasks import TaskManager

        if self.config.mmlu_dir is not None:
            self.local = mmlu_local.load(self.config.mmlu_dir)
            self.include_path = mmlu_local.task_folder(self.local, ctx.cache_dir)
        defaults = lmeval_tasks.needs_default_index(self.config)
        self._manager = TaskManager(
            include_path=str(self.include_path) if self.include_path else None, include_defaults=defaults
        )
        known = self._manager.all_tasks
        if defaults:  # lets the parent check names without importing lm_eval next time
            version = lmeval_tasks.lm_eval_version() or "unknown"
            path = lmeval_tasks.names_file(ctx.cache_dir, version)
            if not path.exists():
                write_json_atomic(path, sorted(set(known) - set(self._local_names())))
        missing = lmeval_tasks.unknown_tasks(list(self.config.tasks), known)
        if missing:
            raise ConfigError(lmeval_tasks.unknown_message(missing[0], known))

    def _local_names(self) -> List[str]:
        """The generated per-subject tasks (``mmlu`` itself is also lm-eval's own name, so it stays)."""
        if self.local is None:
            return []
        return [mmlu_local.TASK_PREFIX + s for s in self.local.subjects]

    def baseline_identity(self, ctx: EvalContext) -> Dict[str, Any]:
        """What besides model and config fixes the score: lm-eval's version and the local data."""
        return {
            "lm_eval": lmeval_tasks.lm_eval_version(),
            "mmlu_dir": self.local.fingerprint if self.local else None,
        }

    def evaluate(self, view: ModelView, ctx: EvalContext) -> List[Dict[str, Any]]:
        """Score the tasks; keep lm-eval's output in ``ctx.cell_dir/lm_eval/results.json``; return rows."""
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.utils import handle_non_serializable

        if self._manager is None:
            self.prepare(ctx)
        cfg = self.config
        lm = HFLM(pretrained=view.model, tokenizer=view.tokenizer, batch_size=cfg.batch_size)
        try:
            results = lm_eval.simple_evaluate(
                model=lm,
                tasks=list(cfg.tasks),
                num_fewshot=cfg.num_fewshot,
                limit=cfg.limit,
                batch_size=cfg.batch_size,
                task_manager=self._manager,
                log_samples=cfg.log_samples,
            )
        except ConnectionError as exc:  # datasets' "Couldn't reach ... on the Hub"; say what to do instead
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise HubUnavailableError(
                f"eval.lm_eval.tasks={','.join(cfg.tasks)}: lm-eval could not load the task data ({reason}); run where "
                "the Hugging Face hub is reachable (gated sets also need HF_TOKEN) or, for MMLU, use eval.lm_eval.mmlu_dir=PATH"
            ) from exc
        samples = results.pop("samples", None) or {}
        results["harness"] = {
            "tasks": list(cfg.tasks),
            "num_fewshot": cfg.num_fewshot,
            "limit": cfg.limit,
            "batch_size": cfg.batch_size,
            "include_path": str(self.include_path) if self.include_path else None,
            "mmlu_dir": str(self.local.root) if self.local else None,
            "log_samples": cfg.log_samples,
        }
        raw = ctx.cell_dir / RAW_DIR
        text = json.dumps(results, indent=2, default=handle_non_serializable, ensure_ascii=False)
        write_text_atomic(raw / RAW_NAME, text + "\n")
        for task, items in samples.items():  # one JSON line per question: lm-eval's own sample records
            lines = "".join(json.dumps(item, default=handle_non_serializable, ensure_ascii=False) + "\n" for item in items)
            write_text_atomic(raw / f"samples_{task}.jsonl", lines)
        return rows_from_results(results, list(cfg.tasks))
