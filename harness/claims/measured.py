"""Records matched to a claim's config by the settings that decide its figures, and what they measured.

Matching is by cell config, never by name: a record is of a claim's config when every key of ``MATCH`` agrees
(model shape, method, quantization, rank and targets, micro-batch, sequence length, checkpointing, optimizer,
framework, dist). Keys that do not change memory or speed (steps, data rows, evaluation, ``model.weights``) are left
out, so a random-weight real-size record stands for the pretrained model's memory and speed, never its quality.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

MATCH = (("model", "arch"), ("model", "num_layers"), ("model", "hidden_size"), ("model", "intermediate_size"),
         ("model", "num_heads"), ("model", "num_kv_heads"), ("model", "vocab_size"), ("model", "tie_embeddings"),
         ("peft", "method"), ("quant", "mode"), ("lora", "r"), ("lora", "target"), ("lora", "modules"),
         ("train", "batch_size"), ("train", "grad_accum"), ("train", "max_seq_len"),
         ("train", "gradient_checkpointing"), ("train", "optimizer"), ("framework", "name"))
"""(block, key) pairs a record must share with a config to stand for it."""
FULL_LENGTH = 0.9
"""A memory figure stands for a config only when its largest micro-batch reached this share of train.max_seq_len."""
MEMORY_COUNTERS = ("nvml_process_peak_mib", "cuda_peak_reserved_mib", "cuda_peak_allocated_mib", "host_peak_rss_mib")
"""Counters in the order a memory claim (a card's memory) is read against: the whole process on the GPU first."""


def load(folders: Iterable[Path]) -> List[Dict[str, Any]]:
    """Every cell view (record with its evaluations) of the sweep folders that has a config (the planner's loader)."""
    from harness.plan.html import load_record_views

    return [v for v in load_record_views(folders) if v.get("config")]


def _dist(config: Dict[str, Any]) -> tuple:
    dist = config.get("dist") or {}
    strategy = dist.get("strategy", "none")
    return (strategy, dist.get("processes")) if strategy != "none" else ("none", None)


def same_config(record_config: Dict[str, Any], plain: Dict[str, Any]) -> bool:
    """Whether a record's config agrees with ``plain`` on every MATCH key and on dist."""
    return all((record_config.get(b) or {}).get(k) == (plain.get(b) or {}).get(k) for b, k in MATCH) \
        and _dist(record_config) == _dist(plain)


def matching(records: List[Dict[str, Any]], plain: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The records of ``plain``'s config (any status), ok ones first."""
    found = [r for r in records if same_config(r.get("config") or {}, plain)]
    return sorted(found, key=lambda r: (r.get("status") != "ok", str(r.get("cell_id"))))


@dataclass(frozen=True)
class Measured:
    """One measured figure (or a bound, or why there is none) and where it comes from."""

    value: Optional[float]
    unit: str
    source: str
    """Counter and record (cell id), device."""
    device: str = ""
    """cuda or cpu."""
    gpu: Optional[str] = None
    """Catalogue name of the GPU the record ran on."""
    bound: str = ""
    """``lower`` when the record ran out of memory: the figure is at least ``value``."""
    note: str = ""


def _short(record: Dict[str, Any]) -> str:
    return str(record.get("cell_id"))


def gpu_of(record: Dict[str, Any]) -> Optional[str]:
    """The catalogue entry a record's device matched (its efficiency block), or None."""
    return (record.get("efficiency") or {}).get("hardware")


def device_of(record: Dict[str, Any]) -> str:
    """cuda or cpu."""
    return "cuda" if (record.get("environment") or {}).get("device") == "cuda" else "cpu"


def memory(record: Dict[str, Any], quantity: str, model_terms_gib: Optional[float] = None) -> Measured:
    """A record's peak (the first counter of MEMORY_COUNTERS it has), its weights after load, or its overhead."""
    device, where = device_of(record), f"record {_short(record)}"
    if record.get("status") == "oom":
        mem = (record.get("environment") or {}).get("memory_mib")
        return Measured(mem / 1024 if mem else None, "GiB", f"ran out of memory ({where})", device, gpu_of(record),
                        bound="lower", note="oom: needs more than the device holds")
    if record.get("status") != "ok":
        return Measured(None, "GiB", f"{where} is {record.get('status')}", device, gpu_of(record))
    mem = record.get("memory") or {}
    if quantity == "weights":
        after = mem.get("after_load") or {}
        key = "cuda_allocated_mib" if "cuda_allocated_mib" in after else "host_rss_mib"
        value = after.get(key)
        return Measured(value / 1024 if value is not None else None, "GiB", f"memory.after_load.{key}, {where}",
                        device, gpu_of(record))
    peak = mem.get("train_peak") or {}
    counter = next((c for c in MEMORY_COUNTERS if peak.get(c) is not None), None)
    if counter is None:
        return Measured(None, "GiB", f"{where} has no training peak", device, gpu_of(record))
    shape = (record.get("train") or {}).get("max_batch_shape") or [None, None]
    seq = ((record.get("config") or {}).get("train") or {}).get("max_seq_len") or 0
    note = ""
    if shape[1] is not None and seq and shape[1] < FULL_LENGTH * seq:
        note = f"its longest rows were {shape[1]} of {seq} tokens: not a full-length figure"
    value = peak[counter] / 1024
    if quantity == "overhead" and model_terms_gib is not None:
        return Measured(value - model_terms_gib, "GiB", f"{counter} minus the planner's model terms, {where}", device,
                        gpu_of(record), note=note)
    return Measured(value, "GiB", f"{counter}, {where}", device, gpu_of(record), note=note)


def rate(record: Dict[str, Any]) -> Measured:
    """A record's all-token throughput (tokens/s), with its MFU where the device matched the catalogue."""
    train = record.get("train") or {}
    value = train.get("all_tokens_per_s") if record.get("status") == "ok" else None
    mfu = (record.get("efficiency") or {}).get("mfu")
    return Measured(value, "tokens/s", f"train.all_tokens_per_s, record {_short(record)}", device_of(record),
                    gpu_of(record), note=f"MFU {mfu:.1%}" if mfu else "")


def median_rate(records: List[Dict[str, Any]], gpu: Optional[str] = None) -> Optional[Measured]:
    """The median measured throughput of ok records (on ``gpu`` when given), or None."""
    rates = [rate(r) for r in records if r.get("status") == "ok" and (gpu is None or gpu_of(r) == gpu)]
    rates = [m for m in rates if m.value]
    if not rates:
        return None
    value = statistics.median(m.value for m in rates)
    return Measured(value, "tokens/s", rates[0].source + (f" (median of {len(rates)})" if len(rates) > 1 else ""),
                    rates[0].device, rates[0].gpu, note=rates[0].note)


def mfu(records: List[Dict[str, Any]]) -> Optional[Measured]:
    """The MFU an ok GPU record measured (efficiency.mfu), for a rate on another catalogue GPU."""
    for r in records:
        value = (r.get("efficiency") or {}).get("mfu")
        if r.get("status") == "ok" and device_of(r) == "cuda" and value:
            return Measured(float(value), "", f"efficiency.mfu on {gpu_of(r)}, record {_short(r)}", "cuda", gpu_of(r))
    return None


def power_w(records: List[Dict[str, Any]], gpu: str) -> Optional[Measured]:
    """Average board power (NVML energy / training time) of an ok record on ``gpu``."""
    for r in records:
        value = (r.get("efficiency") or {}).get("avg_power_w")
        if r.get("status") == "ok" and gpu_of(r) == gpu and value:
            return Measured(float(value), "W", f"efficiency.avg_power_w, record {_short(r)}", "cuda", gpu)
    return None


def adapter_file_bytes(record: Dict[str, Any]) -> Optional[int]:
    """Size of the saved adapter's weights file (artifacts.bytes), None when the record has none."""
    files = ((record.get("artifacts") or {}).get("bytes")) or {}
    sizes = [v for k, v in files.items() if str(k).endswith(".safetensors") and isinstance(v, int)]
    return sum(sizes) if sizes else None


def real_weights(record: Dict[str, Any]) -> bool:
    """True for a record of pretrained (hub) weights: only those have a quality figure worth reading."""
    model = (record.get("config") or {}).get("model") or {}
    return not model.get("tiny") and (record.get("model") or {}).get("weights", model.get("weights")) == "pretrained"


def score(record: Dict[str, Any], quantity: str) -> Optional[float]:
    """A quality figure of a record: MMLU accuracy in points, MT-Bench score, AlpacaEval LC win rate (%)."""
    for row in record.get("metrics") or []:
        value, name, task = row.get("value"), str(row.get("metric", "")), str(row.get("task", ""))
        if not isinstance(value, (int, float)) or name.endswith(("_base", "_delta", "_se")):
            continue
        if quantity == "mmlu" and task.startswith("mmlu") and name.split(",")[0] == "acc" and task in ("mmlu", "mmlu_local"):
            return 100.0 * value
        if quantity == "mt_bench" and row.get("evaluator") == "mt_bench" and name == "mt_bench" and task == "mt_bench":
            return float(value)
        if quantity == "alpaca_eval" and row.get("evaluator") == "alpaca_eval" and name == "lc_win_rate":
            return float(value)
    return None
