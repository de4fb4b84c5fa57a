"""NVML readings around training: process and device memory peaks, sampled in the background, and energy.

Optional: needs ``pynvml`` (the ``nvidia-ml-py`` package, extra ``gpu``) and an NVIDIA
driver. Without them, or on CPU, every figure is None and ``absent`` says why, so a record
never claims a number it did not measure. Imports neither torch nor pynvml at module level.

- process peak: the largest ``usedGpuMemory`` NVML reports for this worker's PID, sampled
  every ``interval_s`` (it includes the CUDA context and the caching allocator's reserve,
  which torch's own counters do not). Inside a container NVML may list host PIDs only; then
  the process peak is absent and says so.
- device peak: the largest ``used`` memory of the whole device (every process on it).
- energy: ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since driver load, Volta and newer)
  read at start and stop; its difference is the device's energy over training.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, Optional

MIB = 1024 * 1024
DEFAULT_INTERVAL_S = 0.05


def _load_pynvml() -> Any:
    import pynvml  # noqa: PLC0415 - optional dependency, imported where used

    return pynvml


class GpuMonitor:
    """Background NVML sampler for one device; start() before training, stop() after."""

    def __init__(self, device_index: int = 0, uuid: Optional[str] = None, interval_s: float = DEFAULT_INTERVAL_S,
                 pid: Optional[int] = None, nvml: Any = None) -> None:
        self.device_index = device_index
        self.uuid = uuid
        self.interval_s = interval_s
        self.pid = pid or os.getpid()
        self._nvml = nvml
        self._handle: Any = None
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self.absent: Dict[str, str] = {}
        self.process_peak: Optional[int] = None
        self.device_peak: Optional[int] = None
        self.samples = 0
        self.process_seen = False
        self._energy_start: Optional[int] = None
        self._energy_stop: Optional[int] = None

    def _open(self) -> bool:
        try:
            nvml = self._nvml or _load_pynvml()
        except ImportError:
            self.absent["nvml"] = "pynvml not installed (pip install nvidia-ml-py, or the harness[gpu] extra)"
            return False
        try:
            nvml.nvmlInit()
            handle = None
            if self.uuid:
                try:
                    handle = nvml.nvmlDeviceGetHandleByUUID(self.uuid)
                except nvml.NVMLError:
                    handle = None
            self._handle = handle if handle is not None else nvml.nvmlDeviceGetHandleByIndex(self.device_index)
        except Exception as exc:  # noqa: BLE001 - NVMLError subclasses, missing driver library
            self.absent["nvml"] = f"NVML unavailable: {type(exc).__name__}: {exc}"
            return False
        self._nvml = nvml
        return True

    def _sample(self) -> None:
        nvml, handle = self._nvml, self._handle
        try:
            used = int(nvml.nvmlDeviceGetMemoryInfo(handle).used)
            self.device_peak = used if self.device_peak is None else max(self.device_peak, used)
        except Exception:  # noqa: BLE001 - a failed sample is skipped, not fatal
            pass
        try:
            for proc in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if proc.pid == self.pid and proc.usedGpuMemory is not None:
                    self.process_seen = True
                    mem = int(proc.usedGpuMemory)
                    self.process_peak = mem if self.process_peak is None else max(self.process_peak, mem)
        except Exception:  # noqa: BLE001
            pass
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _energy(self) -> Optional[int]:
        try:
            return int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        except Exception as exc:  # noqa: BLE001 - pre-Volta GPUs and some vGPUs lack the counter
            self.absent.setdefault("energy", f"NVML energy counter unavailable: {type(exc).__name__}")
            return None

    def start(self) -> "GpuMonitor":
        """Open NVML, read the energy counter, and start sampling in a daemon thread."""
        if not self._open():
            return self
        self._energy_start = self._energy()
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="harness-nvml", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Dict[str, Any]:
        """Stop sampling, take a last sample and the energy reading; return the figures."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._sample()
            self._energy_stop = self._energy() if self._energy_start is not None else None
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass
        if self._handle is not None and not self.process_seen:
            self.absent.setdefault(
                "nvml_process_peak_mib", f"PID {self.pid} not among NVML's compute processes (container PID namespace?)"
            )
        energy_j = None
        if self._energy_start is not None and self._energy_stop is not None:
            energy_j = (self._energy_stop - self._energy_start) / 1000.0
        return {
            "nvml_process_peak_mib": None if self.process_peak is None else self.process_peak / MIB,
            "nvml_device_peak_mib": None if self.device_peak is None else self.device_peak / MIB,
            "nvml_samples": self.samples,
            "nvml_interval_s": self.interval_s,
            "energy_j": energy_j,
            "absent": dict(self.absent),
        }


def cpu_monitor_result(reason: str = "NVML measures NVIDIA GPUs only; this cell ran on the CPU") -> Dict[str, Any]:
    """The same keys as GpuMonitor.stop(), all absent, for cells that did not run on CUDA."""
    return {
        "nvml_process_peak_mib": None,
        "nvml_device_peak_mib": None,
        "nvml_samples": 0,
        "nvml_interval_s": None,
        "energy_j": None,
        "absent": {"nvml": reason, "energy": reason},
    }
