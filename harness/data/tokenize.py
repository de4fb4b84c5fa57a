"""Render conversations with a chat template and mark the tokens that carry loss.

The assistant spans are found on the rendered text: the template is rendered for each
prefix of the conversation, and the characters an assistant turn adds are the ones that
train. Token labels come from the fast tokenizer's offset mapping, so this works with
any model's own template, not only those with ``{% generation %}`` markers. Texts are
tokenized in one batch call (the Rust tokenizer runs it in parallel).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from harness.data.validate import Conversation
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


def fold_system(messages: Conversation) -> Conversation:
    """The conversation with its system turn merged into the first user turn.

    For templates that reject a system role (Gemma's raises): the instruction is kept,
    as the start of the first user message.
    """
    system = "\n\n".join(t["content"] for t in messages if t["role"] == "system")
    rest = [dict(t) for t in messages if t["role"] != "system"]
    for turn in rest:
        if turn["role"] == "user":
            turn["content"] = f"{system}\n\n{turn['content']}"
            break
    return rest


def assistant_spans(tokenizer: Any, messages: Conversation) -> Tuple[str, List[Tuple[int, int]]]:
    """The rendered text and the character spans of its assistant turns."""
    text = _render(tokenizer, messages, generation_prompt=False)
    spans = []
    for index, turn in enumerate(messages):
        if turn["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:index], generation_prompt=True) if index else ""
        through = (
            text if index == len(messages) - 1 else _render(tokenizer, messages[: index + 1], generation_prompt=False)
        )
        if not (text.startswith(through) and through.startswith(before)):
            raise DataError(
                "the chat template does not render conversations prefix-consistently; "
                "assistant tokens cannot be located (set data.loss_on=all to train on every token)"
            )
        # the newline a template puts after the end-of-turn token is layout, not something to learn
        spans.append((len(before), len(through.rstrip())))
    return text, spans


def render(tokenizer: Any, messages: Conversation, loss_on: str) -> Tuple[str, Optional[List[Tuple[int, int]]]]:
    """(text, assistant spans or None for whole-sequence loss); folds the system turn if the template rejects it."""
    try:
        return _render_once(tokenizer, messages, loss_on)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - jinja raises TemplateError (the template's raise_exception), or anything a template does
        if any(t["role"] == "system" for t in messages) and "system" in str(exc).lower():
            return _render_once(tokenizer, fold_system(messages), loss_on)
        raise DataError(
            f"the model's chat template cannot render a conversation: {str(exc).splitlines()[0][:200]}"
        ) from None


def _render_once(tokenizer: Any, messages: Conversation, loss_on: str) -> Tuple[str, Optional[List[Tuple[int, int]]]]:
    if loss_on == "all":
        return _render(tokenizer, messages, generation_prompt=False), None
    return assistant_spans(tokenizer, messages)


def _token_at(encoding: Any, position: int, step: int, stop: int) -> Optional[int]:
    """Token holding character ``position``, moving by ``step`` past characters no token covers."""
    while position != stop:
        token = encoding.char_to_token(position)
        if token is not None:
            return token
        position += step
    return None


def _loss_mask(encoding: Any, spans: Optional[List[Tuple[int, int]]]) -> np.ndarray:
    """True for tokens that overlap an assistant span (all tokens when spans is None).

    Asks the encoding which tokens hold each span's first and last character, instead
    of converting every token's offsets: a few calls per turn, not one per token.
    """
    mask = np.ones(len(encoding.ids), dtype=bool)
    if spans is None:
        return mask
    mask[:] = False
    for start, end in spans:
        first = _token_at(encoding, start, 1, end)
        last = _token_at(encoding, end - 1, -1, start - 1)
        if first is not None and last is not None:
            mask[first : last + 1] = True
    return mask


def encode_batch(tokenizer: Any, texts: List[str]) -> List[Any]:
    """``tokenizers`` Encodings of the texts, no special tokens added, no truncation or padding."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise DataError(
            f"{type(tokenizer).__name__} is not a fast tokenizer; assistant tokens cannot be located without one"
        )
    if backend.truncation is not None:  # as transformers itself does before encoding
        backend.no_truncation()
    if backend.padding is not None:
        backend.no_padding()
    return backend.encode_batch(texts, add_special_tokens=False) if texts else []


