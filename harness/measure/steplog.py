"""One plain log line per training step, the same for every framework (hf's Trainer callbacks, LitGPT's runner).

Standard library only: the LitGPT runner imports it inside LitGPT's own environment.
"""

from __future__ import annotations

from typing import Any, Dict, Optional


def number(value: Any) -> Optional[float]:
    """``value`` as a float, or None when it is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def log_line(step: int, max_steps: Optional[int], logs: Dict[str, Any], step_s: Optional[float], elapsed_s: float) -> str:
    """One plain line of the worker's log for one Trainer log event (a training step, an evaluation, the end)."""
    at = f"{step}/{max_steps}" if max_steps else str(step)
    if "loss" in logs:
        loss = number(logs["loss"])
        parts = [f"step {at}", f"loss {loss:.4f}" if loss is not None else f"loss {logs['loss']}"]
        if number(logs.get("learning_rate")) is not None:
            parts.append(f"lr {number(logs['learning_rate']):.2e}")
        if number(logs.get("grad_norm")) is not None:
            parts.append(f"grad_norm {number(logs['grad_norm']):.3f}")
        if step_s is not None:
            parts.append(f"{step_s:.3f} s/step")
        parts.append(f"{elapsed_s:.1f} s elapsed")
        return "  ".join(parts)
    if "eval_loss" in logs:
        runtime = number(logs.get("eval_runtime"))
        return f"eval at step {at}  eval_loss {number(logs['eval_loss']):.4f}" + (f"  {runtime:.1f} s" if runtime is not None else "")
    if "train_runtime" in logs:
        loss = number(logs.get("train_loss"))
        return f"train end at step {at}  {number(logs['train_runtime']):.1f} s" + (f"  train_loss {loss:.4f}" if loss is not None else "")
    return f"log at step {at}  " + "  ".join(f"{k} {v}" for k, v in logs.items() if k != "total_flos")
