"""Per-GPU fit, largest batch and sequence, and time and cost for the configured dataset or ``--examples N``.

Throughput comes from measured records of the same cell on the same catalogue device when
there are any (all non-padding tokens/s); otherwise from an MFU assumption stated in the
output: tokens/s = MFU x dense bf16 peak / model FLOPs per token (harness.plan.flops).

A ``dist`` cell's table answers "how many of which GPU": per GPU the smallest rank count k that holds it
(``harness.plan.dist.K_CHOICES``), the fit at the requested k (or at that smallest k when dist.processes is null),
and a step time = max(compute, communication): communication is assumed to overlap compute fully (FSDP's prefetch,
DDP's bucketed all-reduce); their sum is the no-overlap bound, and both parts are in the row.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from harness.config.hardware import Hardware, match_device
from harness.data.load import read_file, resolve_path, source_files
from harness.errors import DataError
from harness.plan.dist import DistSetting, comm_seconds, link, nodes_for, predict_dist, smallest_k
from harness.plan.flops import flops_per_token
from harness.plan.memory import predict
from harness.plan.setting import Cell, Coefficients

DEFAULT_MFU = 0.35
"""Assumed MFU of a bf16 step: the low end of the 33-46 % torchtitan / llm-foundry report for
full fine-tuning of 7-8B models on H100 (shared anchors)."""
QUANT_SPEED = {"none": 1.0, "4bit": 0.56, "8bit": 0.5}
"""Throughput relative to a bf16 base. 4bit: ms-swift's A100 benchmark, 2.41 vs 4.31 samples/s
for LoRA on an int4 vs bf16 base. 8bit: assumed (LLM.int8 matmuls are slow), no anchor."""
CHARS_PER_TOKEN = 4.0
"""Rough English BPE ratio used only when no record gives the dataset's token count."""
SEARCH_LIMIT = 1 << 16


def _largest(fits, low: int, high: int) -> int:
    """Largest n in [low, high] with fits(n) true, assuming monotonic; low - 1 when none."""
    if not fits(low):
        return low - 1
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    return low


def assumed_mfu(cell: Cell, base: float, seq: int, adapter_params: int) -> Tuple[float, str]:
    """MFU assumption for a cell and the words that state it."""
    quant = QUANT_SPEED.get(cell.quant.mode, 1.0)
    mfu = base * quant
    words = f"assumed MFU {base:.0%}"
    if quant != 1.0:
        words += f" x {quant} for {cell.quant.mode} weights"
    if cell.train.gradient_checkpointing:
        # the recomputed forward costs time but is not model FLOPs
        full = cell.peft.method == "full"
        model = flops_per_token(cell.model, seq, adapter_params, full)
        extra = flops_per_token(cell.model, seq, 0, True) - flops_per_token(cell.model, seq, 0, False)  # 2N
        attn_fwd = model - (flops_per_token(cell.model, 0, adapter_params, full))
        recompute = extra + attn_fwd / 3.0
        factor = model / (model + recompute)
        mfu *= factor
        words += f" x {factor:.2f} for recomputation"
    return mfu, words


def _measured(data: Dict[str, Any], records: List[Dict[str, Any]], model_name: str) -> Optional[Tuple[Dict[str, Any], str]]:
    """The training-split statistics of a record with the same data and model, and its cell id; None when none has."""
    for record in records:
        cfg = record.get("config", {})
        if cfg.get("data") == data and cfg.get("model", {}).get("name") == model_name:
            train = record.get("data", {}).get("train", {})
            if train.get("tokens"):
                return train, str(record.get("cell_id"))
    return None


def _data_name(data: Dict[str, Any]) -> str:
    """How the output names a data config: data=synthetic, the bundled chat set, a file or a hub dataset."""
    if data.get("synthetic"):
        return f"data=synthetic ({data.get('seq_len')}-token rows)"
    if data.get("hub_id"):
        return f"data.hub_id={data['hub_id']}"
    if data.get("path") is None:
        return "the bundled chat set"
    return resolve_path(data.get("path")).name


def dataset_tokens(data: Dict[str, Any], records: List[Dict[str, Any]], model_name: str) -> Tuple[Optional[float], str]:
    """Non-padding tokens in the training split, and where the figure comes from."""
    if data.get("synthetic"):  # exact: every row is seq_len tokens
        count = min(int(data["examples"]), int(data.get("max_examples") or data["examples"]))
        return float(count * int(data["seq_len"])), f"data=synthetic: {count} examples x {data['seq_len']} tokens"
    found = _measured(data, records, model_name)
    if found is not None:
        return float(found[0]["tokens"]), f"measured in record {found[1]}"
    if data.get("hub_id"):  # never stand in the bundled file for a hub dataset
        return None, "data.hub_id is not read offline; --sweeps with a record of it gives its size"
    path = resolve_path(data.get("path"))
    try:
        chars, examples = _count_chars(path)
    except (OSError, ValueError, DataError) as exc:
        return None, f"unknown ({type(exc).__name__} reading {path})"
    train_share = 1.0 - float(data.get("val_fraction", 0.1)) - float(data.get("test_fraction", 0.1))
    kept = examples * train_share
    if data.get("max_examples"):
        kept = min(kept, float(data["max_examples"]))
    share = kept / examples if examples else 0.0
    return chars * share / CHARS_PER_TOKEN, f"estimated from {path.name}: {chars:,} characters / {CHARS_PER_TOKEN:g} per token"


