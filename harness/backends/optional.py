"""Keep bitsandbytes out of the cells that do not use it.

``import peft`` (peft/helpers.py) and ``transformers.trainer_utils`` (which imports peft) import bitsandbytes
whenever it is installed, and bitsandbytes then looks for its kernels on the hub: a non-quantized cell's
worker log would carry "Failed to load CPU gemm_4bit_forward from kernels-community ..." for a library the
cell never calls. Marking the module absent (``sys.modules[name] = None``) makes those guarded imports take
their "not installed" branch, as they would on a machine without it.
"""

from __future__ import annotations

import sys
from typing import Any

from harness.config.hf_names import BITSANDBYTES_OPTIMIZERS

BITSANDBYTES = "bitsandbytes"


def needs_bitsandbytes(cfg: Any) -> bool:
    """True for a cell that calls bitsandbytes: quantized weights (quant.mode) or a bitsandbytes optimizer."""
    return cfg.quant.mode != "none" or cfg.train.optimizer in BITSANDBYTES_OPTIMIZERS


def hide_bitsandbytes(cfg: Any) -> bool:
    """Mark bitsandbytes absent for the rest of this process unless the cell needs it; True when it was hidden.

    Call it only in a process that runs this one cell (a worker): another cell of the same process could need
    it. A library imported already (a worker forked from a template that imported peft) stays: hiding it then
    would leave peft's ``bnb`` set and ``import bitsandbytes`` failing, the worst of both.
    """
    if needs_bitsandbytes(cfg) or BITSANDBYTES in sys.modules:
        return False
    sys.modules[BITSANDBYTES] = None  # type: ignore[assignment]  # import raises ImportError; find_spec gives None
    return True
