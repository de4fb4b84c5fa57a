"""Cost measurement inside the worker: memory counters and step timing.

Every figure is labelled with what it counts. Memory: on CUDA torch's peak allocated and
peak reserved bytes (reset before training) plus NVML's process and device peaks sampled in
the background (harness.measure.nvml); on CPU the worker's peak resident set size (Linux VmHWM,
reset before training through /proc/self/clear_refs). Speed: optimizer-step wall times with
the device synchronised at both ends; throughput excludes the first ``warmup`` steps and
counts tokens from the batches the collator actually built. One throughput figure hides how
noisy it is, so the summary also gives per-step throughput quartiles and the coefficient of
variation of the measured step times, and flags a cell whose CV is above ``run.step_cv_warn``.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional

from harness.measure.nvml import GpuMonitor, cpu_monitor_result

MIB = 1024 * 1024
MIN_SPREAD_STEPS = 8
"""Fewest measured (post-warm-up) steps for which the spread figures are computed; fewer gives n/a."""
DEFINITIONS = {
    "host_peak_rss_mib": "peak resident set size of the worker process (Linux VmHWM), reset just before training, MiB",
    "host_rss_mib": "resident set size of the worker process (Linux VmRSS), MiB",
    "cuda_peak_allocated_mib": "torch.cuda.max_memory_allocated after reset_peak_memory_stats() at train start, MiB",
    "cuda_peak_reserved_mib": "torch.cuda.max_memory_reserved (caching allocator) after reset at train start, MiB",
    "cuda_allocated_mib": "torch.cuda.memory_allocated at that moment, MiB",
    "tokens_per_s": "loss-bearing (trained) tokens per second of optimizer-step time, warm-up steps excluded",
    "all_tokens_per_s": "non-padding tokens per second of optimizer-step time, warm-up steps excluded",
    "samples_per_s": "training sequences per second of optimizer-step time, warm-up steps excluded",
    "tokens_per_s_p25": f"25th percentile over measured steps of per-step throughput (the step's loss-bearing tokens / its time), tokens/s; None with fewer than {MIN_SPREAD_STEPS} measured steps",
    "tokens_per_s_p50": f"median over measured steps of per-step throughput (the step's loss-bearing tokens / its time), tokens/s; None with fewer than {MIN_SPREAD_STEPS} measured steps",
    "tokens_per_s_p75": f"75th percentile over measured steps of per-step throughput (the step's loss-bearing tokens / its time), tokens/s; None with fewer than {MIN_SPREAD_STEPS} measured steps",
    "step_cv": f"coefficient of variation of measured step times: sample standard deviation / mean, dimensionless; None with fewer than {MIN_SPREAD_STEPS} measured steps",
    "step_cv_flag": "True when step_cv > run.step_cv_warn (throughput too noisy to compare as a single number), False when not, None when step_cv is n/a",
    "step_cv_warn": "the run.step_cv_warn threshold step_cv_flag was computed against, dimensionless",
    "spread_note": "why the spread figures (tokens_per_s_p25/p50/p75, step_cv) are n/a; None when they were computed",
    "step_times_s": "wall time of each optimizer step (all micro-batches), device synchronised at both ends",
    "time_to_first_step_s": "from train() call to the end of the first optimizer step",
    "host_rss_at_reset_mib": "worker RSS (VmRSS) when the peak window opened, right before training, MiB",
    "nvml_process_peak_mib": "largest NVML usedGpuMemory of the worker's PID, sampled every nvml_interval_s during training (includes CUDA context and allocator reserve), MiB",
    "nvml_device_peak_mib": "largest NVML used memory of the whole device (all processes), sampled during training, MiB",
    "max_batch_shape": "[batch, padded length] of the micro-batch with the most padded tokens",
    "max_batch_loss_tokens": "loss-bearing tokens in that micro-batch",
    "padded_tokens": "batch x padded length summed over all micro-batches (what the model computed on)",
    "absent": "figures that were not measured, each with the reason",
}


def _proc_status_kib(field_name: str) -> Optional[int]:
    """A ``kB`` field of /proc/self/status (Linux), or None elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_host_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def host_memory() -> Dict[str, Optional[float]]:
    """Current and peak RSS of this process in MiB."""
    rss, hwm = _proc_status_kib("VmRSS"), _proc_status_kib("VmHWM")
    return {
        "host_rss_mib": None if rss is None else rss / 1024,
        "host_peak_rss_mib": None if hwm is None else hwm / 1024,
    }


