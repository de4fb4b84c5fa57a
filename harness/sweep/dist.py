"""Parent side of a ``dist`` cell: its rank count resolved before the cell is identified, and what this machine
cannot run, said before any worker starts (``harness.worker.ranks`` launches the ranks)."""

from __future__ import annotations

import importlib.util
from typing import Any, Dict, Optional

from harness.errors import ConfigError
from harness.store.identity import visible_gpu_count


def resolve(config: Dict[str, Any], device: str) -> Dict[str, Any]:
    """``config`` with ``dist.processes`` filled in when null: the GPUs visible to the cell times ``dist.nodes``.

    ``device`` is the cell's device class (``cpu`` or ``cuda:<name>``); a CPU cell has no GPUs to count, so it
    must name its ranks. The count is part of the cell's identity, so it is fixed here, in the parent.
    """
    dist = config.get("dist") or {}
    if dist.get("strategy", "none") == "none" or dist.get("processes") is not None:
        return config
    if device == "cpu":
        raise ConfigError(f"dist.processes: dist={dist['strategy']} on a CPU cell has no GPUs to count; set dist.processes=K")
    count = visible_gpu_count()
    if not count:
        raise ConfigError("dist.processes: nvidia-smi shows no GPU visible to this cell; set dist.processes=K")
    return {**config, "dist": {**dist, "processes": count * int(dist.get("nodes") or 1)}}


def problem(config: Dict[str, Any], device: str) -> Optional[str]:
    """One line saying why this machine cannot run the cell's strategy (the cell ends ``unsupported``), or None."""
    dist = config.get("dist") or {}
    strategy = dist.get("strategy", "none")
    if strategy == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        return "dist=deepspeed: DeepSpeed is not installed in the harness's environment; install it with: pip install deepspeed"
    if strategy != "none" and (config.get("run") or {}).get("memory_cap_gib") is not None:
        return ("run.memory_cap_gib: not with dist: the cap emulates one smaller device for one process (on CPU it would "
                "watch all ranks as one process tree); drop the cap, or plan per GPU with python -m harness.plan")
    per_node = int(dist.get("processes") or 1) // int(dist.get("nodes") or 1)
    if strategy != "none" and device != "cpu" and per_node > visible_gpu_count():
        return (f"dist.processes={dist.get('processes')}: {per_node} ranks per node but {visible_gpu_count()} GPU(s) visible "
                "to the cell (one rank per GPU; CUDA_VISIBLE_DEVICES or the allocation decides)")
    if strategy in ("fsdp", "deepspeed") and device == "cpu":
        return (f"dist={strategy}: accelerate enables {strategy.upper() if strategy == 'fsdp' else 'DeepSpeed'} only on "
                "GPUs (on CPU ranks it would train DDP instead); run it with run.device=cuda, or use dist=ddp on CPU")
    return None


def worker_mode(config: Dict[str, Any], mode: str) -> str:
    """A dist cell's worker is always spawned: it launches ranks, and a fork of the warm template would not help them."""
    return "spawn" if (config.get("dist") or {}).get("strategy", "none") != "none" else mode
