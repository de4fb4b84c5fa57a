"""What a cell ran on: library versions, device, driver, git sha. Cheap and side-effect free."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, Optional

LIBRARIES = ("torch", "transformers", "peft", "trl", "bitsandbytes", "datasets", "accelerate", "hydra-core", "lm_eval", "unsloth")


def library_versions() -> Dict[str, Optional[str]]:
    """Installed versions of the libraries that shape a result (None when absent)."""
    versions: Dict[str, Optional[str]] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_sha(folder: Optional[Path] = None) -> Optional[str]:
    """Commit of the harness checkout (with ``-dirty`` when it has local changes), or None."""
    folder = folder or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder, capture_output=True, text=True, timeout=5)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def device_info(device: str) -> Dict[str, Any]:
    """Device name, memory, CUDA and driver versions (worker only: imports torch)."""
    import torch

    info: Dict[str, Any] = {"device": device, "torch_threads": torch.get_num_threads()}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(
            name=props.name,
            memory_mib=props.total_memory / 2**20,
            capability=f"{props.major}.{props.minor}",
            cuda_version=torch.version.cuda,
            cudnn_version=torch.backends.cudnn.version(),
            driver_version=_nvidia_driver(),
            allocator_conf=os.environ.get("PYTORCH_CUDA_ALLOC_CONF") or os.environ.get("PYTORCH_ALLOC_CONF"),
        )
    else:
        info.update(name=platform.processor() or platform.machine(), cpu_count=os.cpu_count(), cpu_model=_cpu_model())
    # allocator and threading settings change what memory and speed figures mean
    info["allocator_env"] = {k: os.environ[k] for k in ALLOCATOR_ENV if k in os.environ}
    return info


ALLOCATOR_ENV = ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF", "MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_",
                 "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "CUDA_LAUNCH_BLOCKING")
"""Environment variables recorded verbatim when set (memory allocator, threads, visible devices)."""


def _cpu_model() -> Optional[str]:
    """The CPU's model name from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _nvidia_driver() -> Optional[str]:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: str) -> Dict[str, Any]:
    """The record's environment block."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "libraries": library_versions(),
        "git_sha": git_sha(),
        **device_info(device),
        **_launch(),
        "worker": _worker(),
    }


def _worker() -> str:
    """``warm`` (forked from a template) or ``spawn`` (a fresh interpreter): how the worker started."""
    from harness.store.launch import worker_kind

    return worker_kind()


def _launch() -> Dict[str, Any]:
    """``launch``: how many cells ran at once, threads per cell, the leased GPU (harness.sweep.launch), when set."""
    from harness.store.launch import from_env

    block = from_env()
    return {"launch": block} if block is not None else {}