@dataclass
class TokenizedSplit:
    """Tokenized examples of one split as flat arrays (cheap to cache and to slice)."""

    ids: np.ndarray
    """Token ids of every kept example, concatenated (already cut to max_len)."""
    mask: np.ndarray
    """True where the token carries loss."""
    offsets: np.ndarray
    """Example k is ids[offsets[k]:offsets[k+1]]."""
    full_lengths: np.ndarray
    """Token count of each kept example before truncation."""
    source: np.ndarray
    """Index of each kept example in the conversations the split was made from."""
    counts: Dict[str, int] = field(default_factory=dict)
    """truncated, dropped_overlong, dropped_no_trainable_tokens, dropped_template_error."""

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def rows(self, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        """The first ``limit`` examples as dicts of input_ids and labels (IGNORE_INDEX where no loss)."""
        count = len(self) if limit is None else min(limit, len(self))
        labels = np.where(self.mask, self.ids, IGNORE_INDEX)
        out = []
        for k in range(count):
            lo, hi = self.offsets[k], self.offsets[k + 1]
            out.append({"input_ids": self.ids[lo:hi].tolist(), "labels": labels[lo:hi].tolist()})
        return out

    def stats(self, limit: Optional[int] = None) -> Dict[str, int]:
        """examples, tokens and loss_tokens of the first ``limit`` examples, truncated among them."""
        count = len(self) if limit is None else min(limit, len(self))
        end = int(self.offsets[count])
        return {
            "examples": count,
            "tokens": end,
            "loss_tokens": int(self.mask[:end].sum()),
            "truncated": int((self.full_lengths[:count] > np.diff(self.offsets[: count + 1])).sum()),
        }


def tokenize_split(
    tokenizer: Any,
    conversations: Sequence[Conversation],
    max_len: int,
    loss_on: str = "assistant",
    overlong: str = "truncate",
    on_error: str = "fail",
) -> TokenizedSplit:
    """Render, tokenize in one batch, mark loss tokens; truncate or drop over-long examples, counting each."""
    counts: Counter = Counter(
        {"truncated": 0, "dropped_overlong": 0, "dropped_no_trainable_tokens": 0, "dropped_template_error": 0}
    )
    texts, spans, sources = [], [], []
    for index, conversation in enumerate(conversations):
        try:
            text, span = render(tokenizer, conversation, loss_on)
        except DataError:
            if on_error == "fail":
                raise
            counts["dropped_template_error"] += 1
            continue
        texts.append(text)
        spans.append(span)
        sources.append(index)
    ids, masks, lengths, kept = [], [], [], []
    for k, encoding in enumerate(encode_batch(tokenizer, texts)):
        token_ids = encoding.ids
        mask = _loss_mask(encoding, spans[k])
        if len(token_ids) > max_len:
            if overlong == "drop":
                counts["dropped_overlong"] += 1
                continue
            counts["truncated"] += 1
        if not mask[:max_len].any():
            counts["dropped_no_trainable_tokens"] += 1
            counts["truncated"] -= int(len(token_ids) > max_len)
            continue
        ids.append(np.asarray(token_ids[:max_len], dtype=np.int32))
        masks.append(mask[:max_len])
        lengths.append(len(token_ids))
        kept.append(sources[k])
    return TokenizedSplit(
        ids=np.concatenate(ids) if ids else np.zeros(0, dtype=np.int32),
        mask=np.concatenate(masks) if masks else np.zeros(0, dtype=bool),
        offsets=np.concatenate([[0], np.cumsum([len(a) for a in ids], dtype=np.int64)]).astype(np.int64),
        full_lengths=np.asarray(lengths, dtype=np.int32),
        source=np.asarray(kept, dtype=np.int64),
        counts=dict(counts),
    )
