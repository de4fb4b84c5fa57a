"""Option names transformers accepts for ``train.optimizer`` and ``train.lr_scheduler``.

The parent validates these keys before any worker starts, but must not import
transformers (it imports torch). So the names are copied here from transformers
5.24.0: ``transformers.training_args.OptimizerNames`` and
``transformers.trainer_utils.SchedulerType``. tests/unit/test_config_errors.py compares
both tables with the installed transformers, so a version that adds or drops a name
fails a test instead of silently refusing (or passing) it. To regenerate::

    python -c "from transformers.training_args import OptimizerNames as O; print([o.value for o in O])"
    python -c "from transformers.trainer_utils import SchedulerType as S; print([s.value for s in S])"
"""

from __future__ import annotations

from typing import Tuple

TRANSFORMERS_VERSION = "5.24.0"
"""The transformers release these tables were copied from."""

OPTIMIZERS: Tuple[str, ...] = (
    "adamw_torch",
    "adamw_torch_fused",
    "adamw_torch_xla",
    "adamw_torch_npu_fused",
    "adafactor",
    "adamw_anyprecision",
    "adamw_torch_4bit",
    "adamw_torch_8bit",
    "ademamix",
    "sgd",
    "adagrad",
    "adamw_bnb_8bit",
    "adamw_8bit",
    "ademamix_8bit",
    "lion_8bit",
    "lion_32bit",
    "paged_adamw_32bit",
    "paged_adamw_8bit",
    "paged_ademamix_32bit",
    "paged_ademamix_8bit",
    "paged_lion_32bit",
    "paged_lion_8bit",
    "rmsprop",
    "rmsprop_bnb",
    "rmsprop_bnb_8bit",
    "rmsprop_bnb_32bit",
    "galore_adamw",
    "galore_adamw_8bit",
    "galore_adafactor",
    "galore_adamw_layerwise",
    "galore_adamw_8bit_layerwise",
    "galore_adafactor_layerwise",
    "lomo",
    "adalomo",
    "grokadamw",
    "schedule_free_radam",
    "schedule_free_adamw",
    "schedule_free_sgd",
    "apollo_adamw",
    "apollo_adamw_layerwise",
    "stable_adamw",
)
"""``OptimizerNames`` values, in transformers' order."""

LR_SCHEDULERS: Tuple[str, ...] = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "reduce_lr_on_plateau",
    "cosine_with_min_lr",
    "cosine_warmup_with_min_lr",
    "warmup_stable_decay",
    "greedy",
)
"""``SchedulerType`` values, in transformers' order."""

BITSANDBYTES_OPTIMIZERS: Tuple[str, ...] = (
    "adamw_bnb_8bit", "adamw_8bit", "paged_adamw_32bit", "paged_adamw_8bit", "ademamix", "ademamix_8bit",
    "paged_ademamix_32bit", "paged_ademamix_8bit", "lion_32bit", "lion_8bit", "paged_lion_32bit", "paged_lion_8bit",
    "rmsprop_bnb", "rmsprop_bnb_8bit", "rmsprop_bnb_32bit",
    # GaLore's package imports its 8-bit AdamW, hence bitsandbytes, whichever GaLore optimizer is asked for
    "galore_adamw", "galore_adamw_8bit", "galore_adafactor", "galore_adamw_layerwise", "galore_adamw_8bit_layerwise",
    "galore_adafactor_layerwise",
)
"""Optimizers that import bitsandbytes (``transformers.trainer_optimizer._BITSANDBYTES_OPTIMIZERS`` and GaLore's):
a cell with one keeps bitsandbytes importable even with unquantized weights (harness/backends/optional.py)."""
