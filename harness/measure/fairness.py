"""Is a comparison across frameworks like for like? The figures that must agree, per cell and per sweep.

Every backend's record gets a ``fairness`` block: the work it did (trained tokens,
optimizer steps, samples), the model it trained (trainable parameters), where it started
(the first optimizer step's loss: LoRA starts as a no-op, so on the same model, data and
seed every framework's first-step loss must be the same), and the settings it was given.
A sweep whose frameworks differ in any of the first three at otherwise equal settings
says so in one line under its summary. Light: the worker builds the block, the parent
compares.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

CHECKED = ("trained_tokens", "trainable_params", "first_step_loss")
"""What two frameworks must agree on for their speed and memory to compare the same work."""
LOSS_TOLERANCE = 1e-5
"""Absolute first-step loss difference still counted as equal (fp32 kernels differ in summation order)."""
SETTINGS = ("batch_size", "grad_accum", "max_steps", "epochs", "lr", "lr_scheduler", "warmup_steps", "optimizer",
            "weight_decay", "seed", "max_seq_len")


def first_step_loss(train: Dict[str, Any]) -> Optional[float]:
    """The loss logged at the first optimizer step (``train.loss_curve[0]``), or None."""
    curve = train.get("loss_curve") or []
    return curve[0][1] if curve and curve[0][1] is not None else None


def fairness_block(config: Dict[str, Any], train: Dict[str, Any]) -> Dict[str, Any]:
    """The record's ``fairness`` block for one trained cell."""
    given = config.get("train") or {}
    return {
        "trained_tokens": train.get("trained_tokens"),
        "trainable_params": train.get("trainable_params"),
        "first_step_loss": first_step_loss(train),
        "optimizer_steps": train.get("optimizer_steps"),
        "samples": train.get("samples"),
        "settings": {key: given.get(key) for key in SETTINGS},
        "dtype": (config.get("model") or {}).get("dtype"),
        "trainer_settings": train.get("trainer_settings"),
    }


def _differs(values: List[Any], key: str) -> bool:
    present = [v for v in values if v is not None]
    if len(present) < 2:
        return False
    if key == "first_step_loss":
        return max(present) - min(present) > LOSS_TOLERANCE
    return len(set(present)) > 1


def fairness_notes(rows: List[Dict[str, Any]], axes: List[str]) -> List[str]:
    """One line per group of cells that differ only by framework yet disagree on trained tokens, trainable
    parameters or first-step loss (summary rows; ``axes`` as the summary computed them)."""
    if "framework" not in axes:
        return []
    others = [a for a in axes if a != "framework"]
    groups: Dict[tuple, List[Dict[str, Any]]] = {}
    for row in rows:
        if row.get("status") == "ok":
            groups.setdefault(tuple(str(row.get(a)) for a in others), []).append(row)
    notes = []
    for key, members in groups.items():
        bad = [name for name in CHECKED if _differs([m.get(name) for m in members], name)]
        if bad and len(members) > 1:
            where = ", ".join(f"{a}={v}" for a, v in zip(others, key)) or "these cells"
            shown = "; ".join(f"{name}: " + ", ".join(f"{m.get('framework')} {m.get(name)}" for m in members) for name in bad)
            notes.append(f"frameworks did not do the same work at {where} ({shown}): their speed and memory do not compare like for like")
    return notes
