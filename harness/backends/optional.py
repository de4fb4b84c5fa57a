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
    mark_absent()
    return True


def mark_absent() -> None:
    """Make ``import bitsandbytes`` raise ImportError (and find_spec give None) in this process from now on.

    The warm template calls it before importing the training stack, so a cell forked from it carries the same
    libraries as a spawned non-quantized cell (same host RSS: bitsandbytes adds ~30 MiB); a cell that uses
    bitsandbytes is spawned instead (``harness.sweep.warm.mode``).
    """
    sys.modules.setdefault(BITSANDBYTES, None)  # type: ignore[arg-type]
