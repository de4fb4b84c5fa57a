"""Fit the memory model's free coefficients to measured records and state the error.

Each ok record is a point: the cell's config, the micro-batch shape it actually reached
(``train.max_batch_shape``, else the configured one) and its measured peak by its counter.
Per counter (cuda_peak_allocated, host_peak_rss) two coefficients are fitted: ``act_scale``
(multiplies activation + head bytes, and on CPU the activation pages still resident at the
optimizer step) and ``overhead_mib`` (a constant), minimising squared relative error. The
error reported is leave-one-out: each record is predicted by a fit on all the others, so no
record grades a fit it took part in.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from harness.config.dist import DistConfig
from harness.plan.dist import DistSetting, predict_dist
from harness.plan.memory import Prediction, predict
from harness.plan.setting import DEFAULTS, Cell, Coefficients
from harness.store.launch import shared_gpu
from harness.store.records import load_records

MIN_POINTS = 3
"""Fewer ok records than this for a counter: no fit, no error claimed."""
SCALE_GRID = [round(0.05 * i, 2) for i in range(2, 101)]
"""act_scale values tried (0.10 .. 5.00); the overhead is solved in closed form for each."""


@dataclass
class Point:
    """One measured record, reduced to what the fit needs."""

    cell_id: str
    counter: str
    measured_mib: float
    fixed: float
    """Weights + adapter + optimizer, MiB (no free coefficient)."""
    scalable: float
    """Activations + head at act_scale 1, MiB."""
    concurrent: float
    """Gradients alive with the activations, MiB."""
    step: float
    """Gradients + optimizer-step temporaries, MiB."""
    resident: float = 0.0
    """Activation bytes still resident at the optimizer step (host RSS: glibc's heap), MiB, before act_scale."""

    def value(self, coeff: Coefficients) -> float:
        """The model's prediction for this point under ``coeff``."""
        fwd_bwd = coeff.act_scale * self.scalable + self.concurrent
        return self.fixed + max(fwd_bwd, self.step + coeff.act_scale * self.resident) + coeff.overhead_mib


def record_shape(record: Dict[str, Any]) -> Tuple[Optional[int], Optional[int], float]:
    """(batch, seq, loss fraction) of the largest micro-batch a record saw; configured shape when absent."""
    train = record.get("train", {})
    shape = train.get("max_batch_shape")
    if shape and len(shape) == 2:
        b, s = int(shape[0]), int(shape[1])
        loss = train.get("max_batch_loss_tokens")
        return b, s, (min(1.0, loss / (b * s)) if loss else 1.0)
    return None, None, 1.0


def record_device(record: Dict[str, Any]) -> str:
    """cuda or cpu: the device the cell trained on (from its counter, else its environment)."""
    counter = record.get("memory", {}).get("train_peak", {}).get("counter")
    if counter:
        return "cuda" if counter.startswith("cuda") else "cpu"
    return "cuda" if record.get("environment", {}).get("device") == "cuda" else "cpu"


def predict_record(record: Dict[str, Any], coeff: Optional[Coefficients] = None, **options: Any) -> Prediction:
    """The model's prediction for a record, at the batch shape the record actually reached (one rank's, for a dist
    cell: its peak counter is a rank's)."""
    batch, seq, loss_fraction = record_shape(record)
    config = record.get("config", {})
    cell, device = Cell.from_dict(config), record_device(record)
    dist = config.get("dist") or {}
    if dist.get("strategy", "none") != "none":
        known = DistConfig.__dataclass_fields__
        setting = DistSetting.of(DistConfig(**{k: v for k, v in dist.items() if k in known}))
        return predict_dist(cell, setting, device, batch=batch, seq=seq, coeff=coeff, loss_fraction=loss_fraction,
                            **options)
    return predict(cell, device, batch=batch, seq=seq, coeff=coeff, loss_fraction=loss_fraction, **options)


def to_point(record: Dict[str, Any], **options: Any) -> Optional[Point]:
    """A fit point for an ok record with a measured peak whose cell the model covers (see ``caveats``); None otherwise."""
    peak = record.get("memory", {}).get("train_peak", {})
    if record.get("status") != "ok" or not peak.get("peak_mib") or not peak.get("counter"):
        return None
    try:
        p = predict_record(record, Coefficients(1.0, 0.0), **options)
    except Exception:  # noqa: BLE001 - a record from another version may not rebuild; it is left out
        return None
    if p.caveats:  # a path the model does not follow (bitsandbytes on CPU) would bend the fit for every other cell
        return None
    terms = p.terms  # both phases, whichever peaks: the fit may move the peak from one to the other
    return Point(
        cell_id=record.get("cell_id", "?"),
        counter=peak["counter"],
        measured_mib=float(peak["peak_mib"]),
        fixed=terms["fixed"],
        scalable=terms["scalable"],
        concurrent=terms["concurrent"],
        step=terms["step"],
        resident=terms.get("resident", 0.0),
    )


def not_modelled(record: Dict[str, Any]) -> bool:
    """An ok, measured record whose cell the model does not cover (a caveat), so calibration leaves it out."""
    peak = (record.get("memory") or {}).get("train_peak") or {}
    if record.get("status") != "ok" or not peak.get("peak_mib") or not peak.get("counter"):
        return False
    try:
        return bool(predict_record(record).caveats)
    except Exception:  # noqa: BLE001 - a record from another version: not this kind of leaving out
        return False


def fit(points: List[Point]) -> Coefficients:
    """Coefficients minimising squared relative error over ``points`` (at least one)."""
    weights = [1.0 / (p.measured_mib ** 2) for p in points]
    spread = max(p.scalable for p in points) - min(p.scalable for p in points)
    # with (almost) no spread in activations the scale cannot be told from the constant
    grid = SCALE_GRID if spread > 0.01 * min(p.measured_mib for p in points) else [1.0]
    best: Optional[Tuple[float, Coefficients]] = None
    for scale in grid:
        base = [p.value(Coefficients(scale, 0.0)) for p in points]
        overhead = sum(w * (p.measured_mib - f) for w, p, f in zip(weights, points, base)) / sum(weights)
        loss = sum(w * (p.measured_mib - f - overhead) ** 2 for w, p, f in zip(weights, points, base))
        loss += 1e-9 * (scale - 1.0) ** 2  # among equal fits, keep the analytic scale
        if best is None or loss < best[0]:
            best = (loss, Coefficients(scale, overhead))
    assert best is not None
    return best[1]


def abs_pct(predicted: float, measured: float) -> float:
    """|predicted - measured| / measured, in percent."""
    return abs(predicted - measured) / measured * 100.0


def _stats(errors: List[float]) -> Dict[str, Optional[float]]:
    return {
        "median_abs_pct": statistics.median(errors) if errors else None,
        "worst_abs_pct": max(errors) if errors else None,
    }


def calibrate(records: Iterable[Dict[str, Any]], **options: Any) -> Dict[str, Dict[str, Any]]:
    """Per counter: fitted coefficients, leave-one-out error, and the uncalibrated error for comparison."""
    by_counter: Dict[str, List[Point]] = {}
    left_out: Dict[str, int] = {}
    for record in records:
        if shared_gpu(record):  # cells that shared a GPU (harness/sweep/launch.py): their peaks are not their own
            continue
        point = to_point(record, **options)
        if point is not None:
            by_counter.setdefault(point.counter, []).append(point)
        elif not_modelled(record):
            counter = record["memory"]["train_peak"]["counter"]
            left_out[counter] = left_out.get(counter, 0) + 1
    report: Dict[str, Dict[str, Any]] = {}
    for counter in sorted(set(by_counter) | set(left_out)):
        points = by_counter.get(counter, [])
        default = DEFAULTS.get(counter, Coefficients())
        entry: Dict[str, Any] = {
            "records": len(points),
            "not_modelled": left_out.get(counter, 0),
            "default": {"act_scale": default.act_scale, "overhead_mib": default.overhead_mib,
                        **_stats([abs_pct(p.value(default), p.measured_mib) for p in points])},
        }
        if len(points) < MIN_POINTS:
            entry["note"] = f"{len(points)} ok record(s): at least {MIN_POINTS} are needed to fit and hold one out"
            report[counter] = entry
            continue
        fitted = fit(points)
        cells = []
        for i, held in enumerate(points):
            coeff = fit(points[:i] + points[i + 1:])
            predicted = held.value(coeff)
            cells.append({"cell": held.cell_id, "measured_mib": held.measured_mib, "predicted_mib": predicted,
                          "abs_pct": abs_pct(predicted, held.measured_mib)})
        entry.update(
            fitted={"act_scale": fitted.act_scale, "overhead_mib": fitted.overhead_mib},
            leave_one_out=_stats([c["abs_pct"] for c in cells]),
            cells=cells,
        )
        report[counter] = entry
    return report


def fitted_coefficients(report: Dict[str, Dict[str, Any]]) -> Dict[str, Coefficients]:
    """Counter -> fitted Coefficients, for the counters that had enough records."""
    return {
        counter: Coefficients(entry["fitted"]["act_scale"], entry["fitted"]["overhead_mib"])
        for counter, entry in report.items()
        if "fitted" in entry
    }


def load_sweeps(folders: Iterable[Path]) -> List[Dict[str, Any]]:
    """Every record in the given sweep folders (a folder of sweeps is searched one level down)."""
    records: List[Dict[str, Any]] = []
    for folder in folders:
        folder = Path(folder)
        found = load_records(folder)
        if not found and folder.is_dir():
            for child in sorted(p for p in folder.iterdir() if p.is_dir()):
                found.extend(load_records(child))
        records.extend(found)
    unique = {r.get("cell_id"): r for r in records}  # a run root lists each cell in cells/ and in every sweep that links it
    return list(unique.values())


def prediction_cells(record: Dict[str, Any]) -> Dict[str, Optional[float]]:
    """Summary cells: the analytic (uncalibrated) prediction of the record's counter and its signed % error.

    Only a cell that reached training (``memory.train_peak`` recorded) gets a prediction:
    one that failed before (data, load, preflight) measured nothing the prediction could be
    read against. Never raises: a record that cannot be rebuilt (another version) gets None.
    """
    peak = (record.get("memory") or {}).get("train_peak")
    if not isinstance(peak, dict) or not peak:
        return {"pred_mem_mib": None, "pred_err_pct": None}
    try:
        predicted = predict_record(record).total_mib
    except Exception:  # noqa: BLE001 - the summary must never fail on one odd record
        return {"pred_mem_mib": None, "pred_err_pct": None}
    measured = peak.get("peak_mib")
    error = (predicted - measured) / measured * 100.0 if measured else None
    return {"pred_mem_mib": predicted, "pred_err_pct": error}
