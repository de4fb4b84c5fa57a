"""A plug-in backend for tests: the real hf backend with a fault injected before training.

Loaded by the worker through ``framework.backend=tests.fault_backend:FaultBackend``, which
also shows the import-path plug-in seam. ``framework.options.fault`` picks the fault.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from harness.backends.hf import HFBackend


class FaultBackend(HFBackend):
    """HFBackend whose train() first raises, exits, dies by a signal, hangs, or runs out of device or host memory."""

    def train(self, data, meter):
        fault = self.cfg.framework.options.get("fault", "none")
        if fault == "raise":
            raise RuntimeError("injected failure")
        if fault == "exit":
            sys.exit(3)
        if fault == "signal":
            os.kill(os.getpid(), signal.SIGKILL)
        if fault == "hard_exit":
            os._exit(7)
        if fault == "hang":
            time.sleep(3600)
        if fault == "oom":
            import torch

            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        if fault == "host_oom":  # a real allocator failure: this worker's address space capped just above its use
            import resource

            import torch

            size_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize:"))
            cap = (size_kb << 10) + (512 << 20)
            resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
            torch.empty(8 << 30, dtype=torch.uint8)
        return super().train(data, meter)
