"""What makes a forked cell the same as a spawned one: the template's imports kept fork-safe, the child's
seeds, thread pools and resident library pages put back as a fresh interpreter's would be.

Used by the warm template (``harness.worker.template``) before it serves and by each child right after fork.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any, Dict, List, Tuple

PRELOAD = ("torch", "transformers", "transformers.trainer", "peft", "datasets", "accelerate", "trl",
           "trl.trainer.sft_trainer", "omegaconf", "harness.worker.__main__", "harness.backends.hf",
           "harness.evaluators.base", "harness.evaluators.perplexity", "harness.data.prepare",
           "harness.measure.meters")
"""What an hf cell imports anyway; lm_eval, bitsandbytes and the framework backends stay with the cells that need them."""
def thread_count() -> int:
    """Threads of this process, from /proc (the interpreter's own count misses native threads)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading

        return threading.active_count()


def quiet() -> Dict[str, Any]:
    """What proves forking is safe: one thread, CUDA not initialised (with the module count, for the status op)."""
    torch = sys.modules.get("torch")
    cuda = bool(torch is not None and torch.cuda.is_initialized())
    return {"pid": os.getpid(), "threads": thread_count(), "cuda_initialized": cuda,
            "modules": len(sys.modules)}


QUIET_ENV = {"OPENBLAS_NUM_THREADS": "1", "JE_ARROW_MALLOC_CONF": "background_thread:false"}
"""Set while the template imports: numpy's and scipy's OpenBLAS start a thread pool at import, pyarrow's jemalloc a
background thread (jemalloc is not pyarrow's default pool: nothing else changes). The environment's own values come
back right after, and each child's BLAS pools get the size a spawned worker's would have (``restore_threads``)."""
BLAS_ENV = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")
"""OpenBLAS's own order of the variables that size its pool (else one thread per CPU)."""


def preload() -> List[str]:
    """Import ``PRELOAD`` with no network: returns the connections an import tried (each refused, as offline)."""
    import importlib

    tried: List[str] = []
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            tried.append(str(address))
            raise OSError("harness template: no network while the training stack is imported")
        real_connect(sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        tried.append(str(host))
        raise socket.gaierror("harness template: no network while the training stack is imported")

    saved = {k: os.environ.get(k) for k in QUIET_ENV}
    os.environ.update(QUIET_ENV)
    socket.socket.connect, socket.getaddrinfo = connect, getaddrinfo  # type: ignore[method-assign]
    try:
        for name in PRELOAD:
            importlib.import_module(name)
    finally:
        socket.socket.connect, socket.getaddrinfo = real_connect, real_getaddrinfo  # type: ignore[method-assign]
        for key, value in saved.items():
            if value is None:
                del os.environ[key]
            else:
                os.environ[key] = value
    return tried


def reseed() -> None:
    """Fresh seeds where a spawned worker would have had them (Python's and numpy's global generators)."""
    import random

    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MADV_POPULATE_READ = 22  # Linux >= 5.14


def resident_file_pages() -> List[Tuple[int, int]]:
    """(address, length) runs of this process's file-backed pages that are mapped now (/proc/self/pagemap).

    fork() copies a parent's page tables for anonymous memory but not for file mappings (shared libraries,
    mapped weights), so a forked child's RSS would leave out the library pages that a spawned worker,
    which touched them while importing, counts. The child maps these runs again (``populate``)."""
    from array import array

    runs: List[Tuple[int, int]] = []
    try:
        with open("/proc/self/maps") as maps, open("/proc/self/pagemap", "rb") as pagemap:
            for line in maps:
                parts = line.split()
                if len(parts) < 6 or not parts[5].startswith("/"):
                    continue
                start, end = (int(x, 16) for x in parts[0].split("-"))
                pagemap.seek(start // PAGE * 8)
                entries = array("Q")
                entries.frombytes(pagemap.read((end - start) // PAGE * 8))
                first = None
                for index, entry in enumerate(entries):
                    if entry >> 63:
                        first = index if first is None else first
                    elif first is not None:
                        runs.append((start + first * PAGE, (index - first) * PAGE))
                        first = None
                if first is not None:
                    runs.append((start + first * PAGE, (len(entries) - first) * PAGE))
    except OSError:
        return []
    return runs


def populate(runs: List[Tuple[int, int]]) -> None:
    """Map ``runs`` into this process's page tables from the page cache (MADV_POPULATE_READ; no-op where absent)."""
    import ctypes

    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    for address, length in runs:
        if madvise(address, length, MADV_POPULATE_READ) != 0 and ctypes.get_errno() == 22:  # EINVAL: kernel < 5.14
            return


def restore_threads() -> None:
    """Give the BLAS pools the size a spawned worker's would have (the template imported them with one thread)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # numpy's BLAS stays at one thread: nothing the training loop (torch's own kernels) uses
        return
    count = next((os.environ[k] for k in BLAS_ENV if os.environ.get(k, "").isdigit()), None)
    threadpool_limits(limits=int(count) if count else len(os.sched_getaffinity(0)), user_api="blas")
