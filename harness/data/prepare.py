"""From a data config to tokenized train and held-out sets, with statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List

from harness.config import DataConfig
from harness.data.load import load_messages_jsonl, resolve_path
from harness.data.split import split_conversations
from harness.data.tokenize import ensure_chat_template, tokenize_conversation
from harness.errors import DataError


@dataclass
class PreparedData:
    """Tokenized examples (input_ids, labels) and the statistics a record carries."""

    train: List[Dict[str, Any]]
    heldout: List[Dict[str, Any]]
    stats: Dict[str, Any] = field(default_factory=dict)


def _tokenize_all(tokenizer: Any, conversations: list, max_len: int) -> tuple[list, dict]:
    """Tokenize; drop examples left with no loss-bearing token and count why."""
    examples, counts = [], {"truncated": 0, "dropped_no_trainable_tokens": 0}
    for conversation in conversations:
        row = tokenize_conversation(tokenizer, conversation, max_len)
        counts["truncated"] += int(row.pop("truncated"))
        row.pop("full_length")
        if all(label < 0 for label in row["labels"]):
            counts["dropped_no_trainable_tokens"] += 1
            continue
        examples.append(row)
    return examples, counts


def _token_stats(examples: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Totals a summary shows: all tokens and loss-bearing (trained) tokens."""
    return {
        "examples": len(examples),
        "tokens": sum(len(ex["input_ids"]) for ex in examples),
        "loss_tokens": sum(sum(1 for label in ex["labels"] if label >= 0) for ex in examples),
    }


def prepare_data(data: DataConfig, tokenizer: Any, max_seq_len: int, seed: int) -> PreparedData:
    """Load, split (before anything else, so nothing leaks), subsample and tokenize."""
    path = resolve_path(data.path)
    conversations = load_messages_jsonl(path)
    train_conv, held_conv = split_conversations(conversations, data.val_fraction, seed)
    if data.max_examples is not None:
        train_conv = train_conv[: data.max_examples]
    template = ensure_chat_template(tokenizer)
    train, train_counts = _tokenize_all(tokenizer, train_conv, max_seq_len)
    heldout, held_counts = _tokenize_all(tokenizer, held_conv, max_seq_len)
    if not train:
        raise DataError(f"{path}: no training example has an assistant token left within train.max_seq_len={max_seq_len}")
    if not heldout:
        raise DataError(f"{path}: no held-out example has an assistant token left within train.max_seq_len={max_seq_len}")
    stats = {
        "source": str(path),
        "format": "messages",
        "chat_template": template,
        "conversations_loaded": len(conversations),
        "train": {**_token_stats(train), **train_counts},
        "heldout": {**_token_stats(heldout), **held_counts},
    }
    return PreparedData(train=train, heldout=heldout, stats=stats)
