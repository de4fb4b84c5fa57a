"""A worker of a cell without quantization or a bitsandbytes optimizer never imports bitsandbytes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from harness.backends.optional import needs_bitsandbytes
from harness.config.hf_names import BITSANDBYTES_OPTIMIZERS, OPTIMIZERS
from harness.config.peft import QuantConfig
from harness.config.schema import HarnessConfig
from harness.config.train import TrainConfig
from tests.conftest import REPO

pytestmark = pytest.mark.unit


def test_which_cells_need_bitsandbytes():
    assert not needs_bitsandbytes(HarnessConfig())
    assert needs_bitsandbytes(HarnessConfig(quant=QuantConfig(mode="4bit")))
    assert needs_bitsandbytes(HarnessConfig(train=TrainConfig(optimizer="paged_adamw_8bit")))
    assert not needs_bitsandbytes(HarnessConfig(train=TrainConfig(optimizer="adamw_torch_8bit")))  # torchao's


def test_the_bitsandbytes_optimizers_are_transformers_own():
    pytest.importorskip("transformers")
    from transformers.trainer_optimizer import _BITSANDBYTES_OPTIMIZERS

    assert {o.value for o in _BITSANDBYTES_OPTIMIZERS} <= set(BITSANDBYTES_OPTIMIZERS) <= set(OPTIMIZERS)


ENV = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
WORKER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from harness.backends.hf import HFBackend
    from harness.config.peft import QuantConfig
    from harness.config.schema import HarnessConfig
    from harness.seams import CellContext

    quant = QuantConfig(mode=sys.argv[1])
    ctx = CellContext(cell_dir=Path("."), cache_dir=Path("."), device="cpu", progress=object())  # as in a worker
    HFBackend(HarnessConfig(quant=quant), ctx)
    import peft  # imports bitsandbytes whenever it can (peft/helpers.py)
    import peft.helpers
    print(sys.modules.get("bitsandbytes") is not None, peft.helpers.bnb is not None)
""")


@pytest.mark.parametrize("mode,imported", [("none", "False False"), ("4bit", "True True")])
def test_a_worker_imports_bitsandbytes_only_for_a_cell_that_uses_it(mode, imported, tmp_path):
    pytest.importorskip("bitsandbytes")
    result = subprocess.run([sys.executable, "-c", WORKER, mode], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env=ENV)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[-2] == imported
    if mode == "none":
        assert "bitsandbytes" not in result.stderr and "kernels-community" not in result.stderr, result.stderr[-2000:]


def test_outside_a_worker_nothing_is_hidden(tmp_path):
    """The data check and in-process tests build backends too: another cell of that process may need bitsandbytes."""
    result = subprocess.run([sys.executable, "-c", WORKER.replace("progress=object()", "progress=None"), "none"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env=ENV)
    assert result.returncode == 0, result.stderr[-2000:]
    has_bnb = subprocess.run([sys.executable, "-c", "import importlib.util as u; print(u.find_spec('bitsandbytes') is not None)"],
                             capture_output=True, text=True).stdout.strip()
    assert result.stdout.split("\n")[-2] == f"{has_bnb} {has_bnb}"
