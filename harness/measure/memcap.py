"""``run.memory_cap_gib``: emulate a smaller device, so "does it fit on a 24 GB card?" is measured on a bigger one.

- **CPU**: the parent watches the worker's resident memory -- VmRSS of the worker and every
  process under it, from /proc, every ``POLL_S`` in a thread (``Watchdog``). Past the cap it
  SIGKILLs the worker's process group and the cell ends ``oom`` with ``oom.reason:
  memory_cap`` and a one-line error naming the cap and the RSS reached; never ``crashed``.
  An address-space limit (RLIMIT_AS) cannot do this: torch maps ~1.5 GiB of virtual memory
  for 0.5 GiB resident. The watchdog samples, so the RSS reached may overshoot the cap by
  what the worker allocates in one interval.
- **CUDA**: the worker, before the model loads, creates the CUDA context, measures it
  (this process's device memory by NVML, else the device's memory in use, minus what
  torch's allocator reserved), and calls
  ``torch.cuda.set_per_process_memory_fraction((cap - context) / total)``: the caching
  allocator then refuses to grow past the cap, torch raises its own out-of-memory error and
  the cell ends ``oom`` (reason ``memory_cap``). A cap at or above the device's memory is
  not in force (the record says so); one below the context ends the cell ``oom`` at once.

Records carry ``memory_cap``: ``gib``, ``mechanism``, ``in_force`` and what was measured
(the watchdog's peak RSS; the context, total and fraction). A capped cell's identity
includes the cap (``harness.store.identity``), so a result under a cap is never reused as one
without it, or under another cap. Light: the parent imports this module (no torch).
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

GIB = 1 << 30
MIB = 1 << 20
POLL_S = 0.05
"""How often the CPU watchdog reads the worker's resident memory."""
REASON = "memory_cap"
"""``oom.reason`` of a cell the cap ended."""
WATCHDOG = "host_rss_watchdog"
FRACTION = "cuda_memory_fraction"
PROC = Path("/proc")


def cap_of(config: Dict[str, Any]) -> Optional[float]:
    """``run.memory_cap_gib`` of a resolved config (None: no cap)."""
    cap = (config.get("run") or {}).get("memory_cap_gib")
    return None if cap is None else float(cap)


# ---- CPU: the parent's watchdog --------------------------------------------------------------


