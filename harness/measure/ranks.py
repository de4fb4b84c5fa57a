"""One cell measured on several ranks: each rank's counters, and the cell's figures made from them.

Every rank measures itself with the single-process meters (``harness.measure.meters``): its device's peak
allocated and reserved memory, NVML's process peak, its step times and the tokens it trained. Rank 0 gathers
them (``torch.distributed.all_gather_object`` in ``harness.worker.rank``) and this module, free of torch,
turns them into the record: ``memory.per_rank`` with the max and the spread, the cell's memory as the
max-rank's (what must fit on every GPU), and throughput summed over ranks (global) and per GPU.
"""

from __future__ import annotations

import statistics
from typing import Any, Dict, List, Optional

SUMMED = ("tokens_per_s", "all_tokens_per_s", "samples_per_s", "trained_tokens", "all_tokens", "samples", "padded_tokens")
"""Step-meter figures that add up over ranks: each rank trains its own micro-batches in the same steps."""
QUANTILES = ("tokens_per_s_p25", "tokens_per_s_p50", "tokens_per_s_p75")
"""Per-step throughput quartiles: a sum of each rank's quartiles is no quartile of the global rate, so the cell's
are left n/a (each rank's median stays under ``train.per_rank``); step_cv is rank 0's (steps are synchronous)."""

RANK_TRAIN_KEYS = ("tokens_per_s", "all_tokens_per_s", "samples_per_s", "trained_tokens", "all_tokens", "samples",
                   "measured_steps", "measured_time_s", "step_cv", "tokens_per_s_p50", "step_times_s")
"""A rank's own step-meter figures kept under ``train.per_rank``."""

DEFINITIONS = {
    "memory.per_rank": "each rank's after_load and train_peak counters on its own device (rank = global rank)",
    "memory.train_peak": "with several ranks: the train_peak of the rank whose peak_mib is largest (what every GPU must hold)",
    "memory.rank_spread_mib": "largest minus smallest rank peak_mib, MiB",
    "train.tokens_per_s": "with several ranks: the sum over ranks of each rank's loss-bearing tokens per second (global)",
    "train.tokens_per_s_per_gpu": "global tokens_per_s divided by the number of ranks",
    "efficiency.mfu": "with several ranks: achieved TFLOP/s of all ranks over ranks x the device's bf16 peak",
}


def rank_measurement(rank: int, local_rank: int, host: str, memory: Dict[str, Any], train: Dict[str, Any],
                     nvml: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """What one rank sends to rank 0: its memory counters, its own throughput and its NVML window."""
    return {"rank": rank, "local_rank": local_rank, "host": host,
            "after_load": memory.get("after_load"), "train_peak": memory.get("train_peak"),
            "train": {key: train.get(key) for key in RANK_TRAIN_KEYS}, "nvml": nvml or {}}


def _peak(entry: Dict[str, Any]) -> float:
    value = (entry.get("train_peak") or {}).get("peak_mib")
    return float(value) if value is not None else float("-inf")


def _loaded(entry: Dict[str, Any]) -> float:
    """A rank's memory after loading: its device's allocated MiB, else its host RSS."""
    after = entry.get("after_load") or {}
    return float(after.get("cuda_allocated_mib") or after.get("host_rss_mib") or 0)


def _sum(values: List[Any]) -> Optional[float]:
    """The sum, or None when any rank lacks the figure (a sum of part of the ranks is no global figure)."""
    return None if any(v is None for v in values) else sum(values)


def _nvml(per_rank: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The ranks' NVML windows as one: energy summed over devices, peaks the largest, gaps named."""
    windows = [entry.get("nvml") or {} for entry in per_rank]
    out: Dict[str, Any] = dict(windows[0]) if windows else {}
    energies = [w.get("energy_j") for w in windows]
    out["energy_j"] = _sum(energies)
    for key in ("nvml_process_peak_mib", "nvml_device_peak_mib"):
        values = [w.get(key) for w in windows if w.get(key) is not None]
        out[key] = max(values) if values else None
    absent = dict(out.get("absent") or {})
    if out["energy_j"] is None and any(e is not None for e in energies):
        absent["energy"] = "NVML energy missing on some ranks; no sum over part of the devices"
    out["absent"] = absent
    out["ranks"] = len(windows)
    return out


def combine(record: Dict[str, Any], per_rank: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Write the ranks' figures into rank 0's ``record`` (memory and train blocks); return the combined NVML window.

    The cell's ``memory.train_peak`` becomes the largest rank's, tagged with that rank; ``train`` throughput
    becomes global (summed) with ``*_per_gpu`` beside it; each rank's own figures stay under ``per_rank``.
    """
    per_rank = sorted(per_rank, key=lambda entry: entry["rank"])
    world = len(per_rank)
    memory = record.setdefault("memory", {})
    memory["per_rank"] = [{k: entry[k] for k in ("rank", "local_rank", "host", "after_load", "train_peak")}
                          for entry in per_rank]
    top = max(per_rank, key=_peak)
    peaks = [_peak(entry) for entry in per_rank if _peak(entry) != float("-inf")]
    memory["train_peak"] = {**(top.get("train_peak") or {}), "rank": top["rank"]}
    memory["after_load"] = dict(max(per_rank, key=_loaded).get("after_load") or {})
    memory["rank_peak_max_mib"] = max(peaks) if peaks else None
    memory["rank_peak_min_mib"] = min(peaks) if peaks else None
    memory["rank_spread_mib"] = max(peaks) - min(peaks) if peaks else None
    memory["rank_peak_stdev_mib"] = statistics.stdev(peaks) if len(peaks) > 1 else None
    train = record.setdefault("train", {})
    for key in SUMMED:
        train[key] = _sum([entry["train"].get(key) for entry in per_rank])
    if any(train.get(key) is not None for key in QUANTILES):
        train.update({key: None for key in QUANTILES})
        train["spread_note"] = "n/a over ranks: a sum of per-rank quartiles is not a quartile; see train.per_rank"
    for key in ("tokens_per_s", "all_tokens_per_s", "samples_per_s"):
        train[f"{key}_per_gpu"] = train[key] / world if train.get(key) is not None else None
    train["ranks"] = world
    train["per_rank"] = [{"rank": entry["rank"], **entry["train"]} for entry in per_rank]
    return _nvml(per_rank)
