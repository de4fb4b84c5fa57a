"""Time and cost parts: hours for the claim's data on its GPU, from measured tokens/s where a record has them."""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from harness.claims import measured as rec
from harness.claims import planned
from harness.claims.context import SEED, Context, Result, alternatives, pct
from harness.claims.planned import Figure
from harness.claims.spec import Claim, Part
from harness.claims.verdict import Verdict, decided, predicted, reading, untestable


def tokens(ctx: Context, claim: Claim, typed: Any) -> Tuple[float, str]:
    """Training tokens the claim is about, and how they were counted (examples or steps x tokens per example)."""
    per = ctx.claims.tokens_per_example
    if claim.steps:
        n = claim.steps * typed.train.batch_size * typed.train.grad_accum
        return float(n * per), f"{claim.steps:,} steps x {typed.train.batch_size} x {typed.train.grad_accum} = {n:,} examples x {per} tokens"
    n = claim.examples or 0
    return float(n * per), f"{n:,} examples x {per} tokens"


def rate(ctx: Context, typed: Any, plain: Any, hw: Any, seq: float) -> Tuple[Optional[Tuple[float, float, float]], str, bool]:
    """((tokens/s, slow end, fast end), where it comes from, measured on this GPU) of a config on ``hw``.

    A record of the config on that GPU gives its measured rate (no band); a record on another GPU gives its MFU,
    applied to this GPU's peak; else the planner's MFU assumption and range."""
    found = ctx.found(plain)
    here = rec.median_rate(found, hw.name)
    if here is not None:
        return (here.value, here.value, here.value), f"measured: {here.source}", True
    if typed.framework.backend != "hf":
        return None, f"no speed model of {typed.framework.name}'s kernels", False
    other = rec.mfu(found)
    if other is not None:  # the record's MFU counts model FLOPs only, as per_mfu does
        value = other.value * planned.per_mfu(typed, hw, seq)
        return (value, value, value), f"{other.source}, applied to {hw.name}'s bf16 peak", False
    base, slow, fast, words = planned.assumed_rate(typed, hw, seq)
    return (base, slow, fast), words, False


def _hours(ctx: Context, claim: Claim, overrides: List[str], gpu: str) -> Tuple[Figure, bool, List[str]]:
    """(hours figure or why none, measured rate on this GPU, notes) for one config on one GPU."""
    typed, plain = ctx.config(overrides)
    hw = ctx.catalogue[gpu]
    ok, need = planned.fits(typed, hw)
    if not ok and typed.framework.backend == "hf":
        return Figure(None, "h", missing=f"does not fit: {need:.1f} GiB predicted > {hw.memory_gib:g} GiB ({gpu})"), False, []
    count, how = tokens(ctx, claim, typed)
    got, source, here = rate(ctx, typed, plain, hw, float(ctx.claims.tokens_per_example))
    if got is None:
        return Figure(None, "h", missing=source), False, []
    fig = planned.hours(count, got[0], got[1], got[2], source=f"{how} = {count:,.0f} tokens at {got[0]:,.0f} tokens/s ({source})")
    return fig, here, [fig.source] + ([] if ok else [f"memory not planned for {typed.framework.name}"])


def time_part(ctx: Context, claim: Claim, part: Part) -> Result:
    """Hours for the claim's examples (or steps) on its GPU, against the claimed hours."""
    gpu = part.gpu
    out = Result(part.label, " ".join(part.config) + f" on {gpu}")
    fig, here, notes = _hours(ctx, claim, part.config, gpu)
    out.predicted_fig, out.notes = fig, notes
    if fig.value is None:
        if fig.missing.startswith("does not fit"):
            out.predicted = fig.missing

            def attempt(overrides: List[str]) -> Optional[Verdict]:
                f, _, _ = _hours(ctx, claim, overrides, gpu)
                return predicted(reading(part.claimed, f.value, f.low, f.high)) if f.value is not None else None

            alt = alternatives(part, attempt)
            out.verdict = alt or predicted("does not hold")
            for o in part.alternatives:
                f, _, _ = _hours(ctx, claim, part.config + [o], gpu)
                out.notes.append(f"with {o}: {f.describe()}")
            return out
        out.verdict = untestable(f"{fig.missing}; needs a record of this config on {gpu} ({SEED})")
        return out
    if here:
        out.measured, out.measured_value, out.measured_source = fig.describe(), fig.value, fig.source
        out.verdict = decided(part.claimed.contains(fig.value))
        return out
    out.predicted = fig.describe()
    out.verdict = predicted(reading(part.claimed, fig.value, fig.low, fig.high))
    if part.claimed.value:
        out.notes.append(f"planner vs claim: {pct(fig.value, part.claimed.value)}; the claim needs "
                         f"{part.claimed.value / fig.value:.2g}x the time planned")
    return out


def _electricity(hours: float, watts: float, usd_per_kwh: float) -> float:
    return hours * watts / 1000 * usd_per_kwh


def cost_part(ctx: Context, claim: Claim, part: Part) -> Result:
    """Electricity for given hours at the card's power, or rental for the planned hours at the catalogue's price."""
    hw = ctx.catalogue[part.gpu]
    out = Result(part.label, " ".join(part.config) + f" on {part.gpu}")
    if claim.hours is not None:  # electricity of a run of the claim's own length
        price = claim.usd_per_kwh or 0.12
        power = rec.power_w(ctx.found(ctx.config(part.config)[1]), hw.name)
        if power is not None:
            value = _electricity(claim.hours, power.value, price)
            out.measured, out.measured_value = f"${value:.2f} at {power.value:.0f} W ({power.source})", value
            out.verdict = decided(part.claimed.contains(value))
        fig = Figure(_electricity(claim.hours, hw.tdp_w, price), "USD", _electricity(claim.hours, hw.tdp_w / 2, price),
                     _electricity(claim.hours, hw.tdp_w, price),
                     source=f"{claim.hours:g} h x board power 50-100 % of TDP {hw.tdp_w:g} W x ${price}/kWh")
    else:  # rental for the planned hours
        hours, _, _ = _hours(ctx, claim, part.config, part.gpu)
        if hours.value is None and part.alternatives:
            hours, _, _ = _hours(ctx, claim, part.config + [part.alternatives[0]], part.gpu)
            out.notes.append(f"{part.alternatives[0]}: the stated config does not fit {part.gpu}")
        if hours.value is None:
            out.verdict = untestable(hours.missing)
            return out
        p = hw.price_usd_per_h
        fig = Figure(hours.value * p, "USD", hours.low * p, hours.high * p,
                     source=f"{hours.describe()} x ${p}/h ({hw.name} catalogue price); electricity at TDP and $0.12/kWh: "
                            f"${_electricity(hours.value, hw.tdp_w, 0.12):.2f}")
    out.predicted_fig, out.predicted = fig, fig.describe()
    out.notes.append(fig.source)
    if out.verdict.cls == "untestable":
        v = predicted(reading(part.claimed, fig.value, fig.low, fig.high))
        if claim.hours is None and part.alternatives and "does not fit" in " ".join(out.notes):
            v = predicted(v.reading, part.alternatives[0])
        out.verdict = v
    return out
