"""A cell's exception is oom exactly when memory ran out: host, device, or a wrapper around either."""

from __future__ import annotations

import errno

import pytest

from harness.errors import ConfigError
from harness.worker.outcome import classify

pytestmark = pytest.mark.unit

HOST_LINUX = (
    "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
    "you tried to allocate 17592186044416 bytes. Error code 12 (Cannot allocate memory)"
)
HOST_WINDOWS = "[enforce fail at alloc_cpu.cpp:72] data. DefaultCPUAllocator: not enough memory: you tried to allocate 1 bytes."
CUDA = "CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of 79.19 GiB of which 3.06 MiB is free."


class OutOfMemoryError(RuntimeError):
    """Stands in for torch.OutOfMemoryError (matched by name, so classify needs no torch)."""


class LibraryOOM(OutOfMemoryError):
    """A library's subclass of torch's error."""


@pytest.mark.parametrize(
    "exc",
    [
        MemoryError(),
        MemoryError("Unable to allocate 1.00 TiB for an array with shape (1099511627776,)"),
        RuntimeError(HOST_LINUX),
        RuntimeError(HOST_WINDOWS),
        OutOfMemoryError(CUDA),
        OutOfMemoryError(""),
        LibraryOOM("whatever"),
        RuntimeError(CUDA),
        RuntimeError("HIP out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("MPS backend out of memory (MPS allocated: 1.2 GB)"),
        RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported"),
        RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
        RuntimeError("Triton Error [CUDA]: CUDA_ERROR_OUT_OF_MEMORY"),
        OSError(errno.ENOMEM, "Cannot allocate memory"),
    ],
)
def test_memory_exhaustion_is_oom(exc):
    assert classify(exc) == "oom"


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("expected scalar type Float but found Half"),
        ValueError("memory.events not found"),
        ConfigError("run.max_memory_mib=10: the plan predicts 812 MiB, which is more memory than allowed"),
        RuntimeError("pin memory thread exited unexpectedly"),
        RuntimeError("CUDA error: an illegal memory access was encountered"),
        RuntimeError("the model would run out of memory with batch_size=64; lower it"),
        OSError(errno.ENOENT, "No such file or directory"),
        KeyError("out of memory"),
        SystemExit(3),
    ],
)
def test_other_errors_are_failed(exc):
    assert classify(exc) == "failed"


def _raise_from(inner: BaseException, suppress: bool = False) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as caught:
            if suppress:
                raise RuntimeError("wrapped") from None
            raise RuntimeError("a library wrapped it") from caught
    except RuntimeError as outer:
        return outer


def _raise_while_handling(inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException:
            raise ValueError("cleanup after the failure failed too")  # noqa: B904 - the implicit context is the point
    except ValueError as outer:
        return outer


def test_an_oom_in_the_cause_chain_is_oom():
    assert classify(_raise_from(RuntimeError(HOST_LINUX))) == "oom"
    assert classify(_raise_while_handling(OutOfMemoryError(CUDA))) == "oom"
    assert classify(_raise_from(RuntimeError("shape mismatch"))) == "failed"


def test_suppressed_context_is_not_followed():
    assert classify(_raise_from(MemoryError(), suppress=True)) == "failed"


def test_a_cyclic_chain_ends():
    a, b = RuntimeError("a"), RuntimeError("b")
    a.__cause__, b.__cause__ = b, a
    assert classify(a) == "failed"


def test_a_broken_str_does_not_raise():
    class Broken(Exception):
        def __str__(self) -> str:
            raise TypeError("no")

    assert classify(Broken()) == "failed"


def test_a_setting_the_framework_cannot_honour_is_unsupported() -> None:
    from harness.errors import UnsupportedError

    assert classify(UnsupportedError("quant.mode=8bit: no 8-bit loading here")) == "unsupported"
    try:
        try:
            raise UnsupportedError("quant.mode=8bit")
        except UnsupportedError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert classify(outer) == "unsupported"
