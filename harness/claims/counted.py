"""Counted parts (adapter size on disk, trainable share), quality parts and settings.

Counts are exact (harness.plan.params matches every architecture built on torch's meta device); what a record
adds is the bytes per parameter of a saved adapter file, which does not depend on the weights' values or the
model's size, so a tiny twin's adapter measures it as well as a real one's.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Dict, List, Optional

from harness.claims import measured as rec
from harness.claims import planned
from harness.claims.configs import grid
from harness.claims.context import Context, Result
from harness.claims.spec import Claim, Part
from harness.claims.verdict import decided, predicted, reading, untestable


def _twin_bytes_per_param(ctx: Context, overrides: List[str]) -> Optional[tuple]:
    """(bytes per adapter parameter, record id) of the twin's saved adapter file, or None."""
    twin = ctx.twin(overrides)
    for r in ctx.found(twin[1], "cpu") if twin else []:
        size = rec.adapter_file_bytes(r)
        if size:
            return size / planned.adapter_count(twin[0]), str(r.get("cell_id"))
    return None


def disk_part(ctx: Context, claim: Claim, part: Part) -> Result:
    """The adapter file's size: a saved file of the config, else the exact count x measured (twin) or fp32 bytes."""
    typed, plain = ctx.config(part.config)
    out = Result(part.label, " ".join(part.config))
    fig = planned.adapter_mb(typed)
    out.predicted, out.predicted_fig = fig.describe(), fig
    out.notes.append(fig.source)
    for r in ctx.found(plain) + ctx.found(plain, "cpu"):
        size = rec.adapter_file_bytes(r)
        if size:
            out.measured, out.measured_value = f"{size / 1e6:.1f} MB saved adapter, record {r.get('cell_id')}", size / 1e6
            out.verdict = decided(part.claimed.contains(size / 1e6))
            return out
    twin = _twin_bytes_per_param(ctx, part.config)
    if twin is not None:
        per, cell = twin
        value = planned.adapter_count(typed) * per / 1e6
        out.measured, out.measured_value = (f"{value:.1f} MB = exact count x {per:.4f} B/param measured on the twin's "
                                            f"saved adapter (record {cell})"), value
        out.verdict = decided(part.claimed.contains(value))
        return out
    out.verdict = predicted(reading(part.claimed, fig.value, None, None))
    return out


def _label(plain: Dict[str, Any]) -> str:
    return f"{plain['model']['name']} r={plain['lora']['r']} {plain['lora']['target']}"


def params_part(ctx: Context, claim: Claim, part: Part) -> Result:
    """The exact trainable share of every grid point; the twin's record checks the count the worker reports."""
    out = Result(part.label, " ".join(part.config))
    shares = []
    for job in grid(part.config):
        typed, plain = ctx.config(job)
        shares.append((_label(plain), planned.trainable_share(typed)[0], job))
    low, high = min(s for _, s, _ in shares), max(s for _, s, _ in shares)
    out.predicted = f"{low:.3g}–{high:.3g} % (exact, {len(shares)} settings)"
    out.predicted_fig = planned.Figure(high, "%", low, high, exact=True, source="counted")
    failing = [f"{name}: {share:.3g} %" for name, share, _ in shares if not part.claimed.contains(share)]
    out.notes.append("; ".join(f"{name} {share:.3g} %" for name, share, _ in shares))
    if failing and len(failing) < len(shares):
        out.verdict = decided(True, f"{len(shares) - len(failing)} of {len(shares)} settings (not: {', '.join(failing)})")
    else:
        out.verdict = decided(not failing)
    checked = []
    for _, _, job in shares:
        twin = ctx.twin(job)
        for r in ctx.found(twin[1], "cpu") if twin else []:
            counted = (r.get("train") or {}).get("trainable_params")
            if counted is not None:
                mine = planned.trainable_share(twin[0])[1]
                checked.append(f"twin {_label(twin[1])}: worker counted {counted:,} trainable, planner {mine:,}"
                               + ("" if counted == mine else " (DISAGREE)"))
                break
    out.measured = "; ".join(dict.fromkeys(checked))
    return out


NEEDS = {"mmlu": "pretrained weights on a GPU and MMLU (eval=mmlu)",
         "mmlu_vs_base": "pretrained weights on a GPU and MMLU with its base (eval=mmlu)",
         "mt_bench": "pretrained weights on a GPU and a real MT-Bench judge",
         "alpaca_eval": "pretrained weights on a GPU and a real AlpacaEval judge",
         "rank_curve": "a rank sweep of pretrained weights scored by MMLU or a judge"}


def quality_part(ctx: Context, claim: Claim, part: Part) -> Result:
    """A quality delta of two configs (or one score) from records of pretrained weights; never from tiny ones."""
    configs = list(part.compare) if part.compare else [part.config]
    out = Result(part.label, " vs ".join(" ".join(c) for c in configs))
    if claim.quantity in ("rank_curve", "mmlu_vs_base") or not ctx.records:
        out.verdict = untestable(f"needs {NEEDS[claim.quantity]}; no such record here")
        return out
    scores = []
    for overrides in configs:
        found = [r for r in ctx.found(ctx.config(overrides)[1]) if rec.real_weights(r)]
        value = next((rec.score(r, claim.quantity) for r in found if rec.score(r, claim.quantity) is not None), None)
        scores.append(value)
    if any(s is None for s in scores):
        out.verdict = untestable(f"needs {NEEDS[claim.quantity]}; no such record here")
        return out
    value = scores[0] if len(scores) == 1 else (scores[1] - scores[0] if claim.form == "delta"
                                               else 100 * (scores[1] - scores[0]) / scores[0])
    out.measured, out.measured_value = f"{value:.3g} {part.claimed.unit} ({claim.quantity})", value
    out.verdict = decided(part.claimed.contains(value))
    return out


def setting_part(ctx: Context, claim: Claim, part: Part) -> Result:
    """Whether the harness supports the setting as configured, and what a record of it did."""
    from harness.config.train import TrainConfig

    typed, plain = ctx.config(part.config)
    out = Result(part.label, " ".join(part.config))
    default = next(f.default for f in fields(TrainConfig) if f.name == "early_stopping_patience")
    out.predicted = f"supported: train.early_stopping_patience={typed.train.early_stopping_patience} (default {default})"
    out.verdict = decided(True, "the harness's rule (no improvement for 3 evaluations)")
    seen = []
    for r in ctx.records:
        train = (r.get("config") or {}).get("train") or {}
        if r.get("status") == "ok" and train.get("early_stopping_patience") == 3 and train.get("eval_every"):
            stopped = (r.get("train") or {}).get("stopped_early_at_step")
            steps = train.get("max_steps")
            seen.append(f"record {r.get('cell_id')}: " + (f"stopped early at step {stopped} of {steps}" if stopped
                                                           else f"ran all {steps} steps (never 3 evaluations without improvement)"))
    stopped = [s for s in seen if "stopped early" in s]
    out.measured = (stopped or seen or [""])[0]
    return out
