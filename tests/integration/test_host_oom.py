"""A real host allocation failure (torch's CPU allocator under an address-space limit) classifies as oom."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration

LIMIT = 4 << 30
"""Address space the child may use: room for importing torch, far below what it then asks for."""
CHILD = """
import json, sys
import torch
from harness.worker.outcome import classify
out = {}
for name, allocate in [
    ("torch", lambda: torch.empty(2 * LIMIT, dtype=torch.uint8)),
    ("python", lambda: bytearray(2 * LIMIT)),
]:
    try:
        allocate()
        out[name] = None
    except BaseException as exc:
        out[name] = [classify(exc), type(exc).__name__, (str(exc).splitlines() or [""])[0][:300]]
print(json.dumps(out))
""".replace("LIMIT", str(LIMIT))


def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


def test_allocation_beyond_the_address_space_limit_is_oom():
    result = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=REPO, capture_output=True, text=True, timeout=300,
        preexec_fn=_limit_address_space,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["torch"] is not None, "the allocation succeeded: the limit did not apply"
    status, kind, message = out["torch"]
    assert kind == "RuntimeError" and "DefaultCPUAllocator" in message, message  # torch's own error, not ours
    assert status == "oom", message
    assert out["python"] is not None and out["python"][:2] == ["oom", "MemoryError"], out["python"]