def cuda_monitor() -> GpuMonitor:
    """A GpuMonitor for torch's current CUDA device (cuda:0, or a rank's LOCAL_RANK device), found by UUID (robust
    to CUDA_VISIBLE_DEVICES)."""
    import torch

    uuid, current = None, 0
    try:
        current = torch.cuda.current_device()
        raw = str(torch.cuda.get_device_properties(current).uuid)
        uuid = raw if raw.startswith("GPU-") else f"GPU-{raw}"
    except (AttributeError, RuntimeError):
        pass
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
    index = visible[current].strip() if current < len(visible) else ""
    return GpuMonitor(device_index=int(index) if index.isdigit() else current, uuid=uuid)


class MemoryMeter:
    """Resets and reads the peak counters of the device a cell trains on."""

    def __init__(self, device: str, monitor_factory: Any = None) -> None:
        self.device = device
        self.host_reset_ok = False
        self.rss_at_reset: Optional[float] = None
        self.monitor: Any = None
        self.monitor_factory = monitor_factory or cuda_monitor
        self.nvml: Dict[str, Any] = {}
        """NVML figures of the last peak window (energy_j included); filled by peak()."""

    def _cuda(self) -> Any:
        import torch

        return torch.cuda

    def snapshot(self) -> Dict[str, Optional[float]]:
        """Current usage, e.g. after the model is loaded."""
        out: Dict[str, Optional[float]] = {"host_rss_mib": host_memory()["host_rss_mib"]}
        if self.device == "cuda":
            out["cuda_allocated_mib"] = self._cuda().memory_allocated() / MIB
        return out

    def reset_peak(self) -> None:
        """Start a new peak window (called right before training)."""
        self.host_reset_ok = reset_host_peak()
        self.rss_at_reset = host_memory()["host_rss_mib"]
        if self.device == "cuda":
            self._cuda().synchronize()
            self._cuda().reset_peak_memory_stats()
            self.monitor = self.monitor_factory().start()

    def peak(self) -> Dict[str, Any]:
        """Peaks since ``reset_peak`` plus the headline figure and the counter it comes from."""
        out: Dict[str, Any] = {"host_peak_rss_mib": host_memory()["host_peak_rss_mib"]}
        out["host_peak_reset"] = self.host_reset_ok
        out["host_rss_at_reset_mib"] = self.rss_at_reset
        if self.device == "cuda":
            cuda = self._cuda()
            cuda.synchronize()
            self.nvml = self.monitor.stop() if self.monitor is not None else cpu_monitor_result("NVML monitor not started")
            self.monitor = None
            out["cuda_peak_allocated_mib"] = cuda.max_memory_allocated() / MIB
            out["cuda_peak_reserved_mib"] = cuda.max_memory_reserved() / MIB
            out["peak_mib"], out["counter"] = out["cuda_peak_allocated_mib"], "cuda_peak_allocated"
        else:
            self.nvml = cpu_monitor_result()
            out["peak_mib"], out["counter"] = out["host_peak_rss_mib"], "host_peak_rss"
        out["nvml_process_peak_mib"] = self.nvml["nvml_process_peak_mib"]
        out["nvml_device_peak_mib"] = self.nvml["nvml_device_peak_mib"]
        out["nvml_interval_s"] = self.nvml["nvml_interval_s"]
        out["absent"] = {k: v for k, v in self.nvml["absent"].items() if k != "energy"}
        return out


@dataclass
class BatchCount:
    """What one micro-batch fed to the model contained."""

    samples: int
    tokens: int
    loss_tokens: int
    padded: int = 0
    """batch x padded length: positions the model actually computed on."""
    seq: int = 0
    """Padded length of the micro-batch."""


