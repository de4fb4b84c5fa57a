"""Batched chat generation for the answer-generating evaluators (MT-Bench, AlpacaEval, domain sets).

Each prompt is rendered with the model's own chat template (generation prompt added),
so a fine-tuned model answers in the format it was trained on. Prompts are sorted by
length and left-padded into batches (one padded width per batch, so little compute goes
to padding), then returned in the caller's order. Sampling is seeded per batch: the same
seed, batch size and prompts give the same answers; another batch size may not (batch
composition changes padding and the random stream).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Sequence, Set

from harness.seams import ModelView

Message = Dict[str, str]


def eos_ids(view: ModelView) -> Set[int]:
    """Token ids that end an answer: the tokenizer's EOS and every EOS in the model's generation config
    (Llama 3's instruct models end turns with <|eot_id|>, which only the generation config names)."""
    ids: Set[int] = set()
    if view.tokenizer.eos_token_id is not None:
        ids.add(int(view.tokenizer.eos_token_id))
    config = getattr(view.model, "generation_config", None)
    extra = getattr(config, "eos_token_id", None)
    for value in extra if isinstance(extra, (list, tuple)) else [extra]:
        if value is not None:
            ids.add(int(value))
    return ids


def encode(tokenizer: Any, conversation: List[Message]) -> List[int]:
    """Token ids of the conversation in the model's chat template, ending with the assistant's generation prompt."""
    text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])  # the template already has BOS if any


def _answer(tokenizer: Any, new: Sequence[int], stop: Set[int], max_new_tokens: int) -> Dict[str, Any]:
    """text, tokens (answer tokens before the first EOS) and cut_off (hit max_new_tokens without an EOS)."""
    end = next((i for i, token in enumerate(new) if token in stop), None)
    tokens = list(new[:end]) if end is not None else list(new)
    text = tokenizer.decode(tokens, skip_special_tokens=True).strip()
    return {"text": text, "tokens": len(tokens), "cut_off": end is None and len(tokens) >= max_new_tokens}


def generate(
    view: ModelView,
    conversations: List[List[Message]],
    max_new_tokens: int,
    temperature: float,
    batch_size: int,
    seed: int,
) -> List[Dict[str, Any]]:
    """One answer per conversation: {"text", "tokens", "cut_off"}; temperature 0 = greedy.

    Runs under ``torch.no_grad`` in eval mode (the model's mode is restored after);
    ``torch.manual_seed(seed + batch index)`` before each batch.
    """
    import torch

    tokenizer, model = view.tokenizer, view.model
    stop = eos_ids(view)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(stop, default=0)
    prompts = [encode(tokenizer, conversation) for conversation in conversations]
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))  # longest first: memory trouble shows early
    sampling = temperature > 0
    options: Dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": sampling, "pad_token_id": pad}
    if stop:
        options["eos_token_id"] = sorted(stop)
    if sampling:  # top_p/top_k stay the model's generation config's, as in FastChat's gen_model_answer
        options["temperature"] = float(temperature)
    out: List[Dict[str, Any]] = [{}] * len(prompts)
    training = bool(getattr(model, "training", False))
    model.eval()
    try:
        with torch.no_grad():
            for number, start in enumerate(range(0, len(order), batch_size)):
                batch = order[start : start + batch_size]
                width = max(len(prompts[i]) for i in batch)
                # left padding: every prompt ends where generation starts
                ids = torch.full((len(batch), width), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, index in enumerate(batch):
                    ids[row, width - len(prompts[index]) :] = torch.tensor(prompts[index])
                    mask[row, width - len(prompts[index]) :] = 1
                torch.manual_seed(seed + number)
                result = model.generate(input_ids=ids.to(view.device), attention_mask=mask.to(view.device), **options)
                for row, index in enumerate(batch):
                    out[index] = _answer(tokenizer, result[row, width:].tolist(), stop, max_new_tokens)
    finally:
        model.train(training)
    return out


def write_jsonl(path: Path, rows: List[Dict[str, Any]]) -> None:
    """One JSON object per line, written atomically (a reader never sees half a file)."""
    from harness.files import write_text_atomic

    write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean; NaN for no values (the row then says there was nothing to average)."""
    return sum(values) / len(values) if values else float("nan")
