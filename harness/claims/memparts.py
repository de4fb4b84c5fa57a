"""Memory parts (one config's peak, weights or framework overhead) and ratio parts (two configs compared)."""

from __future__ import annotations

from typing import List, Optional, Tuple

from harness.claims import measured as rec
from harness.claims import planned
from harness.claims.context import SEED, Context, Result, alternatives, pct
from harness.claims.planned import Figure
from harness.claims.spec import Claim, Part
from harness.claims.verdict import Verdict, decided, measured, predicted, reading, untestable


def twin_memory(ctx: Context, overrides: List[str]) -> str:
    """The CPU twin's measured host peak beside the planner's CPU figure for it, or '' (shown, never decisive)."""
    from harness.plan.memory import predict
    from harness.plan.setting import Cell

    twin = ctx.twin(overrides)
    for r in ctx.found(twin[1], "cpu") if twin else []:
        m = rec.memory(r, "peak")
        if m.value is not None:
            plan = predict(Cell.of(twin[0]), "cpu").total_mib / 1024
            return (f"twin {twin[0].model.name} on CPU: {m.value:.2f} GiB host peak RSS vs {plan:.2f} planned "
                    f"({pct(m.value, plan)}; record {r.get('cell_id')})")
    return ""


def memory_part(ctx: Context, claim: Claim, part: Part) -> Result:
    """A memory figure of one config: a GPU record's, else the planner's band (with the claim's alternatives)."""
    out = Result(part.label, " ".join(part.config))
    if part.untestable:
        out.verdict = untestable(part.untestable)
        return out
    typed, plain = ctx.config(part.config)
    terms = planned.model_terms_gib(typed) if claim.quantity == "overhead" else None
    fig = planned.memory(typed, claim.quantity)
    out.predicted, out.predicted_fig = fig.describe(), fig
    for r in ctx.found(plain):
        m = rec.memory(r, claim.quantity, terms)
        if m.value is None or m.note:
            out.notes.append(m.source + (f": {m.note}" if m.note else ""))
            continue
        ok = measured(part.claimed, m.value, m.bound)
        out.measured = f"{'≥ ' if m.bound else ''}{m.value:.2f} GiB, {m.source}"
        out.measured_value, out.measured_source = m.value, m.source
        if ok is not None:
            out.verdict = decided(ok)
            return out
    out.measured = out.measured or twin_memory(ctx, part.config)
    if fig.value is None:
        out.verdict = untestable(f"{fig.missing}; needs a GPU record of this config ({SEED})")
        return out

    def attempt(overrides: List[str]) -> Optional[Verdict]:
        f = planned.memory(ctx.config(overrides)[0], claim.quantity)
        return predicted(reading(part.claimed, f.value, f.low, f.high)) if f.value is not None else None

    own = attempt(part.config)
    out.verdict = own if own.reading in ("holds", "likely holds") else (alternatives(part, attempt) or own)
    if part.claimed.value:
        out.notes.append(f"planner vs claim: {pct(fig.value, part.claimed.value)} ({fig.value:.2f} vs "
                         f"{part.claimed.value:g} {part.claimed.unit})")
    return out


def _combine(form: str, a: float, b: float) -> float:
    """a/b (ratio), 100 (1 - b/a) (reduction_pct), b - a (delta) or 100 (b - a)/a (change_pct)."""
    if form == "ratio":
        return a / b
    if form == "reduction_pct":
        return 100.0 * (1 - b / a)
    if form == "delta":
        return b - a
    return 100.0 * (b - a) / a


def _band(form: str, fa: Figure, fb: Figure) -> Tuple[float, float]:
    """The band of a/b (or of the reduction 1 - b/a): ± the planner's stated error on ratios of two figures."""
    pct = planned.error_bands()["ratio"] / 100
    ratio = fa.value / fb.value
    ends = [_combine(form, ratio * (1 + s), 1.0) if form == "ratio" else _combine(form, 1.0, (1 / ratio) * (1 + s))
            for s in (-pct, pct)]
    return min(ends), max(ends)


