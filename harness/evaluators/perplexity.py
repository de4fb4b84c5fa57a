"""Held-out loss and perplexity, token-weighted.

loss = (sum of next-token negative log-likelihoods over every loss-bearing held-out
token) / (number of those tokens), in nats; perplexity = exp(loss). Unlike the mean of
per-batch means that ``Trainer.evaluate`` reports, this does not depend on batch size or
padding.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List

from harness.backends.base import ModelView
from harness.config import PerplexityEvalConfig
from harness.data.tokenize import IGNORE_INDEX
from harness.evaluators.base import EvalContext
from harness.records import metric_row


def _batches(rows: List[Dict[str, Any]], size: int):
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def heldout_nll(view: ModelView, rows: List[Dict[str, Any]], batch_size: int) -> tuple[float, int]:
    """(summed NLL in nats, number of predicted tokens) over ``rows``."""
    import torch
    import torch.nn.functional as F

    pad = view.tokenizer.pad_token_id
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in _batches(rows, batch_size):
            width = max(len(r["input_ids"]) for r in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for i, row in enumerate(batch):
                n = len(row["input_ids"])
                ids[i, :n] = torch.tensor(row["input_ids"])
                labels[i, :n] = torch.tensor(row["labels"])
                mask[i, :n] = 1
            logits = view.model(input_ids=ids.to(view.device), attention_mask=mask.to(view.device)).logits.float()
            shifted = labels[:, 1:].to(view.device)
            nll = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.size(-1)), shifted.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
            )
            total += float(nll)
            count += int((shifted != IGNORE_INDEX).sum())
    return total, count


class PerplexityEvaluator:
    """eval_loss (nats/token) and perplexity on the held-out split."""

    name = "perplexity"

    def __init__(self, config: PerplexityEvalConfig) -> None:
        self.config = config

    def evaluate(self, view: ModelView, ctx: EvalContext) -> List[Dict[str, Any]]:
        """Two rows: eval_loss and perplexity, with n = held-out tokens scored."""
        total, count = heldout_nll(view, ctx.data.heldout, self.config.batch_size)
        loss = total / count
        return [
            metric_row("perplexity", "heldout", "eval_loss", loss, n=count, higher_is_better=False, unit="nats/token"),
            metric_row("perplexity", "heldout", "perplexity", math.exp(loss), n=count, higher_is_better=False),
        ]