def rss_bytes(pid: int, proc: Path = PROC) -> Optional[int]:
    """VmRSS of one process in bytes; None when it is gone or unreadable (a zombie has no VmRSS line)."""
    try:
        with open(proc / str(pid) / "status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) << 10
    except (OSError, ValueError, IndexError):
        return None
    return None


def children(pid: int, proc: Path = PROC) -> List[int]:
    """Direct children of a process, from each of its threads' ``children`` file (Linux 3.5+)."""
    out: List[int] = []
    try:
        tasks = list((proc / str(pid) / "task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out += [int(word) for word in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return out


def tree_rss(pid: int, proc: Path = PROC) -> Optional[int]:
    """Resident bytes of ``pid`` and every process under it (shared pages counted in each); None once it is gone."""
    own = rss_bytes(pid, proc)
    if own is None:
        return None
    total, seen, todo = own, {pid}, children(pid, proc)
    while todo:
        child = todo.pop()
        if child in seen:
            continue
        seen.add(child)
        total += rss_bytes(child, proc) or 0
        todo += children(child, proc)
    return total


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)  # the worker leads its own process group (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass


class Watchdog:
    """Polls a worker's resident memory in a thread; past ``cap_gib`` kills the worker's group and remembers the RSS."""

    def __init__(self, cap_gib: float, poll_s: float = POLL_S, read: Callable[[int], Optional[int]] = tree_rss,
                 kill: Callable[[int], None] = _kill_group) -> None:
        self.cap_gib = float(cap_gib)
        self.poll_s = poll_s
        self._read, self._kill = read, kill
        self.peak_bytes = 0
        self.tripped_bytes: Optional[int] = None
        """The RSS that passed the cap (None: the worker stayed under it)."""
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def cap_bytes(self) -> int:
        return int(self.cap_gib * GIB)

    def check(self, pid: int) -> bool:
        """One reading; True when it passed the cap (the worker's group is then killed)."""
        rss = self._read(pid)
        if rss is None:
            return False
        self.peak_bytes = max(self.peak_bytes, rss)
        if rss <= self.cap_bytes:
            return False
        self.tripped_bytes = rss
        self._kill(pid)
        return True

    def _loop(self, pid: int) -> None:
        while not self._stop.is_set():
            if self.check(pid):
                return
            self._stop.wait(self.poll_s)

    def start(self, pid: int) -> "Watchdog":
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, args=(pid,), name="memory-cap-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    @property
    def tripped(self) -> bool:
        return self.tripped_bytes is not None

    def error(self) -> str:
        """The one-line error of a cell the watchdog ended."""
        reached = (self.tripped_bytes or 0) / MIB
        return (f"out of memory under run.memory_cap_gib={self.cap_gib:g} ({self.cap_bytes / MIB:.0f} MiB): the worker's "
                f"resident memory reached {reached:.0f} MiB and the cap's watchdog killed it")

    def block(self) -> Dict[str, Any]:
        """What the record says about the cap: in force, what the watchdog saw, whether it ended the cell."""
        return {"gib": self.cap_gib, "mechanism": WATCHDOG, "in_force": True, "poll_s": self.poll_s,
                "peak_rss_mib": round(self.peak_bytes / MIB, 1) if self.peak_bytes else None,
                "tripped": self.tripped,
                "rss_reached_mib": round(self.tripped_bytes / MIB, 1) if self.tripped_bytes else None}


def watchdog_for(config: Dict[str, Any], device_class: str) -> Optional[Watchdog]:
    """The CPU watchdog for a capped cell that trains on the CPU; None otherwise (a CUDA cap is the worker's)."""
    cap = cap_of(config)
    if cap is None or str(device_class).split(":")[0] != "cpu":
        return None
    return Watchdog(cap)


# ---- CUDA: the worker's memory fraction -----------------------------------------------------


class CapBelowContext(MemoryError):
    """``run.memory_cap_gib`` leaves nothing for the model once the CUDA context is counted (a MemoryError: oom)."""


def cuda_fraction(cap_bytes: float, context_bytes: float, total_bytes: float) -> Optional[float]:
    """(cap - context) / total: the share of the device torch's allocator may reserve; None when the cap is
    at or above the device (not in force). Raises CapBelowContext when the context alone fills the cap."""
    fraction = (cap_bytes - context_bytes) / total_bytes
    if cap_bytes >= total_bytes:
        return None
    if fraction <= 0:
        raise CapBelowContext(
            f"run.memory_cap_gib={cap_bytes / GIB:g}: the CUDA context alone takes {context_bytes / MIB:.0f} MiB, "
            "nothing is left under the cap")
    return fraction


def apply_cuda_cap(cap_gib: float, cuda: Any, device_index: int = 0, process_used: Optional[int] = None) -> Dict[str, Any]:
    """Set the per-process memory fraction for ``cap_gib`` on an initialised CUDA device; return the record's block.

    ``cuda`` is ``torch.cuda`` (or a fake with ``mem_get_info``, ``memory_reserved`` and
    ``set_per_process_memory_fraction``), its context already created. The context is this
    process's device memory (``process_used``, NVML's figure for this PID) minus what torch's
    allocator reserved; without NVML, the device's memory in use minus the reserve (the
    device taken to be otherwise idle; ``context_method`` says which).
    """
    free, total = cuda.mem_get_info(device_index)
    used = int(total) - int(free) if process_used is None else int(process_used)
    context = used - int(cuda.memory_reserved(device_index))
    block: Dict[str, Any] = {
        "gib": float(cap_gib), "mechanism": FRACTION, "total_mib": round(total / MIB, 1), "context_mib": round(context / MIB, 1),
        "context_method": "NVML memory of this process minus torch's reserved" if process_used is not None
        else "device memory in use minus torch's reserved (device taken to be otherwise idle)",
    }
    try:
        fraction = cuda_fraction(float(cap_gib) * GIB, context, total)
    except CapBelowContext as exc:
        exc.block = {**block, "in_force": True, "fraction": 0.0}
        raise
    if fraction is None:
        return {**block, "in_force": False, "fraction": None,
                "not_in_force": f"the device has {total / GIB:.1f} GiB, not more than the cap"}
    cuda.set_per_process_memory_fraction(fraction, device_index)
    return {**block, "in_force": True, "fraction": fraction}


def apply_in_worker(cap_gib: Optional[float], device: str, runner: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """The worker's part, before the model loads: the memory fraction on CUDA; on CPU only the record's block
    (the parent's watchdog enforces it and fills in ``in_force``). ``runner``: the framework whose own runner
    process trains (LitGPT), which a fraction set in this process does not reach: not in force there."""
    if cap_gib is None:
        return None
    if device != "cuda":
        return {"gib": float(cap_gib), "mechanism": WATCHDOG}
    if runner:
        return {"gib": float(cap_gib), "mechanism": FRACTION, "in_force": False,
                "not_in_force": f"framework={runner} trains in its own runner process, which the fraction does not reach"}
    import torch

    torch.empty(1, device="cuda:0")  # creates the context (the worker trains on cuda:0)
    torch.cuda.synchronize(0)
    return apply_cuda_cap(cap_gib, torch.cuda, 0, _process_used())


def _process_used() -> Optional[int]:
    """This process's device memory by NVML (context + torch's reserve), or None without NVML or a visible PID."""
    try:
        from harness.measure.meters import cuda_monitor

        monitor = cuda_monitor()
        if not monitor._open():
            return None
        monitor._sample()
        return monitor.process_peak
    except Exception:  # noqa: BLE001 - no pynvml, no driver library: measured without it
        return None


def oom_reason(cap_block: Optional[Dict[str, Any]], exc: Optional[BaseException] = None) -> Dict[str, Any]:
    """The record's ``oom`` block for an out-of-memory error in the worker: the cap's, when one was in force on CUDA
    (or it left nothing beside the context), else the allocator's."""
    if isinstance(exc, CapBelowContext) or (cap_block and cap_block.get("in_force")):
        return {"reason": REASON, "memory_cap_gib": (cap_block or getattr(exc, "block", None) or {}).get("gib")}
    return {"reason": "allocator"}


def on_oom(record: Dict[str, Any], exc: BaseException) -> None:
    """The worker's training record after an out-of-memory error: why (``oom``), and the cap's block when the cap
    left nothing beside the CUDA context (raised before the block was recorded)."""
    if isinstance(exc, CapBelowContext) and getattr(exc, "block", None):
        record.setdefault("memory_cap", exc.block)
    record["oom"] = oom_reason(record.get("memory_cap"), exc)


def settle(record: Dict[str, Any], watch: Optional[Watchdog], ours: bool) -> None:
    """The parent's part of a training record: the watchdog's block (in force, what it saw), and for a worker
    that died without a record of its own, why an ``oom`` was one (the cap, or the kernel's OOM killer)."""
    if watch is not None:
        record["memory_cap"] = {**(record.get("memory_cap") or {}), **watch.block()}
    if not ours and record.get("status") == "oom":
        if watch is not None and watch.tripped:
            record["oom"] = {"reason": REASON, "memory_cap_gib": watch.cap_gib,
                             "rss_reached_mib": round((watch.tripped_bytes or 0) / MIB, 1)}
        else:
            record["oom"] = {"reason": "oom_killer"}
