"""How a cell's failure is classified: out of memory, diverged, or failed with one line."""

from __future__ import annotations

import errno
import re
from typing import Optional

# Allocator messages that mean memory ran out, and nothing else: a bare "memory" in a
# message (a config error about memory, a planner warning) must not read as an OOM.
_OOM_MESSAGE = re.compile(
    r"DefaultCPUAllocator: (?:can't allocate memory|not enough memory)"  # torch host allocator (Linux, Windows)
    r"|\b(?:CUDA|HIP|XPU|MPS backend) out of memory"  # torch device caching allocators
    r"|\bCUDA error: out of memory"  # a raw cudaMalloc outside the caching allocator (cuDNN, NCCL)
    r"|\b(?:CUBLAS|CUDNN)_STATUS_ALLOC_FAILED"  # handle/workspace allocation inside the library
    r"|\bCUDA_ERROR_OUT_OF_MEMORY",  # driver API (bitsandbytes, triton)
    re.IGNORECASE,
)
_CHAIN_LIMIT = 16


def _is_oom(exc: BaseException) -> bool:
    """True when this one exception (not its chain) reports exhausted device or host memory."""
    if isinstance(exc, MemoryError):  # also numpy's _ArrayMemoryError
        return True
    if isinstance(exc, OSError) and exc.errno == errno.ENOMEM:  # mmap / fork refused by the kernel
        return True
    # torch.OutOfMemoryError (= torch.cuda.OutOfMemoryError) by name: classify must not import torch
    if any(cls.__name__ == "OutOfMemoryError" for cls in type(exc).__mro__):
        return True
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not turn the cell's error handler into a crash
        return False
    return bool(_OOM_MESSAGE.search(text))


def classify(exc: BaseException) -> str:
    """Status for an exception: oom for device or host memory exhaustion, unsupported for a setting the
    framework cannot honour (``UnsupportedError``), else failed.

    Follows the exception's cause chain, so a library that wraps an allocator failure in
    its own exception (``raise X from oom``, or raising while handling one) still reads as oom.
    """
    from harness.errors import UnsupportedError

    seen: set[int] = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen and len(seen) < _CHAIN_LIMIT:
        if _is_oom(current):
            return "oom"
        if isinstance(current, UnsupportedError):
            return "unsupported"
        seen.add(id(current))
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return "failed"


def one_line(exc: BaseException) -> str:
    """The error as one line: the harness's own message, or Type: first line."""
    from harness.errors import HarnessError

    if isinstance(exc, SystemExit):
        return f"the cell called sys.exit({exc.code!r})"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, HarnessError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Diverged(Exception):
    """Training produced a non-finite loss; the cell ends ``diverged`` and is never evaluated."""
