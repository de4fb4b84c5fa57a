"""Token lengths of the user's data under the cell's tokenizer, for ``--examples N``, without torch in the planner.

The planner stays a light parent: the measuring runs in a child process (``python -m harness.plan.lengths
OVERRIDES``) that does what ``python -m harness.data check`` does (the backend's tokenizer, ``prepare_data`` with its
chat template, filters, split and truncation, through the shared tokenized cache, so a second plan or the sweep
itself reuses the entry) and prints the training split's statistics as one JSON line. The parent only starts it when
``--examples`` is given with a ``data.path``, and first asks ``harness.models.hub.hub_problem`` whether the
tokenizer can load here at all, so an offline hub model costs no retries: it falls back to characters / 4 and says
why in one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Dict, List, Optional, Tuple

TIMEOUT_S = 300.0
"""Longest the child may tokenize (a large file under a real tokenizer takes a while; the cache makes reruns fast)."""


def measure(overrides: List[str]) -> Dict[str, Any]:
    """In the child: the training split's examples, tokens, mean and p50 length and the tokenizer's model name."""
    from pathlib import Path

    from harness.config.compose import compose
    from harness.data.__main__ import load_tokenizer
    from harness.data.prepare import prepare_data

    cfg = compose(overrides)
    tokenizer = load_tokenizer(cfg)
    data = prepare_data(cfg.data, tokenizer, cfg.train.max_seq_len, cfg.data.split_seed,
                        cache_dir=Path(cfg.run.cache_dir).expanduser(), quiet=True)
    train = data.stats["train"]
    return {"model": cfg.model.name, "examples": train["examples"], "tokens": train["tokens"],
            "mean": train["tokens"] / train["examples"] if train["examples"] else None,
            "p50": data.stats["token_lengths"]["p50"], "max_seq_len": cfg.train.max_seq_len}


_MEASURED: Dict[str, Tuple[Optional[float], str]] = {}
"""What this process measured, by what decides the lengths: the grid points of one plan tokenize once."""


def measured_length(overrides: List[str], model: Any, same: Any = None) -> Tuple[Optional[float], str]:
    """(mean training tokens per example, how it was measured), or (None, why not) in one line; ``same`` (JSON-able:
    what decides the lengths, e.g. the model, data and train.max_seq_len blocks) reuses an earlier grid point's."""
    key = json.dumps(same, sort_keys=True, default=str) if same is not None else None
    if key is not None and key in _MEASURED:
        return _MEASURED[key]
    found = _measure_in_child(overrides, model)
    if key is not None:
        _MEASURED[key] = found
    return found


def _measure_in_child(overrides: List[str], model: Any) -> Tuple[Optional[float], str]:
    """``measured_length`` without the reuse: the child process's answer."""
    from harness.models.hub import hub_problem, hub_reachable

    problem = hub_problem(model)
    if problem is not None:
        return None, f"the {model.name} tokenizer is not available here (hub unreachable, not cached)"
    # offline unless the hub answers: a cached tokenizer then loads without waiting on retries, and an online
    # user's uncached one still downloads
    online = hub_reachable(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    env = dict(os.environ) if online else {**os.environ, "HF_HUB_OFFLINE": "1"}
    try:
        done = subprocess.run([sys.executable, "-m", "harness.plan.lengths", *overrides], capture_output=True, text=True,
                              timeout=TIMEOUT_S, env=env, check=False)
    except subprocess.TimeoutExpired:
        return None, f"tokenizing took over {TIMEOUT_S:.0f} s"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"the {model.name} tokenizer could not measure it ({last[:200]})"
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    if not stats["mean"]:
        return None, "no training example left after filtering"
    return stats["mean"], (f"measured with the {stats['model']} tokenizer and chat template: mean of {stats['examples']} "
                           f"training examples (p50 {stats['p50']}), cut at train.max_seq_len={stats['max_seq_len']}")


def main(argv: List[str]) -> int:
    """Child entry point: one JSON line on stdout, or the error's one line on stderr and exit 1."""
    from harness.errors import HarnessError

    try:
        print(json.dumps(measure(argv)))
    except (HarnessError, OSError, ValueError) as exc:
        print(f"error: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