UNITS = {"ratio": "x", "reduction_pct": "%", "delta": "points", "change_pct": "%"}


def _measured_pair(ctx: Context, claim: Claim, pa, pb) -> Tuple[Optional[float], str, str]:
    """(value, its words, note) of the two configs measured on one GPU, or (None, '', why not)."""
    ra, rb = ctx.found(pa), ctx.found(pb)
    if not ra or not rb:
        return None, "", "no GPU record of " + " and ".join(n for n, r in (("a", ra), ("b", rb)) if not r)
    if claim.quantity == "tokens_per_s":
        ma, mb = rec.median_rate(ra), rec.median_rate(rb)
    else:
        ma, mb = rec.memory(ra[0], claim.quantity), rec.memory(rb[0], claim.quantity)
    if not ma or not mb or ma.value is None or mb.value is None or mb.bound:
        return None, "", f"records: {ma.source if ma else 'a: none'}; {mb.source if mb else 'b: none'}"
    if ma.gpu != mb.gpu:
        return None, "", f"a and b ran on different GPUs ({ma.gpu}, {mb.gpu})"
    value = _combine(claim.form, ma.value, mb.value)
    bound = " (a ran out of memory: a bound)" if ma.bound else ""
    return value, f"{value:.3g} {UNITS[claim.form]} on {ma.gpu}: {ma.source} / {mb.source}{bound}", "lower" if ma.bound else ""


def _twin_ratio(ctx: Context, claim: Claim, part: Part) -> str:
    """The twins' ratio on CPU (host RSS): shown for reference, never decisive for a GPU claim."""
    ta, tb = ctx.twin(part.compare[0]), ctx.twin(part.compare[1])
    if not ta or not tb or claim.quantity != "peak":
        return ""
    ra, rb = ctx.found(ta[1], "cpu"), ctx.found(tb[1], "cpu")
    ma = rec.memory(ra[0], "peak") if ra else None
    mb = rec.memory(rb[0], "peak") if rb else None
    if not ma or not mb or ma.value is None or mb.value is None:
        return ""
    value = _combine(claim.form, ma.value, mb.value)
    return f"twins on CPU: {value:.3g} {UNITS[claim.form]} (host peak RSS, mostly the Python runtime: not the claim's device)"


def ratio_part(ctx: Context, claim: Claim, part: Part) -> Result:
    """Two configs compared (a/b, 1 - b/a): GPU records of both, else the planner's two figures."""
    a, b = part.compare
    out = Result(part.label, f"{' '.join(a)} vs {' '.join(b)}")
    pa, pb = ctx.config(a), ctx.config(b)
    fa, fb = (planned.memory(pa[0], claim.quantity), planned.memory(pb[0], claim.quantity)) \
        if claim.quantity != "tokens_per_s" else (Figure(None, "", missing="no speed model of Unsloth's kernels"),) * 2
    value, words, bound = _measured_pair(ctx, claim, pa[1], pb[1])
    if value is not None:
        out.measured, out.measured_value, out.measured_source = words, value, words
        ok = measured(part.claimed, value, bound)
        if ok is not None:
            out.verdict = decided(ok)
    elif words == "":
        out.notes.append(bound)
    if fa.value is not None and fb.value is not None:
        v = _combine(claim.form, fa.value, fb.value)
        low, high = _band(claim.form, fa, fb)
        out.predicted_fig = Figure(v, UNITS[claim.form], low, high,
                                   source=f"planner {claim.quantity}: {fa.describe()} vs {fb.describe()}; band ±"
                                          f"{planned.error_bands()['ratio']:.1f} % of the ratio: the planner's median "
                                          "error on ratios of published figures of one source")
        out.predicted = out.predicted_fig.describe()
        if out.verdict.cls == "untestable":
            out.verdict = predicted(reading(part.claimed, v, low, high))
    elif out.verdict.cls == "untestable":
        out.verdict = untestable(f"{fa.missing or fb.missing}; needs GPU records of both configs ({SEED})")
    out.measured = out.measured or _twin_ratio(ctx, claim, part)
    return out
