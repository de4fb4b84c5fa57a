"""The NVML monitor with a fake pynvml: peaks, energy, and absent figures that say why."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from harness.measure.meters import MemoryMeter
from harness.measure.nvml import GpuMonitor

pytestmark = pytest.mark.unit
MIB = 1024 * 1024


class FakeNVML:
    """Enough of pynvml for GpuMonitor: memory rises then falls, energy counts up."""

    class NVMLError(Exception):
        pass

    def __init__(self, pid, energy=True, pid_visible=True):
        self.pid, self.energy, self.pid_visible = pid, energy, pid_visible
        self.calls = 0
        self.shut = False

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        self.shut = True

    def nvmlDeviceGetHandleByUUID(self, uuid):
        raise self.NVMLError("not found")

    def nvmlDeviceGetHandleByIndex(self, index):
        return f"gpu{index}"

    def _level(self):
        self.calls += 1
        return [100, 900, 300][min(self.calls // 3, 2)]

    def nvmlDeviceGetMemoryInfo(self, handle):
        return SimpleNamespace(used=(self._level() + 50) * MIB, total=80 * 1024 * MIB)

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        pid = self.pid if self.pid_visible else self.pid + 1
        return [SimpleNamespace(pid=pid, usedGpuMemory=self._level() * MIB), SimpleNamespace(pid=1, usedGpuMemory=None)]

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if not self.energy:
            raise self.NVMLError("Not Supported")
        return 1_000_000 + int(time.monotonic() * 1000) % 1 + self.calls * 5000


def test_peaks_and_energy():
    fake = FakeNVML(pid=4242)
    monitor = GpuMonitor(uuid="GPU-x", interval_s=0.005, pid=4242, nvml=fake).start()
    time.sleep(0.08)
    out = monitor.stop()
    assert out["nvml_process_peak_mib"] == pytest.approx(900, abs=1)
    assert out["nvml_device_peak_mib"] >= out["nvml_process_peak_mib"]
    assert out["energy_j"] is not None and out["energy_j"] > 0
    assert out["nvml_samples"] >= 3 and fake.shut and out["absent"] == {}


def test_missing_energy_counter_and_hidden_pid_are_absent_with_reasons():
    fake = FakeNVML(pid=7, energy=False, pid_visible=False)
    out = GpuMonitor(interval_s=0.005, pid=7, nvml=fake).start().stop()
    assert out["energy_j"] is None and "energy counter unavailable" in out["absent"]["energy"]
    assert out["nvml_process_peak_mib"] is None and "PID 7" in out["absent"]["nvml_process_peak_mib"]
    assert out["nvml_device_peak_mib"] is not None


def test_no_pynvml_degrades_to_absent(monkeypatch):
    import harness.measure.nvml as nvml

    def missing():
        raise ImportError("no pynvml")

    monkeypatch.setattr(nvml, "_load_pynvml", missing)
    out = GpuMonitor().start().stop()
    assert out["nvml_device_peak_mib"] is None and "pynvml not installed" in out["absent"]["nvml"]


def test_cpu_meter_labels_nvml_as_absent():
    meter = MemoryMeter("cpu")
    meter.reset_peak()
    peak = meter.peak()
    assert peak["nvml_process_peak_mib"] is None and "CPU" in peak["absent"]["nvml"]
    assert peak["host_rss_at_reset_mib"] > 0
