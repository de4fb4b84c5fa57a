"""The footnotes of a pivot table: device, libraries, memory counter, seeds, statuses and every caveat.

Where each number came from and what changes how it reads; ``harness.report.caveats`` adds the judge and the
caveats that travel with single figures.
"""

from __future__ import annotations

from typing import Dict, List, Optional

from harness.report.caveats import caveat_rows, table_notes
from harness.report.data import ReportData
from harness.report.numbers import NO_VALUE, Position
from harness.report.summary import NOTES, real_random
from harness.report.values import coalesce, is_seed, values_of

STATUS_NOTES = {
    "does not fit": "does not fit: the cell ran out of device memory (status oom); a result, not a gap",
    "does not fit (inferred)": "does not fit (inferred): not run; an out-of-memory result inferred from other cells (see its error)",
    "failed": "failed: the cell raised an error (see its record)",
    "timed out": "timed out: the cell ran past its time limit",
    "crashed": "crashed: the worker died without writing a result",
    "diverged": "diverged: the training loss became non-finite",
    NO_VALUE: f"{NO_VALUE}: the cell ran but has no figure for this metric",
}
COUNTERS = {"cuda_peak_allocated": "torch peak allocated on the GPU",
            "host_peak_rss": "the worker's peak host RSS, VmHWM reset before training"}
LIBRARIES = ("torch", "transformers", "peft")


def _distinct(data: ReportData, *columns: str) -> List[str]:
    """Distinct non-empty values of the first of ``columns`` each row has, in row order."""
    return [str(v) for v in dict.fromkeys(coalesce(data, *columns)) if v is not None]


def environment_notes(data: ReportData) -> List[str]:
    """Device(s), library versions and the random-weights caveat: where every number came from."""
    device = coalesce(data, "env.device", "device")
    gpu, cpu, name = values_of(data, "env.device_name"), values_of(data, "env.cpu_model"), values_of(data, "env.name")
    devices: Dict[str, None] = {}
    for dev, g, c, n in zip(device, gpu, cpu, name):
        shown = g or (c if dev == "cpu" else None) or n
        text = f"{dev} ({shown})" if dev and shown else dev or shown
        if text:
            devices[str(text)] = None
    notes = [f"device: {'; '.join(devices)}"] if devices else []
    libraries = [f"{lib} {' / '.join(v)}" for lib in LIBRARIES if (v := _distinct(data, f"env.libraries.{lib}", f"env.{lib}"))]
    notes += [f"libraries: {', '.join(libraries)}"] if libraries else []
    if "random" in _distinct(data, "weights"):
        configs = [cell.get("config") or {} for cell in data.cells]
        real = any(real_random(config) for config in configs)
        tiny = any((config.get("model") or {}).get("tiny") for config in configs)
        notes += ([NOTES["random"]] if tiny or not real else []) + ([NOTES["random_real"]] if real else [])
    return notes


def table_footnotes(data: ReportData, metric: str, unit: Optional[str], cells: List[Position], extra: List[str],
                    env: List[str]) -> List[str]:
    """A table's footnotes: ``extra`` first, then seeds, memory counter, CPU and multi-GPU notes, the caveats of
    ``harness.report.caveats``, what each status label shown means, and the environment lines ``env``."""
    notes = list(extra)
    counts = sorted({p.n for p in cells if p.n})
    if counts:
        seeds = ", ".join(a for a in data.axes if is_seed(a)) or "seed"
        notes.append(f"mean ± Student-t 95 % half-interval, t(0.975, n-1) * sd / sqrt(n), over cells that differ only in "
                     f"{seeds}; n = {', '.join(map(str, counts))} per cell")
    if unit == "MiB" or metric.endswith("mem_mib"):
        counters = [f"{c} = {COUNTERS.get(c, 'see the record')}" for c in _distinct(data, "mem_counter")]
        notes += [f"memory counter: {'; '.join(counters)}"] if counters else []
    if unit in ("MiB", "tokens/s") and "cpu" in _distinct(data, "env.device", "device"):
        notes.append(NOTES["cpu"])
    if unit in ("MiB", "tokens/s") and any(str(g) not in ("1", "None") for g in _distinct(data, "gpus")):
        notes.append("gpus > 1: memory is the largest rank's peak (what every GPU must hold), tokens/s all ranks' together "
                     "(per GPU: the record's train.tokens_per_s_per_gpu)")
    notes += table_notes(caveat_rows(data.wide), data.cells, metric, unit)
    shown = dict.fromkeys(part for p in cells if p.status for part in p.text.split(", "))
    shown.update(dict.fromkeys(NO_VALUE for p in cells if p.text == NO_VALUE))
    notes += [STATUS_NOTES.get(s, f"{s}: cell status") for s in shown]
    notes += ["blank: no cell of the grid sits at this position"] if any(not p.text for p in cells) else []
    return notes + env
