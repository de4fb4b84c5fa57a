"""One claim to one row: each part checked by its kind, one verdict, every assumption written beside it."""

from __future__ import annotations

from typing import Any, Callable, Dict, List

from harness.claims.context import Context, Result
from harness.claims.counted import disk_part, params_part, quality_part, setting_part
from harness.claims.memparts import memory_part, ratio_part
from harness.claims.spec import Claim, Part
from harness.claims.timeparts import cost_part, time_part
from harness.claims.verdict import combine, untestable
from harness.errors import HarnessError

CHECKS: Dict[str, Callable[[Context, Claim, Part], Result]] = {
    "memory": memory_part, "ratio": ratio_part, "time": time_part, "cost": cost_part, "disk": disk_part,
    "params": params_part, "quality": quality_part, "setting": setting_part,
}


def _part(ctx: Context, claim: Claim, part: Part) -> Result:
    """A part checked; a config that does not compose becomes an untestable part naming the problem."""
    if part.untestable:
        return Result(part.label, "", verdict=untestable(part.untestable))
    try:
        return CHECKS[claim.kind](ctx, claim, part)
    except HarnessError as exc:
        return Result(part.label, " ".join(part.config), verdict=untestable(f"{exc}"))


def _joined(results: List[Result], attr: str) -> str:
    """One cell of the row: a single part's text, or ``label: text`` per part joined by `` | ``."""
    texts = [getattr(r, attr) for r in results]
    if len(results) == 1 or not any(texts):
        return texts[0] if len(results) == 1 else ""
    return " | ".join(f"{r.label}: {t or '—'}" for r, t in zip(results, texts))


def _number(results: List[Result], attr: str) -> Any:
    return getattr(results[0], attr) if len(results) == 1 else None


def check(ctx: Context, claim: Claim) -> Dict[str, Any]:
    """The row of one claim (the schema of ``harness.report.claims``)."""
    results = [_part(ctx, claim, part) for part in claim.parts]
    verdict = combine([r.verdict for r in results], [r.label for r in results])
    base = ctx.claims.base_assumptions if claim.kind in ("memory", "ratio", "time", "cost") else []
    assumptions = list(claim.assumptions) + base
    if claim.kind in ("time", "cost") and claim.hours is None:
        assumptions.append(ctx.claims.tokens_per_example_why)
    if any(p.claimed.relation == "about" for p in claim.parts):
        assumptions.append(f"'about X' read as X ± {ctx.claims.about_pct:g} % (the guides give no tolerance)")
    notes = [n for r in results for n in ([f"{r.label}: {n}" if len(results) > 1 else n for n in r.notes if n])]
    if len(results) > 1:
        notes += [f"{r.label}: {r.verdict.text}" for r in results]
    if claim.note:
        notes.insert(0, claim.note)
    fig = results[0].predicted_fig if len(results) == 1 else None
    claimed = claim.parts[0].claimed
    return {
        "id": claim.id, "kind": claim.kind, "guide": claim.guide, "claim": claim.text,
        "configuration": _joined(results, "configuration"),
        "claimed": " | ".join(f"{p.label}: {p.claimed.describe()}" for p in claim.parts) if len(claim.parts) > 1
        else claimed.describe(),
        "predicted": _joined(results, "predicted"), "measured": _joined(results, "measured"),
        "verdict": verdict.text, "verdict_class": verdict.cls,
        "assumptions": "; ".join(assumptions), "notes": "; ".join(dict.fromkeys(notes)),
        "claimed_low": claimed.low if len(claim.parts) == 1 else None,
        "claimed_high": claimed.high if len(claim.parts) == 1 else None, "unit": claimed.unit,
        "predicted_value": fig.value if fig else None, "predicted_low": fig.low if fig else None,
        "predicted_high": fig.high if fig else None,
        "measured_value": _number(results, "measured_value"), "measured_source": _joined(results, "measured_source"),
    }