def tokens_per_example(data: Dict[str, Any], records: List[Dict[str, Any]], model_name: str, max_seq_len: int,
                       lengths: Optional[Callable[[], Tuple[Optional[float], str]]] = None) -> Tuple[float, str]:
    """Tokens in one training example, for ``--examples``, and where the figure comes from.

    In order: data=synthetic's seq_len (exact); a record of the same data and model
    (measured); the user's own files (data.path): ``lengths()`` (the cell's tokenizer,
    ``harness.plan.lengths``), else characters / CHARS_PER_TOKEN per record when it cannot,
    cut at train.max_seq_len as training cuts them; else train.max_seq_len, an upper bound
    that matches the memory prediction's "every sequence at full length". The bundled chat
    set is not the user's data, so it never stands in for it.
    """
    if data.get("synthetic"):
        return float(data["seq_len"]), "data=synthetic: exact"
    found = _measured(data, records, model_name)
    if found is not None and found[0].get("examples"):
        train, cell = found
        return train["tokens"] / train["examples"], f"measured: mean of {train['examples']} examples in record {cell}"
    if data.get("path") is not None:
        measured, fallback = lengths() if lengths is not None else (None, "")
        if measured is not None:
            return measured, fallback
        path = resolve_path(data["path"])
        try:
            lengths = [min(chars / CHARS_PER_TOKEN, max_seq_len) for chars in _record_chars(path)]
        except (OSError, ValueError, DataError) as exc:
            lengths, why = [], f"{type(exc).__name__} reading {path}"
        else:
            why = f"{path} has no records"
        if lengths:
            why_not = f"{fallback}, so " if fallback else ""
            return (sum(lengths) / len(lengths), f"{why_not}estimated from {path.name}: mean of {len(lengths)} records, "
                    f"{CHARS_PER_TOKEN:g} characters per token, cut at train.max_seq_len={max_seq_len}")
        return float(max_seq_len), f"assumed train.max_seq_len={max_seq_len} ({why})"
    unread = "data.hub_id is not read offline; " if data.get("hub_id") else ""
    return float(max_seq_len), (f"assumed train.max_seq_len={max_seq_len}, an upper bound; {unread}"
                                "data.path=YOUR_FILE gives your data's own mean")


def dataset_plan(data: Dict[str, Any], records: List[Dict[str, Any]], model_name: str, max_seq_len: int,
                 examples: Optional[int] = None, given_tokens: Optional[float] = None,
                 lengths: Optional[Callable[[], Tuple[Optional[float], str]]] = None) -> Dict[str, Any]:
    """What the time and cost are for: training tokens, examples, tokens per example, their sources, one line saying
    so (``for``) and what else the user could ask (``hint``).

    ``given_tokens`` (``--dataset-tokens``) wins; then ``examples`` (``--examples``) x tokens per
    example; else the configured data set's training split.
    """
    if given_tokens:
        return {"train_tokens": float(given_tokens), "source": "given by --dataset-tokens", "examples": None,
                "tokens_per_example": None, "for": f"{given_tokens:,.0f} training tokens (--dataset-tokens)", "hint": None}
    if examples:
        per, source = tokens_per_example(data, records, model_name, max_seq_len, lengths)
        return {"train_tokens": examples * per, "source": f"--examples {examples} x tokens per example ({source})",
                "examples": examples, "tokens_per_example": per,
                "for": f"{examples:,} examples x {per:,.0f} tokens each = {examples * per:,.0f} training tokens "
                       f"(tokens per example: {source})", "hint": None}
    tokens, source = dataset_tokens(data, records, model_name)
    name = _data_name(data)
    described = f"{name}: {tokens:,.0f} training tokens ({source})" if tokens else f"{name}: training tokens unknown ({source})"
    hint = "--examples N plans N examples instead" if tokens else "give --examples N or --dataset-tokens for hours and USD"
    return {"train_tokens": tokens, "source": source, "examples": None, "tokens_per_example": None, "for": described,
            "hint": hint}