@dataclass
class StepMeter:
    """Times optimizer steps and attributes the collated micro-batches to them.

    Batches are counted where the collator builds them and consumed first-in first-out,
    ``grad_accum`` per step, so a data loader that prefetches ahead does not shift counts
    between steps.
    """

    grad_accum: int
    warmup: int
    sync: Any = None
    pending: Deque[BatchCount] = field(default_factory=deque)
    step_times: List[float] = field(default_factory=list)
    step_counts: List[BatchCount] = field(default_factory=list)
    train_start: Optional[float] = None
    first_step_end: Optional[float] = None
    _step_start: Optional[float] = None
    largest: List[BatchCount] = field(default_factory=list)
    cv_warn: Optional[float] = None
    """``run.step_cv_warn``: step_cv above this sets ``step_cv_flag``; None leaves the flag n/a."""

    def _now(self) -> float:
        if self.sync is not None:
            self.sync()
        return time.perf_counter()

    def on_batch(self, samples: int, tokens: int, loss_tokens: int, shape: Optional[tuple] = None) -> None:
        """Called by the collator for each micro-batch it builds (``shape`` = input_ids shape)."""
        batch = BatchCount(samples, tokens, loss_tokens)
        if shape is not None and len(shape) == 2:
            batch.padded, batch.seq = int(shape[0]) * int(shape[1]), int(shape[1])
        self.pending.append(batch)
        # the largest micro-batch seen so far drives the activation peak: keep it
        if not self.largest or (batch.padded, batch.loss_tokens) > (self.largest[0].padded, self.largest[0].loss_tokens):
            self.largest = [batch]

    def train_begin(self) -> None:
        """Mark the start of training (for time to first step)."""
        self.train_start = self._now()

    def step_begin(self) -> None:
        """Mark the start of an optimizer step."""
        self._step_start = self._now()

    def step_end(self) -> None:
        """Mark the end of an optimizer step and take its micro-batches off the queue."""
        end = self._now()
        if self._step_start is not None:
            self.step_times.append(end - self._step_start)
        if self.first_step_end is None:
            self.first_step_end = end
        total = BatchCount(0, 0, 0)
        for _ in range(min(self.grad_accum, len(self.pending))):
            batch = self.pending.popleft()
            total = BatchCount(
                total.samples + batch.samples,
                total.tokens + batch.tokens,
                total.loss_tokens + batch.loss_tokens,
                total.padded + batch.padded,
                max(total.seq, batch.seq),
            )
        self.step_counts.append(total)

    def summary(self) -> Dict[str, Any]:
        """Throughput with warm-up excluded, the raw step times, and their definitions."""
        n = len(self.step_times)
        skip = self.warmup if n > self.warmup else 0
        times = self.step_times[skip:]
        counts = self.step_counts[skip:n]
        seconds = sum(times)

        def rate(value: int) -> Optional[float]:
            return value / seconds if seconds > 0 else None

        spread = self._spread(times, counts)
        return {
            "steps": n,
            "warmup_steps_excluded": skip,
            "measured_steps": len(times),
            "measured_time_s": seconds,
            "tokens_per_s": rate(sum(c.loss_tokens for c in counts)),
            "all_tokens_per_s": rate(sum(c.tokens for c in counts)),
            "samples_per_s": rate(sum(c.samples for c in counts)),
            **spread,
            "trained_tokens": sum(c.loss_tokens for c in self.step_counts),
            "all_tokens": sum(c.tokens for c in self.step_counts),
            "samples": sum(c.samples for c in self.step_counts),
            "time_to_first_step_s": (
                self.first_step_end - self.train_start if self.first_step_end and self.train_start else None
            ),
            "step_times_s": self.step_times,
            "padded_tokens": sum(c.padded for c in self.step_counts),
            "max_batch_shape": (
                [self.largest[0].padded // self.largest[0].seq, self.largest[0].seq]
                if self.largest and self.largest[0].seq else None
            ),
            "max_batch_loss_tokens": self.largest[0].loss_tokens if self.largest and self.largest[0].seq else None,
        }

    def _spread(self, times: List[float], counts: List[BatchCount]) -> Dict[str, Any]:
        """Per-step throughput quartiles and step-time CV over the measured steps, or n/a and why."""
        out: Dict[str, Any] = {
            "tokens_per_s_p25": None,
            "tokens_per_s_p50": None,
            "tokens_per_s_p75": None,
            "step_cv": None,
            "step_cv_flag": None,
            "step_cv_warn": self.cv_warn,
            "spread_note": None,
        }
        positive = [(t, c) for t, c in zip(times, counts) if t > 0]
        if len(positive) < MIN_SPREAD_STEPS:
            skipped = f", {self.warmup} warm-up excluded" if len(self.step_times) > self.warmup > 0 else ""
            out["spread_note"] = (
                f"n/a: {len(positive)} measured steps{skipped}; the spread needs >= {MIN_SPREAD_STEPS} "
                "(raise train.max_steps)"
            )
            return out
        rates = [c.loss_tokens / t for t, c in positive]
        p25, p50, p75 = statistics.quantiles(rates, n=4, method="inclusive")
        step_times = [t for t, _ in positive]
        cv = statistics.stdev(step_times) / statistics.fmean(step_times)
        out.update(tokens_per_s_p25=p25, tokens_per_s_p50=p50, tokens_per_s_p75=p75, step_cv=cv)
        if self.cv_warn is not None:
            out["step_cv_flag"] = bool(cv > self.cv_warn)
        return out
