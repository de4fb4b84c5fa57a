"""Render conversations with a chat template and mark the tokens that carry loss.

The assistant spans are found on the rendered text: the template is rendered for each
prefix of the conversation, and the characters an assistant turn adds are the ones that
train. Token labels come from the fast tokenizer's offset mapping, so this works with
any model's own template, not only those with ``{% generation %}`` markers.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from harness.data.load import Conversation
from harness.errors import DataError

IGNORE_INDEX = -100
CHATML_FALLBACK = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def ensure_chat_template(tokenizer: Any) -> str:
    """Give a tokenizer without a chat template ChatML; return which template is in use."""
    if getattr(tokenizer, "chat_template", None):
        return "model"
    tokenizer.chat_template = CHATML_FALLBACK
    return "chatml"


def _render(tokenizer: Any, messages: Conversation, generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def assistant_spans(tokenizer: Any, messages: Conversation) -> Tuple[str, List[Tuple[int, int]]]:
    """The rendered text and the character spans of its assistant turns."""
    text = _render(tokenizer, messages, generation_prompt=False)
    spans = []
    for index, turn in enumerate(messages):
        if turn["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:index], generation_prompt=True) if index else ""
        through = _render(tokenizer, messages[: index + 1], generation_prompt=False)
        if not (text.startswith(through) and through.startswith(before)):
            raise DataError(
                "the chat template does not render conversations prefix-consistently; "
                "assistant tokens cannot be located (set data.loss_on=all to train on every token)"
            )
        spans.append((len(before), len(through)))
    return text, spans


def tokenize_conversation(
    tokenizer: Any, messages: Conversation, max_len: int, assistant_only: bool = True
) -> Dict[str, Any]:
    """input_ids and labels (IGNORE_INDEX where no loss), truncated to ``max_len`` tokens."""
    text, spans = assistant_spans(tokenizer, messages)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = encoded["input_ids"]
    labels = list(ids)
    if assistant_only:
        for position, (start, end) in enumerate(encoded["offset_mapping"]):
            if not any(start < span_end and end > span_start for span_start, span_end in spans):
                labels[position] = IGNORE_INDEX
    truncated = len(ids) > max_len
    return {
        "input_ids": ids[:max_len],
        "labels": labels[:max_len],
        "truncated": truncated,
        "full_length": len(ids),
    }
