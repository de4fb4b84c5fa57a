"""Held-out loss and perplexity, token-weighted, in two scopes.

Assistant scope (rows ``eval_loss``, ``perplexity``): loss = (sum of next-token negative
log-likelihoods over every loss-bearing, i.e. assistant, held-out token) / (number of
those tokens), in nats; perplexity = exp(loss). This is what fine-tuning optimises.
Unlike the mean of per-batch means that ``Trainer.evaluate`` reports, it does not depend
on batch size or padding.

Sequence scope (``eval.perplexity.rolling=true``; rows ``seq_nll``, ``seq_perplexity``,
``word_perplexity``, ``byte_perplexity``, ``bits_per_byte``): lm-eval's
``loglikelihood_rolling`` over every token of each held-out example as rendered by the
chat template. The first token is predicted from a prefix token (BOS, else EOS); a
sequence longer than the window is cut into lm-eval's disjoint rolling windows. With LL
the summed log-likelihood over the split: seq_nll = -LL / tokens, seq_perplexity =
exp(seq_nll), word_perplexity = exp(-LL / words), byte_perplexity = exp(-LL / bytes),
bits_per_byte = -LL / (bytes * ln 2) -- lm-eval's wikitext definitions, with words =
whitespace-separated pieces and bytes = UTF-8 bytes of the decoded text. Only the
word and byte figures compare across models with different tokenizers.
"""

from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from harness.config.eval import PerplexityEvalConfig
from harness.data.tokenize import IGNORE_INDEX
from harness.seams import EvalContext, ModelView
from harness.store.records import metric_row


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


def rolling_windows(tokens: Sequence[int], prefix_token: int, max_length: int) -> List[Tuple[List[int], List[int]]]:
    """(context, continuation) windows covering ``tokens`` exactly as lm-eval scores them.

    lm-eval's ``get_rolling_token_windows(context_len=1)`` followed by
    ``make_disjoint_window``: the first window predicts up to ``max_length`` tokens from
    the prefix token; each later one predicts the next ``max_length`` tokens; the last,
    shorter window keeps as much earlier text as context as fits.
    """
    tokens = list(tokens)
    windows: List[Tuple[List[int], List[int]]] = []
    if not tokens:
        return windows
    first = min(max_length, len(tokens))
    windows.append(([prefix_token], tokens[:first]))
    predicted = first
    while predicted < len(tokens):
        length = min(len(tokens) - predicted, max_length)
        end = predicted + length
        window = tokens[max(end - max_length - 1, 0) : end - 1]
        windows.append((window[: len(window) - (length - 1)], tokens[end - length : end]))
        predicted += length
    return windows


def context_length(model: Any, tokenizer: Any, default: int = 2048) -> int:
    """The window lm-eval's HFLM uses: n_positions / max_position_embeddings / n_ctx, else the tokenizer's, else 2048."""
    config = getattr(model, "config", None)
    config = getattr(config, "text_config", None) or config
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, attr, None)
        if value is not None:
            return int(value)
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if limit is not None and limit < int(1e29) else default  # 1e30 = "unset" in transformers


def prefix_token(tokenizer: Any) -> int:
    """lm-eval's prefix token for an empty context: BOS when the tokenizer has one, else EOS."""
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def rolling_loglikelihoods(
    view: ModelView, sequences: List[List[int]], batch_size: int, max_length: Optional[int] = None
) -> List[float]:
    """Summed log-likelihood (nats) of each token sequence, lm-eval ``loglikelihood_rolling`` style.

    All windows of all sequences are batched together (right padding, so the causal
    positions of real tokens are untouched) and scored in one pass.
    """
    import torch
    import torch.nn.functional as F

    window = max_length or context_length(view.model, view.tokenizer)
    prefix = prefix_token(view.tokenizer)
    jobs = [(i, ctx, cont) for i, seq in enumerate(sequences) for ctx, cont in rolling_windows(seq, prefix, window)]
    totals = [0.0] * len(sequences)
    pad = view.tokenizer.pad_token_id if view.tokenizer.pad_token_id is not None else prefix
    with torch.no_grad():
        for batch in _batches(jobs, batch_size):
            inputs = [(ctx + cont)[-(window + 1) :][:-1] for _, ctx, cont in batch]
            width = max(len(x) for x in inputs)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, tokens in enumerate(inputs):
                ids[row, : len(tokens)] = torch.tensor(tokens)
                mask[row, : len(tokens)] = 1
            logits = view.model(input_ids=ids.to(view.device), attention_mask=mask.to(view.device)).logits
            logprobs = F.log_softmax(logits.float(), dim=-1)
            for row, (index, _, cont) in enumerate(batch):
                end = len(inputs[row])
                scores = logprobs[row, end - len(cont) : end]
                target = torch.tensor(cont, device=scores.device).unsqueeze(-1)
                totals[index] += float(scores.gather(-1, target).sum())
    return totals


def sequence_rows(view: ModelView, rows: List[Dict[str, Any]], batch_size: int, max_length: Optional[int]) -> List[Dict[str, Any]]:
    """The sequence-scope rows (see the module docstring) for the held-out examples."""
    sequences = [list(r["input_ids"]) for r in rows]
    loglik = sum(rolling_loglikelihoods(view, sequences, batch_size, max_length))
    tokens = sum(len(s) for s in sequences)
    texts = [view.tokenizer.decode(s) for s in sequences]
    words = sum(len(re.split(r"\s+", t)) for t in texts)  # lm-eval wikitext's word count
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    row = lambda metric, value, n, unit=None: metric_row(  # noqa: E731
        "perplexity", "heldout", metric, value, n=n, higher_is_better=False, unit=unit
    )
    return [
        row("seq_nll", -loglik / tokens, tokens, "nats/token"),
        row("seq_perplexity", math.exp(-loglik / tokens), tokens),
        row("word_perplexity", math.exp(-loglik / words), words),
        row("byte_perplexity", math.exp(-loglik / nbytes), nbytes),
        row("bits_per_byte", -loglik / (nbytes * math.log(2)), nbytes, "bits/byte"),
    ]


class PerplexityEvaluator:
    """eval_loss (nats/token) and perplexity on the held-out split, plus lm-eval-style sequence perplexity."""

    name = "perplexity"

    def __init__(self, config: PerplexityEvalConfig) -> None:
        self.config = config

    def baseline_identity(self, ctx: EvalContext) -> Dict[str, Any]:
        """What besides model and config fixes the score: the held-out tokens themselves."""
        import hashlib
        import json

        digest = hashlib.sha256(json.dumps([[r["input_ids"], r["labels"]] for r in ctx.data.heldout]).encode())
        return {"heldout": digest.hexdigest()[:16]}

    def evaluate(self, view: ModelView, ctx: EvalContext) -> List[Dict[str, Any]]:
        """eval_loss and perplexity (n = held-out assistant tokens), then the sequence rows when rolling is on."""
        total, count = heldout_nll(view, ctx.data.heldout, self.config.batch_size)
        loss = total / count
        rows = [
            metric_row("perplexity", "heldout", "eval_loss", loss, n=count, higher_is_better=False, unit="nats/token"),
            metric_row("perplexity", "heldout", "perplexity", math.exp(loss), n=count, higher_is_better=False),
        ]
        if self.config.rolling:
            rows += sequence_rows(view, ctx.data.heldout, self.config.batch_size, self.config.max_length)
        return rows