_CHARS: Dict[Tuple[Tuple[str, int, int], ...], List[int]] = {}
"""``_record_chars`` memoised per file state: every point of a grid (``harness.plan -m``) plans the same data."""


def _record_chars(path: Path) -> List[int]:
    """Characters of every string value of each record of a data file or folder, read as training reads it
    (memoised on each file's path, size and modification time)."""
    files = list(source_files(path))
    state = tuple((str(file), file.stat().st_size, file.stat().st_mtime_ns) for file in map(Path, files))
    if state not in _CHARS:
        _CHARS[state] = _read_chars(files)
    return list(_CHARS[state])


def _read_chars(files: List[Any]) -> List[int]:
    """``_record_chars`` of these files, read now."""

    def strings(node: Any) -> int:
        if isinstance(node, str):
            return len(node)
        if isinstance(node, dict):
            return sum(strings(v) for v in node.values())
        if isinstance(node, list):
            return sum(strings(v) for v in node)
        return 0

    return [strings(item.row) for file in files for item in read_file(file)[1] if item.problem is None]


def _count_chars(path: Path) -> Tuple[int, int]:
    """(characters of every string value, records) of a data file or folder."""
    counts = _record_chars(path)
    return sum(counts), len(counts)


IDENTITY = (("model", "name"), ("peft", "method"), ("quant", "mode"), ("lora", "r"), ("lora", "target"),
            ("train", "batch_size"), ("train", "max_seq_len"), ("train", "gradient_checkpointing"),
            ("framework", "backend"))


def _same_cell(a: Dict[str, Any], b: Dict[str, Any]) -> bool:
    return all(a.get(g, {}).get(k) == b.get(g, {}).get(k) for g, k in IDENTITY)


def measured_throughput(config: Dict[str, Any], records: Iterable[Dict[str, Any]], catalogue: Dict[str, Hardware]) -> Dict[str, Dict[str, Any]]:
    """Catalogue name -> median measured all-token throughput of ok records of the same cell on that device."""
    found: Dict[str, List[float]] = {}
    for record in records:
        if record.get("status") != "ok" or not _same_cell(record.get("config", {}), config):
            continue
        if (record["config"].get("dist") or {}).get("strategy", "none") != "none":  # a per-GPU rate: one process only
            continue
        env = record.get("environment", {})
        memory = env.get("memory_mib")
        entry = match_device(env.get("name"), catalogue, memory / 1024 if memory else None)
        rate = record.get("train", {}).get("all_tokens_per_s")
        if entry is not None and rate:
            found.setdefault(entry.name, []).append(float(rate))
    return {name: {"tokens_per_s": statistics.median(v), "records": len(v)} for name, v in found.items()}


def adapter_count(cell: Cell) -> int:
    """Trainable adapter parameters of a LoRA/DoRA cell; 0 for a full fine-tune."""
    from harness.config.peft import lora_target_modules
    from harness.plan.params import adapter_params

    if cell.peft.method not in ("lora", "dora"):
        return 0
    modules = lora_target_modules(cell.model.arch, cell.lora)
    return adapter_params(cell.model, modules, cell.lora.r, cell.peft.method == "dora")


def assumed_rate(cell: Cell, hw: Hardware, mfu: float, seq: Optional[float] = None) -> Tuple[float, str]:
    """Tokens/s of ``cell`` on ``hw`` under the MFU assumption at sequence length ``seq`` (default
    train.max_seq_len: attention FLOPs per token grow with it), and the words that state it."""
    n_adapter = adapter_count(cell)
    s = int(seq or cell.train.max_seq_len)
    cell_mfu, source = assumed_mfu(cell, mfu, s, n_adapter)
    if seq is not None and int(seq) != cell.train.max_seq_len:
        source += f", at {s} tokens per sequence"
    return cell_mfu * hw.bf16_tflops * 1e12 / flops_per_token(cell.model, s, n_adapter, n_adapter == 0), source


