"""Which judge result a command asks for: one key per (generated answers, judge settings).

A judged benchmark has two results per cell: the generation (``evals/<name>-<key>/``,
keyed by the generation settings and the question file, see ``identity.eval_keys``) and
one judge result per judge setting beneath it (``evals/<name>-<key>/judge-<key>/``). The
judge key covers what changes a score -- judge model, judge prompt file, reference or
difficulty file, repeats, the null control, the judge's output budget -- and nothing
that does not (server address, API key variable, concurrency, time-outs, prices,
spending cap), so moving the same model to another server reuses every judgment.

Light: the parent plans judge keys for every cell of a sweep.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

from harness.config.registry import JUDGED
from harness.files import stable_digest

JUDGE_FILES = {
    "mt_bench": {"judge_prompts": "judge_prompts.jsonl", "references": "mt_bench_reference_answer_gpt-4.jsonl"},
    "alpaca_eval": {"judge_prompt": "alpaca_eval_clf.txt", "difficulty": None},
}
"""Judge-only inputs of each benchmark: block key -> shipped asset used when the key is null (None: no default)."""
SCORE_SETTINGS = ("model", "repeats", "null_control", "max_tokens")
"""The eval.judge keys that change a score; the others only change how it is obtained."""
SCORING_SWITCHES = ("score_flagged", "strict_range")
"""Score-changing eval.judge switches that are off by default: in the key only when on, so the keys of
results judged before they existed stay the same."""


def _file_digests(name: str, block: Dict[str, Any]) -> Dict[str, Optional[str]]:
    from harness.benchmarks.inputs import file_digest, resolve

    out: Dict[str, Optional[str]] = {}
    for key, asset in JUDGE_FILES[name].items():
        path = block.get(key)
        if path is None and asset is None:
            out[key] = None
            continue
        target = resolve(path, asset)
        out[key] = file_digest(target) if Path(target).is_file() else f"missing:{target}"
    return out


def judge_key(name: str, eval_key: str, block: Dict[str, Any], judge: Dict[str, Any]) -> str:
    """``<eval key>/judge-<digest>``: where this judge setting's result for these answers lives."""
    inputs = {"files": _file_digests(name, block), **{key: judge.get(key) for key in SCORE_SETTINGS},
              **{key: True for key in SCORING_SWITCHES if judge.get(key)}}
    return f"{eval_key}/judge-{stable_digest(inputs, 10)}"


def judge_keys(config: Dict[str, Any], evals: Dict[str, str]) -> Dict[str, str]:
    """benchmark name -> judge result key, for the judged benchmarks among ``evals``."""
    blocks = config.get("eval") or {}
    judge = blocks.get("judge") or {}
    return {name: judge_key(name, evals[name], blocks.get(name) or {}, judge) for name in JUDGED if name in evals}


def judge_settings(config: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """What the judge phase needs besides the answers: the eval.judge block and the cache folder (no secrets)."""
    blocks = config.get("eval") or {}
    if all(blocks.get(name) is None for name in JUDGED):
        return None
    return {"judge": dict(blocks.get("judge") or {}), "cache_dir": (config.get("run") or {}).get("cache_dir")}