def gpu_table(
    cell: Cell,
    catalogue: Dict[str, Hardware],
    coeff: Optional[Coefficients],
    tokens: Optional[float],
    throughput: Dict[str, Dict[str, Any]],
    mfu: float = DEFAULT_MFU,
    dist: Optional[DistSetting] = None,
    rate_seq: Optional[float] = None,
    **options: Any,
) -> List[Dict[str, Any]]:
    """One row per catalogue GPU: fit, headroom, largest batch and sequence, throughput, time, cost (``dist``: per GPU
    of k ranks, the smallest k that fits, communication and the whole cell's throughput, time and cost).

    ``rate_seq``: the sequence length the assumed throughput is for (``--examples``: the data's tokens per example);
    default train.max_seq_len."""
    n_adapter = adapter_count(cell)
    b, s = cell.train.batch_size, cell.train.max_seq_len
    rows = []
    for hw in catalogue.values():
        if hw.kind != "gpu":
            continue
        if dist is not None:
            rows.append(_dist_row(cell, hw, coeff, tokens, throughput, mfu, dist, n_adapter, options))
            continue
        capacity = hw.memory_gib * 1024

        def fits(batch: int, seq: int, capacity: float = capacity) -> bool:
            return predict(cell, "cuda", batch=batch, seq=seq, coeff=coeff, **options).device_total_mib <= capacity

        p = predict(cell, "cuda", coeff=coeff, **options)
        max_seq_cap = max(cell.model.max_position_embeddings, s)
        row: Dict[str, Any] = {
            "gpu": hw.name,
            "memory_gib": hw.memory_gib,
            "predicted_gib": p.device_total_mib / 1024,
            "fits": p.device_total_mib <= capacity,
            "headroom_gib": (capacity - p.device_total_mib) / 1024,
            "max_batch": _largest(lambda n: fits(n, s), 1, SEARCH_LIMIT),
            "max_seq": _largest(lambda n: fits(b, n), 1, max_seq_cap),
        }
        if hw.name in throughput:
            rate, source = throughput[hw.name]["tokens_per_s"], f"measured ({throughput[hw.name]['records']} records)"
        else:
            rate, source = assumed_rate(cell, hw, mfu, rate_seq)
        row.update(tokens_per_s=rate, throughput_source=source)
        hours = tokens / rate / 3600 if tokens and rate and row["fits"] else None
        row.update(
            hours=hours,
            cost_usd=hours * hw.price_usd_per_h if hours is not None and hw.price_usd_per_h is not None else None,
        )
        rows.append(row)
    return rows


def _rate(cell: Cell, hw: Hardware, throughput: Dict[str, Dict[str, Any]], mfu: float, n_adapter: int) -> Tuple[float, str]:
    """One GPU's tokens/s on ``cell`` and where the figure comes from: measured records, else the MFU assumption."""
    if hw.name in throughput:
        return throughput[hw.name]["tokens_per_s"], f"measured ({throughput[hw.name]['records']} records)"
    return assumed_rate(cell, hw, mfu)


def _dist_row(cell: Cell, hw: Hardware, coeff: Optional[Coefficients], tokens: Optional[float],
              throughput: Dict[str, Dict[str, Any]], mfu: float, dist: DistSetting, n_adapter: int,
              options: Dict[str, Any]) -> Dict[str, Any]:
    """One catalogue GPU for a dist cell: smallest k that fits, fit and time at the planned k, the k GPUs' cost."""
    from dataclasses import replace

    capacity = hw.memory_gib * 1024
    b, s, ga = cell.train.batch_size, cell.train.max_seq_len, cell.train.grad_accum

    def at(k: int) -> DistSetting:
        return replace(dist, k=k, nodes=nodes_for(k, dist))

    def need(k: int, batch: Optional[int] = None, seq: Optional[int] = None) -> float:
        return predict_dist(cell, at(k), "cuda", batch=batch, seq=seq, coeff=coeff, **options).device_total_mib

    least = smallest_k(lambda k: need(k) <= capacity)
    k = dist.k if dist.requested or least is None else least
    d = at(k)
    p = predict_dist(cell, d, "cuda", coeff=coeff, **options)
    fits = p.device_total_mib <= capacity
    rate, source = _rate(cell, hw, throughput, mfu, n_adapter)
    compute = ga * b * s / rate if rate else None
    comm = comm_seconds(p.dist["comm_bytes"], hw, d)
    step = max(compute, comm) if compute is not None and comm is not None else None  # overlap assumed
    cell_rate = k * ga * b * s / step if step else None
    hours = tokens / cell_rate / 3600 if tokens and cell_rate and fits else None
    bandwidth, name = link(hw, d)
    return {
        "gpu": hw.name, "memory_gib": hw.memory_gib, "k": k, "nodes": d.nodes, "predicted_gib": p.device_total_mib / 1024,
        "fits": fits, "smallest_k": least, "headroom_gib": (capacity - p.device_total_mib) / 1024,
        "max_batch": _largest(lambda n: need(k, batch=n) <= capacity, 1, SEARCH_LIMIT),
        "max_seq": _largest(lambda n: need(k, seq=n) <= capacity, 1, max(cell.model.max_position_embeddings, s)),
        "link": name if k > 1 else "none (k=1)", "link_gb_per_s": bandwidth if k > 1 else None,
        "compute_s": compute, "comm_s": comm, "step_s": step, "tokens_per_s": cell_rate,
        "throughput_source": f"{source}, per GPU", "hours": hours,
        "cost_usd": hours * k * hw.price_usd_per_h if hours is not None and hw.price_usd_per_h is not None else None,
    }
